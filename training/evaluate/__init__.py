"""Evaluation: the official WIDER FACE protocol (wider), P/R/F1 helpers (metrics), PR-curve plots (plots)."""

from training.evaluate.wider import (
    SETTINGS,
    WiderEvalResult,
    WiderGroundTruth,
    evaluate_detector,
    evaluate_predictions,
    evaluate_wider,
    load_wider_gt,
)

__all__ = [
    "SETTINGS",
    "WiderEvalResult",
    "WiderGroundTruth",
    "evaluate_detector",
    "evaluate_predictions",
    "evaluate_wider",
    "load_wider_gt",
]
