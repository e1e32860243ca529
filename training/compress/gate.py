"""The accuracy gate every compressed variant passes: WIDER AP and replay F1 against the float model.

AP easy / medium / hard come from the official WIDER evaluation (`facestream eval wider`'s
`wider_eval`), the replay check from the replay regression gate (`training.evaluate.replay_gate`, what
`bench/replay_gate.py` runs): the same code a user runs, not a copy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SETTINGS = ("easy", "medium", "hard")


@dataclass
class GateResult:
    variant: str
    baseline: str
    max_drop: float  # AP points (0..100 scale)
    ap_variant: dict[str, float]
    ap_baseline: dict[str, float]
    replay_table: str = ""
    replay_failed: list[str] = field(default_factory=list)
    runtime_variant: str = ""  # what evaluated each: the runtime that serves it on a CPU host
    runtime_baseline: str = ""

    @property
    def drops(self) -> dict[str, float]:
        """AP points lost per setting (negative: the variant is better)."""
        return {s: 100.0 * (self.ap_baseline[s] - self.ap_variant[s]) for s in SETTINGS}

    @property
    def failed_settings(self) -> list[str]:
        return [s for s, d in self.drops.items() if d > self.max_drop + 1e-9]

    @property
    def passed(self) -> bool:
        return not self.failed_settings and not self.replay_failed

    def summary(self) -> str:
        parts = [f"{s} {100 * self.ap_baseline[s]:.1f} -> {100 * self.ap_variant[s]:.1f} "
                 f"({-self.drops[s]:+.1f})" for s in SETTINGS]
        verdict = "pass" if self.passed else "FAIL"
        why = ""
        if self.failed_settings:
            why += f"; loses more than {self.max_drop:g} AP points on {', '.join(self.failed_settings)}"
        if self.replay_failed:
            why += f"; replay F1 drops on {', '.join(self.replay_failed)}"
        return f"gate {verdict}: WIDER AP {', '.join(parts)}{why}"

    def to_markdown(self) -> str:
        rows = "\n".join(f"| {s} | {self.ap_baseline[s]:.3f} | {self.ap_variant[s]:.3f} | {-self.drops[s]:+.1f} |"
                         for s in SETTINGS)
        rb, rv = (f" on {rt}" if rt else "" for rt in (self.runtime_baseline, self.runtime_variant))
        out = (f"Baseline `{self.baseline}`{rb}, variant `{self.variant}`{rv}, tolerance {self.max_drop:g} AP points: "
               f"**{'pass' if self.passed else 'FAIL'}**\n\n| WIDER val | AP float | AP variant | change (points) |\n"
               f"| --- | --- | --- | --- |\n{rows}\n")
        if self.replay_table:
            out += f"\nReplay (each model at its own threshold):\n\n{self.replay_table}\n"
        return out

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "drops": self.drops, "passed": self.passed}, indent=2)


def serving_runtime(model: str | Path) -> str:
    """The runtime a variant is evaluated on: the one `auto` serves it with on a CPU host."""
    from models.detector import cpu_runtime

    return cpu_runtime(model) if str(model).lower().endswith(".onnx") else "auto"


def wider_ap(model: str | Path, wider_dir: str | Path, max_size: int | None = None, threads: int = 2,
             progress: bool = False, runtime: str | None = None) -> dict[str, float]:
    from training.evaluate.adapters import wider_eval

    res = wider_eval(model, data_dir=Path(wider_dir), max_size=max_size, threads=threads,
                     runtime=runtime or serving_runtime(model), progress=progress)
    return {s: float(res.ap[s]) for s in SETTINGS}


def accuracy_gate(variant: str | Path, baseline: str | Path, wider_dir: str | Path, *, max_drop: float = 1.0,
                  replay_clips: list[Path] | None = None, out: Path | None = None, max_size: int | None = None,
                  threads: int = 2, progress: bool = False) -> GateResult:
    """Gate `variant` against the float `baseline`: AP within `max_drop` points on each WIDER setting and,
    for each replay clip, the replay gate (F1 within 1 point)."""
    res = GateResult(str(variant), str(baseline), float(max_drop),
                     ap_variant=wider_ap(variant, wider_dir, max_size, threads, progress),
                     ap_baseline=wider_ap(baseline, wider_dir, max_size, threads, progress),
                     runtime_variant=serving_runtime(variant), runtime_baseline=serving_runtime(baseline))
    if replay_clips:
        from training.evaluate.replay_gate import run_gate

        res.replay_table, res.replay_failed = run_gate(Path(baseline), Path(variant), replay_clips,
                                                       (out or Path("work-data/compress-gate")) / "replay",
                                                       max_drop=max_drop / 100.0)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gate.json").write_text(res.to_json())
        (out / "gate.md").write_text(res.to_markdown())
    return res
