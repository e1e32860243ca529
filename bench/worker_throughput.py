"""One worker, end to end from Redis: events/s on a backlog, and queue-to-event latency at a paced load.

    .venv/bin/python bench/worker_throughput.py [--cameras 8] [--frames 40] [--rate 0.5] [--runtime auto]
        [--device auto] [--max-batch 8] [--json out.json]

Payloads are JPEG frames of real footage (the bundled clip, 640x360, as ingest publishes them), one
FrameRef per frame on the live stream, exactly what `facestream ingest` writes. Two phases, same worker
(`worker.main.Worker`, in this process, its own thread), under a fresh key prefix deleted afterwards:

- backlog: cameras x frames already queued; events/s = frames / time until the last event is published.
- paced: the same cameras at `rate` x the backlog throughput (frames spread evenly, each stamped with its
  capture time when it is queued); p50 / p99 of capture -> event published (the event's timings.total).

CPU and GPU alike: the runtime and device are settings (`--runtime torch --device cuda` on a GPU host).
Needs Redis on FACESTREAM_REDIS__URL (default 127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import bus  # noqa: E402
from core.keys import Keys  # noqa: E402
from core.schema import DetectionEvent, FrameRef, PayloadCodec, Source  # noqa: E402
from core.settings import IngestSettings, RedisSettings, Settings, WorkerSettings  # noqa: E402

CLIP = ROOT / "facestream/assets/face-demographics-walking-and-pause.mp4"


def payloads(n: int) -> list[tuple[bytes, int, int]]:
    import cv2

    from core.video import iter_video_frames

    _, frames = iter_video_frames(CLIP, every=5)
    out = []
    for f in frames:
        img = cv2.resize(f.bgr, (640, 360), interpolation=cv2.INTER_AREA)
        out.append((cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), 640, 360))
        if len(out) >= n:
            break
    return out


def queue(r, keys: Keys, cam: str, seq: int, payload: tuple[bytes, int, int], ttl_ms: int = 600_000) -> None:
    data, w, h = payload
    key = keys.frame(cam, seq)
    ref = FrameRef(camera_id=cam, seq=seq, pts=seq * 18000, time_base="1/90000", capture_ns=time.time_ns(),
                   width=1280, height=720, payload_width=w, payload_height=h, codec=PayloadCodec.jpeg, key=key,
                   source=Source())
    pipe = r.pipeline(transaction=False)
    pipe.set(key, data, px=ttl_ms)
    pipe.xadd(keys.frames, ref.to_fields())
    pipe.execute()


def events(r, keys: Keys) -> list[DetectionEvent]:
    return [DetectionEvent.from_fields(f) for _, f in r.xrange(keys.events)]


def run(a, depth: int, pin: bool = True) -> dict:
    from worker.loading import load_worker_detector
    from worker.main import Worker

    prefix = f"bench-wt-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        redis=RedisSettings(prefix=prefix),
        worker=WorkerSettings(runtime=a.runtime, device=a.device, max_batch=a.max_batch, max_wait_ms=a.max_wait_ms,
                              http_port=0, threads=a.threads, max_frame_age_ms=600_000, pipeline_depth=depth,
                              pin_shapes=pin),
        ingest=IngestSettings(max_frame_age_ms=600_000),
    )
    keys = Keys(prefix)
    r = bus.connect(settings.redis)
    pl = payloads(32)
    det = load_worker_detector(settings)
    stop = threading.Event()
    worker = Worker(settings, detector=det, idle_block_ms=50)
    th = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    res: dict = {"runtime": det.info.runtime, "device": str(getattr(det.runtime, "device", "cpu")),
                 "precision": det.info.precision, "cameras": a.cameras, "max_batch": a.max_batch,
                 "pipeline_depth": depth, "pin_shapes": pin,
                 "python": platform.python_version(), "load1_start": os.getloadavg()[0]}
    try:
        th.start()
        assert worker.ready.wait(120), "worker did not start"
        # backlog
        total = a.cameras * a.frames
        for s in range(a.frames):
            for c in range(a.cameras):
                queue(r, keys, f"cam{c}", s, pl[(s + c) % len(pl)])
        t0 = time.perf_counter()
        while r.xlen(keys.events) < total:
            if time.perf_counter() - t0 > a.timeout:
                raise SystemExit(f"backlog: only {r.xlen(keys.events)} of {total} events in {a.timeout} s")
            time.sleep(0.005)
        dt = time.perf_counter() - t0
        res["backlog"] = {"frames": total, "seconds": round(dt, 3), "events_per_s": round(total / dt, 1)}
        r.delete(keys.events)
        # paced at `rate` x the backlog throughput
        eps = a.rate * total / dt
        n = max(a.cameras, int(eps * a.paced_seconds))
        gap = 1.0 / eps
        t0 = time.perf_counter()
        for i in range(n):
            while time.perf_counter() < t0 + i * gap:
                time.sleep(min(0.002, gap / 4))
            queue(r, keys, f"cam{i % a.cameras}", a.frames + i // a.cameras, pl[i % len(pl)])
        deadline = time.perf_counter() + a.timeout
        while r.xlen(keys.events) < n and time.perf_counter() < deadline:
            time.sleep(0.01)
        lat = np.array([e.timings_ms.total for e in events(r, keys)])
        res["paced"] = {"target_events_per_s": round(eps, 1), "frames": n, "events": len(lat),
                        "p50_ms": round(float(np.percentile(lat, 50)), 1),
                        "p99_ms": round(float(np.percentile(lat, 99)), 1)}
        res["load1_end"] = os.getloadavg()[0]
    finally:
        stop.set()
        th.join(30)
        for k in r.scan_iter(f"{prefix}:*"):
            r.delete(k)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--frames", type=int, default=40, help="Backlog frames per camera.")
    ap.add_argument("--rate", type=float, default=0.5, help="Paced load as a fraction of the backlog rate.")
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--pipeline-depth", default="2",
                    help="comma list: each depth gets its own worker, run one after the other in this process "
                         "(1,2: the sequential loop beside the pipelined one)")
    ap.add_argument("--pin-shapes", default="1",
                    help="comma list of 1/0 (FACESTREAM_WORKER__PIN_SHAPES), each with every depth: 0,1 times the "
                         "dynamic ONNX session beside the pinned ones")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = [run(a, int(d), bool(int(p))) for p in a.pin_shapes.split(",") for d in a.pipeline_depth.split(",")]
    print(json.dumps(res, indent=2))
    print("| pipeline depth | pinned shapes | runtime | backlog events/s | x first | paced events/s | p50 / p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in res:
        print(f"| {r['pipeline_depth']} | {'yes' if r['pin_shapes'] else 'no'} | {r['runtime']} {r['device']} | "
              f"{r['backlog']['events_per_s']} | "
              f"{r['backlog']['events_per_s'] / res[0]['backlog']['events_per_s']:.2f} | "
              f"{r['paced']['target_events_per_s']} | {r['paced']['p50_ms']} / {r['paced']['p99_ms']} |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
