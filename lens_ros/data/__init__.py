"""Dataset items and readers shared by training, evaluation and the synthetic scenes.

``items`` (the :class:`TrainItem` record), ``sources`` (RefCOCO/RefCOCO+/RefCOCOg and ReasonSeg
readers), ``masks`` (COCO RLE and annotation decoding), ``safe_pickle`` (the restricted
unpickler for ``refs(*).p``) and ``toydata`` (small generated sets for tests and smoke runs).
Imports nothing above ``lens_ros.core`` and ``lens_ros.geometry``.
"""
