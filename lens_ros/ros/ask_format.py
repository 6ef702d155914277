"""What ``lens-ask`` prints and returns: result and diagnostics text, exit codes (no rclpy).

Exit codes (``lens-ask`` returns the code of its last answer):

====  ==========================================================================
 0    status OK, TRACKED or NO_DEPTH (mask and box valid: ``Status.is_success``)
 1    an unexpected error in lens-ask itself
 2    bad usage: unknown option, unreadable ``--image``
 3    no answer: no lens_node found, goal rejected, or ``--timeout`` passed
10+s  any other status s of LensResult: 11 NO_TARGET, 12 BAD_IMAGE, 13 BAD_COMMAND,
      14 MODEL_ERROR, 15 TIMEOUT, 16 DROPPED, 17 CANCELED (Ctrl-C), 20 NO_IMAGE,
      21 NOT_READY
====  ==========================================================================
"""
from __future__ import annotations

from lens_ros.core import Status

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_ANSWER = 0, 1, 2, 3
STATUS_EXIT_BASE = 10  #: exit code = STATUS_EXIT_BASE + status for the statuses below
_LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def exit_code(status: int) -> int:
    """The process exit code of one LensResult status (see the module table)."""
    return EXIT_OK if Status(status).is_success else STATUS_EXIT_BASE + int(status)


def status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"UNKNOWN({status})"


def stamp_text(header) -> str:
    """``frame_id @ sec.nanosec`` of a std_msgs/Header."""
    return f"{header.frame_id} @ {header.stamp.sec}.{header.stamp.nanosec:09d}"


def format_result(msg, goal_state: str = "", show_answer: bool = True) -> str:
    """Readable lines for one LensResult (status, box, scores, timings, frame, answer, error);
    ``show_answer=False`` leaves out the raw answer (when it was streamed already)."""
    state = f"  (goal {goal_state})" if goal_state else ""
    lines = [f"status   {status_name(msg.status)}{state}"]
    if msg.has_box:
        lines.append("box      [" + ", ".join(f"{v:.1f}" for v in msg.box) + "] px (x1 y1 x2 y2)")
    lines.append(f"scores   mask IoU {msg.score:.3f}, object {msg.object_score:+.2f}")
    lines.append(f"timings  generate {msg.generate_ms:.0f} ms, mask {msg.mask_ms:.0f} ms, "
                 f"total {msg.total_ms:.0f} ms")
    lines.append(f"frame    {stamp_text(msg.header)}")
    if msg.has_point:
        p = msg.target_point
        lines.append(f"point    ({p.x:.3f}, {p.y:.3f}, {p.z:.3f}) m")
    if show_answer and msg.answer:
        lines.append(f"answer   {msg.answer}")
    if msg.truncated:
        lines.append("note     generation stopped at max_new_tokens")
    if msg.error:
        lines.append(f"error    {msg.error}")
    return "\n".join(lines)


def diagnostic_lines(array, prefix: str = "lens_node") -> list[str]:
    """Readable lines of the statuses of a DiagnosticArray whose name starts with ``prefix``."""
    out = []
    for st in array.status:
        if not st.name.startswith(prefix):
            continue
        level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
        out.append(f"{st.name}: {_LEVELS.get(level, level)} {st.message}".rstrip())
        width = max((len(kv.key) for kv in st.values), default=0)
        out += [f"  {kv.key.ljust(width)}  {kv.value}" for kv in st.values]
    return out
