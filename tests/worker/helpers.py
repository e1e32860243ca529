"""Test helpers for the worker: publish FrameRefs the way ingest does (payload SET PX + XADD)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import cv2
import numpy as np

from core.keys import Keys
from core.schema import FrameRef, PayloadCodec, Source
from testkit import wait_for  # noqa: F401  (re-exported for the tests here)


def face_like_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(w, h) // 5, (150, 180, 220), -1)
    return img


def publish_frame(
    r: Any,
    keys: Keys,
    cam: str,
    seq: int,
    image: np.ndarray | None = None,
    *,
    original: tuple[int, int] | None = None,
    codec: str = "jpeg",
    ttl_ms: int = 10_000,
    run_id: str | None = None,
    capture_ns: int | None = None,
    payload: bytes | None = None,
    maxlen: int = 10_000,
) -> FrameRef:
    """SET the payload (TTL) and XADD its FrameRef; ``payload`` overrides the encoded image (poison)."""
    if image is None:
        image = face_like_image(160, 120, seed=seq)
    ph, pw = image.shape[:2]
    ow, oh = original or (pw, ph)
    if payload is None:
        if codec == "jpeg":
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            payload = buf.tobytes()
        else:
            payload = np.ascontiguousarray(image).tobytes()
    key = keys.frame(cam, seq, run_id)
    ref = FrameRef(
        camera_id=cam,
        seq=seq,
        pts=seq * 3600,
        time_base="1/90000",
        capture_ns=capture_ns if capture_ns is not None else time.time_ns(),
        width=ow,
        height=oh,
        payload_width=pw,
        payload_height=ph,
        codec=PayloadCodec(codec),
        key=key,
        source=Source(kind="replay", run_id=run_id) if run_id else Source(),
    )
    pipe = r.pipeline(transaction=False)
    pipe.set(key, payload, px=ttl_ms)
    pipe.xadd(keys.frames_stream(ref.source.kind), ref.to_fields(), maxlen=maxlen, approximate=False)
    pipe.execute()
    return ref


def read_events(r: Any, stream: str) -> list:
    from core.schema import DetectionEvent

    return [DetectionEvent.from_fields(f) for _, f in r.xrange(stream)]




def pending_count(r: Any, keys: Keys) -> int:
    """Entries delivered and not acked, live and replay streams together."""
    from redis.exceptions import ResponseError

    n = 0
    for stream in (keys.frames, keys.frames_replay):
        if r.exists(stream):
            with contextlib.suppress(ResponseError):  # no group on it yet
                n += int(r.xpending(stream, keys.worker_group)["pending"])
    return n
