"""Moving-object sequences for tracking tests: one scene whose target (and optionally some
distractors) slides and turns smoothly on the table, with per-frame ground truth.

The command refers to the target by attributes or an affordance (never by position), so it stays
true on every frame. The camera, light and table do not change; sensor noise is new every frame.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lens_ros.synthetic.expressions import attribute_candidates, indirect_candidates, pick
from lens_ros.synthetic.render import ObjectSpec, View, add_sensor_noise, render
from lens_ros.synthetic.sampling import PLACEMENT, inside_image
from lens_ros.synthetic.scene import (Expression, Scene, SceneConfig, build_objects, draw_layout,
                                      to_expression)

_GAP = 0.004


@dataclass
class Sequence:
    """Frames of one moving scene.

    Attributes:
      frames (list[Scene]): per frame RGB, depth, objects (same order in every frame) with
        their visible masks, boxes and 3D centres; ``frames[i].expressions`` holds the command
        with that frame's ground truth.
      target (int): index of the commanded object in every frame's ``objects``.
      command (str): the command (valid on every frame).
      moving (tuple[int, ...]): indices of the objects that move (the target first).
      fps (float): frame rate the motion was sampled at.
    """

    frames: list[Scene]
    target: int
    command: str
    moving: tuple[int, ...]
    fps: float

    @property
    def masks(self) -> list[np.ndarray]:
        """Per-frame HxW bool target masks (visible part)."""
        return [f.objects[self.target].mask for f in self.frames]

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Per-frame target boxes xyxy (x2/y2 exclusive)."""
        return [f.objects[self.target].box for f in self.frames]


def _trajectory(rng: np.random.Generator, n_frames: int, fps: float, speed: float):
    """Per-frame (dx, dy, dyaw) offsets: a straight drift plus a sideways sine, smooth."""
    t = np.arange(n_frames) / fps
    heading = rng.uniform(0, 2 * np.pi)
    d, p = np.array([np.cos(heading), np.sin(heading)]), np.array([-np.sin(heading),
                                                                    np.cos(heading)])
    amp, omega = rng.uniform(0.0, 0.03), rng.uniform(0.5, 1.5)
    along = speed * t
    side = amp * np.sin(omega * t)
    xy = along[:, None] * d + side[:, None] * p
    yaw = rng.uniform(-0.8, 0.8) * t
    return xy, yaw


def _frame_specs(base, moving, paths, i):
    specs = list(base)
    for m, (xy, yaw) in zip(moving, paths):
        specs[m] = replace(base[m], x=base[m].x + xy[i, 0], y=base[m].y + xy[i, 1],
                           yaw=base[m].yaw + yaw[i])
    return specs


def _valid_path(view: View, base, moving, paths, n_frames: int) -> bool:
    hx, y0, y1 = PLACEMENT
    margin = 1.0 + 0.02 * view.intrinsics.width
    for i in range(n_frames):
        specs = _frame_specs(base, moving, paths, i)
        for m in moving:
            s = specs[m]
            if not (-hx - 0.03 <= s.x <= hx + 0.03 and y0 - 0.03 <= s.y <= y1 + 0.03):
                return False
            if not inside_image(view, s, margin):
                return False
            for j, o in enumerate(specs):
                if j != m and np.hypot(s.x - o.x, s.y - o.y) < s.footprint + o.footprint + _GAP:
                    return False
    return True


def make_sequence(rng: np.random.Generator, n_frames: int, config: SceneConfig | None = None,
                  level: str = "attribute", n_moving_distractors: int = 0, fps: float = 10.0,
                  speed: tuple[float, float] = (0.03, 0.08),
                  min_target_visible: float = 0.5) -> Sequence:
    """Draw a scene and move its target smoothly for ``n_frames`` frames.

    Arguments:
      rng (np.random.Generator): the only source of randomness.
      n_frames (int): number of frames (>= 1).
      config (SceneConfig): image size, objects, noise (as for ``make_scene``).
      level (str): "attribute" or "indirect" (position-free commands only).
      n_moving_distractors (int): how many other objects also move.
      fps (float): frames per second of the sampled motion.
      speed (tuple): range of the target's drift speed, metres per second.
      min_target_visible (float): per-frame minimum visible fraction of the target.

    Raises:
      ValueError: bad arguments, or no valid sequence in ``config.max_attempts`` layouts.
    """
    config = config or SceneConfig()
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"need n_frames >= 1 and fps > 0, got {n_frames}, {fps}")
    if level not in ("attribute", "indirect"):
        raise ValueError(f"level {level!r} can change meaning as objects move; "
                         f"use 'attribute' or 'indirect'")
    generate = attribute_candidates if level == "attribute" else indirect_candidates
    for _ in range(config.max_attempts):
        n = int(rng.integers(max(config.min_objects, 1 + n_moving_distractors),
                             max(config.max_objects, 1 + n_moving_distractors) + 1))
        layout = draw_layout(rng, config, n)
        if layout is None:
            continue
        view, base, _, objects = layout
        cand = pick(rng, generate(objects), level)
        if cand is None:
            continue
        others = [i for i in range(n) if i != cand.target]
        moving = (cand.target,) + tuple(int(i) for i in rng.permutation(others)[
            :n_moving_distractors])
        paths = [_trajectory(rng, n_frames, fps, rng.uniform(*speed)) for _ in moving]
        if not _valid_path(view, base, moving, paths, n_frames):
            continue
        frames = _render_frames(rng, view, base, moving, paths, n_frames, config, cand,
                                min_target_visible)
        if frames is not None:
            return Sequence(frames=frames, target=cand.target, command=cand.text,
                            moving=moving, fps=fps)
    raise ValueError(f"no valid {n_frames}-frame sequence in {config.max_attempts} attempts; "
                     f"lower the speed or the number of objects")


def _render_frames(rng, view, base, moving, paths, n_frames, config, cand, min_visible):
    relaxed = replace(config, min_visible_fraction=0.0, min_visible_pixels=0)
    frames = []
    for i in range(n_frames):
        specs: list[ObjectSpec] = _frame_specs(base, moving, paths, i)
        rendered = render(view, specs)
        objects = build_objects(view, specs, rendered, relaxed)
        if objects is None or objects[cand.target].visible_fraction < min_visible:
            return None
        rgb, depth = add_sensor_noise(rendered, rng, rng.uniform(*config.pixel_noise),
                                      config.depth_noise)
        expr: Expression = to_expression(cand, objects)
        frames.append(Scene(rgb=rgb, depth=depth, intrinsics=view.intrinsics, objects=objects,
                            expressions=[expr], labels=rendered.labels, view=view))
    return frames
