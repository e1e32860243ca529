"""Reusable fixtures: real Redis (isolated key prefix per test), a private redis-server, a real
RTSP server (GStreamer), a hung endpoint, and H.264 clips made with PyAV.

Redis
    redis_endpoint  (session)  RedisEndpoint(host, port, owned, url): 127.0.0.1:6379 when it answers,
                               else a redis-server started on a free port for the session.
    redis_settings             RedisSettings(url=..., prefix="fstest-<random>") (short timeouts)
    keys                       core.keys.Keys with that prefix
    redis_client               core.bus.connect(redis_settings); every "<prefix>:*" key is deleted after
    settings                   core.settings.Settings with redis_settings and default role sections
                               (not read from the environment: tests stay hermetic)
    private_redis              RedisServer (own process and port): start/stop/kill/restart/config_set

Media
    make_clip(name="clip.mp4", **kw) -> Clip    testkit/clips.make_clip into tmp_path
    h264_clip  (session)                         Clip: 50 frames, 25 fps, 320x240, index drawn per frame
    rtsp_server_factory(clip=None, **kw) -> RtspServer   started; all stopped after the test
    rtsp_server                                  RtspServer serving h264_clip at /cam, looping, live pace
    hung_endpoint                                HungEndpoint: accepts TCP and never answers (.url)

RTSP fixtures skip (with the reason) when /usr/bin/python3 lacks gi/GstRtspServer, except under CI=true,
where they fail instead. Mark such tests ``@pytest.mark.rtsp``.
"""

from __future__ import annotations

import os
import uuid

import pytest

from core.bus import connect, delete_prefix
from core.keys import Keys
from core.settings import IngestSettings, LogSettings, RedisSettings, Settings, WorkerSettings
from testkit.clips import Clip
from testkit.clips import make_clip as _make_clip
from testkit.hung import HungEndpoint
from testkit.redis_service import RedisEndpoint, RedisServer, redis_answers, set_session_url
from testkit.rtsp import RtspServer, rtsp_available

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    if IN_CI:
        return
    rtsp_items = [i for i in items if i.get_closest_marker("rtsp")]
    if not rtsp_items:
        return
    ok, reason = rtsp_available()
    if not ok:
        for item in rtsp_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def _require_rtsp() -> None:
    ok, reason = rtsp_available()
    if not ok:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


# -- Redis ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_endpoint():
    if redis_answers("127.0.0.1", 6379):
        ep = RedisEndpoint("127.0.0.1", 6379, owned=False)
        set_session_url(ep.url)
        yield ep
        return
    server = RedisServer().start()
    set_session_url(server.endpoint.url)  # fixtures that build settings themselves use this one too
    try:
        yield server.endpoint
    finally:
        server.close()


@pytest.fixture
def redis_settings(redis_endpoint) -> RedisSettings:
    return RedisSettings(
        url=redis_endpoint.url,
        prefix=f"fstest-{uuid.uuid4().hex[:10]}",
        socket_timeout_s=5,
        socket_connect_timeout_s=1,
        connect_timeout_s=2,
        retry_attempts=2,
        retry_backoff_min_s=0.01,
        retry_backoff_max_s=0.1,
    )


@pytest.fixture
def keys(redis_settings) -> Keys:
    return Keys(prefix=redis_settings.prefix)


@pytest.fixture
def redis_client(redis_settings):
    r = connect(redis_settings)
    try:
        yield r
    finally:
        try:
            delete_prefix(r, redis_settings.prefix)
        finally:
            r.close()


@pytest.fixture
def settings(redis_settings) -> Settings:
    return Settings(redis=redis_settings, ingest=IngestSettings(), worker=WorkerSettings(), log=LogSettings())


@pytest.fixture
def private_redis():
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


# -- media ----------------------------------------------------------------------------------------------


@pytest.fixture
def make_clip(tmp_path):
    def make(name: str = "clip.mp4", **kw) -> Clip:
        return _make_clip(tmp_path / name, **kw)

    return make


@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory) -> Clip:
    return _make_clip(tmp_path_factory.mktemp("clips") / "clip-320x240-25fps-50f.mp4",
                      frames=50, fps=25, width=320, height=240)


@pytest.fixture
def rtsp_server_factory(h264_clip):
    _require_rtsp()
    servers: list[RtspServer] = []

    def start(clip=None, **kw) -> RtspServer:
        clip = clip if clip is not None else h264_clip
        path = clip.path if isinstance(clip, Clip) else clip
        server = RtspServer(path, **kw)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
def rtsp_server(rtsp_server_factory) -> RtspServer:
    return rtsp_server_factory()


@pytest.fixture
def hung_endpoint():
    with HungEndpoint() as ep:
        yield ep
