"""Clean stops for the batch tools (``lens-bag run``, ``lens-eval``, ``lens-train``).

SIGINT (Ctrl-C) and SIGTERM both stop a batch job as a ``KeyboardInterrupt`` raised in the main
thread; further signals are ignored while it unwinds, so a second Ctrl-C cannot turn a clean
stop into a traceback. :func:`run_batch` turns the stop into one line on stderr and exit status
130; what the job wrote so far (records, checkpoints) is kept, and the same command resumes.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

#: exit status of a batch job stopped by SIGINT/SIGTERM (128 + SIGINT, as a shell reports it)
INTERRUPTED = 130


def _stop(signum, frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_batch(name: str, job: Callable[[], int], resume_hint: str) -> int:
    """Run ``job()`` (returns the exit code); SIGINT/SIGTERM end it with :data:`INTERRUPTED`.

    Arguments:
      name: the tool, for the message ("lens-bag run").
      job: the work; it must leave resumable state when interrupted at any point.
      resume_hint: how to go on, e.g. "re-run the same command to resume".
    """
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return job()
    except KeyboardInterrupt:
        for sig in old:  # unwinding is over: nothing left to stop
            signal.signal(sig, signal.SIG_IGN)
        print(f"{name}: interrupted; {resume_hint}", file=sys.stderr)
        return INTERRUPTED
    finally:
        for sig, handler in old.items():  # the caller's handlers again (tests call main())
            signal.signal(sig, handler)
