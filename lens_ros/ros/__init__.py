"""The only rclpy code: image conversion, the lifecycle nodes (``lens_node``, ``speech_node``),
parameters, the Segment action server and diagnostics."""
