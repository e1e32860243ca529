"""Unit tests of the ingest building blocks: PTS sampler, encoder, URL validation, error reasons."""

from __future__ import annotations

import numpy as np
import pytest

from core.payload import decode_payload
from core.schema import ErrorReason, PayloadCodec
from ingest.encoder import Encoder, target_size
from ingest.reader import backoff_delay
from ingest.sampler import PtsSampler
from ingest.sources import IngestError, VideoSource, classify_error, validate_url


def _kept(fps_in: float, fps_out: float, seconds: float, start: float = 0.0) -> list[float]:
    s = PtsSampler(fps_out)
    ts = [start + i / fps_in for i in range(int(seconds * fps_in))]
    return [t for t in ts if s.accept(t)]


@pytest.mark.parametrize("fps_in,fps_out", [(25, 5), (30, 5), (7.5, 5), (10, 9), (25, 25), (30, 12)])
def test_sampler_rate_by_pts(fps_in, fps_out):
    kept = _kept(fps_in, fps_out, 10.0, start=1234.5)
    assert abs(len(kept) - 10 * fps_out) <= 1
    gaps = np.diff(kept)
    assert gaps.min() >= 1 / fps_in - 1e-9  # never two frames closer than the source spacing


def test_sampler_ignores_wall_clock_and_frame_count():
    # variable frame rate: a 60 fps burst then 10 fps; output stays ~5 fps by PTS
    ts = [i / 60 for i in range(120)] + [2 + i / 10 for i in range(20)]
    s = PtsSampler(5)
    kept = [t for t in ts if s.accept(t)]
    assert len(kept) == 20  # 4 s at 5 fps


def test_sampler_gap_and_reset():
    s = PtsSampler(5, reset_gap_s=5)
    assert s.accept(0.0)
    assert not s.accept(0.1)
    assert s.accept(1.0)  # a 1 s gap (packet loss): re-anchor, no burst
    assert not s.accept(1.1)
    assert s.accept(1.2)
    assert s.accept(100.0)  # jump forward: reset
    assert s.accept(0.5)  # jump backwards (reconnect): reset
    assert s.resets == 2


def test_sampler_keeps_its_rate_on_b_frame_reordering():
    # 25 fps, GOP order I P B B (PTS 0 3 1 2, 4 7 5 6, ...): small backward steps are not a reset
    order = []
    for g in range(0, 250, 4):
        order += [g, g + 3, g + 1, g + 2]
    s = PtsSampler(5)
    kept = [i for i in order if s.accept(i / 25)]
    assert abs(len(kept) - 50) <= 2 and s.resets == 0  # 10 s at 5 fps, not ~every frame
    assert s.accept(-20.0) and s.resets == 1  # a real jump back (reconnect, loop) still restarts the grid


def test_sampler_missing_pts():
    s = PtsSampler(5)
    assert not s.accept(None)  # first RTSP frames without PTS: skipped
    assert s.accept(0.0)
    assert not s.accept(None)
    s2 = PtsSampler(5)
    kept = [s2.accept(None, wall=i / 25) for i in range(50)]  # never any PTS: wall clock after grace
    assert 8 <= sum(kept) <= 10


def test_target_size():
    assert target_size(1920, 1080, 640) == (640, 360)
    assert target_size(1080, 1920, 640) == (360, 640)
    assert target_size(320, 240, 640) == (320, 240)  # never upscaled
    assert target_size(1280, 720, 640) == (640, 360)


@pytest.mark.parametrize("codec", ["jpeg", "raw"])
def test_encoder_roundtrip(codec):
    import av

    img = np.zeros((720, 1280, 3), np.uint8)
    img[:, :640] = (0, 0, 255)
    frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    enc = Encoder(640, codec).encode(frame)
    assert (enc.width, enc.height) == (640, 360)
    assert enc.codec == PayloadCodec(codec)
    out = decode_payload(enc.data, enc.codec, enc.width, enc.height)
    assert out.shape == (360, 640, 3)
    assert out[180, 100, 2] > 200 and out[180, 100, 0] < 60  # left half red
    assert out[180, 540, 2] < 60  # right half black
    if codec == "raw":
        assert len(enc.data) == 640 * 360 * 3


def test_validate_url():
    for ok in ["rtsp://h/x", "rtsps://u:p@h:322/x", "http://h/s.mjpg", "https://h/x.m3u8", "/a/b.mp4",
               "clip.mp4", "file:///a/b.mp4", "file://localhost/a/b.mp4"]:
        assert validate_url(ok) == ok
    for bad, msg in [("", "empty"), ("ftp://h/x", "scheme"), ("rtsp://", "host"), ("rtsp://h:0/x", "port"),
                     ("rtsp://u:secret@h:99999/x", "malformed"), (" rtsp://h/x", "whitespace"),
                     ("file://admin:secret@localhost/x.mp4", "no user or password"),
                     ("file://nas/x.mp4", "empty or localhost"),
                     ("127.0.0.1:554/stream", "without a scheme"), ("ht!tp:/x", "without a scheme")]:
        with pytest.raises(ValueError, match=msg) as ei:
            validate_url(bad)
        assert "secret" not in str(ei.value)


def test_file_urls_name_local_paths():
    from ingest.sources import file_path

    assert file_path("file:///data/a b.mp4") == "/data/a b.mp4"
    assert file_path("file://localhost/data/x.mp4") == "/data/x.mp4"  # the standard form, not a relative path
    assert file_path("file:///data/a%20b.mp4") == "/data/a b.mp4"
    assert file_path("clips/x.mp4") == "clips/x.mp4"


def test_classify_error_text():
    import av.error

    class E(Exception):
        pass

    assert classify_error(E("method DESCRIBE failed: 401 Unauthorized")) is ErrorReason.auth
    assert classify_error(E("Server returned 404 Not Found")) is ErrorReason.not_found
    assert classify_error(av.error.TimeoutError(110, "Connection timed out")) is ErrorReason.timeout
    assert classify_error(av.error.ConnectionRefusedError(111, "refused")) is ErrorReason.connection
    assert classify_error(av.error.InvalidDataError(1094995529, "Invalid data")) is ErrorReason.codec
    assert classify_error(IngestError(ErrorReason.ended)) is ErrorReason.ended


def test_the_url_never_decides_the_error_reason():
    import av.error

    from ingest.sources import describe_error

    url = "rtsp://admin:pw@cam:8404/Streaming/Channels/401"  # a Hikvision channel path, port 8404
    refused = av.error.ConnectionRefusedError(111, "Connection refused", url)
    assert classify_error(refused) is ErrorReason.connection
    assert classify_error(OSError(5, "Input/output error", url)) is ErrorReason.connection
    text = describe_error(refused)
    assert "nothing listens" in text and "pw" not in text
    assert "does not answer" in describe_error(OSError(5, "Input/output error", url))
    stall = describe_error(av.error.ExitError(1414092869, "Immediate exit requested", url))
    assert "stalled" in stall and "1414092869" not in stall


def test_backoff_delay():
    import random

    rng = random.Random(1)
    ds = [backoff_delay(a, 0.5, 8.0, rng) for a in range(8)]
    for a, d in enumerate(ds):
        cap = min(8.0, 0.5 * 2**a)
        assert cap / 2 <= d <= cap


def test_missing_corrupt_and_non_video_files(tmp_path):
    from testkit.clips import make_clip

    with pytest.raises(IngestError) as ei:
        VideoSource(str(tmp_path / "nope.mp4")).open()
    assert ei.value.reason is ErrorReason.not_found

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 200)
    with pytest.raises(IngestError) as ei, VideoSource(str(text)) as src:
        list(src.frames())
    assert ei.value.reason in (ErrorReason.codec, ErrorReason.invalid)

    clip = make_clip(tmp_path / "ok.mp4", frames=30, width=160, height=120)
    data = bytearray(clip.path.read_bytes())
    rng = np.random.default_rng(0)
    # keep the container header, destroy the coded frames
    start = 64
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(IngestError) as ei, VideoSource(str(bad)) as src:
        list(src.frames())
    assert ei.value.reason in (ErrorReason.codec, ErrorReason.invalid)

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(IngestError) as ei:
        VideoSource(str(empty)).open()
    assert ei.value.reason is ErrorReason.codec


@pytest.mark.chaos
def test_frame_seqs_never_repeat_across_a_redis_restart(private_redis):
    """Event ids are camera:seq: a Redis that comes back empty must not hand out old seqs again."""
    from core.keys import Keys
    from ingest.publisher import Publisher

    keys = Keys("seqtest")
    seen: list[int] = []
    for _ in range(2):
        r = private_redis.client()
        pub = Publisher(r, keys, maxlen=100, payload_ttl_ms=1000, seq_block=4)
        seen += [pub.next_seq("cam") for _ in range(10)]
        r.close()
        private_redis.restart()  # no persistence: the counter is gone
        assert private_redis.client().get(keys.camera_seq("cam")) is None
    assert len(set(seen)) == len(seen) == 20
    assert seen == sorted(seen)  # and they keep increasing


def test_forget_camera_removes_every_series_of_the_camera():
    from core import metrics as core_metrics
    from ingest import metrics as m

    m.ERRORS.labels(camera="c-forget", reason="auth").inc()
    m.FRAMES_DROPPED.labels(camera="c-forget", reason="stale").inc()
    m.FRAMES_DECODED.labels(camera="c-forget").inc()
    m.set_state("c-forget", m.CameraState.online)
    m.FRAMES_DECODED.labels(camera="c-other").inc()
    m.forget_camera("c-forget")
    page = core_metrics.render()[0].decode()
    assert 'camera="c-forget"' not in page and 'camera="c-other"' in page
