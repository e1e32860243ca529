"""How much faster each pruned shape of a model would be, before any fine-tune: which ratio and which
channel groups reach a speed target (the weights of a pruned shape do not change its speed).

    .venv/bin/python bench/prune_speed.py --model models/weights/fsdet-m.safetensors \\
        --shape 0.3 --shape 0.5:neck --shape 0.5:neck,w0,stem [--write-docs]

A shape is RATIO or RATIO:GROUP,GROUP (groups: stem, w0..w3, neck; see `facestream compress prune`). Every
shape is exported to ONNX and timed interleaved with the float model (bench/compression.py's `timings`),
one 640x480 frame, ONNX Runtime at 1 and 2 intra-op threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def parse_shape(text: str) -> tuple[float, tuple[str, ...] | None]:
    from training.compress.prune import parse_groups

    ratio, _, groups = text.partition(":")
    return float(ratio), parse_groups(groups)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="Float weights (.safetensors).")
    ap.add_argument("--shape", action="append", required=True, help="RATIO or RATIO:GROUPS; repeatable.")
    ap.add_argument("--seconds", type=float, default=3.0, help="Timed seconds per shape and thread count.")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--write-docs", action="store_true", help="Write the table into docs/benchmarks.md.")
    a = ap.parse_args()

    from compression import timings

    from models.facedet.export import export_onnx
    from models.facedet.network import count_gmacs
    from models.facedet.weights import load_model
    from training.compress.prune import prune_model

    model, _ = load_model(a.model)
    tmp = Path(tempfile.mkdtemp(prefix="prune-speed-"))
    shapes = {"float": (0.0, None), **{s: parse_shape(s) for s in a.shape}}
    paths, info = {}, {}
    for name, (ratio, groups) in shapes.items():
        p = prune_model(model, ratio, groups)
        paths[name] = export_onnx(p, tmp / f"{len(paths)}.onnx", check=False)
        info[name] = (p.cfg, sum(t.numel() for t in p.parameters()))
    ms = {t: timings(paths, t, a.seconds, a.rounds) for t in (1, 2)}
    load = os.getloadavg()[0]
    rows = ["| shape | stem / widths / neck | params | GMACs 640x480 | ms 1 thr | x float | ms 2 thr | x float |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, (cfg, params) in info.items():
        rows.append(f"| {name} | {cfg.stem} / {'-'.join(map(str, cfg.widths))} / {cfg.neck} | {params:,} | "
                    f"{count_gmacs(cfg, 480, 640):.3f} | {ms[1][name]:.2f} | {ms[1]['float'] / ms[1][name]:.2f}x | "
                    f"{ms[2][name]:.2f} | {ms[2]['float'] / ms[2][name]:.2f}x |")
    tab = "\n".join(rows)
    print(tab)
    if a.write_docs:
        from docs_section import write_benchmark

        write_benchmark("prune_speed.py", "prune-speed",
                        "Pruned shapes: speed before any fine-tune (CPU, ONNX Runtime)",
                        "Shape = ratio[:channel groups] (all groups when none). One 640x480 frame, graph time, "
                        f"interleaved with the float model; 1-min load average {load:.1f} at the end.", tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
