"""Pure unit tests: payload -> original pixel mapping, payload decoding, batching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.payload import PayloadError
from core.schema import FrameRef
from models.facedet.postprocess import Detections
from worker.batcher import Batcher
from worker.pipeline import detections_to_schema, payload_to_original


def ref(w=1920, h=1080, pw=640, ph=360, codec="jpeg") -> FrameRef:
    return FrameRef(camera_id="c", seq=1, capture_ns=1, width=w, height=h, payload_width=pw,
                    payload_height=ph, codec=codec, key="k")


def test_payload_to_original_scales_each_axis_and_clips():
    r = ref()  # 3x each axis
    boxes = np.array([[10, 20, 110, 220], [600, 300, 700, 400]], np.float32)
    lms = np.tile(np.array([[50, 60]], np.float32), (2, 5))
    b, k = payload_to_original(r, boxes, lms)
    np.testing.assert_allclose(b[0], [30, 60, 330, 660])
    np.testing.assert_allclose(b[1], [1800, 900, 1920, 1080])  # clipped to the frame
    np.testing.assert_allclose(k[0], [150, 180] * 5)


def test_payload_to_original_non_uniform_scale():
    r = ref(w=1000, h=1000, pw=500, ph=250)  # a payload squeezed vertically: 2x and 4x
    b, _ = payload_to_original(r, np.array([[10, 10, 20, 20]], np.float32))
    np.testing.assert_allclose(b[0], [20, 40, 40, 80])


def test_detections_to_schema_rounds_and_maps():
    d = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.91234], np.float32),
                   np.arange(10, dtype=np.float32)[None] + 1)
    out = detections_to_schema(ref(), d)
    assert out[0].box == (3.0, 6.0, 9.0, 12.0)
    assert out[0].score == pytest.approx(0.9123)
    assert out[0].landmarks[0] == (3.0, 6.0) and len(out[0].landmarks) == 5
    assert detections_to_schema(ref(), Detections.empty()) == []


def decode_payload(ref, data):
    from core.payload import decode_payload as decode

    return decode(data, ref.codec, ref.payload_width, ref.payload_height)


def test_decode_payload_jpeg_raw_and_errors():
    img = np.random.default_rng(0).integers(0, 255, (36, 64, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    assert decode_payload(ref(pw=64, ph=36), jpg).shape == (36, 64, 3)
    raw = img.tobytes()
    np.testing.assert_array_equal(decode_payload(ref(pw=64, ph=36, codec="raw"), raw), img)
    with pytest.raises(PayloadError):
        decode_payload(ref(pw=64, ph=36, codec="raw"), raw[:-1])
    with pytest.raises(PayloadError):
        decode_payload(ref(pw=64, ph=36), b"\xff\xd8garbage")
    with pytest.raises(PayloadError):
        decode_payload(ref(pw=65, ph=36), jpg)  # size differs from the FrameRef
    with pytest.raises(PayloadError):
        decode_payload(ref(), b"")


class FakeRead:
    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def __call__(self, count, block):
        self.calls.append((count, block))
        if not self.script:
            return []
        n = self.script.pop(0)
        return list(range(min(n, count)))


def test_batcher_fills_up_to_max_batch_then_stops():
    read = FakeRead([3, 3, 3])
    b = Batcher(read, max_batch=8, max_wait_ms=1000)
    assert len(b.collect()) == 8
    assert [c[0] for c in read.calls] == [8, 5, 2]


def test_batcher_idle_returns_empty_after_one_blocking_read():
    read = FakeRead([])
    assert Batcher(read, max_batch=4, max_wait_ms=50, idle_block_ms=123).collect() == []
    assert read.calls == [(4, 123)]


def test_batcher_stops_at_deadline_measured_from_first_frame():
    now = [0.0]
    read = FakeRead([1, 0, 0])

    def clock():
        return now[0]

    def reading(count, block):
        now[0] += 0.03  # every read takes 30 ms
        return read(count, block)

    out = Batcher(reading, max_batch=8, max_wait_ms=50, clock=clock).collect()
    assert len(out) == 1
    # first read blocks for the idle period; then it waits at most the remaining max_wait
    assert read.calls[0][1] == 1000 and read.calls[1][1] <= 50


def test_batcher_serves_entries_in_hand_first():
    read = FakeRead([])
    out = Batcher(read, max_batch=2, max_wait_ms=0).collect(first=["a", "b", "c"])
    assert out == ["a", "b"] and read.calls == []


def test_health_server_takes_the_next_free_port_and_names_the_ports_when_all_are_taken():
    import socket
    import urllib.request

    from core.http_health import PORT_TRIES, HealthServer, HttpBindError

    def listener(port=0):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed port in TIME_WAIT is free
        s.bind(("127.0.0.1", port))
        s.listen()
        return s

    # find PORT_TRIES + 1 consecutive free ports and hold the first
    for _ in range(50):
        first = listener()
        base = first.getsockname()[1]
        if base + PORT_TRIES < 65_000:
            break
        first.close()
    held = [first]
    try:
        second = HealthServer("127.0.0.1", base, lambda: {"ok": (True, "")}).start()  # a 2nd worker, same host
        try:
            assert second.port != base and base < second.port < base + PORT_TRIES
            with urllib.request.urlopen(f"http://127.0.0.1:{second.port}/healthz", timeout=5) as resp:
                assert resp.status == 200
        finally:
            second.stop()
        held += [listener(p) for p in range(base + 1, base + PORT_TRIES)]
        with pytest.raises(HttpBindError, match=f"ports {base}-{base + PORT_TRIES - 1} are all in use"):
            HealthServer("127.0.0.1", base, lambda: {})
    finally:
        for s in held:
            s.close()
