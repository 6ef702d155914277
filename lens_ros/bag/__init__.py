"""Offline rosbag2 tools without DDS (``rosbags``): read/write, the offline runner, play and
record, CLI ``lens-bag``."""
