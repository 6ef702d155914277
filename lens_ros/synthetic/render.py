"""Ray-cast renderer of a tabletop: a pinhole camera looking down at a table with objects on it.

World frame: the table top is the plane z = 0, x to the right, y away from the camera, z up,
metres. Each object is a union of vertical frustums (cylinder, cone, cup...), spheres and boxes
rotated about z. Every pixel's ray is intersected with every surface and the nearest hit wins
(a z-buffer), so the instance masks are exactly the *visible* parts and occlusion is exact.
The ray direction is scaled so that its optical-axis component is 1: the ray parameter ``t`` at a
hit is directly the depth a depth camera reports (camera-frame z).

Pure numpy; deterministic (no randomness here: :mod:`lens_ros.synthetic.sampling` samples the
view and the objects, and sensor noise is added by :func:`add_sensor_noise`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lens_ros.geometry import CameraIntrinsics
from lens_ros.synthetic.vocabulary import COLOURS, OPEN_TOP

_EPS = 1e-6
_PAGES = np.array([0.93, 0.90, 0.82])  # book page edges


@dataclass
class ObjectSpec:
    """One object: its attributes and where it stands on the table (world frame, metres).

    Attributes:
      shape, colour, size, texture (str): names from ``vocabulary.py``.
      radius (float): base radius R in metres; every part of the shape scales with it.
      x, y (float): centre of the object's footprint on the table.
      yaw (float): rotation about the vertical axis, radians (cube, book, mug handle).
    """

    shape: str
    colour: str
    size: str
    texture: str
    radius: float
    x: float
    y: float
    yaw: float = 0.0

    @property
    def name(self) -> str:
        """Canonical description "size colour shape", unique within a scene."""
        return f"{self.size} {self.colour} {self.shape}"

    @property
    def height(self) -> float:
        """Height of the object's top above the table, metres."""
        return _HEIGHT[self.shape] * self.radius

    @property
    def footprint(self) -> float:
        """Radius of a circle on the table that contains the object (collision tests)."""
        return _FOOTPRINT[self.shape] * self.radius

    @property
    def centre(self) -> np.ndarray:
        """(3,) world centre: the body axis at half height (mug handle excluded)."""
        return np.array([self.x, self.y, 0.5 * self.height])


_HEIGHT = {"cube": 1.5, "ball": 1.8, "cylinder": 1.9, "cone": 2.0, "mug": 1.7, "cup": 1.5,
           "bottle": 3.1, "bowl": 0.8, "book": 0.5}
_FOOTPRINT = {"cube": 1.07, "ball": 0.9, "cylinder": 0.8, "cone": 1.0, "mug": 1.25,
              "cup": 0.85, "bottle": 0.5, "bowl": 1.15, "book": 1.37}
_SHINY = frozenset({"ball", "bottle", "mug", "cup", "bowl", "cylinder"})


@dataclass
class View:
    """Camera, light and table of one scene (everything except the objects and the noise).

    Attributes:
      intrinsics (CameraIntrinsics): pinhole intrinsics of the rendered image.
      rotation (np.ndarray): 3x3 camera-to-world rotation (columns: optical x, y, z in world).
      position (np.ndarray): (3,) camera centre in the world, metres.
      light (np.ndarray): (3,) unit vector from the table towards the light.
      ambient, diffuse, specular (float): shading weights.
      tint (np.ndarray): (3,) per-channel light colour gain.
      table_colour, wall_colour, floor_colour (np.ndarray): (3,) RGB in 0..1.
      table_half_width, table_near, table_far (float): table extent, metres (x in +-half width,
        y in [-near, far]); beyond it the floor (z = -0.75) and a wall (y = far + 0.5) are seen.
      grain (tuple): (amplitude, frequency, phase) of the table's wood grain.
      clutter (list): flat patches on the table: (kind "rect"|"disc", x, y, a, b, angle, rgb).
    """

    intrinsics: CameraIntrinsics
    rotation: np.ndarray
    position: np.ndarray
    light: np.ndarray
    ambient: float = 0.45
    diffuse: float = 0.6
    specular: float = 0.25
    tint: np.ndarray = field(default_factory=lambda: np.ones(3))
    table_colour: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.75, 0.65]))
    wall_colour: np.ndarray = field(default_factory=lambda: np.array([0.7, 0.7, 0.72]))
    floor_colour: np.ndarray = field(default_factory=lambda: np.array([0.4, 0.38, 0.35]))
    table_half_width: float = 0.6
    table_near: float = 0.6
    table_far: float = 0.45
    grain: tuple[float, float, float] = (0.04, 25.0, 0.0)
    clutter: list = field(default_factory=list)

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """Nx3 world points -> Nx3 camera optical-frame points (metres)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return (p - self.position) @ self.rotation


@dataclass
class Render:
    """Noise-free render: ``rgb`` HxWx3 float in [0, 1], ``depth`` HxW float32 metres (camera z,
    every pixel valid), ``labels`` HxW int16 (object index, -1 where no object is visible) and
    ``full_area`` (per object: pixels it would cover if nothing occluded it)."""

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    full_area: np.ndarray


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world rotation of a camera at ``position`` looking at ``target`` (z up)."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


# --- primitives: each returns (t, normal) for rays o + t d, t = inf where missed ----------------

def _sphere(o, d, c, r):
    oc = o - c
    a = np.einsum("ij,ij->i", d, d)
    b = 2.0 * (d @ oc)
    disc = b * b - 4 * a * (oc @ oc - r * r)
    t = np.full(len(d), np.inf)
    hit = disc >= 0
    t_hit = (-b[hit] - np.sqrt(disc[hit])) / (2 * a[hit])
    t[hit] = np.where(t_hit > _EPS, t_hit, np.inf)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    return t, (p - c) / r


def _frustum(o, d, ax, ay, z0, z1, r0, r1):
    """Vertical frustum side plus its top cap (the cap is returned separately)."""
    k = (r1 - r0) / (z1 - z0)
    ox, oy = o[0] - ax, o[1] - ay
    a0 = r0 + k * (o[2] - z0)
    A = d[:, 0] ** 2 + d[:, 1] ** 2 - (k * d[:, 2]) ** 2
    B = 2 * (ox * d[:, 0] + oy * d[:, 1] - k * a0 * d[:, 2])
    C = ox * ox + oy * oy - a0 * a0
    disc = B * B - 4 * A * C
    t = np.full(len(d), np.inf)
    ok = (disc >= 0) & (np.abs(A) > _EPS)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    for sign in (1.0, -1.0):  # far root first, so the near root overwrites it
        tr = (-B - sign * sq) / np.where(ok, 2 * A, 1.0)
        z = o[2] + tr * d[:, 2]
        good = ok & (tr > _EPS) & (z >= z0) & (z <= z1)
        t = np.where(good & (tr < t), tr, t)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    rz = r0 + k * (p[:, 2] - z0)
    n = np.stack([p[:, 0] - ax, p[:, 1] - ay, -k * rz], axis=1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), _EPS)
    cap = np.full(len(d), np.inf)
    if r1 > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = (z1 - o[2]) / d[:, 2]
        pc = o[:2] + tc[:, None] * d[:, :2]
        inside = (tc > _EPS) & (((pc[:, 0] - ax) ** 2 + (pc[:, 1] - ay) ** 2) <= r1 * r1)
        cap[inside] = tc[inside]
    return t, n, cap


def _box(o, d, c, half, yaw):
    cs, sn = np.cos(yaw), np.sin(yaw)
    rot = np.array([[cs, sn, 0.0], [-sn, cs, 0.0], [0.0, 0.0, 1.0]])  # world -> box
    ol, dl = rot @ (o - c), d @ rot.T
    dl = np.where(np.abs(dl) < _EPS, _EPS, dl)
    t1, t2 = (-half - ol) / dl, (half - ol) / dl
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near, t_far = tmin.max(axis=1), tmax.min(axis=1)
    t = np.where((t_far >= t_near) & (t_near > _EPS), t_near, np.inf)
    axis = tmin.argmax(axis=1)
    nl = np.zeros_like(d)
    nl[np.arange(len(d)), axis] = -np.sign(dl[np.arange(len(d)), axis])
    return t, nl @ rot, axis, nl  # world normal, local axis and local normal


# --- objects -> shaded hits ---------------------------------------------------------------------

def _parts(obj: ObjectSpec):
    """The primitives of one object: (kind, args, part) with part in body/opening/pages."""
    r, x, y = obj.radius, obj.x, obj.y
    s = obj.shape
    if s == "ball":
        return [("sphere", (np.array([x, y, 0.9 * r]), 0.9 * r), "body")]
    if s in ("cube", "book"):
        half = np.array([0.75, 0.75, 0.75]) * r if s == "cube" else np.array([0.8, 1.1, 0.25]) * r
        return [("box", (np.array([x, y, half[2]]), half, obj.yaw), "body")]
    dims = {"cylinder": [(0.0, 1.9, 0.8, 0.8)], "cone": [(0.0, 2.0, 1.0, 0.0)],
            "mug": [(0.0, 1.7, 0.75, 0.75)], "cup": [(0.0, 1.5, 0.6, 0.85)],
            "bowl": [(0.0, 0.8, 0.55, 1.15)],
            "bottle": [(0.0, 2.0, 0.5, 0.5), (2.0, 2.5, 0.5, 0.22), (2.5, 3.1, 0.22, 0.22)]}[s]
    parts = [("frustum", (x, y, z0 * r, z1 * r, r0 * r, r1 * r), "body")
             for z0, z1, r0, r1 in dims]
    if s == "mug":  # handle: small spheres on a half circle beside the body
        u = np.array([np.cos(obj.yaw), np.sin(obj.yaw)])
        for th in np.linspace(-np.pi / 2, np.pi / 2, 9):
            rad = (0.75 + 0.42 * np.cos(th)) * r
            centre = np.array([x + rad * u[0], y + rad * u[1], (0.85 + 0.42 * np.sin(th)) * r])
            parts.append(("sphere", (centre, 0.13 * r), "body"))
    return parts


def _pattern(obj: ObjectSpec, p_local: np.ndarray, book_axis: np.ndarray | None) -> np.ndarray:
    """1 where the texture pattern covers the surface, else 0 (object-local coordinates)."""
    r = obj.radius
    if obj.texture == "striped":
        coord = p_local[:, 0] if obj.shape == "book" else p_local[:, 2]
        period = 0.5 * r if obj.shape == "book" else max(obj.height / 4.0, 0.35 * r)
        return (np.floor(coord / period) % 2).astype(float)
    if obj.texture == "dotted":
        s = 0.55 * r
        f = (p_local / s) % 1.0 - 0.5
        return (np.einsum("ij,ij->i", f, f) < 0.06).astype(float)
    return np.zeros(len(p_local))


def _shade_object(obj, view, p, n, d, part, book_axis=None, local_n=None):
    base = np.array(COLOURS[obj.colour], float)
    lum = base @ np.array([0.3, 0.59, 0.11])
    alt = 0.3 * base + 0.7 if lum < 0.5 else 0.45 * base
    cs, sn = np.cos(-obj.yaw), np.sin(-obj.yaw)
    rel = p - np.array([obj.x, obj.y, 0.0])
    p_local = np.stack([cs * rel[:, 0] - sn * rel[:, 1], sn * rel[:, 0] + cs * rel[:, 1],
                        rel[:, 2]], axis=1)
    pat = _pattern(obj, p_local, book_axis)[:, None]
    albedo = base * (1 - pat) + alt * pat
    if obj.shape == "book" and local_n is not None:  # page edges on three sides, spine on +x
        pages = (np.abs(local_n[:, 2]) < 0.5) & (local_n[:, 0] < 0.5)
        albedo[pages] = _PAGES
    if part == "opening":  # dark inside, with a lit rim ring so containers read as open
        albedo = np.tile(base * (0.62 if obj.shape == "bowl" else 0.42), (len(p), 1))
        top = _parts(obj)[0][1]
        rim = np.hypot(p[:, 0] - obj.x, p[:, 1] - obj.y) > 0.85 * top[5]
        albedo[rim] = base
    diffuse = np.clip(n @ view.light, 0.0, None)[:, None]
    col = albedo * (view.ambient + view.diffuse * diffuse)
    if obj.shape in _SHINY and part == "body":
        v = -d / np.linalg.norm(d, axis=1, keepdims=True)
        hv = v + view.light
        hv /= np.linalg.norm(hv, axis=1, keepdims=True)
        col += view.specular * np.clip(np.einsum("ij,ij->i", n, hv), 0, None)[:, None] ** 24
    return col


def _screen_rect(view: View, centre: np.ndarray, radius: float):
    """Pixel rectangle (r0, r1, c0, c1) that contains a world sphere's projection, or None."""
    k = view.intrinsics
    pc = view.world_to_camera(centre)[0]
    if pc[2] - radius <= 0.01:
        return 0, k.height, 0, k.width
    rp = radius * max(k.fx, k.fy) / (pc[2] - radius) + 2
    u, v = k.fx * pc[0] / pc[2] + k.cx, k.fy * pc[1] / pc[2] + k.cy
    c0, c1 = int(max(np.floor(u - rp), 0)), int(min(np.ceil(u + rp) + 1, k.width))
    r0, r1 = int(max(np.floor(v - rp), 0)), int(min(np.ceil(v + rp) + 1, k.height))
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _rays(view: View) -> np.ndarray:
    k = view.intrinsics
    v, u = np.mgrid[0:k.height, 0:k.width]
    cam = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones(u.shape)], axis=-1)
    return cam @ view.rotation.T  # HxWx3 world directions with unit optical-z component


def _background(view: View, dirs: np.ndarray, objects: list[ObjectSpec]):
    """Depth and colour of table, floor and wall, with wood grain, clutter and soft shadows."""
    o = view.position
    dz, dy = dirs[..., 2], dirs[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = np.where(dz < 0, -o[2] / dz, np.inf)
        t_floor = np.where(dz < 0, (-0.75 - o[2]) / dz, np.inf)
        t_wall = np.where(dy > 0, (view.table_far + 0.5 - o[1]) / dy, np.inf)
    p = o + t_table[..., None] * dirs
    on_table = ((np.abs(p[..., 0]) <= view.table_half_width) & (p[..., 1] >= -view.table_near)
                & (p[..., 1] <= view.table_far) & np.isfinite(t_table))
    t_table = np.where(on_table, t_table, np.inf)
    t = np.minimum(np.minimum(t_table, t_floor), t_wall)
    rgb = np.empty(dirs.shape)
    rgb[:] = view.wall_colour * (view.ambient + 0.5 * view.diffuse)
    floor = (t == t_floor) & np.isfinite(t_floor)
    rgb[floor] = view.floor_colour * (view.ambient + view.diffuse * view.light[2])
    amp, freq, phase = view.grain
    px, py = p[..., 0], p[..., 1]
    grain = 1 + amp * np.sin(freq * py + 3.0 * np.sin(7.0 * px + phase) + phase)
    albedo = view.table_colour * grain[..., None]
    for kind, cx, cy, a, b, ang, colour in view.clutter:
        rx = np.cos(ang) * (px - cx) + np.sin(ang) * (py - cy)
        ry = -np.sin(ang) * (px - cx) + np.cos(ang) * (py - cy)
        inside = ((np.abs(rx) <= a) & (np.abs(ry) <= b) if kind == "rect"
                  else (rx / a) ** 2 + (ry / b) ** 2 <= 1.0)
        albedo[inside] = colour
    shadow = np.zeros(px.shape)
    lxy = view.light[:2] / max(np.linalg.norm(view.light[:2]), _EPS)
    reach = 1.0 / max(np.tan(np.arcsin(np.clip(view.light[2], 0.05, 1.0))), 0.2)
    for obj in objects:
        sx = obj.x - lxy[0] * 0.5 * obj.height * reach
        sy = obj.y - lxy[1] * 0.5 * obj.height * reach
        reach_m = 3.0 * obj.footprint * 1.15  # beyond it the blob is < 1e-30: skip the pixels
        near = on_table & (np.abs(px - sx) < reach_m) & (np.abs(py - sy) < reach_m)
        dist = np.hypot(px[near] - sx, py[near] - sy) / (obj.footprint * 1.15)
        shadow[near] = np.maximum(shadow[near], 0.45 * np.exp(-dist ** 4))
    lit = view.ambient + view.diffuse * view.light[2] * (1 - shadow)
    rgb[on_table & (t == t_table)] = (albedo * lit[..., None])[on_table & (t == t_table)]
    return t, rgb


def render(view: View, objects: list[ObjectSpec]) -> Render:
    """Render the objects on the table as seen by ``view`` (noise-free, exact z-buffer)."""
    k = view.intrinsics
    dirs = _rays(view)
    depth, rgb = _background(view, dirs, objects)
    labels = np.full((k.height, k.width), -1, dtype=np.int16)
    full_area = np.zeros(len(objects), dtype=np.int64)
    o = view.position
    for idx, obj in enumerate(objects):
        rect = _screen_rect(view, obj.centre, np.hypot(obj.footprint, 0.5 * obj.height) * 1.05)
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        d = dirs[r0:r1, c0:c1].reshape(-1, 3)
        best = np.full(len(d), np.inf)
        col = np.zeros((len(d), 3))
        for kind, args, part in _parts(obj):
            local_n = None
            if kind == "sphere":
                t, n = _sphere(o, d, *args)
                hits = [(t, n, part)]
            elif kind == "box":
                t, n, _, local_n = _box(o, d, *args)
                hits = [(t, n, part)]
            else:
                t, n, cap = _frustum(o, d, *args)
                up = np.tile([0.0, 0.0, 1.0], (len(d), 1))
                cap_part = "opening" if obj.shape in OPEN_TOP else part
                hits = [(t, n, part), (cap, up, cap_part)]
            for th, nh, ph in hits:
                win = th < best
                if not win.any():
                    continue
                best[win] = th[win]
                p = o + th[win, None] * d[win]
                col[win] = _shade_object(obj, view, p, nh[win], d[win], ph,
                                         local_n=None if local_n is None else local_n[win])
        full_area[idx] = int(np.isfinite(best).sum())
        sub_depth = depth[r0:r1, c0:c1].reshape(-1)
        win = best < sub_depth
        sub_depth[win] = best[win]
        depth[r0:r1, c0:c1] = sub_depth.reshape(r1 - r0, c1 - c0)
        sub_rgb = rgb[r0:r1, c0:c1].reshape(-1, 3)
        sub_rgb[win] = col[win]
        rgb[r0:r1, c0:c1] = sub_rgb.reshape(r1 - r0, c1 - c0, 3)
        sub_lab = labels[r0:r1, c0:c1].reshape(-1)
        sub_lab[win] = idx
        labels[r0:r1, c0:c1] = sub_lab.reshape(r1 - r0, c1 - c0)
    rgb = np.clip(rgb * view.tint, 0.0, 1.0)
    return Render(rgb=rgb, depth=depth.astype(np.float32), labels=labels, full_area=full_area)


def add_sensor_noise(render_: Render, rng: np.random.Generator, pixel_sigma: float = 3.0,
                     depth_noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Camera-like RGB (uint8, Gaussian noise of ``pixel_sigma`` grey levels) and depth (float32
    metres; noise growing with z^2 as structured-light sensors, NaN holes at depth edges and a
    few random dropouts, when ``depth_noise``)."""
    h, w = render_.labels.shape
    rgb = render_.rgb * 255.0 + rng.normal(0.0, pixel_sigma, (h, w, 3))
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    depth = render_.depth.astype(np.float32).copy()
    if depth_noise:
        z = depth.astype(np.float64)
        depth = (z + rng.normal(0.0, 1.0, z.shape) * (0.0005 + 0.0015 * z * z)).astype(np.float32)
        edge = np.zeros((h, w), bool)
        edge[:, 1:] |= np.abs(np.diff(z, axis=1)) > 0.02
        edge[1:, :] |= np.abs(np.diff(z, axis=0)) > 0.02
        holes = (edge & (rng.random((h, w)) < 0.5)) | (rng.random((h, w)) < 0.003)
        depth[holes] = np.nan
    return rgb, depth
