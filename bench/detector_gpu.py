"""GPU throughput of FSDet in PyTorch: fp16, channels_last, CUDA graphs, 640x640, batch 1/8/32/128.

    python bench/detector_gpu.py --out results.json [--variants fsdet-s,fsdet-m,fsdet-l]
        [--batches 1,8,32,128] [--iters 200] [--warmup 20] [--weights W.safetensors] [--no-graphs]

Self-contained: needs only torch and this repository's `models/` package. Random-init weights (speed does
not depend on them) unless --weights is given. Times the serving runtime (TorchRuntime.infer_tensor: a device
tensor in, with CUDA graphs copied into the graph's static input as serving does; device tensors out; no host
copies or NMS), with torch.cuda.synchronize() around the timed loop. Prints a markdown table
(with the card name) and writes JSON to --out. Without CUDA it runs on CPU in fp32 with a warning (for
checking the script; numbers are not GPU numbers).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_one(rt, batch: int, size: int, iters: int, warmup: int, height: int | None = None) -> dict:
    """Time `rt.infer_tensor` (models.runtimes.torch_rt.TorchRuntime: the serving runtime, its fp16,
    channels_last and CUDA-graph capture) on one device batch."""
    import torch

    device = rt.dev
    x = (torch.rand(batch, 3, height or size, size, device=device) * 255).to(rt.dtype)
    with torch.inference_mode():
        for _ in range(warmup):
            rt.infer_tensor(x)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            rt.infer_tensor(x)
        sync()
        dt = time.perf_counter() - t0
    return {"batch": batch, "ms_per_batch": 1e3 * dt / iters, "frames_per_s": batch * iters / dt,
            "mem_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON results path")
    ap.add_argument("--variants", default="fsdet-s,fsdet-m,fsdet-l")
    ap.add_argument("--weights", type=Path, default=None, help="time this trained file instead of variants")
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--size", type=int, default=640, help="input width (and height unless --height)")
    ap.add_argument("--height", type=int, default=None, help="input height (640x384: --size 640 --height 384)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--fp32", action="store_true")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    import torch

    from models.facedet.weights import load_model, random_model

    cuda = torch.cuda.is_available() and (args.device is None or args.device.startswith("cuda"))
    if not cuda:
        warnings.warn("CUDA is not available: running on CPU in fp32 without CUDA graphs "
                      "(a script check, not a GPU number)", stacklevel=1)
    device = torch.device(args.device or ("cuda" if cuda else "cpu"))
    fp16 = cuda and not args.fp32
    graphs = cuda and not args.no_graphs
    if cuda:
        torch.backends.cudnn.benchmark = True
    card = torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    models = {}
    if args.weights:
        m, meta = load_model(args.weights)
        models[meta.name] = m
    else:
        for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
            models[v] = random_model(v, spread=False)
    batches = [int(b) for b in args.batches.split(",")]
    results = []
    from models.runtimes.torch_rt import TorchRuntime

    for name, m in models.items():
        rt = TorchRuntime(m, device=str(device), fp16=fp16, channels_last=cuda, cuda_graphs=graphs,
                          max_graphs=len(batches) + 1)
        for b in batches:
            try:
                r = bench_one(rt, b, args.size, args.iters, args.warmup, args.height)
            except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - GPU only
                r = {"batch": b, "error": f"OOM: {exc}"}
                torch.cuda.empty_cache()
            r["model"] = name
            results.append(r)
            print(f"{name} batch {b}: {r.get('frames_per_s', float('nan')):.0f} frames/s", file=sys.stderr)
        del m
        if cuda:
            torch.cuda.empty_cache()
    doc = {
        "card": card, "device": str(device), "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None, "precision": "fp16" if fp16 else "fp32",
        "channels_last": cuda, "cuda_graphs": graphs, "size": args.size,
        "height": args.height or args.size, "iters": args.iters,
        "warmup": args.warmup, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"\n{card}, torch {torch.__version__}, {doc['precision']}, channels_last={cuda}, "
          f"CUDA graphs={graphs}, {args.size}x{args.height or args.size}, {args.iters} iterations after "
          f"{args.warmup} warm-up\n")
    print("| model | " + " | ".join(f"batch {b} frames/s" for b in batches) + " |")
    print("| --- |" + " --- |" * len(batches))
    for name in models:
        cells = []
        for b in batches:
            r = next(r for r in results if r["model"] == name and r["batch"] == b)
            cells.append(f"{r['frames_per_s']:,.0f}" if "frames_per_s" in r else "OOM")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
