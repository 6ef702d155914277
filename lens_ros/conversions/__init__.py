"""Converters between ROS message types and numpy / core types, without rclpy.

Messages are duck-typed, so the same functions serve rclpy's message classes (the nodes) and the
``rosbags`` classes (the bag tools): ``image`` (sensor_msgs/Image, CompressedImage, depth),
``result`` (``Segmentation`` -> ``lens_ros/msg/LensResult``), ``audio`` (``AudioChunk`` <-> PCM).
"""
