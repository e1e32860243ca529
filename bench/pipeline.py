"""Pipeline benchmark: N RTSP cameras (720p, 25 fps, detect at 5 fps) -> one `facestream ingest` ->
one `facestream worker` -> events. Reports sustained events/s, capture-to-event latency p50/p99,
stale drops (worker: expired payload / too old; ingest: queue_full / stale), CPU per camera.

    .venv/bin/python bench/pipeline.py --cameras 1,2,4,6,8 --warmup 8 --measure 20 [--markdown]

The RTSP server is testkit' GStreamer server (one process, one pipeline per client). Cameras
are added one step at a time to the running ingest + worker (same processes for every N): each step
waits ``--warmup`` seconds, then measures ``--measure`` seconds. Weights: models/weights/fsdet-m
(shipped) if present, else a random fsdet-m (same speed). Everything runs under a fresh key prefix
on the configured Redis (FACESTREAM_REDIS__URL), deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import bus  # noqa: E402
from core.keys import Keys  # noqa: E402
from core.schema import DetectionEvent  # noqa: E402
from core.settings import get_settings  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def top_processes(n: int = 5) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pcpu,comm,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return [" ".join(line.split()[:4])[:100] for line in out.splitlines()[1 : n + 1]]


def weights_path(tmp: Path) -> tuple[str, str]:
    shipped = ROOT / "models/weights/fsdet-m.safetensors"
    if shipped.is_file():
        return str(shipped), "shipped fsdet-m"
    import torch

    from models.facedet.config import get_config
    from models.facedet.network import build_model
    from models.facedet.weights import save_weights

    torch.manual_seed(0)
    p = save_weights(build_model(get_config("fsdet-m")), tmp / "fsdet-m-random.safetensors")
    return str(p), "random fsdet-m (no shipped weights yet; same speed)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", default="1,2,4,6,8")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--measure", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--detect-fps", type=float, default=5.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--footage", type=Path, default=None,
                    help="serve this real clip (e.g. ../shared/data/videos/street-1080p.mp4) instead of the "
                         "synthetic pattern, transcoded to --height (1080: as is); also measures the decode-bound "
                         "limit (bare decode fps per core x cores / clip fps) in the same run")
    ap.add_argument("--json", dest="json_out", default=None, help="write the results here")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    steps = sorted({int(x) for x in args.cameras.split(",")})

    from testkit.clips import make_clip
    from testkit.rtsp import RtspServer

    settings = get_settings()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    r = bus.connect(settings.redis.model_copy(update={"prefix": prefix}))
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-"))
    weights, weights_desc = weights_path(tmp)
    print(f"weights: {weights_desc}; prefix {prefix}; load before: {os.getloadavg()}", flush=True)
    load_before = os.getloadavg()
    top_before = top_processes()
    decode_limit = None
    if args.footage:
        import importlib.util  # bench/ingest.py's transcode and bare decode (a file, not the ingest package)

        spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
        bi = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bi)
        src = args.footage
        cache = Path("/tmp/facestream-bench")
        cache.mkdir(exist_ok=True)
        clip_path = src if args.height >= 1080 else bi.transcode(src, cache / f"{src.stem}-{args.height}p.mp4",
                                                                   args.height)
        n_dec, _, cpu = bi.bare_decode(str(clip_path), "SLICE", 1)
        fps_core = n_dec / cpu
        decode_limit = {"bare_decode_fps_per_core": round(fps_core, 1),
                        "limit_cameras": round(fps_core * (os.cpu_count() or 1) / args.fps, 2)}
        print(f"decode-bound limit: {decode_limit}", flush=True)
    else:
        clip_path = make_clip(tmp / "cam720.mp4", frames=10 * args.fps, fps=args.fps, width=args.width,
                              height=args.height).path
    server = RtspServer(clip_path, shared=False).start()

    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    env.update({
        "FACESTREAM_REDIS__URL": settings.redis.url, "FACESTREAM_REDIS__PREFIX": prefix,
        "FACESTREAM_WORKER__WEIGHTS": weights, "FACESTREAM_WORKER__RUNTIME": "onnx",
        "FACESTREAM_WORKER__DEVICE": "cpu", "FACESTREAM_WORKER__HTTP_PORT": "0",
        "FACESTREAM_WORKER__MAX_BATCH": str(args.max_batch), "FACESTREAM_WORKER__WORKER_ID": "bench-worker",
        "FACESTREAM_WORKER__HEARTBEAT_INTERVAL_MS": "500", "FACESTREAM_INGEST__HTTP_PORT": "0",
        "FACESTREAM_LOG__LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
    })
    fs = [sys.executable, "-m", "facestream.cli"]
    logs = {name: open(tmp / f"{name}.log", "wb") for name in ("ingest", "worker")}  # noqa: SIM115
    worker = subprocess.Popen([*fs, "worker"], env=env, cwd=ROOT, stdout=logs["worker"], stderr=subprocess.STDOUT)
    ingest = subprocess.Popen([*fs, "ingest"], env=env, cwd=ROOT, stdout=logs["ingest"], stderr=subprocess.STDOUT)
    results = []
    try:
        deadline = time.monotonic() + 180
        while not r.exists(keys.worker_heartbeat("bench-worker")):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("worker did not start: " + (tmp / "worker.log").read_text()[-2000:])
            time.sleep(0.2)
        from ingest.registry import Registry

        reg = Registry(r, keys)
        n_now = 0
        for n in steps:
            while n_now < n:
                reg.add(f"cam{n_now}", server.url, fps=args.detect_fps, detect_size=640)
                n_now += 1
            time.sleep(args.warmup)
            res = measure(r, keys, n, args.measure, worker.pid, ingest.pid, reg)
            results.append(res)
            print(json.dumps(res), flush=True)
    finally:
        for p in (ingest, worker):
            p.send_signal(signal.SIGTERM)
        for p in (ingest, worker):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()
        bus.delete_prefix(r, prefix)
    load_after = os.getloadavg()
    meta = {"weights": weights_desc, "load_before": load_before, "load_after": load_after,
            "top_before": top_before, "cores": os.cpu_count(),
            "clip": (f"{args.footage.name} at {args.height}p" if args.footage
                     else f"{args.width}x{args.height}@{args.fps}"),
            "decode_limit": decode_limit,
            "detect_fps": args.detect_fps, "max_batch": args.max_batch}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if args.markdown:
        print(markdown(results, meta))
    return 0


def measure(r, keys: Keys, n: int, seconds: float, worker_pid: int, ingest_pid: int, reg) -> dict:
    hb0 = r.hgetall(keys.worker_heartbeat("bench-worker"))
    drops0 = {s.camera_id: s.drops for s in reg.statuses()}
    last = r.xrevrange(keys.events, count=1)
    last_id = last[0][0] if last else b"0-0"
    c0 = (cpu_s(worker_pid), cpu_s(ingest_pid), time.monotonic())
    time.sleep(seconds)
    c1 = (cpu_s(worker_pid), cpu_s(ingest_pid), time.monotonic())
    hb1 = r.hgetall(keys.worker_heartbeat("bench-worker"))
    drops1 = {s.camera_id: s.drops for s in reg.statuses()}
    rows = r.xrange(keys.events, min=f"({last_id.decode()}")
    evs = [DetectionEvent.from_fields(f) for _, f in rows]
    wall = c1[2] - c0[2]
    lat = np.array([e.timings_ms.total for e in evs]) if evs else np.array([np.nan])
    inf = np.array([e.timings_ms.infer for e in evs]) if evs else np.array([np.nan])

    def d(key: str) -> int:
        return int(hb1.get(key.encode(), 0)) - int(hb0.get(key.encode(), 0))

    if not hb0 or not hb1:
        print("warning: worker heartbeat missing (starved worker?): worker counters unknown", flush=True)
    worker_stale = d("stale_expired") + d("stale_too_old")
    ingest_drops = sum(drops1.get(c, 0) - drops0.get(c, 0) for c in drops1)
    batches = d("batches")
    return {
        "cameras": n,
        "events_per_s": round(len(evs) / wall, 2),
        "expected_per_s": n * 5.0,
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1),
        "infer_p50_ms": round(float(np.percentile(inf, 50)), 1),
        "mean_batch": round(d("events") / batches, 2) if batches else 0,
        "worker_stale_drops": worker_stale,
        "ingest_drops": ingest_drops,
        "worker_cpu_pct": round(100 * (c1[0] - c0[0]) / wall, 1),
        "ingest_cpu_pct": round(100 * (c1[1] - c0[1]) / wall, 1),
        "cpu_pct_per_camera": round(100 * ((c1[0] - c0[0]) + (c1[1] - c0[1])) / wall / n, 1),
        # load-independent cost: worker CPU per event (ms of one core)
        "worker_cpu_ms_per_event": round(1000 * (c1[0] - c0[0]) / len(evs), 1) if evs else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "| cameras | events/s (expected) | latency p50 / p99 ms | inference p50 ms (batch) | mean batch | "
        "stale drops worker / ingest | CPU % worker / ingest | CPU % per camera | worker CPU ms/event | "
        "load 1m | holds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in results:
        holds = x["worker_stale_drops"] == 0 and x["ingest_drops"] == 0 and x["latency_p99_ms"] <= 300
        lines.append(
            f"| {x['cameras']} | {x['events_per_s']} ({x['expected_per_s']:g}) | {x['latency_p50_ms']} / "
            f"{x['latency_p99_ms']} | {x['infer_p50_ms']} | {x['mean_batch']} | {x['worker_stale_drops']} / "
            f"{x['ingest_drops']} | {x['worker_cpu_pct']} / {x['ingest_cpu_pct']} | {x['cpu_pct_per_camera']} | "
            f"{x['worker_cpu_ms_per_event']} | {x['load_avg_1m']} | {'yes' if holds else 'no'} |"
        )
    lim = meta.get("decode_limit")
    if lim:
        held = [x["cameras"] for x in results if x["worker_stale_drops"] == 0 and x["ingest_drops"] == 0
                and x["latency_p99_ms"] <= 300]
        best = max(held, default=0)
        lines.append(f"\nClip {meta['clip']}: bare decode {lim['bare_decode_fps_per_core']} fps per core -> "
                     f"decode-bound limit {lim['limit_cameras']} cameras on {meta['cores']} cores; largest N that "
                     f"holds: {best} = {best / lim['limit_cameras']:.2f} of the limit (target >= 0.8).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
