"""Resize a decoded frame so its long side is the detect size, and encode it (JPEG or raw BGR).

The resize and the YUV->BGR conversion happen in one swscale pass inside PyAV (``to_ndarray(width=,
height=, format="bgr24")``), about 2 ms for 1080p -> 640x360, against ~12 ms for a full-size BGR
conversion followed by cv2.resize. Frames are never upscaled: a source smaller than the detect size
is published at its own size (the worker letterboxes anyway; upscaling adds bytes, not information).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.schema import PayloadCodec


@dataclass
class EncodedFrame:
    data: bytes
    width: int  # payload size
    height: int
    codec: PayloadCodec
    encode_ms: float = 0.0


def target_size(width: int, height: int, detect_size: int) -> tuple[int, int]:
    """(w, h) with the long side = detect_size (never larger than the source), even numbers."""
    long_side = max(width, height)
    if long_side <= detect_size:
        return width, height
    scale = detect_size / long_side
    w = max(2, round(width * scale))
    h = max(2, round(height * scale))
    if width >= height:
        w = detect_size
    else:
        h = detect_size
    return w - (w % 2) if w > 2 else w, h - (h % 2) if h > 2 else h


_I420 = ("yuv420p", "yuvj420p")


def _halve_i420(frame, tw: int, th: int) -> np.ndarray:
    """Exact 2x downscale of a YUV 4:2:0 frame: cv2 INTER_AREA on each plane (a SIMD 2x2 box average),
    then I420 -> BGR at the small size. 720p -> 640x360 in ~0.3 ms against ~2.9 ms through swscale's
    area filter (which is the faster path for other ratios, e.g. 1080p -> 640x360: 1.7 ms)."""
    n = tw * th
    buf = np.empty(n * 3 // 2, np.uint8)  # I420: Y, then U, then V (tw, th even)
    cv2.resize(_plane(frame, 0, frame.width, frame.height), (tw, th), dst=buf[:n].reshape(th, tw),
               interpolation=cv2.INTER_AREA)
    cw, ch = tw // 2, th // 2
    for k, off in ((1, n), (2, n + cw * ch)):
        cv2.resize(_plane(frame, k, frame.width // 2, frame.height // 2), (cw, ch),
                   dst=buf[off : off + cw * ch].reshape(ch, cw), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(buf.reshape(th * 3 // 2, tw), cv2.COLOR_YUV2BGR_I420)


def _plane(frame, i: int, w: int, h: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(h, p.line_size)[:, :w]


class Encoder:
    def __init__(self, detect_size: int = 640, codec: PayloadCodec | str = PayloadCodec.jpeg,
                 jpeg_quality: int = 90, interpolation: str = "AREA"):
        self.detect_size = int(detect_size)
        self.codec = PayloadCodec(codec)
        self.jpeg_quality = int(jpeg_quality)
        self.interpolation = interpolation

    def to_bgr(self, frame) -> np.ndarray:
        """An av.VideoFrame (or a BGR ndarray) resized to the detect size, as a BGR ndarray."""
        if isinstance(frame, np.ndarray):
            h, w = frame.shape[:2]
            tw, th = target_size(w, h, self.detect_size)
            if (tw, th) == (w, h):
                return frame
            return cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
        tw, th = target_size(frame.width, frame.height, self.detect_size)
        if (tw, th) == (frame.width, frame.height):
            return frame.to_ndarray(format="bgr24")
        if frame.width == 2 * tw and frame.height == 2 * th and frame.format.name in _I420:
            return _halve_i420(frame, tw, th)
        return frame.to_ndarray(width=tw, height=th, format="bgr24", interpolation=self.interpolation)

    def encode_bgr(self, bgr: np.ndarray) -> EncodedFrame:
        h, w = bgr.shape[:2]
        if self.codec is PayloadCodec.raw:
            return EncodedFrame(np.ascontiguousarray(bgr).tobytes(), w, h, self.codec)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:  # pragma: no cover - cv2 fails only on empty input
            raise ValueError("JPEG encoding failed")
        return EncodedFrame(buf.tobytes(), w, h, self.codec)

    def encode(self, frame) -> EncodedFrame:
        import time

        t0 = time.perf_counter()
        out = self.encode_bgr(self.to_bgr(frame))
        out.encode_ms = (time.perf_counter() - t0) * 1000.0
        return out
