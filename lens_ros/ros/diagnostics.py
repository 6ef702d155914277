"""``/diagnostics`` for lens_node: one ``DiagnosticStatus`` with model, queue and error counters.

Built from plain values (lifecycle state, model info, ``WorkerStats``) so the content is easy to
test; the node publishes it every ``diagnostics_period`` seconds and right after an error result.
"""
from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def build_status(name: str, state: str, model: dict[str, Any], stats, queue_length: int,
                 config_error: str = "") -> DiagnosticStatus:
    """One DiagnosticStatus.

    Arguments:
      name: status name, e.g. "lens_node: inference".
      state: lifecycle state label ("unconfigured", "inactive", "active", ...).
      model: facts about the loaded model (``loaded``, ``device``, ``dtype``, ``path``,
        ``load_s``, ``rss_mb``, ...); empty when no model is loaded.
      stats: ``WorkerStats`` of the running worker, or None when not active.
      queue_length: commands waiting for the model.
      config_error: why the last configure failed (empty when it did not).
    Level: ERROR after a failed configure, WARN when not active or when the last result was an
    error, OK otherwise.
    """
    loaded = bool(model.get("loaded"))
    values = {"state": state, "model_loaded": loaded, "queue_length": queue_length}
    values.update({f"model_{k}": v for k, v in model.items() if k != "loaded"})
    if stats is not None:
        values.update(
            frames_received=stats.frames_received, frames_dropped=stats.frames_dropped,
            commands_received=stats.commands_received, results=stats.results,
            errors=stats.errors, last_latency_ms=f"{stats.last_latency_ms:.1f}",
            last_model_ms=f"{stats.last_model_ms:.1f}",
            last_overhead_ms=f"{stats.last_overhead_ms:.2f}", last_error=stats.last_error)
        values.update({f"results_{k}": v for k, v in sorted(stats.by_status.items())})
    if config_error:
        level, message = DiagnosticStatus.ERROR, f"configure failed: {config_error}"
    elif state != "active":
        level, message = DiagnosticStatus.WARN, f"node is {state}; model loaded: {loaded}"
    elif stats is not None and stats.last_result_error:
        level, message = DiagnosticStatus.WARN, stats.last_error
    else:
        level, message = DiagnosticStatus.OK, "serving"
    return DiagnosticStatus(
        level=level, name=name, message=message[:500], hardware_id=str(model.get("device", "")),
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def build_array(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    """Wrap one status in a DiagnosticArray stamped with ``stamp`` (builtin_interfaces/Time)."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg
