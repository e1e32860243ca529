"""The float model beside its compressed variants: size, cost, CPU speed and accuracy, in one run.

    .venv/bin/python bench/compression.py --float models/weights/fsdet-m.safetensors \\
        --variant models/weights/fsdet-m-int8.onnx --variant runs/fsdet-m-p30/fsdet-m-p30.onnx ... \\
        [--also-runtime onnx --also-runtime openvino] \\
        [--wider ../shared/data/eval/widerface-val-mini] [--dev-config configs/fsdet-m.toml] [--write-docs]

For each model, on the runtime `facestream` serves it with on a CPU host (ONNX Runtime for float files,
OpenVINO for INT8 variants) and on each --also-runtime: parameters, GMACs at 640x640, file size, CPU
latency per 640x480 frame through the runtime's infer() at 1 and 2 intra-op threads (all models timed
in interleaved rounds, so load from other processes hits them alike: the ratio to the float model in the
same run is the number to compare), AP easy / medium / hard on WIDER val (the compression gate's own
evaluation) and AP on a training config's dev split (where choices between variants are made), each on
the row's runtime.
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


def runtime_for(path: Path, runtime: str, threads: int):
    """The product's runtime object, as a worker builds it (pinned shapes)."""
    if runtime == "openvino":
        from models.runtimes.openvino_rt import OpenVinoRuntime

        return OpenVinoRuntime(path, threads=threads)
    from models.runtimes.onnx_rt import OnnxRuntime

    return OnnxRuntime(path, device="cpu", threads=threads)


def timings(rows: dict[str, tuple[Path, str]], threads: int, seconds: float, rounds: int) -> dict[str, float]:
    """Median ms per 640x480 frame through each runtime's infer() (pinned shapes, as served), interleaved."""
    from detector_cpu import H, W

    from models.runtimes.shape_pins import PIN_AFTER

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, H, W)).astype(np.float32)
    rts = {k: runtime_for(p, rt, threads) for k, (p, rt) in rows.items()}
    for r in rts.values():
        for _ in range(PIN_AFTER + 3):  # past the dynamic model: the shape's own compiled session
            r.infer(x)
    times: dict[str, list[float]] = {k: [] for k in rts}
    for _ in range(rounds):
        for k, r in rts.items():
            end = time.perf_counter() + seconds / rounds
            while time.perf_counter() < end:
                a = time.perf_counter()
                r.infer(x)
                times[k].append((time.perf_counter() - a) * 1e3)
    return {k: statistics.median(t) for k, t in times.items()}


def dev_ap(path: Path, config: Path, runtime: str) -> float:
    from models.detector import load_detector
    from training.config import load_config
    from training.data.dataset import source_splits
    from training.devset import evaluate_dev

    recs = [r for _, _, dev in source_splits(load_config(config)) for r in dev]
    det = load_detector(runtime=runtime, weights=path, threshold=0.02, nms_iou=0.4, threads=2)
    return evaluate_dev(det, recs)


def bench_rows(a) -> dict[str, tuple[Path, str]]:
    """(model, runtime) pairs: each model on the runtime `auto` serves it with on a CPU host, and on each
    --also-runtime. The first row is the float default (the float model as served) that ratios divide by."""
    from models.detector import cpu_runtime

    models = {"float": onnx_of(a.float)} | {p.name: onnx_of(p) for p in a.variant}
    rows = {}
    for n, p in models.items():
        for rt in dict.fromkeys([cpu_runtime(p), *a.also_runtime]):
            rows[f"{n} @ {rt}"] = (p, rt)
    return rows


def run(a) -> dict:
    from models.detector import cpu_runtime
    from models.facedet.export import read_model_meta, read_onnx_meta
    from training.compress.gate import wider_ap
    from training.compress.variants import model_stats

    rows = bench_rows(a)
    res = {"load1_start": os.getloadavg()[0], "models": {}}
    speed = {t: timings(rows, t, a.seconds, a.rounds) for t in (1, 2)}
    res["load1_end"] = os.getloadavg()[0]
    for k, (p, rt) in rows.items():
        _, md = read_onnx_meta(p)
        row = {"path": str(p), "runtime": rt, "served": rt == cpu_runtime(p), "precision": md.get("precision", "fp32"),
               **model_stats(p), "ms_1t": speed[1][k], "ms_2t": speed[2][k], "name": read_model_meta(p).name}
        if a.wider:
            row["ap"] = wider_ap(p, a.wider, threads=2, runtime=rt)
        if a.dev_config:
            row["dev_ap"] = dev_ap(p, a.dev_config, rt)
        res["models"][k] = row
    return res


def table(res: dict) -> str:
    f = next(iter(res["models"].values()))  # the float default
    rows = ["| model @ runtime | precision | params | GMACs 640² | file KB | ms 1 thr | x float | ms 2 thr | x float | "
            "AP easy / medium / hard | change (points) | dev AP |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, m in res["models"].items():
        ap = m.get("ap")
        aps = " / ".join(f"{ap[s]:.3f}" for s in ("easy", "medium", "hard")) if ap else "-"
        ch = " / ".join(f"{100 * (ap[s] - f['ap'][s]):+.1f}" for s in ("easy", "medium", "hard")) if ap else "-"
        label = f"**{n}** ({m['name']})" if m.get("served") else f"{n} ({m['name']}; not what auto serves)"
        rows.append(f"| {label} | {m['precision']} | {m['params']:,} | {m['gmacs_640']:.2f} | "
                    f"{m['file_kb']:.0f} | {m['ms_1t']:.2f} | {f['ms_1t'] / m['ms_1t']:.2f}x | {m['ms_2t']:.2f} | "
                    f"{f['ms_2t'] / m['ms_2t']:.2f}x | {aps} | {ch} | {m.get('dev_ap', float('nan')):.3f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float", type=Path, required=True, help="The float model (.safetensors or .onnx).")
    ap.add_argument("--variant", type=Path, action="append", default=[], help="A compressed variant; repeatable.")
    ap.add_argument("--wider", type=Path, default=None, help="WIDER val folder for AP easy / medium / hard.")
    ap.add_argument("--dev-config", type=Path, default=None, help="Training config for dev-split AP.")
    ap.add_argument("--also-runtime", action="append", default=[], choices=["onnx", "openvino"],
                    help="Also time every model on this runtime (beside the one auto serves it with); repeatable.")
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
                        "Compression: the float model and its variants (CPU: ONNX Runtime and OpenVINO)",
                        "One 640x480 frame through the runtime's infer() (pinned shapes, as served); "
                        f"1-min load average {res['load1_start']:.1f} -> "
                        f"{res['load1_end']:.1f} during the timing. Speed ratios are to the float model timed "
                        "interleaved in the same run: the first row, the float model on the runtime `auto` "
                        "serves it with. "
                        "Bold rows are what `auto` serves on a CPU host; the others show the same file on the "
                        "other runtime.", tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
