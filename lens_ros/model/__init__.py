"""LENS itself: config presets, LensModel (nn.Module), processing (prompts, smart_resize, answer
parsing), checkpoints (safetensors) and LensSegmenter, the one inference API."""
