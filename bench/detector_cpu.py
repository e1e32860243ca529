"""CPU speed of our detectors beside YuNet-n: ONNX Runtime, N intra-op threads, one 640x480 frame.

    .venv/bin/python bench/detector_cpu.py [--threads 2] [--seconds 0.4] [--rounds 7] [--write-docs]
        [--weights models/weights/fsdet-m.safetensors] [--profile DIR]

Each variant is exported fresh from a random-init model (speed does not depend on the weights; pass
--weights to time a trained file instead, repeated to compare several). Models are timed in interleaved
rounds (A B C Y, A B C Y, ...) so that load from other processes on a shared machine hits all of them
alike; the ratio to YuNet-n in the same run is the number to compare across machines. Reported: median
ms per frame over all timed runs. Graph input is 640x480 (the letterbox of a 640x480 frame needs no
padding). Pre/post-processing is not included (the same for every model; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

YUNET = Path(os.environ.get("YUNET_ONNX", ROOT.parent / "shared/models/peers/libfd_yunet_n_dynamic.onnx"))
if not YUNET.is_file():
    YUNET = Path("/work/shared/models/peers/libfd_yunet_n_dynamic.onnx")
W, H = 640, 480
TARGET_MS = {"fsdet-m": 20.0}
DYNAMIC = " (dynamic shapes)"  # the row suffix of a model's session without pinned shapes


def session(path: Path, threads: int, profile_dir: Path | None = None, spin: bool = True, pinned: bool = True):
    """A session as the product's ONNX runtime builds one (models/runtimes/onnx_rt.py): pinned to the timed
    1x3xHxW input unless `pinned` is False (the dynamic-shape graph, for the before/after rows)."""
    import onnxruntime as ort

    from models.runtimes.onnx_rt import pinned_dims, session_options

    def build(dims=None):
        so = session_options(threads, 1, spin, dims)
        if profile_dir is not None:
            so.enable_profiling = True
            so.profile_file_prefix = str(profile_dir / path.stem)
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    if not pinned:
        return build()
    probe = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return build(pinned_dims(probe, (1, 3, H, W)))


def export_variants(variants: list[str], weights: list[Path] | None, out: Path) -> dict[str, tuple[Path, float]]:
    """name -> (ONNX path, GMACs at 640x480): the trained `weights` files if given (named by their file when
    several share a name), else random-init models of `variants`."""
    import torch

    from models.facedet import get_config
    from models.facedet.export import export_onnx
    from models.facedet.network import count_gmacs
    from models.facedet.weights import load_model, random_model

    torch.set_num_threads(1)
    paths = {}
    for w in weights or []:
        model, meta = load_model(w)
        name = meta.name if len(weights) == 1 else f"{meta.name} ({w})"
        paths[name] = (export_onnx(model, out / f"{len(paths)}.onnx", meta=meta, check=False),
                       count_gmacs(meta.config, H, W))
    for v in [] if weights else variants:
        paths[v] = (export_onnx(random_model(v, spread=False), out / f"{v}.onnx", check=False),
                    count_gmacs(get_config(v), H, W))
    return paths


def profile_top(profile_json: str, top: int = 8) -> list[tuple[str, float]]:
    """Op types by total time from an ORT profile (skips the first, warm-up run)."""
    events = json.loads(Path(profile_json).read_text())
    per: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per[op] = per.get(op, 0.0) + e["dur"] / 1000.0
    total = sum(per.values()) or 1.0
    return [(k, v / total) for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]]


def run(args) -> dict:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="fsdet-bench-"))
    t0 = time.perf_counter()
    paths = export_variants(variants, args.weights, tmp)
    export_s = time.perf_counter() - t0
    models = {name: p for name, (p, _) in paths.items()}
    if YUNET.is_file():
        models["YuNet-n"] = YUNET
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, 3, H, W)).astype(np.float32)
    sess = {}
    for name, p in models.items():
        sess[name] = session(p, args.threads, spin=not args.no_spin)
        if args.dynamic_too:  # the same graph without pinned shapes: what ONNX Runtime ran before
            sess[name + DYNAMIC] = session(p, args.threads, spin=not args.no_spin, pinned=False)
    # a pinned session takes one frame: a batch runs frame by frame, as the runtime runs it on the CPU
    feeds = {name: [{s.get_inputs()[0].name: x[i : i + 1]} for i in range(len(x))]
             if s.get_inputs()[0].shape[0] == 1 else [{s.get_inputs()[0].name: x}] for name, s in sess.items()}
    for name, s in sess.items():  # warm-up
        for _ in range(3):
            for f in feeds[name]:
                s.run(None, f)
    times: dict[str, list[float]] = {n: [] for n in sess}
    cpu: dict[str, list[float]] = {n: [] for n in sess}
    per_round = args.seconds / max(1, args.rounds)
    for _ in range(args.rounds):
        for name, s in sess.items():
            end = time.perf_counter() + per_round
            while True:
                a, c = time.perf_counter(), time.process_time()
                for f in feeds[name]:
                    s.run(None, f)
                times[name].append((time.perf_counter() - a) * 1e3 / len(x))  # per frame
                cpu[name].append((time.process_time() - c) * 1e3 / len(x))
                if time.perf_counter() > end:
                    break
    res = {
        "threads": args.threads, "input": f"{W}x{H}", "batch": args.batch, "cpu": cpu_name(),
        "python": platform.python_version(),
        "onnxruntime": __import__("onnxruntime").__version__, "load1": os.getloadavg()[0],
        "spin": not args.no_spin,
        "export_s": round(export_s, 2), "models": {},
    }
    y = statistics.median(times["YuNet-n"]) if "YuNet-n" in times else None
    for name, ts in times.items():
        med = statistics.median(ts)
        res["models"][name] = {
            "median_ms": round(med, 2), "p10_ms": round(float(np.percentile(ts, 10)), 2),
            "p90_ms": round(float(np.percentile(ts, 90)), 2), "runs": len(ts),
            "vs_yunet": None if y is None else round(med / y, 2),
            # CPU time of the process per frame: with 1 thread and no spinning this is the work itself,
            # a fair estimate of uncontended single-thread latency on a machine shared with other jobs
            "cpu_ms": round(statistics.median(cpu[name]), 2),
            "gmacs": paths[name.removesuffix(DYNAMIC)][1] if name.removesuffix(DYNAMIC) in paths else None,
        }
    if args.profile:
        pdir = Path(args.profile)
        pdir.mkdir(parents=True, exist_ok=True)
        res["profile"] = {}
        for name, p in models.items():
            s = session(p, args.threads, pdir, spin=not args.no_spin)
            for _ in range(20):
                s.run(None, {s.get_inputs()[0].name: x[:1]})
            res["profile"][name] = [(op, round(f, 3)) for op, f in profile_top(s.end_profiling())]
    return res


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(res: dict) -> str:
    rows = ["| model | GMACs (640x480) | median ms | p10-p90 ms | x YuNet-n | CPU ms/frame | runs |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in res["models"].items():
        g = "- (paper: 0.15 G at 320x320)" if name == "YuNet-n" else (f"{m['gmacs']:.2f}" if m["gmacs"] else "")
        rows.append(f"| {name} | {g} | {m['median_ms']:.1f} | {m['p10_ms']:.1f}-{m['p90_ms']:.1f} | "
                    f"{m['vs_yunet'] if m['vs_yunet'] is not None else '-'} | {m['cpu_ms']:.1f} | {m['runs']} |")
    return "\n".join(rows)


BEGIN, END = "<!-- detector-cpu:begin -->", "<!-- detector-cpu:end -->"


def write_docs(res: dict, path: Path, cmd: str) -> None:
    from docs_section import write_section

    body = (
        f"## Detector speed, CPU (ONNX Runtime)\n\n"
        f"Command: `{cmd}`\n\n"
        f"{res['threads']} intra-op threads{'' if res['spin'] else ' (no spinning)'}, "
        f"one {res['input']} frame (graph time only"
        + (f", per frame of a batch of {res['batch']}" if res["batch"] > 1 else "") + "), ONNX Runtime "
        f"{res['onnxruntime']}, {res['cpu']}, 1-min load average during the run {res['load1']:.1f} "
        "(a shared machine: the ratio to YuNet-n, timed interleaved in the same run, is the robust number). "
        "Target: fsdet-m <= 20 ms.\n\n" + table(res)
    )
    write_section(path, BEGIN, END, body)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-spin", action="store_true", help="ORT worker threads sleep instead of spinning")
    ap.add_argument("--variants", default="fsdet-s,fsdet-m,fsdet-l")
    ap.add_argument("--weights", type=Path, action="append", default=None,
                    help="time this trained file instead of variants (repeat to compare several)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model, over all rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="frames per call: a dynamic session runs them as one "
                    "batch, a pinned one frame by frame (as the CPU runtime does); times are per frame")
    ap.add_argument("--dynamic-too", action="store_true",
                    help="also time each model's session without pinned input shapes (the before row)")
    ap.add_argument("--profile", default=None, help="write ORT profiles here and print the costliest ops")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-docs", action="store_true", help="update the section in docs/benchmarks.md")
    args = ap.parse_args(argv)
    res = run(args)
    print(table(res))
    print(f"\nload average {res['load1']:.1f}; threads {args.threads}; export {res['export_s']} s")
    for name, ops in (res.get("profile") or {}).items():
        print(f"{name}: " + ", ".join(f"{op} {f:.0%}" for op, f in ops))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.write_docs:
        cmd = "python bench/detector_cpu.py " + " ".join(a for a in (argv or sys.argv[1:]) if a != "--write-docs")
        write_docs(res, ROOT / "docs" / "benchmarks.md", cmd.strip())
    target = TARGET_MS.get("fsdet-m")
    m = res["models"].get("fsdet-m")
    if m and target:
        print(f"fsdet-m {m['median_ms']:.1f} ms vs target {target:.0f} ms: "
              f"{'OK' if m['median_ms'] <= target else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
