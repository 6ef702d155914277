"""``lens-camera``: publish camera frames for lens_node without a ROS install.

Sources: a V4L2 webcam (``/dev/video0`` or ``0``), a video file, an image folder, one image, or
``--synthetic`` (the synthetic tabletop scenes with aligned depth and camera_info: everything
works on a machine with no camera). Frames go out on ``image`` (sensor_msgs/Image rgb8,
sensor-data QoS) at ``--rate`` Hz, stamped with the node clock, with ``--frame-id``;
``camera_info`` comes from ``--calibration`` (a camera_calibration YAML) or the synthetic
intrinsics; ``depth`` (32FC1 metres) with ``--synthetic``. Exit codes: 0 after SIGINT/SIGTERM or
the end of a non-looped source, 2 for a missing device/file or a bad option.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from lens_ros.ros.camera_sources import (Calibration, Frame, SourceError, load_calibration,
                                         open_source, synthetic_frames)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lens-camera", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="ROS arguments go after --ros-args, e.g. "
        "--ros-args -r image:=/camera/image -r __ns:=/arm")
    p.add_argument("source", nargs="?", default="", help="/dev/videoN or a camera index, a "
                   "video file, an image folder or an image file")
    p.add_argument("--synthetic", action="store_true", help="stream the synthetic scenes (with "
                   "depth and camera_info) instead of a source")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    p.add_argument("--frame-id", default="camera_optical_frame", help="header.frame_id")
    p.add_argument("--calibration", default="", help="camera_calibration YAML: publish "
                   "camera_info with every frame")
    p.add_argument("--reliability", choices=("best_effort", "reliable"), default="best_effort",
                   help="image QoS reliability (lens_node's image_reliability must accept it)")
    p.add_argument("--no-loop", action="store_true", help="stop at the end of a file source")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (0: never)")
    p.add_argument("--size", type=int, default=224, help="--synthetic: image size in pixels")
    p.add_argument("--scenes", type=int, default=12, help="--synthetic: how many scenes to cycle")
    p.add_argument("--scene-seconds", type=float, default=8.0,
                   help="--synthetic: how long each scene is shown")
    p.add_argument("--verbose", action="store_true", help="print every frame's stamp")
    return p


def _camera_info(cal: Calibration, header):
    from sensor_msgs.msg import CameraInfo

    return CameraInfo(header=header, height=cal.height, width=cal.width,
                      distortion_model=cal.distortion_model, d=list(cal.d), k=list(cal.k),
                      r=list(cal.r), p=list(cal.p))


class CameraPublisher:
    """The publishers of one camera: image, and camera_info / depth when there are any."""

    def __init__(self, node, reliability: str, frame_id: str, calibration: Calibration | None,
                 with_depth: bool) -> None:
        from sensor_msgs.msg import CameraInfo, Image

        from lens_ros.conversions.image import rclpy_types
        from lens_ros.ros.qos import sensor_qos

        qos = sensor_qos(reliability)
        self.node, self.frame_id, self.calibration = node, frame_id, calibration
        self.types = rclpy_types()
        self.image = node.create_publisher(Image, "image", qos)
        self.info = node.create_publisher(CameraInfo, "camera_info", qos) \
            if calibration is not None or with_depth else None
        self.depth = node.create_publisher(Image, "depth", qos) if with_depth else None

    def publish(self, frame: Frame):
        """Publish one frame (and its depth, camera_info); returns its header."""
        from lens_ros.conversions.image import make_header, numpy_to_image

        header = make_header(self.types, self.node.get_clock().now().nanoseconds, self.frame_id)
        self.image.publish(numpy_to_image(frame.rgb, "rgb8", header, self.types))
        if self.depth is not None and frame.depth is not None:
            self.depth.publish(numpy_to_image(frame.depth, "32FC1", header, self.types))
        cal = self.calibration or frame.calibration
        if self.info is not None and cal is not None:
            if (cal.width, cal.height) != (frame.rgb.shape[1], frame.rgb.shape[0]):
                raise SourceError(f"the calibration is for {cal.width}x{cal.height} but the "
                                  f"frames are {frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
            self.info.publish(_camera_info(cal, header))
        return header


def _frames(args) -> "tuple[object, Calibration | None]":
    cal = load_calibration(args.calibration) if args.calibration else None
    if args.synthetic:
        per_scene = max(1, round(args.scene_seconds * args.rate))
        return synthetic_frames(args.size, args.scenes, per_scene), cal
    if not args.source:
        raise SourceError("give a source (/dev/video0, a video, an image folder or an image) "
                          "or --synthetic")
    return open_source(args.source, loop=not args.no_loop), cal


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    argv = sys.argv if argv is None else ["lens-camera", *argv]
    args = make_parser().parse_args(remove_ros_args(argv)[1:])
    if args.rate <= 0:
        print("lens-camera: --rate must be > 0", file=sys.stderr)
        return 2
    try:
        frames, cal = _frames(args)
    except SourceError as err:
        print(f"lens-camera: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("lens_camera")
    rc = 0
    try:
        cam = CameraPublisher(node, args.reliability, args.frame_id, cal, args.synthetic)
        print(f"lens-camera: publishing {args.source or 'synthetic scenes'} on "
              f"{cam.image.topic_name} at {args.rate:g} Hz (Ctrl-C stops)", flush=True)
        period, n, tick = 1.0 / args.rate, 0, 0.0
        start = time.monotonic()
        for frame in frames:
            if stop.is_set():
                break
            if frame.note:
                print(f"lens-camera: {frame.note}", flush=True)
            header = cam.publish(frame)
            n += 1
            if args.verbose:
                print(f"frame {n} {header.frame_id} {header.stamp.sec}.{header.stamp.nanosec:09d}",
                      flush=True)
            if args.count and n >= args.count:
                break
            tick += period
            late = time.monotonic() - (start + tick)
            if late > period:  # a slow frame (a new synthetic scene): no catch-up burst
                start += late
            stop.wait(max(0.0, start + tick - time.monotonic()))
        else:
            if not stop.is_set():
                print(f"lens-camera: {args.source} ended after {n} frames", flush=True)
    except SourceError as err:
        print(f"lens-camera: {err}", file=sys.stderr)
        rc = 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
