"""Generate short H.264 clips with PyAV: known frame count, fps, size and PTS.

With ``content="index"`` (default) every frame carries its index as a row of 16 black/white blocks
(``read_index(frame_bgr)`` recovers it after lossy coding), over a moving gradient so the encoder has
real work. ``content="gray"`` gives flat frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_BITS = 16


@dataclass
class Clip:
    path: Path
    frames: int
    fps: int
    width: int
    height: int
    time_base: Fraction
    pts: list[int] = field(default_factory=list)  # per frame, in time_base units
    gop: int = 0

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def _block(width: int) -> int:
    return max(4, width // (INDEX_BITS + 2))


def draw_index(img: np.ndarray, index: int) -> None:
    """Write ``index`` into the top rows as INDEX_BITS black/white blocks (MSB first)."""
    b = _block(img.shape[1])
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        x0 = b + bit * b
        img[0:b, x0 : x0 + b] = 255 if on else 0


def read_index(img: np.ndarray) -> int:
    """Inverse of draw_index on a decoded (bgr24 or gray) frame of the same size."""
    b = _block(img.shape[1])
    gray = img if img.ndim == 2 else img.mean(axis=2)
    value = 0
    for bit in range(INDEX_BITS):
        x0 = b + bit * b
        cell = gray[b // 4 : b - b // 4, x0 + b // 4 : x0 + b - b // 4]
        value = (value << 1) | int(cell.mean() > 127)
    return value


def make_clip(path: str | Path, frames: int = 50, fps: int = 25, width: int = 320, height: int = 240,
              content: str = "index", gop: int | None = None, crf: int = 23,
              container: str | None = None) -> Clip:
    """Encode ``frames`` frames of H.264 (yuv420p, no B-frames, keyframe every ``gop``, default 1 s)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gop = gop or fps
    clip = Clip(path, frames, fps, width, height, Fraction(1, fps * 1000), gop=gop)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = clip.time_base
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = 0
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": str(crf),
                          "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:sliced-threads=0:threads=1"}
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            if content == "gray":
                img = np.full((height, width, 3), 128, np.uint8)
            else:
                g = ((xx + yy + i * 4) % 256).astype(np.uint8)
                img = np.stack([g, np.full_like(g, 96), 255 - g], axis=2)
                img[: _block(width) + 2] = 128
                draw_index(img, i)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i * (clip.time_base.denominator // fps) // clip.time_base.numerator
            frame.time_base = clip.time_base
            clip.pts.append(frame.pts)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return clip
