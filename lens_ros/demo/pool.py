"""Pre-generated pools of synthetic scenes for the demo recipe (fast random access in training).

A pool is ``<dir>/<name>.npz`` (``images`` (N, H, W, 3) uint8 RGB, ``labels`` (N, H, W) int8
visible object index, -1 = background) plus ``<name>.json`` (per scene: ``objects`` = list of
[canonical name, [x1, y1, x2, y2]] left to right, boxes int pixels with exclusive x2/y2;
``expressions`` = list of {text, reasoning, target, level}; ``seed``). Scene ``i`` of a pool is
drawn from the TRAIN split's seed range at ``offset + i`` (never val/test), asking for one
command of every level when the layout allows it, so one render feeds four grounding samples
and one "list the objects" sample.

    python -m lens_ros.demo.pool --out data/demo_pool --name normal --scenes 20000
    python -m lens_ros.demo.pool --out data/demo_pool --name easy --scenes 6000 \
        --min-objects 1 --max-objects 3 --offset 5000000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from lens_ros.synthetic.expressions import LEVELS, list_objects
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE, SceneConfig, make_scene
from lens_ros.synthetic.splits import scene_seed


@dataclass
class ScenePool:
    """Scenes in memory. ``images`` (N, H, W, 3) uint8; ``labels`` (N, H, W) int8; ``meta`` list
    of per-scene dicts (see module doc)."""

    images: np.ndarray
    labels: np.ndarray
    meta: list[dict]

    def __len__(self) -> int:
        return len(self.meta)

    def mask(self, scene: int, obj: int) -> np.ndarray:
        """HxW bool visible mask of object ``obj`` (index into ``Scene.objects``) of ``scene``."""
        return self.labels[scene] == obj


def draw_scene_record(seed: int, config: SceneConfig):
    """(rgb, labels int8, meta) of the train scene with ``seed``: four levels when possible."""
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(LEVELS)))
    levels = [LEVELS[i] for i in order]
    try:
        scene = make_scene(rng, levels, config)
    except ValueError:
        scene = make_scene(np.random.default_rng([seed, 7]), "attribute", config)
    names = [o.name for o in scene.objects]
    objects = [[name, [int(v) for v in box]] for name, box in list_objects(scene.objects)]
    exprs = [{"text": e.text, "reasoning": e.reasoning, "target": int(e.target),
              "level": e.level} for e in scene.expressions]
    meta = {"seed": int(seed), "objects": objects, "names": names, "expressions": exprs}
    return scene.rgb, scene.labels.astype(np.int8), meta


def generate_pool(n: int, config: SceneConfig, offset: int = 0, progress: bool = True,
                  workers: int = 1) -> ScenePool:
    """Draw ``n`` scenes from the train split's seeds ``offset .. offset + n - 1``; ``workers``
    processes draw them in parallel (the same pool: each scene depends on its seed only)."""
    images = np.zeros((n, config.height, config.width, 3), np.uint8)
    labels = np.zeros((n, config.height, config.width), np.int8)
    meta = []
    t0 = time.perf_counter()
    seeds = [scene_seed("train", offset + i) for i in range(n)]
    pool = None
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        records = pool.imap(partial(draw_scene_record, config=config), seeds, chunksize=64)
    else:
        records = (draw_scene_record(seed, config) for seed in seeds)
    try:
        for i, (image, label, m) in enumerate(records):
            images[i], labels[i] = image, label
            meta.append(m)
            if progress and (i + 1) % 500 == 0:
                rate = (i + 1) / (time.perf_counter() - t0)
                print(f"  {i + 1}/{n} scenes, {rate:.0f}/s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return ScenePool(images, labels, meta)


def save_pool(pool: ScenePool, directory: str | Path, name: str) -> Path:
    """Write ``<name>.npz`` + ``<name>.json``; returns the npz path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / f"{name}.npz", images=pool.images, labels=pool.labels)
    (d / f"{name}.json").write_text(json.dumps(pool.meta))
    return d / f"{name}.npz"


def load_pool(directory: str | Path, name: str) -> ScenePool:
    """Read a pool written by :func:`save_pool` (plain npz arrays, no pickle)."""
    d = Path(directory)
    npz, js = d / f"{name}.npz", d / f"{name}.json"
    if not npz.is_file() or not js.is_file():
        raise FileNotFoundError(f"pool {name!r} not found in {d} (need {npz.name} and {js.name});"
                                " create it with python -m lens_ros.demo.pool")
    with np.load(npz, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    return ScenePool(images, labels, json.loads(js.read_text()))


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lens_ros.demo.pool",
                                description="Pre-generate a pool of synthetic train scenes.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", required=True, help="pool name (file stem)")
    p.add_argument("--scenes", type=int, required=True, help="number of scenes")
    p.add_argument("--offset", type=int, default=0, help="first train-split scene index")
    p.add_argument("--size", type=int, default=DEMO_IMAGE_SIZE, help="image side in pixels")
    p.add_argument("--min-objects", type=int, default=2, help="fewest objects per scene")
    p.add_argument("--max-objects", type=int, default=5, help="most objects per scene")
    p.add_argument("--workers", type=int, default=1,
                   help="processes drawing scenes in parallel (the pool is the same)")
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    cfg = SceneConfig(width=args.size, height=args.size, min_objects=args.min_objects,
                      max_objects=args.max_objects)
    t0 = time.perf_counter()
    pool = generate_pool(args.scenes, cfg, args.offset, workers=args.workers)
    path = save_pool(pool, args.out, args.name)
    print(f"wrote {path} ({len(pool)} scenes) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
