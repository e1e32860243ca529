"""Replay evaluation: the report format, the gated metrics and the error every step raises."""

from __future__ import annotations

from typing import Any

REPORT_FORMAT = "facestream-replay-eval"
REPORT_VERSION = 1
GATED_METRICS = ("recall", "f1", "ap")
OVERALL = "overall"


class ReplayEvalError(RuntimeError):
    """The run cannot be evaluated (no such run, no events, unusable labels)."""


def fmt_value(v: Any, nd: int = 4) -> str:
    """A metric for the reports: n/a for None, `nd` decimals for floats."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)
