"""Versioned messages exchanged over Redis (schema v1).

Additive changes only within v1; tests/test_schema_snapshot.py guards field names and types.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

# Camera ids become parts of Redis keys and file names: keep them boring.
CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CAMERA_ID_RE = re.compile(CAMERA_ID_PATTERN)


def validate_camera_id(value: str) -> str:
    if not isinstance(value, str) or not _CAMERA_ID_RE.fullmatch(value):  # fullmatch: "$" accepts "x\n"
        raise ValueError(
            f"invalid camera id {value!r}: 1-64 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


class Transport(str, Enum):  # noqa: UP042 (str mixin kept: str() stays "Class.member")
    tcp = "tcp"
    udp = "udp"


class PayloadCodec(str, Enum):  # noqa: UP042 (str mixin kept: str() stays "Class.member")
    jpeg = "jpeg"
    raw = "raw"  # BGR24, row-major, width*height*3 bytes


class Camera(_Model):
    """A registered camera (or replayed file). `url` may hold credentials: never log it raw."""

    id: str
    url: str
    fps: float = Field(5.0, gt=0, le=120, description="detect fps: frames sampled per second")
    detect_size: int = Field(640, ge=64, le=4096, description="long side of published frames, px")
    transport: Transport = Transport.tcp
    codec: PayloadCodec = PayloadCodec.jpeg
    jpeg_quality: int = Field(90, ge=10, le=100)
    enabled: bool = True
    created_ns: int = 0

    _check_id = field_validator("id")(classmethod(lambda cls, v: validate_camera_id(v)))


class Source(_Model):
    kind: Literal["live", "replay"] = "live"
    run_id: str | None = None


class FrameRef(_Model):
    """One sampled frame on the frames stream; the pixels live at `key` (claim check, TTL'd)."""

    camera_id: str
    seq: int = Field(ge=0)
    pts: int | None = None
    time_base: str | None = None  # "num/den", e.g. "1/90000"
    capture_ns: int  # wall clock (time.time_ns) when the frame was decoded
    width: int = Field(gt=0, description="original frame width, px")
    height: int = Field(gt=0, description="original frame height, px")
    payload_width: int = Field(gt=0, description="width of the encoded payload, px")
    payload_height: int = Field(gt=0, description="height of the encoded payload, px")
    codec: PayloadCodec = PayloadCodec.jpeg
    key: str  # Redis key of the payload
    source: Source = Field(default_factory=Source)
    decode_ms: float = 0.0

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for XADD."""
        return {"ref": self.model_dump_json()}

    @classmethod
    def from_fields(cls, fields: dict) -> FrameRef:
        raw = fields.get(b"ref", fields.get("ref"))
        if raw is None:
            raise ValueError("stream entry has no 'ref' field")
        return cls.model_validate_json(raw)


class Detection(_Model):
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original frame pixels
    score: float = Field(ge=0.0, le=1.0)
    landmarks: list[tuple[float, float]] | None = None  # 5 points: eyes, nose, mouth corners


# the runtimes a user picks (worker settings, CLI --runtime); ModelInfo.runtime names the one serving
RUNTIMES = ("auto", "torch", "onnx", "openvino", "tensorrt")


class ModelInfo(_Model):
    name: str
    version: str
    sha256: str
    runtime: str  # torch | onnxruntime | openvino | tensorrt
    precision: str = "fp32"  # fp32 | fp16 | int8
    input_size: int | None = None


class FrameInfo(_Model):
    seq: int
    pts: int | None = None
    time_base: str | None = None
    capture_ns: int
    width: int
    height: int


class Timings(_Model):
    decode: float = 0.0  # payload decode in the worker, ms
    queue: float = 0.0  # capture -> picked up by a worker, ms
    infer: float = 0.0  # the batch's inference, ms
    total: float = 0.0  # capture -> event published, ms


EVENT_FIELD = "event"  # events streams carry one field: event=<DetectionEvent JSON>


class DetectionEvent(_Model):
    schema_version: int = SCHEMA_VERSION
    event_id: str  # "{camera_id}:{seq}" (replays: "{camera_id}:{run_id}:{seq}"): idempotency key
    camera_id: str
    source: Source = Field(default_factory=Source)
    frame: FrameInfo
    detections: list[Detection] = Field(default_factory=list)
    model: ModelInfo
    timings_ms: Timings = Field(default_factory=Timings)
    worker_id: str
    truncated: int = 0  # detections dropped by max_detections (never silent)

    def to_fields(self) -> dict[str, str]:
        """The one field of an events-stream entry."""
        return {EVENT_FIELD: self.model_dump_json()}

    @classmethod
    def from_fields(cls, fields: dict) -> DetectionEvent:
        """From an events-stream entry (bytes or str keys); ValueError when it holds no event."""
        raw = fields.get(EVENT_FIELD.encode(), fields.get(EVENT_FIELD))
        if raw is None:
            raise ValueError(f"stream entry has no {EVENT_FIELD!r} field")
        return cls.model_validate_json(raw)


def event_id_for(camera_id: str, seq: int, run_id: str | None = None) -> str:
    return f"{camera_id}:{run_id}:{seq}" if run_id else f"{camera_id}:{seq}"


class CameraState(str, Enum):  # noqa: UP042 (str mixin kept: str() stays "Class.member")
    connecting = "connecting"
    online = "online"
    stalled = "stalled"
    backoff = "backoff"
    stopped = "stopped"
    error = "error"


class ErrorReason(str, Enum):  # noqa: UP042 (str mixin kept: str() stays "Class.member")
    none = ""
    auth = "auth"
    not_found = "not_found"
    timeout = "timeout"
    codec = "codec"
    connection = "connection"
    ended = "ended"
    invalid = "invalid"


class CameraStatus(_Model):
    camera_id: str
    state: CameraState = CameraState.stopped
    reason: ErrorReason = ErrorReason.none
    detail: str = ""  # redacted human-readable detail
    since_ns: int = 0
    last_frame_ns: int = 0
    fps: float = 0.0  # decoded fps over the last window
    published_fps: float = 0.0
    reconnects: int = 0
    drops: int = 0
    owner: str = ""  # ingest process id holding the lease
    updated_ns: int = 0
