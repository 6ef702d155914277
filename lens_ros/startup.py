"""Console-script entry points that stop quietly while the tool is still importing.

Importing torch, transformers and rclpy takes seconds; a SIGINT/SIGTERM in that window would
otherwise print a ``KeyboardInterrupt`` traceback (or die by the signal). Here the signals end
the process at once with the tool's stop status (0 for nodes, ``lens-camera``, ``lens-console``
and ``lens-bag play|record``; 130 for the batch jobs; 3, "no answer", for ``lens-ask``) -
nothing has been written yet - and once the tool's module is imported the usual handlers are
back: rclpy's for the nodes, ``lens_ros.interrupts`` for batch jobs.
Batch jobs import torch and the model code (:data:`PRELOAD`) in that window too. This module
imports nothing heavy itself.
"""
from __future__ import annotations

import functools
import importlib
import os
import signal
import sys

#: what the batch jobs import while a stop still ends the process at once: a KeyboardInterrupt
#: raised inside torch's C++ import code aborts the process instead of unwinding
PRELOAD = ("lens_ros.model",)
#: console script -> (module with ``main()``, exit status of a stop during import)
TOOLS = {"lens_node": ("lens_ros.ros.lens_node", 0), "speech_node": ("lens_ros.ros.speech_node", 0),
         "lens-bag": ("lens_ros.ros.bag_cli", 130), "lens-eval": ("lens_ros.evaluation.cli", 130),
         "lens-train": ("lens_ros.training.cli", 130),
         "lens-camera": ("lens_ros.ros.camera", 0),
         "lens-console": ("lens_ros.ros.console.server", 0),
         "lens-ask": ("lens_ros.ros.ask", 3)}  # 3: lens-ask's "no answer" (nothing was sent)


def main(tool: str) -> int:
    """Import ``tool``'s module with the import-time stop in place, then run its ``main()``."""
    module, status = TOOLS[tool]
    if tool == "lens-bag" and sys.argv[1:2] in (["play"], ["record"]):
        status = 0

    def _quit(signum, frame):
        os._exit(status)

    old = {sig: signal.signal(sig, _quit) for sig in (signal.SIGINT, signal.SIGTERM)}
    entry = importlib.import_module(module).main
    if status == 130 and sys.argv[1:2] not in (["--help"], ["-h"]):
        for name in PRELOAD:
            importlib.import_module(name)
    for sig, handler in old.items():
        signal.signal(sig, handler)
    code = entry()
    for sig in old:  # finished: a late signal must not interrupt the interpreter's exit
        signal.signal(sig, signal.SIG_IGN)
    if code == 130:  # an interrupted batch job, already cleaned up: exit with exactly that (a
        # Ctrl-C that escaped code run by an extension while importing would otherwise make
        # the interpreter re-raise SIGINT at exit)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# The console-script entry points (setup.py): one per tool in TOOLS.
lens_node = functools.partial(main, "lens_node")
speech_node = functools.partial(main, "speech_node")
lens_bag = functools.partial(main, "lens-bag")
lens_eval = functools.partial(main, "lens-eval")
lens_train = functools.partial(main, "lens-train")
lens_camera = functools.partial(main, "lens-camera")
lens_console = functools.partial(main, "lens-console")
lens_ask = functools.partial(main, "lens-ask")


if __name__ == "__main__":  # python -m lens_ros.startup TOOL [args...]
    name = sys.argv.pop(1)
    sys.exit(main(name))
