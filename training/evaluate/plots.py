"""PR-curve plots for WIDER evaluation results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.evaluate.wider import SETTINGS, WiderEvalResult


def plot_pr_curves(results: WiderEvalResult | Sequence[WiderEvalResult], out_png: str | Path,
                   title: str = "WIDER val mini") -> Path:
    """One panel per setting (easy / medium / hard), one curve per result; legend shows AP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(results, WiderEvalResult):
        results = [results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    for ax, s in zip(axes, SETTINGS, strict=True):
        for r in results:
            if not r.curves:
                continue
            c = r.curves[s]
            ax.plot(c.recall, c.precision, label=f"{r.name} ({c.ap:.3f})", lw=1.5)
        ax.set_title(f"{title}: {s}")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
