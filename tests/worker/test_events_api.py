"""facestream.events.subscribe and `facestream events tail` against the real Redis."""

from __future__ import annotations

import json
import threading
import time

from click.testing import CliRunner

from core.schema import DetectionEvent, FrameInfo, ModelInfo, event_id_for
from facestream.events import subscribe

MODEL = ModelInfo(name="fsdet-s", version="t", sha256="0" * 64, runtime="onnxruntime")


def put(r, keys, cam: str, seq: int) -> DetectionEvent:
    ev = DetectionEvent(event_id=event_id_for(cam, seq), camera_id=cam,
                        frame=FrameInfo(seq=seq, capture_ns=time.time_ns(), width=64, height=48),
                        model=MODEL, worker_id="w")
    js = ev.model_dump_json()
    r.xadd(keys.events, {"event": js})
    r.publish(keys.events_channel(cam), js)
    return ev


def collect_in_thread(it, out: list):
    t = threading.Thread(target=lambda: out.extend(it), daemon=True)
    t.start()
    return t


def test_tail_from_now_filters_cameras(rconn, keys, wsettings):
    put(rconn, keys, "a", 0)  # before subscribing: not seen
    out: list = []
    it = subscribe(camera="a", settings=wsettings, idle_timeout_s=1.0, block_ms=100)
    t = collect_in_thread(it, out)
    time.sleep(0.3)
    for seq in (1, 2):
        put(rconn, keys, "a", seq)
        put(rconn, keys, "b", seq)
    t.join(5)
    assert [e.event_id for e in out] == ["a:1", "a:2"]


def test_tail_from_start_and_max_events(rconn, keys, wsettings):
    for seq in range(5):
        put(rconn, keys, "a", seq)
    got = list(subscribe(from_now=False, settings=wsettings, max_events=3))
    assert [e.frame.seq for e in got] == [0, 1, 2]


def test_group_shares_events_and_redelivers_unacked(rconn, keys, wsettings):
    for seq in range(6):
        put(rconn, keys, "a", seq)
    g1 = list(subscribe(group="g", consumer="c1", from_now=False, settings=wsettings, max_events=3, count=3))
    g2 = list(subscribe(group="g", consumer="c2", from_now=False, settings=wsettings, idle_timeout_s=0.3))
    assert sorted(e.frame.seq for e in g1 + g2) == list(range(6))  # shared, no overlap

    put(rconn, keys, "a", 6)
    it = subscribe(group="g", consumer="c3", settings=wsettings, idle_timeout_s=2)
    assert next(it).frame.seq == 6  # handed out, not acked yet: the consumer "crashes" here
    assert rconn.xpending(keys.events, "g")["pending"] == 1
    again = list(subscribe(group="g", consumer="c3", settings=wsettings, idle_timeout_s=0.3))
    assert [e.frame.seq for e in again] == [6]  # redelivered to the restarted consumer, then acked
    assert rconn.xpending(keys.events, "g")["pending"] == 0


def test_pubsub_mode(rconn, keys, wsettings):
    out: list = []
    t = collect_in_thread(subscribe(camera=["b"], pubsub=True, settings=wsettings, idle_timeout_s=1.0), out)
    time.sleep(0.3)
    put(rconn, keys, "a", 1)
    put(rconn, keys, "b", 1)
    t.join(5)
    assert [e.event_id for e in out] == ["b:1"]


def test_cli_events_tail(rconn, keys, wsettings, monkeypatch):
    from facestream.cli import main

    for seq in range(3):
        put(rconn, keys, "cam9", seq)
    env = {"FACESTREAM_REDIS__PREFIX": wsettings.redis.prefix}
    res = CliRunner().invoke(main, ["events", "tail", "--from-start", "--count", "2", "--json"], env=env)
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert [json.loads(x)["event_id"] for x in lines] == ["cam9:0", "cam9:1"]
    res = CliRunner().invoke(main, ["events", "tail", "--from-start", "--camera", "cam9", "--timeout", "0.5"],
                             env=env)
    assert res.exit_code == 0, res.output
    assert "cam9 #2 64x48 0 faces" in res.output


def test_group_acks_only_what_the_caller_received(rconn, keys, wsettings):
    """max_events=2 over 6 events: the 4 never handed out stay pending and come back (issue 11.1)."""
    for seq in range(6):
        put(rconn, keys, "a", seq)
    first = list(subscribe(group="h", consumer="c1", from_now=False, settings=wsettings, max_events=2))
    assert [e.frame.seq for e in first] == [0, 1]
    assert rconn.xpending(keys.events, "h")["pending"] == 4
    rest = list(subscribe(group="h", consumer="c1", settings=wsettings, idle_timeout_s=0.3))
    assert [e.frame.seq for e in rest] == [2, 3, 4, 5]
    assert rconn.xpending(keys.events, "h")["pending"] == 0


def test_group_redelivers_the_event_whose_handler_raised(rconn, keys, wsettings):
    for seq in range(4):
        put(rconn, keys, "a", seq)
    seen = []
    try:
        for ev in subscribe(group="k", consumer="c1", from_now=False, settings=wsettings, idle_timeout_s=1):
            if ev.frame.seq == 1:
                raise RuntimeError("handler failed")
            seen.append(ev.frame.seq)
    except RuntimeError:
        pass
    assert seen == [0]
    again = list(subscribe(group="k", consumer="c1", settings=wsettings, idle_timeout_s=0.3))
    assert [e.frame.seq for e in again] == [1, 2, 3]  # 1 was in hand, 2-3 unseen: none lost


def test_camera_filters_in_one_group_never_take_each_others_events(rconn, keys, wsettings):
    for seq in range(3):
        put(rconn, keys, "a", seq)
        put(rconn, keys, "b", seq)
    a = list(subscribe(camera="a", group="f", consumer="x", from_now=False, settings=wsettings,
                       idle_timeout_s=0.3))
    b = list(subscribe(camera="b", group="f", consumer="y", from_now=False, settings=wsettings,
                       idle_timeout_s=0.3))
    assert [e.event_id for e in a] == ["a:0", "a:1", "a:2"]
    assert [e.event_id for e in b] == ["b:0", "b:1", "b:2"]
