"""The modes lens_node offers, by the name its ``mode`` parameter takes."""
from __future__ import annotations

from lens_ros.serving.modes import ContinuousPolicy, ModePolicy, OnCommandPolicy
from lens_ros.serving.track_mode import TrackModePolicy

MODE_POLICIES: dict[str, type[ModePolicy]] = {
    policy.name: policy for policy in (OnCommandPolicy, ContinuousPolicy, TrackModePolicy)
}
