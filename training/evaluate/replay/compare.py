"""The regression gate between two replay reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.evaluate.replay.common import (
    GATED_METRICS,
    OVERALL,
    REPORT_FORMAT,
    REPORT_VERSION,
    ReplayEvalError,
    fmt_value,
)

# --------------------------------------------------------------------------------------------- gate

@dataclass
class GateCheck:
    name: str
    passed: bool
    baseline: float | None = None
    new: float | None = None
    detail: str = ""

    @property
    def drop(self) -> float | None:
        if self.baseline is None or self.new is None:
            return None
        return self.baseline - self.new


@dataclass
class GateResult:
    checks: list[GateCheck]
    max_drop: float
    max_faces: int = 0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "max_drop": self.max_drop, "max_faces": self.max_faces,
                "checks": [{"name": c.name, "passed": c.passed, "baseline": c.baseline, "new": c.new,
                            "drop": c.drop, "detail": c.detail} for c in self.checks]}

    def text(self) -> str:
        faces = f", or at most {self.max_faces} more missed / false faces" if self.max_faces else ""
        out = [f"gate {'PASSED' if self.passed else 'FAILED'} (max drop {self.max_drop:g}{faces})"]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            if c.baseline is not None or c.new is not None:
                drop = f", drop {c.drop:+.4f}" if c.drop is not None else ""
                out.append(f"  {mark} {c.name}: baseline {fmt_value(c.baseline)} -> new {fmt_value(c.new)}{drop}"
                           + (f" ({c.detail})" if c.detail else ""))
            else:
                out.append(f"  {mark} {c.name}: {c.detail}")
        return "\n".join(out)


def load_report(path: str | Path) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReplayEvalError(f"cannot read report {path}: {exc}") from None
    if not isinstance(d, dict) or d.get("format") != REPORT_FORMAT:
        raise ReplayEvalError(f"{path} is not a replay-eval report.json (format {REPORT_FORMAT!r})")
    if int(d.get("version", 0)) > REPORT_VERSION:
        raise ReplayEvalError(f"{path}: report version {d['version']} is newer than this tool ({REPORT_VERSION})")
    return d


def extra_errors(new: dict, base: dict) -> tuple[int, int] | None:
    """(more missed faces, more false boxes) at the threshold in `new` than in `base`; None if uncounted."""
    if any(k not in d for k in ("fn", "fp") for d in (new, base)):
        return None
    return max(0, int(new["fn"]) - int(base["fn"])), max(0, int(new["fp"]) - int(base["fp"]))


def gate(new: dict, baseline: dict, max_drop: float = 0.01, metrics: Sequence[str] = GATED_METRICS,
         per_camera: bool = False, allow_missing: bool = False, allow_mismatch: bool = False,
         max_faces: int = 0) -> GateResult:
    """Compare two report.json dicts: fails when any of ``metrics`` drops by more than ``max_drop``, unless
    ``max_faces`` > 0 and the new run has at most that many more missed faces plus false boxes at the
    threshold than the baseline (on a short clip one face moves F1 by more than any sensible ratio).

    Also fails (unless allowed) when the new run has frames without events, or when the reports are not
    comparable (different labels files or threshold/IoU settings).
    """
    checks: list[GateCheck] = []
    same_labels = new.get("labels_sha256") == baseline.get("labels_sha256")
    keys_ = ("threshold", "iou", "ignore_ioa")
    same_settings = all(new["settings"].get(k) == baseline["settings"].get(k) for k in keys_)
    detail = []
    if not same_labels:
        detail.append("labels files differ (sha256)")
    if not same_settings:
        detail.append("settings differ: " + ", ".join(
            f"{k} {baseline['settings'].get(k)} -> {new['settings'].get(k)}" for k in keys_
            if new["settings"].get(k) != baseline["settings"].get(k)))
    comparable = same_labels and same_settings
    checks.append(GateCheck("comparable", comparable or allow_mismatch,
                            detail="; ".join(detail) + (" (allowed)" if detail and allow_mismatch else "")
                            if detail else "same labels and settings"))
    miss = int(new.get("pipeline", {}).get("missing", 0))
    checks.append(GateCheck("no missing events", miss == 0 or allow_missing,
                            detail=f"{miss} published frames without an event" + (" (allowed)" if miss and
                                                                                 allow_missing else "")))
    scopes = [(OVERALL, new[OVERALL], baseline[OVERALL])]
    if per_camera:
        for cam, m in baseline.get("per_camera", {}).items():
            if cam in new.get("per_camera", {}):
                scopes.append((cam, new["per_camera"][cam], m))
            else:
                checks.append(GateCheck(f"{cam}", False, detail="camera missing from the new report"))
    for scope, n, b in scopes:
        for m in metrics:
            bv, nv = b.get(m), n.get(m)
            name = m if scope == OVERALL else f"{scope}.{m}"
            if bv is None and nv is None:
                checks.append(GateCheck(name, True, None, None, "undefined in both (no labelled faces)"))
                continue
            if bv is None or nv is None:
                checks.append(GateCheck(name, nv is not None, bv, nv, "undefined in one report"))
                continue
            ok = float(bv) - float(nv) <= max_drop + 1e-12
            detail = ""
            extra = extra_errors(n, b) if not ok and max_faces > 0 else None
            if extra is not None:
                ok = sum(extra) <= max_faces
                detail = (f"{'within' if ok else 'beyond'} {max_faces} face(s): +{extra[0]} missed, "
                          f"+{extra[1]} false")
            checks.append(GateCheck(name, ok, float(bv), float(nv), detail))
    return GateResult(checks, max_drop, max_faces)
