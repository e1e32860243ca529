"""Redis helpers shared by every role. Public API (stable; add, don't rename):

Connection
    connect(redis_settings, *, decode_responses=False) -> redis.Redis
        Client with socket timeouts, retry with exponential backoff on connection errors, health
        checks; PINGs until ``connect_timeout_s`` before returning (raises BusError, URL redacted).

Streams (entries are ``Entry(stream, id, fields, deliveries)``; ids and field keys/values are bytes
unless the client decodes responses)
    xadd_bounded(r, stream, fields, maxlen, *, approximate=False, id="*") -> id
        XADD with an EXACT ``MAXLEN`` by default: ``MAXLEN ~ N`` only trims whole stream nodes
        (100 entries), so small caps would not bound anything. Works on pipelines too.
    ensure_group(r, stream, group, start_id="0") -> bool
        XGROUP CREATE ... MKSTREAM; idempotent (False when the group existed).
    read_group(r, streams, group, consumer, count, block_ms=None) -> list[Entry]
        XREADGROUP ``>`` on one stream or several; ``block_ms=None`` does not block.
    ack(r, stream, group, *ids) -> int
    pending_deliveries(r, stream, group, ids) -> dict[id, int]        (XPENDING per id, pipelined)
    autoclaim(r, stream, group, consumer, min_idle_ms, count=100, start_id="0-0") -> ClaimResult
        XAUTOCLAIM wrapper: claimed entries carry their delivery counts; ids trimmed from the stream
        while pending come back in ``deleted`` (Redis already dropped them from the PEL).
    dead_letter(r, stream, group, entry, reason, dead_stream, maxlen=10_000) -> id
        Copy the entry plus ``_reason``, ``_stream``, ``_id``, ``_deliveries``, ``_ts_ms`` to
        ``dead_stream`` and XACK it, atomically (MULTI).

Leases (one owner per camera)
    Lease(r, key, ttl_ms, owner=None): ``acquire()``, ``renew()``, ``release()`` -> bool,
    ``holder()``, ``remaining_ms()``, context manager.
    SET NX PX to acquire; Lua compare-and-renew / compare-and-release on the owner token.
    make_owner_token(prefix="") -> "host:pid:random".

Misc
    delete_prefix(r, prefix) -> int: delete every key ``prefix:*`` (SCAN + UNLINK; tests, tools).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff, ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from core.logging import redact_url

log = logging.getLogger(__name__)

__all__ = [
    "BusError",
    "ClaimResult",
    "Entry",
    "Lease",
    "ack",
    "autoclaim",
    "connect",
    "dead_letter",
    "delete_prefix",
    "ensure_group",
    "make_owner_token",
    "pending_deliveries",
    "read_group",
    "xadd_bounded",
]

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError)


class BusError(RuntimeError):
    """Redis unreachable or misconfigured (message never contains credentials)."""


# -- connection -----------------------------------------------------------------------------------


class RetryDelay:
    """The one wait-before-retrying policy of every loop that outlives a Redis outage (connect, worker, ingest
    registry listener, event subscribers): redis-py's equal-jitter exponential backoff from `base` to `cap`
    seconds, so that many processes coming back at once do not retry in lockstep. `reset()` on success."""

    def __init__(self, base: float = 0.1, cap: float = 2.0):
        self._backoff = EqualJitterBackoff(cap=cap, base=base)
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return self._backoff.compute(self.failures)

    def reset(self) -> None:
        self.failures = 0


def connect(redis_settings: Any, *, decode_responses: bool = False, ping: bool = True) -> redis.Redis:
    """A ``redis.Redis`` for ``redis_settings`` (core.settings.RedisSettings).

    Commands are retried ``retry_attempts`` times on connection errors and timeouts (exponential
    backoff between ``retry_backoff_min_s`` and ``retry_backoff_max_s``). With ``ping`` the first
    PING is retried until ``connect_timeout_s`` so a starting Redis is waited for.
    """
    s = redis_settings
    retry = Retry(
        ExponentialBackoff(cap=s.retry_backoff_max_s, base=s.retry_backoff_min_s),
        s.retry_attempts,
        supported_errors=(RedisConnectionError, RedisTimeoutError, ConnectionResetError),
    )
    kwargs: dict[str, Any] = dict(
        decode_responses=decode_responses,
        socket_timeout=s.socket_timeout_s,
        socket_connect_timeout=s.socket_connect_timeout_s,
        health_check_interval=s.health_check_interval_s,
        retry=retry,
        client_name=f"facestream-{socket.gethostname()}-{os.getpid()}",
    )
    if s.username:
        kwargs["username"] = s.username
    if s.password is not None:
        kwargs["password"] = s.password.get_secret_value()
    if s.url.lower().startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = s.ssl_cert_reqs
        if s.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = s.ssl_ca_certs
    try:
        client = redis.Redis.from_url(s.url, **kwargs)
    except ValueError as exc:
        raise BusError(f"bad Redis URL {redact_url(s.url)}: {exc}") from None
    if not ping:
        return client
    deadline = time.monotonic() + s.connect_timeout_s
    wait = RetryDelay(s.retry_backoff_min_s, s.retry_backoff_max_s)
    while True:
        try:
            client.ping()
            return client
        except redis.AuthenticationError as exc:
            raise BusError(f"Redis {redact_url(s.url)}: authentication failed ({exc})") from None
        except ResponseError as exc:  # e.g. NOAUTH, WRONGPASS
            raise BusError(f"Redis {redact_url(s.url)}: {exc}") from None
        except RETRYABLE as exc:
            delay = wait.next()
            if time.monotonic() + delay > deadline:
                raise BusError(
                    f"Redis {redact_url(s.url)} unreachable after {s.connect_timeout_s:g}s: {exc}"
                ) from None
            log.warning("redis not reachable, retrying", extra={"url": redact_url(s.url), "error": str(exc)})
            time.sleep(delay)


# -- streams --------------------------------------------------------------------------------------


@dataclass
class Entry:
    stream: Any
    id: Any
    fields: dict
    deliveries: int = 1

    def get(self, name: str, default: Any = None) -> Any:
        """Field value by str name whether the client decodes responses or not."""
        if name in self.fields:
            return self.fields[name]
        return self.fields.get(name.encode(), default)


@dataclass
class ClaimResult:
    entries: list[Entry] = field(default_factory=list)
    next_id: Any = b"0-0"  # pass back as start_id; "0-0" means the scan wrapped around
    deleted: list = field(default_factory=list)


def xadd_bounded(
    r: Any, stream: str, fields: Mapping, maxlen: int, *, approximate: bool = False, id: str = "*"
) -> Any:
    """XADD that keeps at most ``maxlen`` entries (exact trim unless ``approximate``)."""
    if maxlen < 1:
        raise ValueError("maxlen must be >= 1")
    return r.xadd(stream, dict(fields), id=id, maxlen=maxlen, approximate=approximate)


def ensure_group(r: Any, stream: str, group: str, start_id: str = "0") -> bool:
    """Create consumer group ``group`` on ``stream`` (creating the stream). True if created now.

    ``start_id="0"``: a new group also sees entries already in the (bounded) stream; use ``"$"`` for
    only-new (e.g. an events subscriber).
    """
    try:
        r.xgroup_create(stream, group, id=start_id, mkstream=True)
        return True
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise


def entries_of(resp: Any) -> list[Entry]:
    """Entries of an XREADGROUP / XREAD reply (RESP2 or RESP3)."""
    out: list[Entry] = []
    if not resp:
        return out
    if isinstance(resp, dict):  # RESP3
        resp = [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in resp.items()]
    for stream, items in resp:
        for eid, fields in items:
            out.append(Entry(stream, eid, fields or {}))
    return out


def read_group(
    r: Any, streams: str | Sequence[str], group: str, consumer: str, count: int, block_ms: int | None = None
) -> list[Entry]:
    """Up to ``count`` new entries (``>``) per stream for ``consumer``; waits ``block_ms`` if none.

    Keep ``block_ms`` below the client's socket timeout.
    """
    names = [streams] if isinstance(streams, str | bytes) else list(streams)
    resp = r.xreadgroup(group, consumer, {s: ">" for s in names}, count=count, block=block_ms)
    return entries_of(resp)


def group_lag(r: Any, stream: str, group: str, limit: int = 10_000) -> tuple[int, int] | None:
    """(entries not yet delivered to `group`, entries delivered and not acked) from XINFO GROUPS; None when
    the stream or the group does not exist. Where Redis cannot tell the lag (entries deleted or trimmed
    mid-range) the undelivered entries are counted, up to `limit`."""
    try:
        groups = r.xinfo_groups(stream)
    except ResponseError:
        return None
    for g in groups:
        name = g.get("name")
        if (name.decode() if isinstance(name, bytes) else name) != group:
            continue
        lag = g.get("lag")
        if lag is None:
            last = g.get("last-delivered-id") or "0-0"
            last = last.decode() if isinstance(last, bytes) else last
            lag = len(r.xrange(stream, min=f"({last}", count=limit))
        return int(lag), int(g.get("pending") or 0)
    return None


def ack(r: Any, stream: str, group: str, *ids: Any) -> int:
    if not ids:
        return 0
    return r.xack(stream, group, *ids)


def pending_deliveries(r: Any, stream: str, group: str, ids: Iterable[Any]) -> dict:
    """{id: delivery count} for pending ``ids`` (ids not pending are absent)."""
    ids = list(ids)
    if not ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for eid in ids:
        pipe.xpending_range(stream, group, min=eid, max=eid, count=1)
    out = {}
    for eid, rows in zip(ids, pipe.execute(), strict=True):
        if rows:
            out[eid] = int(rows[0]["times_delivered"])
    return out


def autoclaim(
    r: Any, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100, start_id: Any = "0-0"
) -> ClaimResult:
    """XAUTOCLAIM entries idle >= ``min_idle_ms`` to ``consumer``, with their delivery counts."""
    resp = r.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, start_id=start_id, count=count)
    next_id, claimed = resp[0], resp[1]
    deleted = list(resp[2]) if len(resp) > 2 else []
    entries = [Entry(stream, eid, fields or {}) for eid, fields in claimed if eid is not None]
    counts = pending_deliveries(r, stream, group, [e.id for e in entries])
    for e in entries:
        e.deliveries = counts.get(e.id, e.deliveries)
    return ClaimResult(entries, next_id, deleted)


def dead_letter(
    r: Any, stream: str, group: str, entry: Entry, reason: str, dead_stream: str, maxlen: int = 10_000
) -> Any:
    """Move ``entry`` to ``dead_stream`` (with reason and origin) and ack it, in one transaction."""
    fields: dict[Any, Any] = dict(entry.fields)
    fields.update(
        {
            "_reason": str(reason)[:2000],
            "_stream": entry.stream if entry.stream is not None else stream,
            "_id": entry.id,
            "_deliveries": int(entry.deliveries),
            "_ts_ms": int(time.time() * 1000),
        }
    )
    pipe = r.pipeline(transaction=True)
    pipe.xadd(dead_stream, fields, maxlen=maxlen, approximate=False)
    pipe.xack(stream, group, entry.id)
    dead_id, _ = pipe.execute()
    return dead_id


# -- leases ---------------------------------------------------------------------------------------

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def make_owner_token(prefix: str = "") -> str:
    base = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    return f"{prefix}:{base}" if prefix else base


class Lease:
    """A TTL'd ownership token at ``key`` (e.g. Keys.camera_lease(cam)).

    ``acquire()`` succeeds when the key is free (SET NX PX) or already ours (then it renews).
    ``renew()``/``release()`` only act when the key still holds our token (Lua compare-and-*), so a
    process whose lease expired and was taken over cannot extend or delete the new owner's lease.
    """

    def __init__(self, r: Any, key: str, ttl_ms: int, owner: str | None = None):
        if ttl_ms < 1:
            raise ValueError("ttl_ms must be >= 1")
        self.r = r
        self.key = key
        self.ttl_ms = int(ttl_ms)
        self.owner = owner or make_owner_token()
        self._renew = r.register_script(_RENEW_LUA)
        self._release = r.register_script(_RELEASE_LUA)

    def acquire(self) -> bool:
        if self.r.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return self.renew()  # re-entrant: already ours

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def release(self) -> bool:
        return bool(self._release(keys=[self.key], args=[self.owner]))

    def holder(self) -> str | None:
        v = self.r.get(self.key)
        if v is None:
            return None
        return v.decode() if isinstance(v, bytes) else v

    def remaining_ms(self) -> int:
        """Server-side TTL of the key in ms (-2: no key, -1: no TTL)."""
        return int(self.r.pttl(self.key))

    def __enter__(self) -> Lease:
        if not self.acquire():
            raise BusError(f"lease {self.key} is held by {self.holder()!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(RETRYABLE):
            self.release()

    def __repr__(self) -> str:
        return f"Lease(key={self.key!r}, owner={self.owner!r}, ttl_ms={self.ttl_ms})"


# -- misc -----------------------------------------------------------------------------------------


def delete_prefix(r: Any, prefix: str, batch: int = 500) -> int:
    """Delete every key matching ``{prefix}:*`` and ``prefix`` itself. Never use an empty prefix."""
    if not prefix or prefix in ("*", ":"):
        raise ValueError("refusing to delete with an empty prefix")
    pattern = prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?").replace("[", "\\[")
    n = 0
    keys: list = []
    for k in r.scan_iter(match=f"{pattern}:*", count=batch):
        keys.append(k)
        if len(keys) >= batch:
            n += r.unlink(*keys)
            keys = []
    keys.append(prefix)
    n += r.unlink(*keys)
    return n
