"""Letterbox: resize keeping aspect so the long side is `input_size`, pad right/bottom to a multiple
of the largest stride. Boxes map back with `Letterbox.to_original`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 0  # training pads crops with the same value


@dataclass(frozen=True)
class Letterbox:
    scale: float  # input pixels per original pixel
    width: int  # original size
    height: int

    def to_original(self, boxes: np.ndarray, landmarks: np.ndarray | None = None):
        """Boxes (K, 4) xyxy and landmarks (K, 10) from network input pixels to original pixels."""
        b = boxes / self.scale
        b[:, 0::2] = b[:, 0::2].clip(0, self.width)
        b[:, 1::2] = b[:, 1::2].clip(0, self.height)
        k = None if landmarks is None else landmarks / self.scale
        return b, k


def scaled_size(w: int, h: int, scale: float, multiple: int = 32) -> tuple[int, int, int, int]:
    """Resized w/h at `scale`, and padded w/h (multiples of `multiple`)."""
    rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
    return rw, rh, -(-rw // multiple) * multiple, -(-rh // multiple) * multiple


def padded_size(w: int, h: int, input_size: int, multiple: int = 32) -> tuple[float, int, int, int, int]:
    """scale, resized w/h, padded w/h when the long side becomes `input_size`."""
    scale = input_size / max(w, h)
    return (scale, *scaled_size(w, h, scale, multiple))


def resize_pad(image: np.ndarray, scale: float, multiple: int = 32, fixed: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 resized by `scale` (cv2 bilinear), zero-padded right/bottom to a multiple of `multiple` or to
    the `fixed` (w, h) canvas of a fixed-input model; and the mapping back."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image HxWx3, got shape {image.shape}")
    h, w = image.shape[:2]
    rw, rh, pw, ph = scaled_size(w, h, scale, multiple)
    if fixed is not None:
        pw, ph = fixed
    resized = image if (rw, rh) == (w, h) else cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
    out = np.full((ph, pw, 3), PAD_VALUE, dtype=np.uint8)
    out[:rh, :rw] = resized[:ph, :pw]
    # exact scale per axis differs by rounding; use the mean so boxes round-trip within a pixel
    return out, Letterbox(scale=(rw / w + rh / h) / 2, width=w, height=h)


def letterbox(image: np.ndarray, input_size: int = 640, multiple: int = 32) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 HxWx3 -> padded BGR uint8 (long side `input_size`) and the mapping back."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image HxWx3, got shape {image.shape}")
    return resize_pad(image, input_size / max(image.shape[:2]), multiple)
