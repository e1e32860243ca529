"""core.bus against a real Redis: bounded streams, groups, claims, dead letters, leases."""

from __future__ import annotations

import time

import pytest
import redis

from core.bus import (
    BusError,
    Lease,
    ack,
    autoclaim,
    connect,
    dead_letter,
    ensure_group,
    pending_deliveries,
    read_group,
    xadd_bounded,
)
from core.settings import RedisSettings


def test_connect_pings_and_fails_fast_with_redacted_url(redis_client, redis_endpoint):
    assert redis_client.ping()
    bad = RedisSettings(url="redis://user:s3cret@127.0.0.1:1/0", connect_timeout_s=0.2,
                        socket_connect_timeout_s=0.1, retry_attempts=0, retry_backoff_min_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(BusError) as ei:
        connect(bad)
    assert time.monotonic() - t0 < 2
    assert "s3cret" not in str(ei.value) and "***" in str(ei.value)


def test_connect_password_setting_and_auth_error(private_redis):
    private_redis.config_set("requirepass", "hunter2")
    base = dict(url=private_redis.url, connect_timeout_s=0.5, retry_attempts=0)
    assert connect(RedisSettings(**base, password="hunter2")).ping()
    with pytest.raises(BusError, match=r"(?i)auth|WRONGPASS|invalid"):
        connect(RedisSettings(**base, password="wrong"))


def test_connect_waits_for_redis_to_come_back(private_redis):
    s = RedisSettings(url=private_redis.url, connect_timeout_s=5, retry_attempts=3,
                      retry_backoff_min_s=0.05, retry_backoff_max_s=0.2, socket_connect_timeout_s=0.2)
    r = connect(s)
    private_redis.kill()
    import threading

    threading.Timer(0.3, private_redis.start).start()
    # the command retries on connection errors with backoff until the server is back
    assert r.set("x", "1")
    assert connect(s).get("x") == b"1"


def test_xadd_bounded_exact(redis_client, keys):
    for i in range(250):
        xadd_bounded(redis_client, keys.frames, {"i": i}, maxlen=10)
    assert redis_client.xlen(keys.frames) == 10
    last = redis_client.xrange(keys.frames)
    assert [int(f[b"i"]) for _, f in last] == list(range(240, 250))


def test_approximate_maxlen_does_not_bound_small_streams(redis_client, keys):
    """Why exact is the default: MAXLEN ~ trims whole 100-entry nodes only."""
    for i in range(20):
        xadd_bounded(redis_client, keys.frames, {"i": i}, maxlen=10, approximate=True)
    assert redis_client.xlen(keys.frames) == 20


def test_xadd_bounded_memory_stays_bounded(redis_client, keys):
    payload = b"x" * 2000
    for i in range(100):
        xadd_bounded(redis_client, keys.frames, {"i": i, "p": payload}, maxlen=50)
    mem_100 = redis_client.memory_usage(keys.frames, samples=0)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2000):
        xadd_bounded(pipe, keys.frames, {"i": i, "p": payload}, maxlen=50)
    pipe.execute()
    assert redis_client.xlen(keys.frames) == 50
    mem_2100 = redis_client.memory_usage(keys.frames, samples=0)
    assert mem_2100 < mem_100 * 1.5, (mem_100, mem_2100)
    assert mem_2100 < 50 * 2000 * 3


def test_ensure_group_idempotent_and_mkstream(redis_client, keys):
    assert ensure_group(redis_client, keys.frames, "g") is True
    assert ensure_group(redis_client, keys.frames, "g") is False
    assert redis_client.exists(keys.frames)


def test_read_group_ack_and_pending(redis_client, keys):
    ensure_group(redis_client, keys.frames, "g")
    ids = [xadd_bounded(redis_client, keys.frames, {"i": i}, maxlen=100) for i in range(5)]
    got = read_group(redis_client, keys.frames, "g", "c1", count=3)
    assert [e.id for e in got] == ids[:3]
    assert got[0].get("i") == b"0" and got[0].stream in (keys.frames, keys.frames.encode())
    rest = read_group(redis_client, [keys.frames], "g", "c2", count=10, block_ms=10)
    assert [e.id for e in rest] == ids[3:]
    assert read_group(redis_client, keys.frames, "g", "c1", count=10, block_ms=10) == []
    assert ack(redis_client, keys.frames, "g", *ids[:3]) == 3
    assert ack(redis_client, keys.frames, "g") == 0
    assert set(pending_deliveries(redis_client, keys.frames, "g", ids)) == set(ids[3:])


def test_read_group_decoded_client(redis_settings, redis_client, keys):
    r = connect(redis_settings, decode_responses=True)
    ensure_group(r, keys.frames, "g")
    xadd_bounded(r, keys.frames, {"ref": "{}"}, maxlen=10)
    (e,) = read_group(r, keys.frames, "g", "c", count=10)
    assert e.get("ref") == "{}" and isinstance(e.id, str)


def test_autoclaim_reports_delivery_counts(redis_client, keys):
    s = keys.frames
    ensure_group(redis_client, s, "g")
    ids = [xadd_bounded(redis_client, s, {"i": i}, maxlen=100) for i in range(3)]
    read_group(redis_client, s, "g", "dead-worker", count=10)
    assert autoclaim(redis_client, s, "g", "w2", min_idle_ms=60_000).entries == []
    time.sleep(0.02)
    res = autoclaim(redis_client, s, "g", "w2", min_idle_ms=10)
    assert [e.id for e in res.entries] == ids
    assert [e.deliveries for e in res.entries] == [2, 2, 2]
    time.sleep(0.02)
    res = autoclaim(redis_client, s, "g", "w3", min_idle_ms=10, count=1)
    assert [e.deliveries for e in res.entries] == [3]
    assert res.next_id == ids[1]


def test_autoclaim_reports_trimmed_entries(redis_client, keys):
    s = keys.frames
    ensure_group(redis_client, s, "g")
    first = xadd_bounded(redis_client, s, {"i": 0}, maxlen=2)
    read_group(redis_client, s, "g", "c", count=1)
    for i in range(3):
        xadd_bounded(redis_client, s, {"i": i + 1}, maxlen=2)  # trims the pending entry
    time.sleep(0.02)
    res = autoclaim(redis_client, s, "g", "c2", min_idle_ms=10)
    assert res.entries == [] and res.deleted == [first]
    assert pending_deliveries(redis_client, s, "g", [first]) == {}


def test_dead_letter_copies_and_acks(redis_client, keys):
    s = keys.frames
    ensure_group(redis_client, s, "g")
    eid = xadd_bounded(redis_client, s, {"ref": "x"}, maxlen=100)
    (e,) = read_group(redis_client, s, "g", "c", count=1)
    dead_letter(redis_client, s, "g", e, "decode failed", keys.frames_dead)
    ((_, fields),) = redis_client.xrange(keys.frames_dead)
    assert fields[b"ref"] == b"x" and fields[b"_reason"] == b"decode failed"
    assert fields[b"_id"] == eid and fields[b"_deliveries"] == b"1"
    assert pending_deliveries(redis_client, s, "g", [eid]) == {}


# -- leases ---------------------------------------------------------------------------------------


def test_lease_exclusive_and_expires(redis_client, keys):
    key = keys.camera_lease("cam1")
    a = Lease(redis_client, key, ttl_ms=150, owner="a")
    b = Lease(redis_client, key, ttl_ms=150, owner="b")
    assert a.acquire() and a.holder() == "a"
    assert a.acquire()  # re-entrant
    assert not b.acquire() and a.holder() == "a"
    assert a.holder() == "a" and 0 < a.remaining_ms() <= 150
    time.sleep(0.2)
    assert a.holder() is None  # expired on the server
    assert b.acquire() and b.holder() == "b"


def test_lease_renew_and_release_by_owner_only(redis_client, keys):
    key = keys.camera_lease("cam1")
    a = Lease(redis_client, key, ttl_ms=300, owner="a")
    b = Lease(redis_client, key, ttl_ms=300, owner="b")
    assert a.acquire()
    assert not b.renew() and not b.release()
    assert a.holder() == "a"
    time.sleep(0.15)
    assert a.renew() and a.remaining_ms() > 200
    assert a.release() and a.holder() is None
    assert not a.renew()  # gone: renew must not resurrect it
    assert redis_client.exists(key) == 0


def test_lease_expired_owner_cannot_touch_new_owner(redis_client, keys):
    key = keys.camera_lease("cam1")
    a = Lease(redis_client, key, ttl_ms=50, owner="a")
    b = Lease(redis_client, key, ttl_ms=5000, owner="b")
    assert a.acquire()
    time.sleep(0.08)
    assert b.acquire()
    assert not a.renew() and not a.release()
    assert b.holder() == "b"


def test_lease_context_manager_and_default_owner(redis_client, keys):
    key = keys.camera_lease("cam2")
    with Lease(redis_client, key, ttl_ms=1000) as lease:
        assert ":" in lease.owner and lease.holder() == lease.owner
        with pytest.raises(BusError, match="held by"), Lease(redis_client, key, ttl_ms=1000):
            pass
    assert redis_client.exists(key) == 0


def test_redis_errors_are_redis_exceptions(redis_client, keys):
    redis_client.set(keys.frames, "not a stream")
    with pytest.raises(redis.ResponseError):
        ensure_group(redis_client, keys.frames, "g")


def test_rediss_url_with_credentials_builds_tls_client():
    s = RedisSettings(url="rediss://app:pw%40x@redis.example:6380/3", ssl_cert_reqs="none")
    r = connect(s, ping=False)
    kw = r.connection_pool.connection_kwargs
    assert r.connection_pool.connection_class.__name__ == "SSLConnection"
    assert (kw["username"], kw["password"], kw["host"], kw["port"], kw["db"]) == (
        "app", "pw@x", "redis.example", 6380, 3)
    r2 = connect(RedisSettings(url="redis://redis:6379/0", username="u", password="secret"), ping=False)
    kw2 = r2.connection_pool.connection_kwargs
    assert (kw2["username"], kw2["password"]) == ("u", "secret")


def test_tls_and_an_acl_user_end_to_end(tmp_path):
    """rediss:// with a self-signed CA made here, an ACL user with a password; subscribe works over it."""
    import subprocess

    from core.settings import Settings
    from testkit import free_port
    from testkit.redis_service import RedisServer

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=facestream-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "srv.crt", "-days", "1", "-extfile", "san.ext")
    tport = free_port()
    srv = RedisServer(extra_args=("--tls-port", str(tport), "--tls-cert-file", str(tmp_path / "srv.crt"),
                                  "--tls-key-file", str(tmp_path / "srv.key"), "--tls-ca-cert-file",
                                  str(tmp_path / "ca.crt"), "--tls-auth-clients", "no")).start()
    try:
        srv.client().acl_setuser("fs", enabled=True, passwords=["+Us3r-PW"], keys=["*"], channels=["*"],
                                 commands=["+@all"])
        base = dict(url=f"rediss://127.0.0.1:{tport}/0", username="fs", password="Us3r-PW",
                    ssl_ca_certs=str(tmp_path / "ca.crt"), connect_timeout_s=2, retry_attempts=0)
        r = connect(RedisSettings(**base))
        assert r.ping() and r.connection_pool.connection_kwargs.get("ssl_ca_certs")
        from core.keys import Keys
        from core.schema import DetectionEvent, FrameInfo, ModelInfo
        from facestream.events import subscribe

        ev = DetectionEvent(event_id="t:1", camera_id="t", frame=FrameInfo(seq=1, capture_ns=1, width=1, height=1),
                            model=ModelInfo(name="m", version="1", sha256="0" * 64, runtime="onnxruntime"),
                            worker_id="w")
        keys = Keys("tls")
        r.xadd(keys.events, {"event": ev.model_dump_json()})
        got = list(subscribe(from_now=False, settings=Settings(redis=RedisSettings(**base, prefix="tls")),
                             max_events=1))
        assert [e.event_id for e in got] == ["t:1"]
        with pytest.raises(BusError, match=r"authentication|WRONGPASS|invalid"):
            connect(RedisSettings(**{**base, "password": "wrong"}))
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "o.key", "-out", "other.crt", "-days", "1",
            "-subj", "/CN=other")
        with pytest.raises(BusError) as ei:  # a server whose certificate our CA did not sign
            connect(RedisSettings(**{**base, "ssl_ca_certs": str(tmp_path / "other.crt")}))
        assert "Us3r-PW" not in str(ei.value)
    finally:
        srv.close()


def test_retry_delay_grows_with_jitter_up_to_its_cap_and_resets():
    from core.bus import RetryDelay

    w = RetryDelay(0.1, 2.0)
    delays = [w.next() for _ in range(8)]
    for i, d in enumerate(delays, start=1):
        full = min(2.0, 0.1 * 2**i)
        assert full / 2 <= d <= full  # equal jitter: never a tight loop, never past the cap
    w.reset()
    assert w.next() <= 0.2
