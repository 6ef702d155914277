"""The companion training package: RefCOCO-format and synthetic data, rewards, mask losses, the
stage-1 trainer and the GRPO trainer (a TRL subclass), CLI ``lens-train``.

Modules (import what you need; nothing heavy is imported here):

* ``items``: :class:`TrainItem`, the one item format every data source yields.
* ``safe_pickle``: the restricted unpickler for dataset pickles.
* ``data``: RefCOCO/RefCOCO+/RefCOCOg (LISA layout) and ReasonSeg sources, ``ItemDataset``.
* ``toydata``: a tiny generated RefCOCO-layout dataset (tests, benchmarks, smoke runs).
* ``batching``: items -> GRPO rows and teacher-forced stage-1 batches.
* ``rewards``, ``losses``: pure reward functions; BCE + Dice mask loss.
* ``configs``, ``grpo_config``: data/model/stage-1 configs; ``LensGRPOConfig``.
* ``stage1``, ``grpo``, ``lens_pass``, ``common``: the trainers and what they share.
* ``runner``, ``cli``, ``plot``: ``lens-train`` and its training curves.
"""
