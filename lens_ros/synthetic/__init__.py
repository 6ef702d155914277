"""Procedural referring scenes: RGB, depth, camera_info, instance masks and referring
expressions at four difficulty levels, deterministic by seed."""
