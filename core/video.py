"""The one way to read frames of a video file (PyAV, the decoder ingest uses, so frame indices and PTS agree
with a replay): `facestream detect`, `label --video`, footage labels, INT8 calibration and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class VideoFrame:
    index: int  # 0-based, presentation order
    pts: int | None
    t: float | None  # seconds
    bgr: np.ndarray


def iter_video_frames(path: str | Path, every: int = 1) -> tuple[dict, Iterator[VideoFrame]]:
    """Open a video with PyAV (the decoder ingest uses, so indices and PTS agree with a replay).

    Returns (info {width, height, fps, time_base, frames}, iterator over every ``every``-th frame).
    """
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame threads; frames still come out in presentation order
    rate = stream.average_rate or stream.guessed_rate
    info = {"width": stream.codec_context.width, "height": stream.codec_context.height,
            "fps": float(rate) if rate else 0.0, "time_base": stream.time_base,
            "frames": int(stream.frames or 0) or None}

    def gen() -> Iterator[VideoFrame]:
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % every:
                    continue
                pts = frame.pts
                tb = frame.time_base or stream.time_base
                t = float(pts * tb) if pts is not None and tb else None
                yield VideoFrame(i, pts, t, frame.to_ndarray(format="bgr24"))
        finally:
            container.close()

    return info, gen()
