"""Detector architecture config and the named variants we ship.

The config is stored inside the weights file's metadata, so a weights file fully describes
the network that reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

STRIDES = (8, 16, 32)
NUM_LANDMARKS = 5


@dataclass(frozen=True)
class DetectorConfig:
    name: str = "fsdet-m"
    # backbone: stem width, then (width, extra blocks) for stride 4, 8, 16, 32
    stem: int = 16
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    depths: tuple[int, int, int, int] = (1, 2, 2, 2)
    neck: int = 64  # FPN / head channels
    head_convs: int = 2  # shared depthwise-separable convs in the head
    landmarks: bool = True
    strides: tuple[int, ...] = STRIDES
    # preprocessing contract (baked into the graph: the network takes BGR 0..255 float)
    input_size: int = 640  # long side after letterbox
    mean: float = 127.5
    std: float = 128.0
    channel_order: str = "bgr"
    pad_multiple: int = 32
    anchor_scale: float = 4.0  # ATSS anchor side = anchor_scale * stride (assignment only)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DetectorConfig:
        raw = json.loads(text)
        for k in ("widths", "depths", "strides"):
            if k in raw:
                raw[k] = tuple(raw[k])
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown detector config fields: {sorted(unknown)}")
        return cls(**raw)


VARIANTS: dict[str, DetectorConfig] = {
    # ~0.15 GMACs at 640x640: for many cameras per CPU core
    "fsdet-s": DetectorConfig(name="fsdet-s", stem=8, widths=(16, 32, 64, 128), depths=(1, 1, 2, 2), neck=32),
    # default: ~0.5 GMACs at 640x640 (SCRFD-0.5GF class)
    "fsdet-m": DetectorConfig(),
    # ~1.7 GMACs at 640x640: for GPUs
    "fsdet-l": DetectorConfig(
        name="fsdet-l", stem=24, widths=(48, 96, 192, 320), depths=(1, 3, 3, 2), neck=96, head_convs=2
    ),
}
DEFAULT_VARIANT = "fsdet-m"


def get_config(name: str) -> DetectorConfig:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown detector variant {name!r}; choose one of {sorted(VARIANTS)}") from None
