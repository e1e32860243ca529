"""Two `facestream worker` processes share a replay; one is SIGKILLed mid-stream: every frame still
yields exactly one event (by event id); the survivor stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time

import pytest

from testkit.clips import make_clip
from tests.e2e.procs import facestream, facestream_env
from tests.worker.helpers import pending_count, read_events, wait_for


@pytest.mark.chaos
def test_two_workers_one_killed_no_loss_no_duplicates(tmp_path, wprefix, rconn, keys, random_weights,
                                                      detector, procs):
    clip = make_clip(tmp_path / "clip.mp4", frames=150, fps=25, width=320, height=240)
    env = facestream_env(
        wprefix,
        FACESTREAM_WORKER__WEIGHTS=str(random_weights), FACESTREAM_WORKER__RUNTIME="onnx",
        FACESTREAM_WORKER__DEVICE="cpu", FACESTREAM_WORKER__HTTP_PORT="0",
        FACESTREAM_WORKER__CLAIM_IDLE_MS="800", FACESTREAM_WORKER__MAX_WAIT_MS="20",
        FACESTREAM_WORKER__MAX_BATCH="4", FACESTREAM_WORKER__HEARTBEAT_INTERVAL_MS="200",
    )
    wa = facestream("worker-a", ["worker", "--worker-id", "wA"], env, tmp_path)
    wb = facestream("worker-b", ["worker", "--worker-id", "wB"], env, tmp_path)
    procs += [wa, wb]
    for wid in ("wA", "wB"):
        wait_for(lambda w=wid: rconn.exists(keys.worker_heartbeat(w)), timeout=60, what=f"{wid} ready")

    run_id = "scale1"
    rp = facestream("replay", ["replay", str(clip.path), "--camera", "cam-s", "--pace", "realtime",
                               "--fps", "25", "--run-id", run_id, "--detect-size", "320"], env, tmp_path)
    procs.append(rp)

    def events_of(wid: str) -> int:
        return sum(1 for e in read_events(rconn, keys.run_events(run_id)) if e.worker_id == wid)

    wait_for(lambda: events_of("wA") >= 3, timeout=90, what="worker A serving")
    wa.signal(signal.SIGKILL)
    assert wa.wait(10) == -signal.SIGKILL
    assert rp.wait(120) == 0, rp.output()
    published = int(rconn.hget(keys.run_info(run_id), "frames_published"))
    assert published == 150

    wait_for(lambda: rconn.xlen(keys.run_events(run_id)) >= published and pending_count(rconn, keys) == 0,
             timeout=120, what="every frame's event")
    time.sleep(1.0)  # a late duplicate would show up here
    evs = read_events(rconn, keys.run_events(run_id))
    ids = [e.event_id for e in evs]
    assert len(ids) == len(set(ids)) == published
    assert set(ids) == {f"cam-s:{run_id}:{i}" for i in range(published)}
    assert len(read_events(rconn, keys.events)) == published
    assert {e.worker_id for e in evs} == {"wA", "wB"}

    wb.signal(signal.SIGTERM)
    assert wb.wait(15) == 0, wb.output()
    assert "worker stopped" in wb.output()


@pytest.mark.chaos
def test_a_killed_workers_live_frames_are_served_within_the_staleness_budget(tmp_path, wprefix, rconn, keys,
                                                                             random_weights, procs):
    """SIGKILL a worker holding live frames: a peer sees its liveness key expire and serves them
    within the budget (issue 11.3), long before claim_idle_ms (30 s) would have."""
    from tests.worker.helpers import face_like_image, publish_frame

    base = facestream_env(
        wprefix, FACESTREAM_WORKER__WEIGHTS=str(random_weights), FACESTREAM_WORKER__RUNTIME="onnx",
        FACESTREAM_WORKER__DEVICE="cpu", FACESTREAM_WORKER__HTTP_PORT="0", FACESTREAM_WORKER__MAX_BATCH="8",
        FACESTREAM_WORKER__DEAD_AFTER_MS="800", FACESTREAM_INGEST__MAX_FRAME_AGE_MS="4000",
    )
    # A is slow (every frame inferred at 4096 px), so it still holds the frames when it is killed
    slow = facestream("worker-slow", ["worker", "--worker-id", "wSlow"],
                      {**base, "FACESTREAM_WORKER__INPUT_SIZE": "4096"}, tmp_path)
    fast = facestream("worker-fast", ["worker", "--worker-id", "wFast"], base, tmp_path)
    procs += [slow, fast]
    for wid in ("wSlow", "wFast"):
        wait_for(lambda w=wid: rconn.exists(keys.worker_heartbeat(w)), timeout=60, what=f"{wid} ready")
    fast.signal(signal.SIGSTOP)  # only the slow one reads the frames
    try:
        img = face_like_image(320, 240)
        for seq in range(6):
            publish_frame(rconn, keys, "cam-live", seq, img)
        wait_for(lambda: any(c["name"] == b"wSlow" and c["pending"] >= 1
                             for c in rconn.xinfo_consumers(keys.frames, keys.worker_group)),
                 timeout=10, what="the slow worker holding frames")
    finally:
        fast.signal(signal.SIGCONT)
    slow.signal(signal.SIGKILL)
    assert slow.wait(10) == -signal.SIGKILL
    wait_for(lambda: rconn.xlen(keys.events) >= 6, timeout=15, what="an event for every live frame")
    evs = read_events(rconn, keys.events)
    assert sorted(e.frame.seq for e in evs) == list(range(6))  # none lost, none twice
    served = [e for e in evs if e.worker_id == "wFast"]
    assert served, "the survivor served none of the frames"
    # served inside the 4 s budget (after claim_idle_ms = 30 s they would have been dropped as stale)
    assert max(e.timings_ms.total for e in served) < 4000
    assert "took over the frames of a dead worker" in fast.output()
    wait_for(lambda: pending_count(rconn, keys) == 0, timeout=5, what="nothing left pending")
