"""Payload decode -> detector -> map boxes from payload pixels to original pixels -> DetectionEvent.

Pure CPU work, no Redis: ``worker.main`` fetches payloads and hands them here, then publishes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from core.payload import PayloadError, decode_jpegs_on_device, decode_payload
from core.schema import (
    Detection,
    DetectionEvent,
    FrameInfo,
    FrameRef,
    ModelInfo,
    PayloadCodec,
    Timings,
    event_id_for,
)


class DetectorLike(Protocol):
    info: ModelInfo

    def detect(self, images: list[np.ndarray]) -> list[Any]: ...


def payload_to_original(ref: FrameRef, boxes: np.ndarray, landmarks: np.ndarray | None = None):
    """Map (K, 4) xyxy boxes and (K, 10) landmarks from payload pixels to original frame pixels.

    The ingest encoder resizes the whole frame (no crop, no padding), so each axis scales by
    original/payload. Boxes are clipped to the frame; landmarks too (a landmark of a face at the
    edge may fall just outside).
    """
    sx = ref.width / ref.payload_width
    sy = ref.height / ref.payload_height
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    b[:, 0::2] = (b[:, 0::2] * sx).clip(0, ref.width)
    b[:, 1::2] = (b[:, 1::2] * sy).clip(0, ref.height)
    k = None
    if landmarks is not None:
        k = np.asarray(landmarks, np.float64).reshape(len(b), -1).copy()
        k[:, 0::2] = (k[:, 0::2] * sx).clip(0, ref.width)
        k[:, 1::2] = (k[:, 1::2] * sy).clip(0, ref.height)
    return b, k


def detections_to_schema(ref: FrameRef, det: Any) -> list[Detection]:
    """models.facedet.postprocess.Detections (payload px) -> [Detection] (original px)."""
    if det is None or len(det.scores) == 0:
        return []
    boxes, lms = payload_to_original(ref, det.boxes, getattr(det, "landmarks", None))
    out = []
    for i in range(len(boxes)):
        lm = None
        if lms is not None and lms.shape[1] >= 2 and np.any(lms[i]):
            lm = [(round(float(lms[i, j]), 2), round(float(lms[i, j + 1]), 2)) for j in range(0, lms.shape[1], 2)]
        out.append(
            Detection(
                box=tuple(round(float(v), 2) for v in boxes[i]),
                score=min(1.0, max(0.0, round(float(det.scores[i]), 4))),
                landmarks=lm,
            )
        )
    return out


@dataclass
class Work:
    """One frame on its way through the worker."""

    entry: Any  # core.bus.Entry
    ref: FrameRef | None = None
    picked_ns: int = 0  # when the worker picked the frame up (wall clock)
    image: np.ndarray | None = None
    decode_ms: float = 0.0
    detections: Any = None
    infer_ms: float = 0.0
    error: str = ""  # why the frame is dead-lettered ('' = fine)
    extra: dict = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        assert self.ref is not None
        return event_id_for(self.ref.camera_id, self.ref.seq, self.ref.source.run_id)


class Pipeline:
    """Decode + batched inference + event building for one worker."""

    def __init__(self, detector: DetectorLike, worker_id: str, gpu_decode: bool = True):
        self.detector = detector
        self.worker_id = worker_id
        rt = getattr(detector, "runtime", None)
        # JPEG batches decode on the GPU when the detector letterboxes there too (torch on CUDA)
        self.decode_device = (getattr(rt, "dev", None) if gpu_decode and getattr(rt, "device_preprocess", False)
                              and str(getattr(rt, "device", "cpu")).startswith("cuda") else None)

    @property
    def model_info(self) -> ModelInfo:
        return self.detector.info

    def decode(self, work: Work, payload: bytes) -> None:
        t0 = time.perf_counter()
        try:
            work.image = decode_payload(payload, work.ref.codec, work.ref.payload_width, work.ref.payload_height)
        except PayloadError as exc:
            work.error = f"decode_error: {exc}"
        except Exception as exc:  # cv2 raises cv2.error on some garbage
            work.error = f"decode_error: {type(exc).__name__}: {exc}"
        work.decode_ms = (time.perf_counter() - t0) * 1000

    def decode_batch(self, items: Sequence[tuple[Work, bytes]]) -> None:
        """Decode every payload: one nvJPEG batch on the GPU when possible, else (or when any payload in
        the batch is bad) one by one on the CPU, which marks exactly the bad ones."""
        jpeg = [(w, p) for w, p in items if w.ref.codec is PayloadCodec.jpeg]
        if self.decode_device is not None and jpeg:
            t0 = time.perf_counter()
            try:
                imgs = decode_jpegs_on_device([p for _, p in jpeg], self.decode_device)
            except Exception:
                imgs = None
            if imgs is not None:
                ms = (time.perf_counter() - t0) * 1000 / len(jpeg)
                for (w, _), im in zip(jpeg, imgs, strict=True):
                    h, wd = int(im.shape[0]), int(im.shape[1])
                    if (wd, h) != (w.ref.payload_width, w.ref.payload_height):
                        w.error = (f"decode_error: payload is {wd}x{h}, FrameRef says "
                                   f"{w.ref.payload_width}x{w.ref.payload_height}")
                    else:
                        w.image = im
                    w.decode_ms = ms
                items = [(w, p) for w, p in items if w.ref.codec is not PayloadCodec.jpeg]
        for w, p in items:
            self.decode(w, p)

    def infer(self, works: Sequence[Work]) -> float:
        """Run the detector on every decoded frame in ``works`` as one batch; returns infer ms.

        If the batch raises, frames are retried one by one: a frame that fails alone is marked
        with ``error`` (dead-lettered by the caller). If every frame fails alone too, the detector
        itself is broken: the exception propagates (frames stay pending and are redelivered).
        """
        todo = [w for w in works if w.image is not None and not w.error]
        if not todo:
            return 0.0
        t0 = time.perf_counter()
        try:
            dets = self.detector.detect([w.image for w in todo])
            if len(dets) != len(todo):
                raise RuntimeError(f"detector returned {len(dets)} results for {len(todo)} images")
        except Exception:
            dets = []
            failures: list[Exception] = []
            for w in todo:
                try:
                    dets.append(self.detector.detect([w.image])[0])
                except Exception as exc:
                    failures.append(exc)
                    dets.append(None)
                    w.error = f"infer_error: {type(exc).__name__}: {exc}"
            if len(failures) == len(todo):
                for w in todo:
                    w.error = ""
                raise failures[0] from None
        ms = (time.perf_counter() - t0) * 1000
        for w, d in zip(todo, dets, strict=True):
            if not w.error:
                w.detections = d
                w.infer_ms = ms
        return ms

    def event(self, work: Work, now_ns: int | None = None) -> DetectionEvent:
        ref = work.ref
        assert ref is not None
        now_ns = time.time_ns() if now_ns is None else now_ns
        det = work.detections
        return DetectionEvent(
            event_id=work.event_id,
            camera_id=ref.camera_id,
            source=ref.source,
            frame=FrameInfo(
                seq=ref.seq,
                pts=ref.pts,
                time_base=ref.time_base,
                capture_ns=ref.capture_ns,
                width=ref.width,
                height=ref.height,
            ),
            detections=detections_to_schema(ref, det),
            model=self.detector.info,
            timings_ms=Timings(
                decode=round(work.decode_ms, 3),
                queue=round(max(0, work.picked_ns - ref.capture_ns) / 1e6, 3),
                infer=round(work.infer_ms, 3),
                total=round(max(0, now_ns - ref.capture_ns) / 1e6, 3),
            ),
            worker_id=self.worker_id,
            truncated=int(getattr(det, "truncated", 0) or 0),
        )
