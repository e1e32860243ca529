"""The float model beside its compressed variants: size, cost, CPU speed and accuracy, in one run.

    .venv/bin/python bench/compression.py --float models/weights/fsdet-m.safetensors \\
        --variant models/weights/fsdet-m-int8.onnx --variant runs/fsdet-m-p30/fsdet-m-p30.onnx ... \\
        [--wider ../shared/data/eval/widerface-val-mini] [--dev-config configs/fsdet-m.toml] [--write-docs]

For each model: parameters, GMACs at 640x640, file size, CPU latency per 640x480 frame with ONNX Runtime
at 1 and 2 intra-op threads (all models timed in interleaved rounds, so load from other processes hits
them alike: the ratio to the float model in the same run is the number to compare), AP easy / medium /
hard on WIDER val (the compression gate's own evaluation) and AP on a training config's dev split (where
choices between variants are made).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

def onnx_of(path: Path) -> Path:
    from training.compress.variants import float_onnx

    return float_onnx(path)


def timings(models: dict[str, Path], threads: int, seconds: float, rounds: int) -> dict[str, float]:
    from detector_cpu import H, W, session

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, H, W)).astype(np.float32)
    sess = {n: session(p, threads) for n, p in models.items()}
    for s in sess.values():
        for _ in range(3):
            s.run(None, {"images": x})
    times: dict[str, list[float]] = {n: [] for n in sess}
    for _ in range(rounds):
        for n, s in sess.items():
            end = time.perf_counter() + seconds / rounds
            while time.perf_counter() < end:
                a = time.perf_counter()
                s.run(None, {"images": x})
                times[n].append((time.perf_counter() - a) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def dev_ap(path: Path, config: Path) -> float:
    from models.detector import load_detector
    from training.config import load_config
    from training.data.dataset import source_splits
    from training.devset import evaluate_dev

    recs = [r for _, _, dev in source_splits(load_config(config)) for r in dev]
    det = load_detector(runtime="onnx", weights=path, threshold=0.02, nms_iou=0.4, threads=2)
    return evaluate_dev(det, recs)


def run(a) -> dict:
    from models.facedet.export import read_model_meta, read_onnx_meta
    from training.compress.gate import wider_ap
    from training.compress.variants import model_stats

    models = {"float": onnx_of(a.float)} | {p.name: onnx_of(p) for p in a.variant}
    res = {"load1_start": os.getloadavg()[0], "models": {}}
    speed = {t: timings(models, t, a.seconds, a.rounds) for t in (1, 2)}
    res["load1_end"] = os.getloadavg()[0]
    for n, p in models.items():
        _, md = read_onnx_meta(p)
        row = {"path": str(p), "precision": md.get("precision", "fp32"), **model_stats(p),
               "ms_1t": speed[1][n], "ms_2t": speed[2][n], "name": read_model_meta(p).name}
        if a.wider:
            row["ap"] = wider_ap(p, a.wider, threads=2)
        if a.dev_config:
            row["dev_ap"] = dev_ap(p, a.dev_config)
        res["models"][n] = row
    return res


def table(res: dict) -> str:
    f = res["models"]["float"]
    rows = ["| model | precision | params | GMACs 640² | file KB | ms 1 thr | x float | ms 2 thr | x float | "
            "AP easy / medium / hard | change (points) | dev AP |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, m in res["models"].items():
        ap = m.get("ap")
        aps = " / ".join(f"{ap[s]:.3f}" for s in ("easy", "medium", "hard")) if ap else "-"
        ch = " / ".join(f"{100 * (ap[s] - f['ap'][s]):+.1f}" for s in ("easy", "medium", "hard")) if ap else "-"
        rows.append(f"| {n} ({m['name']}) | {m['precision']} | {m['params']:,} | {m['gmacs_640']:.2f} | "
                    f"{m['file_kb']:.0f} | {m['ms_1t']:.2f} | {f['ms_1t'] / m['ms_1t']:.2f}x | {m['ms_2t']:.2f} | "
                    f"{f['ms_2t'] / m['ms_2t']:.2f}x | {aps} | {ch} | {m.get('dev_ap', float('nan')):.3f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float", type=Path, required=True, help="The float model (.safetensors or .onnx).")
    ap.add_argument("--variant", type=Path, action="append", default=[], help="A compressed variant; repeatable.")
    ap.add_argument("--wider", type=Path, default=None, help="WIDER val folder for AP easy / medium / hard.")
    ap.add_argument("--dev-config", type=Path, default=None, help="Training config for dev-split AP.")
    ap.add_argument("--seconds", type=float, default=4.0, help="Timed seconds per model and thread count.")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--write-docs", action="store_true", help="Write the table into docs/benchmarks.md.")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = run(a)
    tab = table(res)
    print(tab)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    if a.write_docs:
        from docs_section import write_benchmark

        write_benchmark("compression.py", "compression",
                        "Compression: the float model and its variants (CPU, ONNX Runtime)",
                        f"One 640x480 frame, graph time; 1-min load average {res['load1_start']:.1f} -> "
                        f"{res['load1_end']:.1f} during the timing. Speed ratios are to the float model timed "
                        "interleaved in the same run.", tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
