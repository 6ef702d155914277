"""Evaluation: metrics (cIoU, gIoU, P@k, box accuracy), the evaluator, reports in the paper's
layout, CLI ``lens-eval``."""
