"""core.logging: URL redaction and structured log output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.logging import RedactingFilter, redact_text, redact_url, setup_logging
from core.settings import LogSettings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("rtsps://admin:secret@cam.example/live", "rtsps://admin:***@cam.example/live"),
        ("http://u:p@host/x.mjpg", "http://u:***@host/x.mjpg"),
        ("https://u:p@host:8443/a/b?x=1", "https://u:***@host:8443/a/b?x=1"),
        # passwords with @ : % and / in them
        ("rtsp://admin:p@ss@10.0.0.5/stream", "rtsp://admin:***@10.0.0.5/stream"),
        ("rtsp://admin:pa:ss:wd@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s"),
        ("rtsp://admin:p%40ss%3Aw@10.0.0.5/s", "rtsp://admin:***@10.0.0.5/s"),
        ("rtsp://admin:a@b:c@d@cam:554/s", "rtsp://admin:***@cam:554/s"),
        ("rtsp://admin:pa/ss@cam/s", "rtsp://admin:***@cam/s"),
        ("rtsp://admin:p?ss@cam/s", "rtsp://admin:***@cam/s"),
        # a user field alone is often a token: redacted whole
        ("rtsp://admin@cam/s", "rtsp://***@cam/s"),
        ("rtsp://eyJhbGciOiJIUzI1NiJ9.abc@cam:554/s", "rtsp://***@cam:554/s"),
        ("file://admin:S3cretPW@localhost/x.mp4", "file://admin:***@localhost/x.mp4"),
        ("rtsp://cam:554/s", "rtsp://cam:554/s"),
        # credentials in the query string
        ("rtsp://cam/s?user=admin&password=secret&channel=1",
         "rtsp://cam/s?user=***&password=***&channel=1"),
        ("http://cam/video.cgi?pwd=1&pass=2&token=3&key=4&auth=5&secret=6&resolution=640x480",
         "http://cam/video.cgi?pwd=***&pass=***&token=***&key=***&auth=***&secret=***&resolution=640x480"),
        ("https://h/p?access_token=abc&X-Amz-Signature=def&api_key=g&fps=5#frag",
         "https://h/p?access_token=***&X-Amz-Signature=***&api_key=***&fps=5#frag"),
        ("rtsp://a:b@cam/s?passwd=x", "rtsp://a:***@cam/s?passwd=***"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:pw@redis:6380", "rediss://default:***@redis:6380"),
        # file paths and plain strings unchanged
        ("/data/videos/street-1080p.mp4", "/data/videos/street-1080p.mp4"),
        ("videos/a:b@c.mp4", "videos/a:b@c.mp4"),
        ("C:\\clips\\x.mp4", "C:\\clips\\x.mp4"),
        ("file:///data/x.mp4", "file:///data/x.mp4"),
        ("", ""),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_url_none_and_idempotent():
    assert redact_url(None) == ""
    once = redact_url("rtsp://a:b@c/d?token=e")
    assert redact_url(once) == once


def test_redact_text_finds_urls_in_prose():
    text = "open failed for 'rtsp://admin:hunter2@10.0.0.5/s' (timeout); retry rtsp://x/y?pwd=zz, ok"
    out = redact_text(text)
    assert "hunter2" not in out and "zz" not in out
    assert "rtsp://admin:***@10.0.0.5/s" in out and "rtsp://x/y?pwd=***" in out
    assert out.startswith("open failed for '") and out.endswith(", ok")


def _capture(fmt: str):
    buf = io.StringIO()
    handler = setup_logging(LogSettings(level="DEBUG", format=fmt), stream=buf)
    return buf, handler


def test_json_logs_with_extras_and_redaction():
    buf, handler = _capture("json")
    try:
        log = logging.getLogger("facestream.test")
        log.info("camera %s online at %s", "cam1", "rtsp://u:pw1@cam/s", extra={"camera": "cam1", "fps": 5.0,
                                                                           "url": "rtsp://u:pw2@cam/s"})
        try:
            raise RuntimeError("cannot open rtsp://u:pw3@cam/s")
        except RuntimeError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[0]["msg"] == "camera cam1 online at rtsp://u:***@cam/s"
    assert lines[0]["camera"] == "cam1" and lines[0]["fps"] == 5.0 and lines[0]["level"] == "INFO"
    assert lines[0]["url"] == "rtsp://u:***@cam/s"
    assert "RuntimeError" in lines[1]["exc"]
    assert not any(p in buf.getvalue() for p in ("pw1", "pw2", "pw3"))


def test_text_logs_key_value():
    buf, handler = _capture("text")
    try:
        logging.getLogger("facestream.test").warning("stalled", extra={"camera": "c 1", "n": 3})
    finally:
        logging.getLogger().removeHandler(handler)
    line = buf.getvalue().strip()
    assert "WARNING" in line and "facestream.test stalled" in line
    assert 'camera="c 1"' in line and "n=3" in line


def test_setup_logging_is_idempotent():
    root = logging.getLogger()
    before = len(root.handlers)
    h1 = setup_logging(LogSettings())
    h2 = setup_logging(LogSettings(level="WARNING"))
    try:
        assert h1 not in root.handlers and h2 in root.handlers
        assert len(root.handlers) <= before + 1
        assert root.level == logging.WARNING
    finally:
        root.removeHandler(h2)


def test_filter_on_foreign_handler():
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.addFilter(RedactingFilter())
    log = logging.getLogger("facestream.foreign")
    log.addHandler(h)
    log.propagate = False
    try:
        log.error("bad url %s", "rtsps://x:y@z/w")
    finally:
        log.removeHandler(h)
        log.propagate = True
    assert buf.getvalue().strip() == "bad url rtsps://x:***@z/w"
