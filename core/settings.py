"""Configuration for every role, read from the environment (the only place that reads it).

Env prefix ``FACESTREAM_``, nested with ``__``::

    FACESTREAM_REDIS__URL=redis://user:secret@redis:6379/0
    FACESTREAM_WORKER__MAX_BATCH=16
    FACESTREAM_LOG__FORMAT=json

``get_settings()`` builds the root :class:`Settings` (``.redis``, ``.ingest``, ``.worker``, ``.log``)
and turns pydantic's ValidationError into a :class:`SettingsError` whose message names the
environment variable and the allowed range. The role sections are plain pydantic models: tests build
them directly (``WorkerSettings(max_batch=4)``) without touching the environment.

Adding a field: add it to the role's class with a default, ``Field(..., description=...)`` and
bounds (ge/le/gt/lt or a Literal); ``docs/configuration.md`` is generated from these classes
(``facestream config docs > docs/configuration.md``; a test checks it is current).
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.schema import RUNTIMES

ENV_PREFIX = "FACESTREAM_"
ENV_NESTED_DELIMITER = "__"


def _order_msg(section: str, a: str, b: str, op: str) -> str:
    return f"{env_var_name((section, a))} must be {op} {env_var_name((section, b))}"


class SettingsError(ValueError):
    """Invalid configuration. ``str(err)`` is a user-facing message naming the env variables."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RedisSettings(_Section):
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// (TLS) URL; may hold username:password and the DB index",
    )
    username: str | None = Field(None, description="overrides the URL's username")
    password: SecretStr | None = Field(None, description="overrides the URL's password (keep it out of URLs)")
    prefix: str = Field(
        "facestream",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="prefix of every key and stream (one prefix per deployment)",
    )
    socket_timeout_s: float = Field(5.0, gt=0, le=300, description="read/write timeout of a Redis call")
    socket_connect_timeout_s: float = Field(2.0, gt=0, le=60, description="TCP connect timeout")
    health_check_interval_s: float = Field(
        15.0, ge=0, le=3600, description="PING idle connections older than this before use (0: off)"
    )
    retry_attempts: int = Field(5, ge=0, le=100, description="retries of a command after a connection error")
    retry_backoff_min_s: float = Field(0.05, gt=0, le=60, description="first retry delay (doubles)")
    retry_backoff_max_s: float = Field(2.0, gt=0, le=600, description="largest retry delay")
    connect_timeout_s: float = Field(
        10.0, ge=0, le=3600, description="connect() keeps retrying the first PING for this long"
    )
    ssl_ca_certs: str | None = Field(None, description="CA bundle for rediss:// (default: system store)")
    ssl_cert_reqs: Literal["required", "optional", "none"] = Field(
        "required", description="rediss:// certificate verification"
    )

    def __repr_args__(self):
        # repr(settings) lands in logs and tracebacks: never with the URL's password
        from core.logging import redact_url

        for k, v in super().__repr_args__():
            yield k, (redact_url(v) if k == "url" else v)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @model_validator(mode="after")
    def _check_backoff(self) -> RedisSettings:
        if self.retry_backoff_min_s > self.retry_backoff_max_s:
            raise ValueError(_order_msg("redis", "retry_backoff_min_s", "retry_backoff_max_s", "<="))
        return self


class IngestSettings(_Section):
    lease_ttl_ms: int = Field(
        10_000, ge=1_000, le=600_000, description="camera lease TTL; another ingest takes over after it"
    )
    lease_renew_ms: int = Field(
        3_000, ge=100, le=300_000, description="lease renewal period (< lease_ttl_ms)"
    )
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="RTSP/file open timeout")
    read_timeout_s: float = Field(
        5.0, gt=0, le=120, description="no packet for this long: stalled, reconnect"
    )
    backoff_min_s: float = Field(0.5, gt=0, le=600, description="first reconnect delay (doubles, jittered)")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="largest reconnect delay")
    stable_s: float = Field(30.0, ge=0, le=3600, description="online this long resets the backoff")
    frames_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="frames stream length cap (exact)")
    max_frame_age_ms: int = Field(
        2_000, ge=50, le=600_000, description="frame payload TTL = live staleness budget"
    )
    replay_frame_ttl_ms: int = Field(
        600_000, ge=1_000, le=86_400_000, description="frame payload TTL for replays (they never drop)"
    )
    status_interval_s: float = Field(1.0, gt=0, le=300, description="camera status hash update period")
    ingest_id: str = Field("", description="this process's id in leases and status ('' = host:pid)")
    max_cameras: int = Field(
        0, ge=0, le=100_000, description="most cameras one ingest process holds (0: its fair share only)"
    )
    resync_s: float = Field(
        10.0, gt=0, le=3600, description="re-read the camera registry this often (besides pub/sub notices)"
    )
    http_host: str = Field(
        "127.0.0.1", description="bind address of the ingest /metrics endpoint (containers set 0.0.0.0)"
    )
    http_port: int = Field(9107, ge=0, le=65_535, description="port of the ingest /metrics endpoint (0: disabled)")
    decode_thread_type: Literal["SLICE", "FRAME", "AUTO", "NONE"] = Field(
        "SLICE", description="PyAV decoder threading (FRAME/AUTO add a frame of latency per thread)"
    )
    replay_window: int = Field(
        500, ge=1, le=1_000_000,
        description="replay backpressure: most frames outstanding in the worker group (<= frames_maxlen/2)",
    )
    replay_wait_timeout_s: float = Field(
        600.0, gt=0, le=86_400, description="a replay fails when the workers make no progress for this long"
    )
    run_ttl_s: int = Field(
        7 * 86_400, ge=60, le=365 * 86_400,
        description="a replay run's summary hash and events stream expire this long after their last write",
    )

    @model_validator(mode="after")
    def _check(self) -> IngestSettings:
        if self.lease_renew_ms >= self.lease_ttl_ms:
            raise ValueError(_order_msg("ingest", "lease_renew_ms", "lease_ttl_ms", "<"))
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError(_order_msg("ingest", "backoff_min_s", "backoff_max_s", "<="))
        if self.replay_window > self.frames_maxlen // 2:
            raise ValueError(f"FACESTREAM_INGEST__REPLAY_WINDOW ({self.replay_window}) must be <= "
                             f"FACESTREAM_INGEST__FRAMES_MAXLEN / 2 ({self.frames_maxlen // 2})")
        return self


class WorkerSettings(_Section):
    max_batch: int = Field(8, ge=1, le=256, description="largest inference batch")
    max_wait_ms: int = Field(10, ge=0, le=10_000, description="wait at most this long to fill a batch")
    claim_idle_ms: int = Field(
        30_000, ge=100, le=3_600_000, description="reclaim entries pending longer than this (crashed worker)"
    )
    max_deliveries: int = Field(
        3, ge=1, le=100, description="dead-letter an entry after this many deliveries"
    )
    camera_forget_s: int = Field(
        600, ge=1, le=30 * 86_400,
        description="per-camera metric series of a camera not seen for this long are removed (bounded memory)",
    )
    dead_after_ms: int = Field(
        1_000, ge=200, le=600_000,
        description="a worker whose liveness key (refreshed by a thread) is this old is dead: the others "
                    "take its pending frames at once, within the staleness budget",
    )
    events_maxlen: int = Field(100_000, ge=10, le=100_000_000, description="events stream length cap (exact)")
    http_host: str = Field(
        "127.0.0.1", description="bind address of /healthz and /metrics (loopback; containers set 0.0.0.0)"
    )
    http_port: int = Field(9108, ge=0, le=65_535, description="port of /healthz and /metrics (0: disabled)")
    runtime: Literal[RUNTIMES] = Field(  # type: ignore[valid-type]
        "auto", description="inference runtime (auto: tensorrt > torch CUDA > onnx CPU > torch CPU; "
                            "an INT8 variant on the CPU: openvino when installed)"
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="detection score threshold (unset: the weights' calibrated threshold)"
    )
    nms_iou: float = Field(0.4, gt=0.0, le=1.0, description="NMS IoU threshold")
    max_detections: int = Field(200, ge=1, le=10_000, description="detections kept per frame")
    input_size: int = Field(
        0, ge=0, le=4096, multiple_of=32,
        description="letterbox long side (multiple of 32); 0: each frame at the size ingest published it "
                    "(the camera's detect_size)",
    )
    worker_id: str = Field("", description="consumer name in the group ('' = host:pid)")
    max_frame_age_ms: int = Field(
        0, ge=0, le=600_000,
        description="live frames older than this at pickup are dropped as stale (0: ingest.max_frame_age_ms)",
    )
    event_guard_ttl_ms: int = Field(
        600_000, ge=0, le=86_400_000,
        description="TTL of the per-event-id idempotency guard key (0: off; XACK still guards redeliveries)",
    )
    weights: str = Field("", description="detector weights file ('' = the shipped default weights)")
    threads: int = Field(
        1, ge=0, le=256,
        description="ONNX Runtime intra-op threads on CPU (0: all cores); 1 + one worker per core scales best",
    )
    heartbeat_interval_ms: int = Field(
        2_000, ge=100, le=60_000, description="period of the worker heartbeat hash and lag sampling"
    )
    pipeline_depth: int = Field(
        2, ge=1, le=2,
        description="batches in flight: 2 fetches and decodes the next batch while this one is inferred and "
                    "published; 1: strictly sequential",
    )
    pin_shapes: bool = Field(
        True, description="ONNX Runtime on CPU: each frame on a session pinned to its shape (~1.2-1.5x faster, "
                          "~20-30 MB per camera detect size); false: one dynamic session, batches whole"
    )
    cuda_graphs: bool = Field(
        True, description="torch on CUDA: replay one CUDA graph per (batch-size bucket, frame shape)"
    )
    gpu_decode: bool = Field(
        True, description="torch on CUDA: decode JPEG payloads in batches on the GPU (CPU decode otherwise)"
    )


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", description="log level")
    format: Literal["text", "json"] = Field(
        "text", description="text (key=value) or json (one object a line)"
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class Settings(BaseSettings):
    """Root settings: one section per role plus the shared Redis and log sections."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    redis: RedisSettings = Field(default_factory=RedisSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    log: LogSettings = Field(default_factory=LogSettings)


def unknown_env_settings(environ: Mapping[str, str]) -> list[str]:
    """Problems with FACESTREAM_<SECTION>... variables that would be ignored: an unknown field, or a
    single underscore after the section. Other FACESTREAM_* variables (tools' own) are left alone."""
    import difflib

    known = {env_var_name(loc) for loc, _info in iter_fields(Settings)}
    sections = [n.upper() for n in Settings.model_fields]
    out = []
    for name in sorted(environ):
        up = name.upper()
        if not up.startswith(ENV_PREFIX.upper()) or up in known:
            continue
        rest = up[len(ENV_PREFIX):]
        if not any(rest.startswith(sec + "_") for sec in sections):
            continue
        hint = difflib.get_close_matches(up, sorted(known), n=1, cutoff=0.8)
        out.append(f"{name}: not a facestream setting (ignored otherwise)"
                   + (f"; did you mean {hint[0]}?" if hint else "; see docs/configuration.md"))
    return out


def get_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment (``overrides`` win, e.g. ``log={"level": "DEBUG"}``).

    Raises SettingsError with a message naming each bad variable and its allowed values, and for a
    variable that looks like a setting but names none (``FACESTREAM_WORKER_MAX_BATCH``: one underscore).
    """
    unknown = unknown_env_settings(os.environ)
    if unknown:
        raise SettingsError("invalid configuration:\n" + "\n".join(f"  {u}" for u in unknown), unknown)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, Settings), _problems(exc, Settings)) from None


def with_overrides(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """``settings`` with e.g. ``worker={"device": "cuda"}`` applied and validated like the environment
    (CLI flags must not slip past the checks that env vars get). Raises SettingsError."""
    data = settings.model_dump()
    for name, update in sections.items():
        data[name].update(update)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, Settings), _problems(exc, Settings)) from None


# -- error messages -------------------------------------------------------------------------------


def env_var_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """('worker', 'max_batch') -> 'FACESTREAM_WORKER__MAX_BATCH'."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(p.upper() for p in parts)


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X (first non-None member)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if members else annotation
    return annotation


def _field_info(model: type[BaseModel], loc: tuple[Any, ...]):
    current: Any = model
    info = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return info


def allowed_values(info) -> str:
    """Human description of a field's constraint: '1..256', '> 0', 'one of: a, b'."""
    if info is None:
        return ""
    ann = _unwrap(info.annotation)
    if typing.get_origin(ann) is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(ann))
    if isinstance(ann, type) and issubclass(ann, Enum):
        return "one of: " + ", ".join(str(m.value) for m in ann)
    lo = hi = None
    lo_incl = hi_incl = True
    pattern = None
    min_len = max_len = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_incl = m.gt, False
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_incl = m.lt, False
        elif isinstance(m, annotated_types.MinLen):
            min_len = m.min_length
        elif isinstance(m, annotated_types.MaxLen):
            max_len = m.max_length
        elif getattr(m, "pattern", None):
            pattern = m.pattern
    kind = {int: "integer", float: "number", bool: "true/false", str: "string"}.get(ann, "")
    if lo is not None and hi is not None and lo_incl and hi_incl:
        rng = f"{lo}..{hi}"
    else:
        bits = []
        if lo is not None:
            bits.append(f"{'>=' if lo_incl else '>'} {lo}")
        if hi is not None:
            bits.append(f"{'<=' if hi_incl else '<'} {hi}")
        rng = " and ".join(bits)
    if min_len is not None or max_len is not None:
        rng = f"length {min_len or 0}..{max_len if max_len is not None else ''}"
    if pattern:
        rng = (rng + ", " if rng else "") + f"matching {pattern}"
    if not rng and kind == "string":
        return ""
    return " ".join(x for x in (kind, rng) if x)


def _problems(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        info = _field_info(model, loc)
        msg = err.get("msg", "invalid")
        name = "settings" if not loc else env_var_name(loc)
        line = f"{name}: {msg}"
        if info is not None and err.get("type") != "missing":
            inp = err.get("input")
            secret = "password" in str(loc[-1]).lower() or "url" in str(loc[-1]).lower()
            if inp is not None and not isinstance(inp, dict) and not secret:
                line += f" (got {str(inp)[:80]!r})"
            allowed = allowed_values(info)
            if allowed:
                line += f"; allowed: {allowed}"
        out.append(line)
    return out


def format_validation_error(exc: ValidationError, model: type[BaseModel] = Settings) -> str:
    """One line per problem, e.g. 'FACESTREAM_WORKER__MAX_BATCH: ... (got '0'); allowed: integer 1..256'."""
    problems = _problems(exc, model)
    head = f"invalid configuration ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
    return "\n".join([head, *("  " + p for p in problems)])


# -- introspection (docs, `facestream config show`) -------------------------------------------------


def iter_fields(model: type[BaseModel] = Settings, loc: tuple[str, ...] = ()) -> Iterator[tuple]:
    """Yield (loc, FieldInfo) for every leaf setting, depth first."""
    for name, info in model.model_fields.items():
        ann = _unwrap(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_fields(ann, (*loc, name))
        else:
            yield (*loc, name), info


def _default_repr(info) -> str:
    if info.default_factory is not None:
        return ""
    d = info.default
    if d is None:
        return ""
    if isinstance(d, Enum):
        d = d.value
    return str(d)


def settings_markdown() -> str:
    """docs/configuration.md, generated from the models."""
    lines = [
        "# Configuration",
        "",
        "Generated by `facestream config docs` from `core/settings.py`; do not edit by hand.",
        "",
        f"Every setting comes from an environment variable with the prefix `{ENV_PREFIX}`; sections",
        f"nest with `{ENV_NESTED_DELIMITER}` (`{ENV_PREFIX}WORKER__MAX_BATCH=16`). Invalid values stop",
        "the program at start with a message naming the variable and its allowed values.",
        "`facestream config show` prints the resolved values (secrets redacted), `facestream config check`",
        "validates them and pings Redis.",
    ]
    section = None
    for loc, info in iter_fields():
        if loc[0] != section:
            section = loc[0]
            lines += [
                "",
                f"## {section}",
                "",
                "| variable | default | allowed | description |",
                "|---|---|---|---|",
            ]
        default = _default_repr(info).replace("|", "\\|")
        allowed = allowed_values(info).replace("|", "\\|")
        desc = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{env_var_name(loc)}` | `{default}` | {allowed} | {desc} |")
    return "\n".join(lines) + "\n"


def redacted_dump(settings: Settings) -> dict[str, Any]:
    """Settings as a JSON-able dict with secrets removed (URLs redacted, SecretStr as '***')."""
    from core.logging import redact_url

    def walk(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return {k: walk(getattr(obj, k)) for k in type(obj).model_fields}
        if isinstance(obj, SecretStr):
            return "***" if obj.get_secret_value() else ""
        if isinstance(obj, Enum):
            return obj.value
        if isinstance(obj, str) and "://" in obj:
            return redact_url(obj)
        if isinstance(obj, Mapping):
            return {k: walk(v) for k, v in obj.items()}
        return obj

    return walk(settings)
