"""The shipped demo model: a small LENS-architecture model trained on the synthetic scenes.

Not part of the LENS API. ``cli`` (``lens-demo``), ``bag`` and ``report`` (what ``make demo``
runs and writes), the training recipe's demo-only stages (``sft``, ``mask_stage``,
``tracker_training``, ``pool``, ``samples``, ``export``) and its analysis tools (``evaluate``,
``errors``, ``tables``, ``probe``).
"""
