"""``lens_node``: the lifecycle ROS 2 node that answers language commands with masks and reasoning.

An adapter: ``sensor_msgs/Image`` -> numpy -> ``LensSegmenter`` -> ``Segmentation`` -> messages.
It holds no model, prompt or parsing code.

Lifecycle: configure = read and check parameters, load the model (logs time and memory) and
create the ``segment`` action server (it accepts goals only while active, as nav2's servers do);
activate = create publishers, the inference worker and subscriptions; deactivate = stop the
worker (every pending command and goal is answered) and release them; cleanup = remove the
action server and free the model. With ``autostart`` (default) the node configures and activates itself at start.

Topics (relative, remappable): in ``image``, ``command``, ``depth`` + ``camera_info`` (only with
``enable_3d``); out ``result``, ``mask``, ``debug_image``, ``reasoning``, ``target_point`` (with
``enable_3d``), ``/diagnostics``.
"""
from __future__ import annotations

import dataclasses
import gc
import sys
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from lens_ros.core import LensError, Status
from lens_ros.msg import LensResult
from lens_ros.ros import diagnostics
from lens_ros.ros.action_server import MAX_GOALS, SegmentActionServer
from lens_ros.serving.depth_sync import DepthSync
from lens_ros.conversions.image import (
    ImageConversionError,
    image_to_rgb,
    rclpy_types,
    rgb_to_image,
)
from lens_ros.serving.mode_registry import MODE_POLICIES
from lens_ros.ros.node_main import run_lifecycle_node
from lens_ros.ros.qos import COMMAND_QOS, RESULT_QOS, sensor_qos
from lens_ros.ros.parameters import (
    SPECS,
    NodeParams,
    check_change,
    declare_parameters,
    inference_overrides,
    read_parameters,
)
from lens_ros.serving.requests import ERROR_STATUSES, Outcome, Request
from lens_ros.conversions.result import segmentation_to_result
from lens_ros.serving.track_mode import tracking_weights_problem
from lens_ros.serving.worker import InferenceWorker
from lens_ros.visualize import overlay

#: statuses whose mask has the frame's size and whose text came from the model
_MODEL_RAN = (Status.OK, Status.NO_TARGET, Status.TRACKED, Status.NO_DEPTH)


class LensNode(LifecycleNode):
    """Lifecycle node serving LENS on camera frames (see the module docstring)."""

    def __init__(self, node_name: str = "lens_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self._types = rclpy_types()
        self._params: NodeParams | None = None
        self._segmenter = None
        self._model_info: dict = {}
        self._config_error = ""
        self._worker: InferenceWorker | None = None
        self._action: SegmentActionServer | None = None
        self._pubs: dict = {}
        self._subs: list = []
        self._depth_sync: DepthSync | None = None  # depth + camera_info (enable_3d)
        self._last_diag = 0.0
        # Own groups so a flood on one input never starves the others; the action is reentrant
        # so cancel requests are served while goals wait for the model.
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._command_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        self._diag_group = MutuallyExclusiveCallbackGroup()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = self.get_parameter("diagnostics_period").value
        self._diag_timer = self.create_timer(period, self._publish_diagnostics,
                                             callback_group=self._diag_group)

    # -- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Check parameters and load the model; FAILURE (stay unconfigured) on any problem."""
        log = self.get_logger()
        try:
            params = read_parameters(self)
            if params.mode not in MODE_POLICIES:
                raise ValueError(f"mode {params.mode!r} is not available in this build; "
                                 f"available: {sorted(MODE_POLICIES)}")
            path = self._checkpoint_dir(params.model_path)
            if params.mode == "track" and (why := tracking_weights_problem(params)):
                raise ValueError(why)
        except ValueError as err:
            return self._configure_failed(str(err))
        rss0, t0 = _rss_mb(), time.perf_counter()
        try:
            import torch

            from lens_ros.model import LensSegmenter

            seg = LensSegmenter.from_pretrained(
                str(path), device=None if params.device == "auto" else params.device,
                dtype=None if params.dtype == "auto" else getattr(torch, params.dtype),
                **inference_overrides(params))
        except (LensError, OSError, ValueError) as err:
            return self._configure_failed(f"cannot load the model from {str(path)!r}: {err}")
        except Exception as err:  # torch/transformers errors of any type: stay configurable
            log.error(f"loading the model raised {type(err).__name__}")
            return self._configure_failed(f"cannot load the model from {str(path)!r}: "
                                          f"{type(err).__name__}: {err}")
        load_s = time.perf_counter() - t0
        device = str(seg.device)
        self._model_info = {"loaded": True, "path": str(path), "device": device,
                            "dtype": str(seg.model.dtype).replace("torch.", ""),
                            "load_s": f"{load_s:.2f}", "rss_mb": f"{_rss_mb():.0f}",
                            "rss_added_mb": f"{_rss_mb() - rss0:.0f}"}
        gpu = _gpu_mb(device)
        if gpu is not None:
            self._model_info["gpu_mb"] = f"{gpu:.0f}"
        self._segmenter, self._params, self._config_error = seg, params, ""
        self._action = SegmentActionServer(self, lambda: self._worker, self._to_message,
                                           lambda: self._params.action_preempt,
                                           self._action_group)
        log.info(f"loaded {path} in {load_s:.2f} s on {device} ({self._model_info['dtype']}); "
                 f"RSS {self._model_info['rss_mb']} MB (+{self._model_info['rss_added_mb']} MB)"
                 + (f", GPU {gpu:.0f} MB" if gpu is not None else ""))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Create the outputs, the worker and the inputs (in that order)."""
        p = self._params = read_parameters(self)
        self._pubs = {
            "result": self.create_publisher(LensResult, "result", RESULT_QOS),
            "mask": self.create_publisher(Image, "mask", RESULT_QOS),
            "reasoning": self.create_publisher(String, "reasoning", RESULT_QOS),
            "debug_image": self.create_publisher(Image, "debug_image",
                                                 sensor_qos("best_effort", 1)),
        }
        depth = self._depth_sync = DepthSync() if p.enable_3d else None
        if depth is not None:
            self._pubs["target_point"] = self.create_publisher(PointStamped, "target_point",
                                                               RESULT_QOS)
        self._worker = InferenceWorker(self._segmenter, p, self._decode, self._deliver,
                                       self._configure_model, depth.attach if depth else None)
        self._worker.start()
        qos = sensor_qos(p.image_reliability, p.image_qos_depth)
        self._subs = [
            self.create_subscription(Image, "image", self._worker.put_frame, qos,
                                     callback_group=self._image_group),
            self.create_subscription(String, "command", self._on_command, COMMAND_QOS,
                                     callback_group=self._command_group),
        ]
        if depth is not None:
            self._subs += [
                self.create_subscription(Image, "depth", depth.put_depth, qos,
                                         callback_group=self._image_group),
                self.create_subscription(CameraInfo, "camera_info", depth.put_camera_info, qos,
                                         callback_group=self._image_group)]
        self.get_logger().info(f"active: mode {p.mode}, image QoS {p.image_reliability}/"
                               f"{p.image_qos_depth}, 3D {'on' if p.enable_3d else 'off'}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Stop input, answer everything pending, then release the outputs."""
        self._release_interfaces()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Remove the action server and free the model (GPU memory too)."""
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release_interfaces()
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error during a transition from {state.label}; cleaning up")
        self._release_interfaces()
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Release everything at process exit, whatever the state."""
        self._release_interfaces()
        self._release_model()

    # -- inputs ---------------------------------------------------------------------------------
    def _on_command(self, msg: String) -> None:
        """Queue a command for the worker (bad ones are answered at once)."""
        worker = self._worker
        if worker is not None:  # None only in the instant a deactivation removes this callback
            worker.submit(Request(command=msg.data))

    def _decode(self, msg: Image):
        """Frame message -> HxWx3 uint8 RGB; ImageConversionError (BAD_IMAGE) on a bad frame."""
        pixels, limit = int(msg.width) * int(msg.height), self._params.max_image_pixels
        if pixels > limit:
            raise ImageConversionError(
                f"image of {msg.width}x{msg.height} = {pixels} pixels is larger than "
                f"max_image_pixels={limit}; resize it upstream or raise the parameter")
        return image_to_rgb(msg)

    # -- outputs (worker thread) ----------------------------------------------------------------
    def _to_message(self, out: Outcome) -> LensResult:
        """The LensResult of an outcome, with the header of the frame it was computed on."""
        if out.frame is not None:
            header = out.frame.msg.header
        else:
            header = Header(stamp=self.get_clock().now().to_msg(), frame_id="")
        msg = segmentation_to_result(out.result, header, self._types, out.source_stamp)
        msg.total_ms = float(out.total_ms)
        return msg

    def _deliver(self, out: Outcome) -> None:
        """Publish result, mask, reasoning and (when watched) the overlay of one outcome."""
        pubs, p, res = self._pubs, self._params, out.result
        msg = out.message = self._to_message(out)
        if not pubs:
            return  # deactivated meanwhile: the action still gets `out.message`
        pubs["result"].publish(msg)
        if res.status in _MODEL_RAN and out.rgb is not None:
            if res.mask.shape == out.rgb.shape[:2]:
                pubs["mask"].publish(msg.mask)
            pubs["reasoning"].publish(String(data=res.reasoning or res.answer))
        if res.point is not None and "target_point" in pubs:  # camera optical frame, metres
            pubs["target_point"].publish(PointStamped(header=msg.header, point=msg.target_point))
        debug = pubs["debug_image"]
        if p.publish_overlay and out.rgb is not None and debug.get_subscription_count() > 0:
            img = overlay(out.rgb, res.mask, res.box, res.command, res.answer,
                          "" if res.status == Status.OK else res.status.name)
            debug.publish(rgb_to_image(img, msg.header, self._types))
        if res.status in ERROR_STATUSES:
            self.get_logger().warning(f"{res.status.name} for {res.command[:80]!r}: {res.error}",
                                      throttle_duration_sec=1.0)
            if time.monotonic() - self._last_diag > 0.2:
                self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        self._last_diag = time.monotonic()
        worker = self._worker
        status = diagnostics.build_status(
            f"{self.get_name()}: inference", self._state_label(), self._model_info,
            worker.stats if worker else None, worker.queue_length() if worker else 0,
            self._config_error)
        try:
            self._diag_pub.publish(diagnostics.build_array(status,
                                                           self.get_clock().now().to_msg()))
        except Exception:  # context shut down between the check and the publish
            pass

    # -- parameters -----------------------------------------------------------------------------
    def _on_set_parameters(self, changes) -> SetParametersResult:
        """Validate changes; runtime-safe ones go to the worker at once."""
        loaded = self._segmenter is not None
        for change in changes:
            reason = check_change(change.name, change.value, loaded)
            if reason is None and change.name == "mode" and change.value not in MODE_POLICIES:
                reason = f"mode {change.value!r} is not available; available: " \
                         f"{sorted(MODE_POLICIES)}"
            if reason is None and change.name == "mode" and change.value == "track" \
                    and self._params is not None:
                reason = tracking_weights_problem(self._params)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if self._params is not None:
            updates = {c.name: (float(c.value) if isinstance(SPECS[c.name].default, float)
                                else c.value) for c in changes if c.name in SPECS}
            self._params = dataclasses.replace(self._params, **updates)
            if self._worker is not None:
                self._worker.update_params(self._params)
            later = [n for n in updates if SPECS[n].applies == "activate"]
            if later and self._worker is not None:
                self.get_logger().info(f"{later} take effect at the next activate")
        return SetParametersResult(successful=True)

    def _configure_model(self, segmenter, params: NodeParams) -> None:
        """Give runtime settings to the segmenter (worker thread, between requests)."""
        segmenter.configure(**inference_overrides(params))

    # -- helpers --------------------------------------------------------------------------------
    def _checkpoint_dir(self, model_path: str) -> Path:
        if not model_path:
            raise ValueError("model_path is empty; set it to a LENS checkpoint directory "
                             "(config.json + *.safetensors), e.g. --ros-args -p "
                             "model_path:=/path/to/checkpoint")
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            what = "does not exist" if not path.exists() else "has no config.json"
            raise ValueError(f"model_path {str(path)!r} {what}; point it at a LENS checkpoint "
                             "directory, then configure again (the node stays unconfigured)")
        return path

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self._config_error = reason
        self.get_logger().error(f"configure failed: {reason}")
        self._publish_diagnostics()
        return TransitionCallbackReturn.FAILURE

    def _release_interfaces(self) -> None:
        """Deactivate: no new input or goals, every pending request answered, outputs gone."""
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        worker, self._worker = self._worker, None  # the action now rejects new goals
        if worker is not None:
            worker.stop()
        pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            self.destroy_publisher(pub)
        self._depth_sync = None

    def _release_model(self) -> None:
        """Cleanup: the action server goes, then the model."""
        if self._action is not None:
            self._action.destroy()
            self._action = None
        seg, self._segmenter = self._segmenter, None
        if seg is None:
            return
        device = self._model_info.get("device", "")
        seg.release()
        del seg
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        self._model_info = {}
        if self.context.ok():  # not at process exit: rosout is gone then
            self.get_logger().info(f"model released; RSS {_rss_mb():.0f} MB")

    def _state_label(self) -> str:
        try:
            return self._state_machine.current_state[1]
        except AttributeError:
            return "unknown"


def _rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _gpu_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.memory_allocated(torch.device(device)) / 2**20


def main(args: list[str] | None = None) -> int:
    """Console script ``lens_node``: spin the node with a multi-threaded executor."""
    # Goals waiting for the model each hold a thread; images, commands, services and the
    # diagnostics timer need their own.
    return run_lifecycle_node(LensNode, "lens_node", "config/lens.yaml", MAX_GOALS + 4, args)


if __name__ == "__main__":
    sys.exit(main())
