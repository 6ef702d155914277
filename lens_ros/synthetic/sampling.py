"""Random draws of a scene's view (camera, light, table, clutter) and of its objects.

Every function takes a ``numpy.random.Generator`` and draws from it only, so a seed fixes the
result. Placement rules: objects stand on the table without touching, fully inside the image,
each with a unique (size, colour, shape) triple, and every "large" object looks larger than
every "small" one from this camera (apparent radius ratio >= ``APPARENT_SIZE_RATIO``), so "small"
and "large" can be judged from the image alone.
"""
from __future__ import annotations

import colorsys

import numpy as np

from lens_ros.geometry import CameraIntrinsics
from lens_ros.synthetic.render import ObjectSpec, View, look_at
from lens_ros.synthetic.vocabulary import SIZES

#: every "large" object must look at least this much bigger than every "small" one
APPARENT_SIZE_RATIO = 1.15
#: table region objects are placed in (world x half-width, y min, y max), metres
PLACEMENT = (0.21, -0.14, 0.16)
_GAP = 0.006  # minimum free space between two footprints, metres


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def sample_view(rng: np.random.Generator, width: int, height: int, fov_deg: float = 45.0,
                max_clutter: int = 3) -> View:
    """A random camera above the table, light, table/wall colours and flat clutter patches.

    The camera is 0.62-0.72 m from a point near the table centre, pitched 48-62 degrees down,
    yawed up to +-8 degrees; ``fov_deg`` (+-2) is the horizontal field of view.
    """
    fov = np.deg2rad(fov_deg + rng.uniform(-2.0, 2.0))
    f = (width / 2.0) / np.tan(fov / 2.0)
    k = CameraIntrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    dist, pitch = rng.uniform(0.62, 0.72), np.deg2rad(rng.uniform(48.0, 62.0))
    yaw = np.deg2rad(rng.uniform(-8.0, 8.0))
    target = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.01, 0.03), 0.0])
    offset = dist * np.array([np.sin(yaw) * np.cos(pitch), -np.cos(yaw) * np.cos(pitch),
                              np.sin(pitch)])
    position = target + offset
    elev, azim = np.deg2rad(rng.uniform(35.0, 75.0)), rng.uniform(0.0, 2 * np.pi)
    light = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    exposure = rng.uniform(0.85, 1.15)
    clutter = []
    for _ in range(int(rng.integers(0, max_clutter + 1))):
        kind = "rect" if rng.random() < 0.6 else "disc"
        colour = _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.45, 0.95))
        clutter.append((kind, rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.3),
                        rng.uniform(0.02, 0.07), rng.uniform(0.015, 0.05),
                        rng.uniform(0, np.pi), colour))
    return View(
        intrinsics=k, rotation=look_at(position, target), position=position, light=light,
        ambient=rng.uniform(0.5, 0.65), diffuse=rng.uniform(0.4, 0.55),
        specular=rng.uniform(0.15, 0.35), tint=exposure * rng.uniform(0.94, 1.06, 3),
        table_colour=_hsv(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.35),
                          rng.uniform(0.6, 0.9)),
        wall_colour=_hsv(rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.5, 0.9)),
        floor_colour=_hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.45)),
        grain=(rng.uniform(0.0, 0.06), rng.uniform(15.0, 40.0), rng.uniform(0, 2 * np.pi)),
        clutter=clutter)


def sample_attributes(rng: np.random.Generator, n: int, shapes, colours, textures,
                      texture_prob: float, group: int = 0) -> list[tuple[str, str, str, str]]:
    """``n`` (shape, colour, size, texture) tuples with unique (size, colour, shape) triples.

    ``group`` >= 2 makes the first ``group`` objects share one shape (ordinal and spatial
    commands need several objects of a kind to be interesting).
    """
    taken: set[tuple[str, str, str]] = set()
    out = []
    shared = shapes[int(rng.integers(len(shapes)))]
    while len(out) < n:
        shape = shared if len(out) < group else shapes[int(rng.integers(len(shapes)))]
        colour = colours[int(rng.integers(len(colours)))]
        size = ("small", "large")[int(rng.integers(2))]
        if (size, colour, shape) in taken:
            continue
        texture = "plain"
        if len(textures) > 1 and rng.random() < texture_prob:
            texture = [t for t in textures if t != "plain"][int(rng.integers(len(textures) - 1))]
        taken.add((size, colour, shape))
        out.append((shape, colour, size, texture))
    return out


def inside_image(view: View, obj: ObjectSpec, margin: float) -> bool:
    """True when the object's bounding cylinder projects inside the image with ``margin`` px."""
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ring = np.stack([obj.x + obj.footprint * np.cos(ang), obj.y + obj.footprint * np.sin(ang)], 1)
    pts = np.concatenate([np.c_[ring, np.zeros(12)], np.c_[ring, np.full(12, obj.height)]])
    cam = view.world_to_camera(pts)
    if (cam[:, 2] <= 0.05).any():
        return False
    k = view.intrinsics
    u = k.fx * cam[:, 0] / cam[:, 2] + k.cx
    v = k.fy * cam[:, 1] / cam[:, 2] + k.cy
    return bool(u.min() >= margin and v.min() >= margin and u.max() <= k.width - 1 - margin
                and v.max() <= k.height - 1 - margin)


def apparent_radius(view: View, obj: ObjectSpec) -> float:
    """Object radius divided by the camera depth of its centre (proportional to pixel size)."""
    return obj.radius / view.world_to_camera(obj.centre)[0, 2]


def sizes_consistent(view: View, objects: list[ObjectSpec]) -> bool:
    """True when every large object looks >= APPARENT_SIZE_RATIO x bigger than every small one."""
    small = [apparent_radius(view, o) for o in objects if o.size == "small"]
    large = [apparent_radius(view, o) for o in objects if o.size == "large"]
    return not small or not large or min(large) >= APPARENT_SIZE_RATIO * max(small)


def place_objects(rng: np.random.Generator, view: View, attributes, tries: int = 60,
                  occlusion_prob: float = 0.0) -> list[ObjectSpec] | None:
    """Place objects with the given attributes on the table; None if no valid layout was found.

    With probability ``occlusion_prob`` an object (after the first) is first tried just behind
    an already placed one, as seen from the camera, so that it is partly hidden.
    """
    margin = 1.0 + 0.02 * view.intrinsics.width
    hx, y0, y1 = PLACEMENT
    objects: list[ObjectSpec] = []
    for shape, colour, size, texture in attributes:
        lo, hi = SIZES[size]
        behind = objects[int(rng.integers(len(objects)))] if objects and \
            rng.random() < occlusion_prob else None
        for attempt in range(tries):
            obj = ObjectSpec(shape, colour, size, texture, radius=float(rng.uniform(lo, hi)),
                             x=float(rng.uniform(-hx, hx)), y=float(rng.uniform(y0, y1)),
                             yaw=float(rng.uniform(0, 2 * np.pi)))
            if behind is not None and attempt < tries // 2:
                at = np.array([behind.x, behind.y])
                away = (at - view.position[:2]) / np.linalg.norm(at - view.position[:2])
                reach = behind.footprint + obj.footprint + _GAP
                xy = (at + away * reach * rng.uniform(1, 1.15)
                      + np.array([-away[1], away[0]]) * reach * rng.uniform(-0.4, 0.4))
                obj.x, obj.y = float(xy[0]), float(xy[1])
            if shape == "mug":  # keep the handle beside the body, not hidden behind it
                side = np.arctan2(view.rotation[1, 0], view.rotation[0, 0])
                obj.yaw = float(side + rng.choice([0.0, np.pi]) + rng.uniform(-0.6, 0.6))
            free = all(np.hypot(obj.x - o.x, obj.y - o.y) >= obj.footprint + o.footprint + _GAP
                       for o in objects)
            if free and inside_image(view, obj, margin) \
                    and sizes_consistent(view, objects + [obj]):
                objects.append(obj)
                break
        else:
            return None
    return objects
