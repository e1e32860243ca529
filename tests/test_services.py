"""The test services themselves: real RTSP server (start/kill/restart, auth, pacing), hung endpoint,
private Redis, clip generator."""

from __future__ import annotations

import time

import av
import av.error
import pytest

from testkit.clips import read_index
from testkit.rtsp import PYAV_OPTIONS


def read_frames(url: str, n: int, timeout=(5, 5)) -> list:
    """Decode ``n`` frames from ``url``; returns [(index drawn in the frame, arrival time)]."""
    out = []
    with av.open(url, options=PYAV_OPTIONS, timeout=timeout) as c:
        for frame in c.decode(video=0):
            out.append((read_index(frame.to_ndarray(format="bgr24")), time.monotonic()))
            if len(out) >= n:
                break
    return out


def test_clip_has_known_frames_pts_and_content(make_clip):
    clip = make_clip(frames=12, fps=10, width=160, height=96)
    with av.open(str(clip.path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        assert (s.codec_context.name, s.codec_context.width, s.codec_context.height) == ("h264", 160, 96)
        assert s.average_rate == 10
    assert len(frames) == clip.frames == 12
    assert [f.pts for f in frames] == clip.pts
    assert [read_index(f.to_ndarray(format="bgr24")) for f in frames] == list(range(12))
    assert frames[0].key_frame


@pytest.mark.rtsp
def test_rtsp_serves_frames_in_order_at_real_time(rtsp_server, h264_clip):
    frames = read_frames(rtsp_server.url, 40)
    idx = [i for i, _ in frames]
    assert idx == list(range(40)), idx
    # paced at the clip's fps (not a burst): frames 10..39 arrive over ~1.2 s at 25 fps
    span = frames[39][1] - frames[10][1]
    assert 29 / h264_clip.fps * 0.8 < span < 29 / h264_clip.fps * 1.5, span
    assert rtsp_server.clients >= 1


@pytest.mark.rtsp
def test_rtsp_loops_forever(rtsp_server_factory, make_clip):
    clip = make_clip(frames=10, fps=25, width=160, height=96, gop=5)
    server = rtsp_server_factory(clip)
    idx = [i for i, _ in read_frames(server.url, 25)]
    assert idx == [i % 10 for i in range(25)], idx


@pytest.mark.rtsp
def test_rtsp_kill_and_restart_on_same_port(rtsp_server):
    port = rtsp_server.port
    assert len(read_frames(rtsp_server.url, 3)) == 3
    with av.open(rtsp_server.url, options=PYAV_OPTIONS, timeout=(3, 2)) as c:
        it = c.decode(video=0)
        next(it)
        rtsp_server.kill()
        assert not rtsp_server.running
        # a dead server ends the stream or raises: either way it stops within the read timeout
        t0 = time.monotonic()
        with pytest.raises((av.error.FFmpegError, StopIteration, OSError)):
            for _ in range(100):
                next(it)
        assert time.monotonic() - t0 < 5
    with pytest.raises(av.error.FFmpegError):
        av.open(rtsp_server.url, options=PYAV_OPTIONS, timeout=(2, 2))
    rtsp_server.restart()
    assert rtsp_server.port == port and rtsp_server.running
    assert len(read_frames(rtsp_server.url, 3)) == 3


@pytest.mark.rtsp
def test_rtsp_stop_is_graceful(rtsp_server):
    rtsp_server.stop()
    assert not rtsp_server.running
    rtsp_server.start()
    assert len(read_frames(rtsp_server.url, 2)) == 2


@pytest.mark.rtsp
def test_rtsp_basic_auth(rtsp_server_factory):
    server = rtsp_server_factory(user="admin", password="p@ss:w/rd")
    assert "p%40ss%3Aw%2Frd" in server.url
    assert len(read_frames(server.url, 2)) == 2
    for bad in (server.url_without_auth, server.url_with("admin", "wrong")):
        with pytest.raises(av.error.FFmpegError) as ei:
            av.open(bad, options=PYAV_OPTIONS, timeout=(3, 3))
        assert "401" in str(ei.value) or "Unauthorized" in str(ei.value) or ei.value.errno is not None


@pytest.mark.rtsp
def test_rtsp_busy_port_is_reported(rtsp_server, h264_clip):
    from testkit.rtsp import RtspServer

    other = RtspServer(h264_clip.path, port=rtsp_server.port)
    with pytest.raises(RuntimeError, match="port busy"):
        other.start(attempts=1)


def test_hung_endpoint_times_out(hung_endpoint):
    t0 = time.monotonic()
    with pytest.raises((av.error.TimeoutError, av.error.ExitError, av.error.InvalidDataError, OSError)):
        av.open(hung_endpoint.url, options=PYAV_OPTIONS, timeout=(1, 1))
    elapsed = time.monotonic() - t0
    assert elapsed < 4, elapsed
    assert hung_endpoint.connections >= 1


def test_private_redis_stop_start_restart(private_redis):
    c = private_redis.client()
    c.set("k", "v")
    assert c.get("k") == b"v"
    private_redis.config_set("stream-node-max-entries", 10)
    port = private_redis.port
    private_redis.kill()
    assert not private_redis.running
    private_redis.start()
    assert private_redis.port == port
    c2 = private_redis.client()
    assert c2.get("k") is None  # no persistence
    private_redis.restart()
    assert private_redis.client().ping()
