"""Frame payloads as ingest publishes them (JPEG or raw BGR24 bytes) -> BGR images: the one decoder
that workers, the demo, tools and tests use."""

from __future__ import annotations

import cv2
import numpy as np

from core.schema import PayloadCodec


class PayloadError(ValueError):
    """The payload cannot be decoded into the image its FrameRef describes (a poison frame)."""


def decode_payload(data: bytes, codec: PayloadCodec | str, width: int | None = None,
                   height: int | None = None) -> np.ndarray:
    """BGR uint8 (height, width, 3). ``width``/``height`` (the FrameRef's payload size) are required for
    raw payloads and checked for JPEG ones when given."""
    codec = PayloadCodec(codec)
    if not data:
        raise PayloadError("empty payload")
    if codec is PayloadCodec.raw:
        if width is None or height is None or len(data) != width * height * 3:
            raise PayloadError(f"raw payload has {len(data)} bytes, expected {width}x{height}x3")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        raise PayloadError(f"cannot decode {codec.value} payload ({len(data)} bytes)")
    if width is not None and height is not None and (img.shape[1], img.shape[0]) != (width, height):
        raise PayloadError(f"payload is {img.shape[1]}x{img.shape[0]}, FrameRef says {width}x{height}")
    return img


def decode_jpegs_on_device(datas: list[bytes], device) -> list:
    """A batch of JPEG payloads decoded on a CUDA device (nvJPEG through torchvision): HxWx3 BGR uint8
    device tensors. Raises on any undecodable payload (callers fall back to `decode_payload` one by one to
    find it)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    if any(not d for d in datas):
        raise PayloadError("empty payload")
    raw = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    imgs = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
    return [im.permute(1, 2, 0).flip(-1) for im in imgs]  # CHW RGB -> HWC BGR, the serving layout
