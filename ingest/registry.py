"""The camera registry: a Redis hash ``keys.cameras`` (camera id -> Camera JSON).

Every change is announced on ``keys.cameras_changed`` (payload: the camera id) so running ingest
processes pick it up at once; they also re-read the hash periodically as a safety net for lost
notifications. URLs may hold credentials: they are stored as given, but every string this module
returns for display goes through ``core.logging.redact_url``.

Python API (re-exported by the front door)::

    reg = Registry(redis_client, Keys(prefix))
    reg.add("door-1", "rtsp://user:pw@10.0.0.5/stream1", fps=5, detect_size=640)
    reg.list(); reg.get("door-1"); reg.status("door-1"); reg.remove("door-1")
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import ValidationError

from core.keys import Keys
from core.logging import redact_url
from core.schema import Camera, CameraState, CameraStatus, ErrorReason, validate_camera_id
from ingest.sources import validate_url


class RegistryError(ValueError):
    """A registry request that cannot be done (invalid camera, duplicate id, unknown id)."""


class CameraExistsError(RegistryError):
    pass


class CameraNotFoundError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        inp = err.get("input")
        got = "" if loc == "url" or isinstance(inp, dict) else f" (got {inp!r})"
        parts.append(f"{loc}: {msg}{got}")
    return "; ".join(parts)


def make_camera(camera_id: str, url: str, **fields: Any) -> Camera:
    """Validate and build a Camera; raises RegistryError with a readable, redacted message."""
    try:
        validate_camera_id(camera_id)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    try:
        validate_url(url)
    except ValueError as exc:
        raise RegistryError(f"camera {camera_id}: {exc}") from None
    fields = {k: v for k, v in fields.items() if v is not None}
    fields.setdefault("created_ns", time.time_ns())
    try:
        return Camera(id=camera_id, url=url, **fields)
    except ValidationError as exc:
        raise RegistryError(f"camera {camera_id}: {_validation_message(exc)}") from None


def camera_public(cam: Camera) -> dict[str, Any]:
    """A Camera as a JSON-able dict with the URL redacted (for printing and APIs)."""
    d = cam.model_dump(mode="json")
    d["url"] = redact_url(cam.url)
    return d


# -- status hash ------------------------------------------------------------------------------------


def status_to_hash(st: CameraStatus) -> dict[str, str]:
    d = st.model_dump(mode="json")
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in d.items()}  # pydantic parses back


def status_from_hash(camera_id: str, h: dict) -> CameraStatus | None:
    if not h:
        return None
    fields = CameraStatus.model_fields
    d: dict[str, Any] = {_s(k): _s(v) for k, v in h.items() if _s(k) in fields}
    d["camera_id"] = camera_id
    try:
        return CameraStatus.model_validate(d)
    except ValidationError:
        # a newer/older writer: keep what parses
        return CameraStatus(camera_id=camera_id, state=CameraState.error, reason=ErrorReason.invalid,
                            detail="unreadable status hash")


def write_status(r: Any, keys: Keys, st: CameraStatus, pipe: Any = None) -> None:
    st.updated_ns = time.time_ns()
    (pipe or r).hset(keys.camera_status(st.camera_id), mapping=status_to_hash(st))


def read_status(r: Any, keys: Keys, camera_id: str) -> CameraStatus | None:
    return status_from_hash(camera_id, r.hgetall(keys.camera_status(camera_id)))


# -- registry -----------------------------------------------------------------------------------------


class Registry:
    def __init__(self, redis: Any, keys: Keys | None = None):
        self.r = redis
        self.keys = keys or Keys()

    # -- writes ---------------------------------------------------------------------------------------
    def add(self, camera: Camera | str, url: str | None = None, *, replace: bool = False, **fields: Any) -> Camera:
        """Register a camera: ``add(Camera(...))`` or ``add(id, url, fps=5, detect_size=640, ...)``.

        Raises CameraExistsError for a duplicate id unless ``replace`` (then the running ingest restarts
        the camera's reader with the new settings), RegistryError for invalid values.
        """
        if isinstance(camera, Camera):
            cam = make_camera(camera.id, camera.url, **{**camera.model_dump(exclude={"id", "url"}), **fields})
        else:
            if url is None:
                raise RegistryError("camera URL is required")
            cam = make_camera(camera, url, **fields)
        data = cam.model_dump_json()
        if replace:
            old = self.get(cam.id)
            if old is not None:
                cam.created_ns = old.created_ns or cam.created_ns
                data = cam.model_dump_json()
            self.r.hset(self.keys.cameras, cam.id, data)
        elif not self.r.hsetnx(self.keys.cameras, cam.id, data):
            raise CameraExistsError(f"camera {cam.id!r} already exists (remove it first, or replace it)")
        self.notify(cam.id)
        return cam

    def remove(self, camera_id: str) -> bool:
        """Unregister a camera and delete its status; False if it was not registered.

        Its lease and seq counter are left alone: the owning ingest process stops the reader and
        releases the lease itself; the seq counter keeps frame ids unique if the id is reused.
        """
        validate_camera_id(camera_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.keys.cameras, camera_id)
        pipe.delete(self.keys.camera_status(camera_id))
        removed, _ = pipe.execute()
        if removed:
            self.notify(camera_id)
        return bool(removed)

    def set_enabled(self, camera_id: str, enabled: bool) -> Camera:
        cam = self.get(camera_id)
        if cam is None:
            raise CameraNotFoundError(f"no camera {camera_id!r}")
        cam.enabled = enabled
        self.r.hset(self.keys.cameras, cam.id, cam.model_dump_json())
        self.notify(cam.id)
        return cam

    def notify(self, camera_id: str = "") -> int:
        return int(self.r.publish(self.keys.cameras_changed, camera_id))

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, camera_id: str) -> Camera | None:
        raw = self.r.hget(self.keys.cameras, camera_id)
        return Camera.model_validate_json(raw) if raw else None

    def list(self) -> list[Camera]:
        out = []
        for k, v in self.r.hgetall(self.keys.cameras).items():
            try:
                out.append(Camera.model_validate_json(v))
            except ValidationError:
                continue  # a corrupt entry must not hide the others
            del k
        return sorted(out, key=lambda c: c.id)

    def __contains__(self, camera_id: str) -> bool:
        return bool(self.r.hexists(self.keys.cameras, camera_id))

    def __len__(self) -> int:
        return int(self.r.hlen(self.keys.cameras))

    def status(self, camera_id: str) -> CameraStatus | None:
        return read_status(self.r, self.keys, camera_id)

    def statuses(self) -> list[CameraStatus]:
        """Status of every registered camera (state ``stopped`` when no ingest has reported it)."""
        cams = self.list()
        pipe = self.r.pipeline(transaction=False)
        for c in cams:
            pipe.hgetall(self.keys.camera_status(c.id))
            pipe.get(self.keys.camera_lease(c.id))
        res = pipe.execute()
        out = []
        for i, c in enumerate(cams):
            st = status_from_hash(c.id, res[2 * i]) or CameraStatus(camera_id=c.id)
            holder = res[2 * i + 1]
            if holder is None and st.state not in (CameraState.stopped,):
                st.detail = (st.detail + "; " if st.detail else "") + "no ingest holds this camera"
            out.append(st)
        return out

    def lease_holder(self, camera_id: str) -> str | None:
        v = self.r.get(self.keys.camera_lease(camera_id))
        return _s(v) if v is not None else None
