"""Parameters of ``lens_node``: one table of specs, declared with descriptors, read into a
dataclass.

``PARAMETERS`` is the single source of truth: ``declare_parameters()`` turns it into ROS parameters
with ``ParameterDescriptor`` (description, range, choices, read-only), ``config/lens.yaml`` holds
the same defaults (a test checks both agree) and README's table is checked against that file.

When a change takes effect (``Spec.applies``):
  ``runtime``    at once, on the next request (validated by ``check_change``);
  ``activate``   at the next activate (QoS and subscriptions are created there);
  ``configure``  needs a model reload: rejected while a model is loaded (cleanup, set, configure);
  ``start``      read once at start (``read_only``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Triggering modes (the policies of ``lens_ros.serving.mode_registry.MODE_POLICIES``).
MODES = ("on_command", "continuous", "track")
DEVICES_HELP = "'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'"
DTYPES = ("auto", "float32", "bfloat16", "float16")
RELIABILITIES = ("best_effort", "reliable")


@dataclass(frozen=True)
class Spec:
    """One node parameter: name, default (its type is the ROS type), description and limits."""

    name: str
    default: Any
    description: str
    applies: str = "runtime"
    choices: tuple[str, ...] = ()
    low: float | None = None  # inclusive range for int/float parameters
    high: float | None = None

    @property
    def read_only(self) -> bool:
        return self.applies == "start"

    @property
    def type_name(self) -> str:
        """ROS type name as in ``ros2 param describe``: bool, integer, double or string."""
        return {bool: "bool", int: "integer", float: "double", str: "string"}[type(self.default)]


PARAMETERS: tuple[Spec, ...] = (
    Spec("model_path", "", "LENS checkpoint directory (config.json + *.safetensors + tokenizer "
         "files). Needs a reload: change it while unconfigured, then configure.", "configure"),
    Spec("device", "auto", f"Torch device: {DEVICES_HELP}. Needs a reload.", "configure"),
    Spec("dtype", "auto", "Weights dtype: 'auto' is bfloat16 on CUDA, float32 on CPU. Needs a "
         "reload.", "configure", DTYPES),
    Spec("reasoning", False, "Ask for `<think>` reasoning before the answer (the released RefCOCO "
         "model was trained without it). The Segment action can override it per goal."),
    Spec("max_new_tokens", 256, "Generation budget in tokens; longer answers are cut and flagged "
         "`truncated`.", low=1, high=8192),
    Spec("max_command_chars", 500, "Longest accepted command in characters; longer ones get "
         "BAD_COMMAND.", low=1, high=100000),
    Spec("no_target_object_score", -1000.0, "No-target gate: a mask whose SAM 2 object-score "
         "logit is below this gets NO_TARGET (-1000 = off, as in the paper).",
         low=-1000.0, high=1000.0),
    Spec("no_target_iou", 0.0, "No-target gate: a mask whose SAM 2 IoU prediction is below this "
         "gets NO_TARGET (0 = off).", low=0.0, high=1.0),
    Spec("no_target_without_box", False, "No-target gate: an answer without a parsable box gets "
         "NO_TARGET (off: the mask is still returned)."),
    Spec("mode", "on_command", "on_command: answer each command once on the frame nearest to its "
         "arrival; continuous: re-run the current command on every new frame (at most `rate` Hz); "
         "track: LENS call, then SAM 2 tracking between calls.", choices=MODES),
    Spec("rate", 0.0, "Continuous mode: most runs per second (0 = as fast as the model allows).",
         low=0.0, high=1000.0),
    Spec("reacquire_period", 5.0, "Track mode: seconds of camera time between full LENS calls "
         "while tracking (0 = only on a new command or a lost target).", low=0.0, high=86400.0),
    Spec("track_min_object_score", 0.0, "Track mode: LENS re-runs at once on a frame where the "
         "tracker's SAM 2 object-score logit falls below this (0 = SAM 2's 'object present').",
         low=-1000.0, high=1000.0),
    Spec("tracker_path", "", "Track mode: directory (or file) holding tracker.safetensors, the "
         "SAM 2 memory modules for this model (empty = model_path); read when track mode "
         "starts (activate or a switch to track).", "activate"),
    Spec("publish_overlay", True, "Publish `debug_image` (mask tint, box, command, answer); it is "
         "only computed while someone subscribes."),
    Spec("command_queue_size", 10, "Commands and goals waiting for the model; on overflow the "
         "oldest gets a DROPPED result.", low=1, high=1000),
    Spec("image_buffer_size", 5, "Recent frames kept so a queued command is answered on the frame "
         "nearest to its arrival.", low=1, high=100),
    Spec("frame_max_age", 2.0, "A command is answered NO_IMAGE when the nearest frame is further "
         "than this many seconds from its arrival (0 = no limit).", low=0.0, high=86400.0),
    Spec("command_timeout", 0.0, "A command that waited longer than this many seconds in the "
         "queue gets TIMEOUT (0 = never).", low=0.0, high=86400.0),
    Spec("max_image_pixels", 8294400, "Frames with more pixels than this (default 3840x2160) "
         "are refused with BAD_IMAGE.", low=1, high=2**31 - 1),
    Spec("image_reliability", "best_effort", "QoS reliability of the `image` subscription "
         "(best_effort = sensor data; applied at the next activate).", "activate", RELIABILITIES),
    Spec("image_qos_depth", 1, "QoS history depth of the `image` subscription (applied at the "
         "next activate).", "activate", low=1, high=100),
    Spec("enable_3d", False, "Subscribe to `depth` and `camera_info` for the 3D target fields "
         "(applied at the next activate).", "activate"),
    Spec("action_preempt", True, "A new Segment goal aborts the active one (one operator); false "
         "queues goals (a shared server for several clients)."),
    Spec("autostart", True, "Configure and activate at start so that plain `lens_node` works; "
         "the lifecycle services still answer.", "start"),
    Spec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", "start",
         low=0.05, high=3600.0),
)
SPECS = {s.name: s for s in PARAMETERS}


@dataclass
class NodeParams:
    """Typed snapshot of every node parameter (field names = parameter names; defaults and meaning
    in ``PARAMETERS``; ``NodeParams(**defaults())`` gives the defaults)."""

    model_path: str
    device: str
    dtype: str
    reasoning: bool
    max_new_tokens: int
    max_command_chars: int
    no_target_object_score: float
    no_target_iou: float
    no_target_without_box: bool
    mode: str
    rate: float
    reacquire_period: float
    track_min_object_score: float
    tracker_path: str
    publish_overlay: bool
    command_queue_size: int
    image_buffer_size: int
    frame_max_age: float
    command_timeout: float
    max_image_pixels: int
    image_reliability: str
    image_qos_depth: int
    enable_3d: bool
    action_preempt: bool
    autostart: bool
    diagnostics_period: float


def check_value(name: str, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for parameter ``name``, or None when it is."""
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(spec.default):
        return f"{name} must be a {spec.type_name}, got {type(value).__name__} {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{name}={value!r} is not one of {list(spec.choices)}"
    if spec.low is not None and not spec.low <= value <= spec.high:
        return f"{name}={value!r} is outside [{spec.low}, {spec.high}]"
    if name == "device" and not _valid_device(value):
        return f"device={value!r} is not valid; use {DEVICES_HELP}"
    return None


def _valid_device(value: str) -> bool:
    if value in ("auto", "cpu", "cuda"):
        return True
    head, _, index = value.partition(":")
    return head == "cuda" and index.isdigit()


def check_change(name: str, value: Any, model_loaded: bool) -> str | None:
    """Why a runtime change of ``name`` to ``value`` is refused, or None to accept it."""
    reason = check_value(name, value)
    if reason:
        return reason
    spec = SPECS.get(name)
    if spec is not None and spec.applies == "configure" and model_loaded:
        return (f"{name} needs a model reload: deactivate and cleanup the node, set {name}, "
                "then configure again")
    return None


def declare_parameters(node) -> None:
    """Declare every parameter of ``PARAMETERS`` on an rclpy node, with its descriptor."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    for spec in PARAMETERS:
        text = spec.description
        if spec.choices:
            text += f" One of: {', '.join(spec.choices)}."
        desc = ParameterDescriptor(description=text, read_only=spec.read_only)
        if isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=0.0)] \
                if spec.low is not None else []
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [IntegerRange(
                from_value=int(spec.low), to_value=int(spec.high), step=1)] \
                if spec.low is not None else []
        if spec.choices:
            desc.additional_constraints = f"one of {list(spec.choices)}"
        node.declare_parameter(spec.name, spec.default, desc)


def read_parameters(node) -> NodeParams:
    """Read every parameter from ``node`` into a ``NodeParams``; raise ValueError if invalid."""
    values = {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}
    errors = [r for r in (check_value(k, v) for k, v in values.items()) if r]
    if errors:
        raise ValueError("invalid parameters: " + "; ".join(errors))
    for spec in PARAMETERS:  # YAML may give 1 for a double
        if isinstance(spec.default, float):
            values[spec.name] = float(values[spec.name])
    return NodeParams(**values)


def inference_overrides(params: NodeParams) -> dict[str, Any]:
    """The ``InferenceConfig`` fields the node controls (gate sentinels -1000 / 0 mean None)."""
    return {"max_new_tokens": params.max_new_tokens,
            "max_command_chars": params.max_command_chars,
            "no_target_object_score": None if params.no_target_object_score <= -1000.0
            else params.no_target_object_score,
            "no_target_iou": params.no_target_iou if params.no_target_iou > 0.0 else None,
            "no_target_without_box": params.no_target_without_box}


def defaults() -> dict[str, Any]:
    """``{name: default}`` of every parameter, in declaration order."""
    return {spec.name: spec.default for spec in PARAMETERS}


def markdown_table() -> str:
    """README table of the parameters: name, type, default, range or choices, when a change
    applies, description (the defaults column is valid YAML, as in config/lens.yaml)."""
    rows = ["| parameter | type | default | range | applies | description |",
            "|---|---|---|---|---|---|"]
    for spec in PARAMETERS:
        if spec.choices:
            limits = ", ".join(f"`{c}`" for c in spec.choices)
        elif spec.low is not None:
            limits = f"[{_num(spec.low)}, {_num(spec.high)}]"
        else:
            limits = ""
        rows.append(f"| `{spec.name}` | {spec.type_name} | `{json.dumps(spec.default)}` | "
                    f"{limits} | {spec.applies} | {spec.description.replace('|', '/')} |")
    return "\n".join(rows)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
