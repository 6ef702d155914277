"""The companion training package: RefCOCO-format and synthetic data, rewards, mask losses, the
stage-1 trainer and the GRPO trainer (a TRL subclass), CLI ``lens-train``."""
