"""Serving LENS to a stream of frames and commands, without rclpy.

``requests`` (what waits for the model and what comes out), ``worker`` (the bounded queue and the
one inference thread), ``modes`` (on_command, continuous, track) and ``depth_sync`` (depth and
camera_info matched to a segmented frame). ``lens_ros.ros.lens_node`` drives them.
"""
