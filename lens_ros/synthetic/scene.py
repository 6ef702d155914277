"""One synthetic referring scene: :func:`make_scene` and the dataclasses it returns.

A scene is a tabletop seen by a pinhole camera: RGB, aligned depth, intrinsics, exact visible
instance masks, object attributes, ground-truth 3D centres and referring expressions with their
target's box, mask, level and reasoning. :func:`make_scene` draws from the generator it is given
and from nothing else, so one seed always gives the same scene (array-equal).

Coordinates: pixels (u, v) with integer pixel centres; boxes xyxy with exclusive x2/y2 (see
``lens_ros.geometry``); 3D points in the camera optical frame (x right, y down, z forward, metres).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lens_ros.geometry import CameraIntrinsics, mask_to_box, project
from lens_ros.synthetic.expressions import LEVELS, Candidate, candidates, pick
from lens_ros.synthetic.render import ObjectSpec, Render, View, add_sensor_noise, render
from lens_ros.synthetic.sampling import place_objects, sample_attributes, sample_view
from lens_ros.synthetic.vocabulary import COLOURS, SHAPES, TEXTURES

#: side (px) of the demo model's square LLM input and of the synthetic scenes drawn for it; the
#: answer coordinates of the demo model are integers in [0, DEMO_IMAGE_SIZE]
DEMO_IMAGE_SIZE = 112


@dataclass
class SceneConfig:
    """How scenes are drawn. Defaults are the demo model's normal pool at its input size
    (:data:`DEMO_IMAGE_SIZE`).

    Attributes:
      width, height (int): image size in pixels.
      min_objects, max_objects (int): number of objects per scene (inclusive); spatial and
        ordinal commands need at least 2, so those levels raise the minimum to 2.
      shapes, colours, textures (tuple[str, ...]): the attribute values to draw from.
      texture_prob (float): chance that an object gets a non-plain texture.
      fov_deg (float): horizontal field of view of the camera, degrees (jittered +-2).
      max_clutter (int): at most this many flat patches (paper, coasters) on the table.
      pixel_noise (tuple[float, float]): range of the RGB Gaussian noise sigma, grey levels.
      depth_noise (bool): add z^2-growing depth noise, NaN holes at depth edges and dropouts.
      occlusion_prob (float): chance that an object is placed just behind another one, as seen
        from the camera (partial occlusion; the visibility limits below still apply).
      min_visible_fraction (float): each object keeps at least this share of its unoccluded
        area visible (partial occlusion only).
      min_visible_pixels (int): each object's visible mask has at least this many pixels at
        DEMO_IMAGE_SIZE x DEMO_IMAGE_SIZE; scaled with the image area.
      max_attempts (int): layouts tried before giving up with an error.
    """

    width: int = DEMO_IMAGE_SIZE
    height: int = DEMO_IMAGE_SIZE
    min_objects: int = 2
    max_objects: int = 5
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    textures: tuple[str, ...] = TEXTURES
    texture_prob: float = 0.25
    fov_deg: float = 45.0
    max_clutter: int = 3
    pixel_noise: tuple[float, float] = (1.0, 5.0)
    depth_noise: bool = True
    occlusion_prob: float = 0.5
    min_visible_fraction: float = 0.6
    min_visible_pixels: int = 20
    max_attempts: int = 200

    def __post_init__(self):
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"image size {self.width}x{self.height} is outside 16..4096 px")
        if not 1 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(f"need 1 <= min_objects ({self.min_objects}) <= max_objects "
                             f"({self.max_objects}) <= 8")
        for name, allowed in (("shapes", SHAPES), ("colours", tuple(COLOURS)),
                              ("textures", TEXTURES)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad or not getattr(self, name):
                raise ValueError(f"{name} {bad or '(empty)'} not allowed; choose from {allowed}")
        if "plain" not in self.textures:
            raise ValueError(f"textures must include 'plain', got {self.textures}")
        for name in ("texture_prob", "occlusion_prob", "min_visible_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} {getattr(self, name)} is not in [0, 1]")


@dataclass
class SceneObject:
    """One object as rendered.

    Attributes:
      spec (ObjectSpec): attributes and world placement.
      mask (np.ndarray): HxW bool, the visible part only.
      box (tuple): (x1, y1, x2, y2) int pixels of ``mask`` (x2/y2 exclusive).
      centre (np.ndarray): (3,) ground-truth centre in the camera optical frame, metres.
      pixel (np.ndarray): (2,) float (u, v) projection of ``centre``.
      base (np.ndarray): (3,) the footprint centre (on the table) in the camera frame, metres;
        "nearest", "in front of" and "behind" compare its depth ``base[2]``.
      base_pixel (np.ndarray): (2,) float (u, v) projection of ``base``.
      visible_fraction (float): visible / unoccluded pixel area.
    """

    spec: ObjectSpec
    mask: np.ndarray
    box: tuple[int, int, int, int]
    centre: np.ndarray
    pixel: np.ndarray
    base: np.ndarray
    base_pixel: np.ndarray
    visible_fraction: float

    @property
    def name(self) -> str:
        """Canonical "size colour shape" name (unique in its scene)."""
        return self.spec.name


@dataclass
class Expression:
    """A referring command and its ground truth.

    Attributes:
      text (str): lower-case command, words from ``VOCABULARY`` only.
      target (int): index of the referred object in ``Scene.objects``.
      level (str): one of ``LEVELS``; kind (str): the generator's sub-type.
      reasoning (str): short text resolving the command to ``target_name``.
      target_name (str): the target's canonical "size colour shape".
      box (tuple): target box xyxy int pixels; mask (np.ndarray): HxW bool target mask.
    """

    text: str
    target: int
    level: str
    kind: str
    reasoning: str
    target_name: str
    box: tuple[int, int, int, int]
    mask: np.ndarray


@dataclass
class Scene:
    """A rendered scene with its ground truth (see module doc for frames).

    Attributes:
      rgb (np.ndarray): HxWx3 uint8 RGB. depth (np.ndarray): HxW float32 metres, NaN = invalid.
      intrinsics (CameraIntrinsics): of both images. view (View): camera pose, light, table.
      objects (list[SceneObject]); expressions (list[Expression]).
      labels (np.ndarray): HxW int16 visible object index, -1 elsewhere.
    """

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: CameraIntrinsics
    objects: list[SceneObject]
    expressions: list[Expression] = field(default_factory=list)
    labels: np.ndarray | None = None
    view: View | None = None


def build_objects(view: View, specs: list[ObjectSpec], rendered: Render,
                  config: SceneConfig) -> list[SceneObject] | None:
    """Masks, boxes and 3D centres of rendered objects; None when one is too hidden or small."""
    min_px = config.min_visible_pixels * config.width * config.height / (DEMO_IMAGE_SIZE * DEMO_IMAGE_SIZE)
    out = []
    centres = view.world_to_camera(np.array([s.centre for s in specs]))
    bases = view.world_to_camera(np.array([[s.x, s.y, 0.0] for s in specs]))
    pixels, base_pixels = project(centres, view.intrinsics), project(bases, view.intrinsics)
    for i, spec in enumerate(specs):
        mask = rendered.labels == i
        area, full = int(mask.sum()), int(rendered.full_area[i])
        if full == 0 or area < min_px or area < config.min_visible_fraction * full:
            return None
        out.append(SceneObject(spec=spec, mask=mask, box=mask_to_box(mask), centre=centres[i],
                               pixel=pixels[i], base=bases[i], base_pixel=base_pixels[i],
                               visible_fraction=area / full))
    return out


def draw_layout(rng: np.random.Generator, config: SceneConfig, n: int, group: int = 0):
    """View, ``n`` placed objects, their render and rendered objects; None if this draw fails
    (no room on the table, or an object too hidden or small). ``group`` as in
    ``sample_attributes``."""
    view = sample_view(rng, config.width, config.height, config.fov_deg, config.max_clutter)
    attrs = sample_attributes(rng, n, config.shapes, config.colours, config.textures,
                              config.texture_prob, group)
    specs = place_objects(rng, view, attrs, occlusion_prob=config.occlusion_prob)
    if specs is None:
        return None
    rendered = render(view, specs)
    objects = build_objects(view, specs, rendered, config)
    return None if objects is None else (view, specs, rendered, objects)


def to_expression(c: Candidate, objects: list[SceneObject]) -> Expression:
    """Attach the target's ground truth to a chosen candidate."""
    obj = objects[c.target]
    return Expression(text=c.text, target=c.target, level=c.level, kind=c.kind,
                      reasoning=c.reasoning, target_name=obj.name, box=obj.box, mask=obj.mask)


def _levels(level, n_expressions: int, rng: np.random.Generator) -> list[str]:
    if level is None:
        return [LEVELS[int(rng.integers(len(LEVELS)))] for _ in range(n_expressions)]
    levels = [level] * n_expressions if isinstance(level, str) else list(level)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise ValueError(f"unknown level(s) {bad}; use one of {LEVELS}")
    return levels


def make_scene(rng: np.random.Generator, level: str | list[str] | None = None,
               config: SceneConfig | None = None, n_expressions: int = 1) -> Scene:
    """Draw one scene and its referring expressions.

    Arguments:
      rng (np.random.Generator): the only source of randomness (``np.random.default_rng(seed)``).
      level: one of ``LEVELS`` (``n_expressions`` commands of it), a list of levels (one command
        each), or None (``n_expressions`` commands of random levels).
      config (SceneConfig): image size, object counts, attribute pools, noise.
      n_expressions (int): commands per scene when ``level`` is a string or None.

    Returns:
      Scene whose expressions each pick out exactly one object (distinct texts).

    Raises:
      ValueError: unknown level, or no layout satisfied the level within ``max_attempts``
        (e.g. a single shape with the ordinal level and one object per scene).
    """
    config = config or SceneConfig()
    levels = _levels(level, n_expressions, rng)
    relational = any(lv in ("spatial", "ordinal") for lv in levels)
    lo = max(config.min_objects, 2) if relational else config.min_objects
    hi = max(config.max_objects, lo)
    for _ in range(config.max_attempts):
        n = int(rng.integers(lo, hi + 1))
        group = int(rng.integers(2, min(n, 4) + 1)) if relational and n >= 3 and \
            rng.random() < 0.7 else 0
        layout = draw_layout(rng, config, n, group)
        if layout is None:
            continue
        view, _, rendered, objects = layout
        chosen: list[Candidate] = []
        by_level: dict[str, list[Candidate]] = {}
        for lv in levels:
            if lv not in by_level:
                by_level[lv] = candidates(objects, lv, config.width)
            c = pick(rng, by_level[lv], lv, {x.text for x in chosen})
            if c is None:
                break
            chosen.append(c)
        else:
            rgb, depth = add_sensor_noise(rendered, rng, rng.uniform(*config.pixel_noise),
                                          config.depth_noise)
            return Scene(rgb=rgb, depth=depth, intrinsics=view.intrinsics, objects=objects,
                         expressions=[to_expression(c, objects) for c in chosen],
                         labels=rendered.labels, view=view)
    raise ValueError(f"no scene with levels {levels} found in {config.max_attempts} attempts; "
                     f"allow more objects, shapes or colours in the SceneConfig")
