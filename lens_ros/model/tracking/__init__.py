"""SAM 2 memory tracking between full LENS calls (track mode).

``memory`` (the memory attention + memory encoder step over the last frames), ``session`` (one
tracked target across frames) and ``weights`` (loading and converting the memory modules, which
LENS checkpoints do not carry).
"""
