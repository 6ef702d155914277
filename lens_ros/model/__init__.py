"""LENS itself: config presets, LensModel (nn.Module), processing (prompts, smart_resize, answer
parsing), checkpoints (safetensors) and LensSegmenter, the one inference API.

Public API (the rest is importable from the submodules)::

    from lens_ros.model import LensSegmenter, Segmentation, build_lens, LENS_PRESETS
"""
from lens_ros.core import Segmentation
from lens_ros.model.presets import LENS_PRESETS, build_lens
from lens_ros.model.segmenter import LensSegmenter

__all__ = ["LENS_PRESETS", "LensSegmenter", "Segmentation", "build_lens"]
