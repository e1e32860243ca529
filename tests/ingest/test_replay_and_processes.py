"""Replay (exactly once, with backpressure), two real `facestream ingest` processes, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner

from core.bus import ack, ensure_group, read_group
from core.payload import decode_payload
from core.schema import CameraState, FrameRef
from ingest.registry import Registry
from ingest.replay import ReplayError, replay
from testkit.clips import read_index
from tests.ingest.conftest import facestream_exe, fast_settings, wait_for


def test_replay_publishes_every_frame_once_with_backpressure(r, keys, clip):
    s = fast_settings(frames_maxlen=20, replay_window=10)
    group = keys.worker_group
    ensure_group(r, keys.frames_replay, group, start_id="$")
    got: list[FrameRef] = []
    payload_ok: list[bool] = []
    stop = threading.Event()
    peak_backlog = [0]

    def slow_worker():
        while not stop.is_set() or r.xlen(keys.frames_replay):
            entries = read_group(r, keys.frames_replay, group, "slow-1", count=1, block_ms=100)
            if not entries and stop.is_set():
                break
            for e in entries:
                ref = FrameRef.from_fields(e.fields)
                data = r.get(ref.key)
                payload_ok.append(data is not None)
                if data is not None and len(got) % 10 == 0:
                    img = decode_payload(data, ref.codec, ref.payload_width, ref.payload_height)
                    assert read_index(img) == ref.seq  # payload is the frame the ref names
                got.append(ref)
                info = r.xinfo_groups(keys.frames_replay)[0]
                peak_backlog[0] = max(peak_backlog[0], int(info["lag"] or 0) + int(info["pending"]))
                time.sleep(0.01)
                ack(r, keys.frames_replay, group, e.id)

    t = threading.Thread(target=slow_worker, daemon=True)
    t.start()
    summary = replay(str(clip.path), "bench-cam", redis=r, keys=keys, settings=s, pace="asfast",
                     run_id="run-1", fps=25, detect_size=320, window=8)
    wait_for(lambda: len(got) >= summary.frames_published, 10, what="consumer drained")
    stop.set()
    t.join(5)
    assert summary.frames_decoded == clip.frames == 100
    assert summary.frames_published == 100  # detect fps = source fps: every frame
    seqs = sorted(f.seq for f in got)
    assert seqs == list(range(100))  # every frame exactly once
    assert all(payload_ok)
    assert all(f.source.kind == "replay" and f.source.run_id == "run-1" for f in got)
    assert got[5].key == keys.frame("bench-cam", got[5].seq, "run-1")
    assert summary.waited_s > 0  # the slow consumer made it wait
    assert peak_backlog[0] <= 8 + 1
    info = {k.decode(): v.decode() for k, v in r.hgetall(keys.run_info("run-1")).items()}
    assert info["status"] == "done" and info["frames_published"] == "100" and info["camera_id"] == "bench-cam"
    assert int(info["ended_ns"]) > int(info["started_ns"]) > 0
    # an existing run id is refused
    with pytest.raises(ReplayError):
        replay(str(clip.path), "bench-cam", redis=r, keys=keys, settings=s, run_id="run-1")


def test_replay_samples_by_pts_and_fails_cleanly(r, keys, clip, tmp_path):
    s = fast_settings()
    summary = replay(str(clip.path), "cam", redis=r, keys=keys, settings=s, fps=5, detect_size=160)
    assert summary.frames_published == 20  # 4 s at 5 fps
    refs = [FrameRef.from_fields(f) for _, f in r.xrange(keys.frames_replay)]
    assert [f.seq for f in refs] == list(range(20))
    assert [f.pts for f in refs[:3]] == [clip.pts[0], clip.pts[5], clip.pts[10]]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    with pytest.raises(ReplayError) as ei:
        replay(str(bad), "cam", redis=r, keys=keys, settings=s, run_id="bad-1")
    assert ei.value.summary.status == "failed"
    assert r.hget(keys.run_info("bad-1"), "status") == b"failed"


def _env(redis_settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "FACESTREAM_REDIS__URL": redis_settings.url,
        "FACESTREAM_REDIS__PREFIX": redis_settings.prefix,
        "FACESTREAM_INGEST__LEASE_TTL_MS": "2000",
        "FACESTREAM_INGEST__LEASE_RENEW_MS": "300",
        "FACESTREAM_INGEST__HTTP_PORT": "0",
        "FACESTREAM_INGEST__READ_TIMEOUT_S": "2",
        "FACESTREAM_INGEST__BACKOFF_MIN_S": "0.2",
        "FACESTREAM_INGEST__BACKOFF_MAX_S": "1",
        "FACESTREAM_INGEST__STATUS_INTERVAL_S": "0.3",
        "FACESTREAM_LOG__LEVEL": "WARNING",
    })
    env.update(extra)
    return env


def _holders(r, keys, cams):
    vals = r.mget([keys.camera_lease(c) for c in cams])
    return [v.decode() if v else None for v in vals]


@pytest.mark.rtsp
@pytest.mark.chaos
def test_two_ingest_processes_split_and_take_over(r, keys, redis_settings, rtsp_server):
    reg = Registry(r, keys)
    cams = [f"cam{i}" for i in range(4)]
    for c in cams:
        reg.add(c, rtsp_server.url, fps=2, detect_size=96)
    procs = [subprocess.Popen([*facestream_exe(), "ingest", "--id", name], env=_env(redis_settings),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name in ("ing-a", "ing-b")]
    try:
        def split():
            h = _holders(r, keys, cams)
            a = sum(1 for x in h if x and x.startswith("ing-a:"))
            b = sum(1 for x in h if x and x.startswith("ing-b:"))
            return (a, b) == (2, 2)
        wait_for(split, 45, interval=0.1, what="2 + 2 split")  # process start-up dominates on a busy host
        wait_for(lambda: all(s.state is CameraState.online for s in reg.statuses()), 10, what="all online")
        a_cams = [c for c, h in zip(cams, _holders(r, keys, cams), strict=True) if h.startswith("ing-a:")]
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        t_kill = time.monotonic()
        wait_for(lambda: all(h and h.startswith("ing-b:") for h in _holders(r, keys, cams)), 6, interval=0.05,
                 what="takeover")
        takeover_s = time.monotonic() - t_kill
        wait_for(lambda: all(reg.status(c).state is CameraState.online for c in a_cams), 10, what="online at b")
        assert takeover_s <= 2.0 + 0.3 + 1.0, takeover_s  # lease TTL + renew period + slack
        # SIGTERM: clean exit, leases released, status stopped
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(10) == 0
        assert _holders(r, keys, cams) == [None] * 4
        assert all(s.state is CameraState.stopped for s in reg.statuses())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)


def test_cli_camera_commands(redis_settings, r, keys):
    from facestream.cli import main

    env = {"FACESTREAM_REDIS__PREFIX": redis_settings.prefix, "FACESTREAM_REDIS__URL": redis_settings.url}
    run = CliRunner().invoke
    res = run(main, ["camera", "add", "gate", "rtsp://admin:hunter2@10.1.2.3/live", "--fps", "2",
                     "--detect-size", "480", "--transport", "udp"], env=env)
    assert res.exit_code == 0, res.output
    assert "hunter2" not in res.output and "admin:***@" in res.output
    res = run(main, ["camera", "add", "gate", "rtsp://10.1.2.3/live"], env=env)
    assert res.exit_code == 2 and "already exists" in res.output
    for args, msg in [(["bad id!", "x.mp4"], "invalid camera id"), (["c2", "ftp://h/x"], "scheme"),
                      (["c2", "x.mp4", "--fps", "500"], "fps"), (["c2", "x.mp4", "--detect-size", "8"], "detect_size")]:
        res = run(main, ["camera", "add", *args], env=env)
        assert res.exit_code == 2 and msg in res.output, res.output
    res = run(main, ["camera", "list"], env=env)
    assert res.exit_code == 0 and "gate" in res.output and "hunter2" not in res.output
    res = run(main, ["camera", "list", "--json"], env=env)
    d = json.loads(res.output.strip())
    assert d["fps"] == 2 and d["detect_size"] == 480 and d["transport"] == "udp" and "hunter2" not in d["url"]
    assert b"hunter2" in r.hget(keys.cameras, "gate")  # stored as given
    res = run(main, ["camera", "status", "gate"], env=env)
    assert res.exit_code == 0 and "stopped" in res.output
    res = run(main, ["camera", "status", "gate", "--json"], env=env)
    assert json.loads(res.output)["state"] == "stopped"
    res = run(main, ["camera", "remove", "gate"], env=env)
    assert res.exit_code == 0
    res = run(main, ["camera", "remove", "gate"], env=env)
    assert res.exit_code == 1


def test_cli_replay(redis_settings, r, keys, clip):
    from facestream.cli import main

    env = {"FACESTREAM_REDIS__PREFIX": redis_settings.prefix, "FACESTREAM_REDIS__URL": redis_settings.url}
    res = CliRunner().invoke(main, ["replay", str(clip.path), "--camera", "cam-r", "--fps", "5",
                                    "--detect-size", "160", "--run-id", "cli-run", "--json"], env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["frames_published"] == "20" and summary["status"] == "done"
    assert r.xlen(keys.frames_replay) == 20 and not r.exists(keys.frames)


def test_replay_failure_text_is_stored_redacted(r, keys, clip):
    def progress(_summary):
        raise RuntimeError("lost rtsp://admin:S3cretPW@10.0.0.9/live while publishing")

    with pytest.raises(RuntimeError):
        replay(str(clip.path), "cam", redis=r, keys=keys, settings=fast_settings(), fps=25, run_id="leak-1",
               progress=progress)
    info = {k.decode(): v.decode() for k, v in r.hgetall(keys.run_info("leak-1")).items()}
    assert info["status"] == "failed"
    assert "S3cretPW" not in str(info) and "rtsp://admin:***@10.0.0.9/live" in info["error"]


def test_cli_replay_limits_and_live_urls_need_one(redis_settings, r, keys, clip):
    from facestream.cli import main

    env = {"FACESTREAM_REDIS__PREFIX": redis_settings.prefix, "FACESTREAM_REDIS__URL": redis_settings.url}
    res = CliRunner().invoke(main, ["replay", str(clip.path), "--camera", "cam-m", "--fps", "5", "--detect-size",
                                    "160", "--run-id", "lim-1", "--max-frames", "7", "--json"], env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["frames_published"] == "7" and summary["status"] == "done"
    assert 0 < r.ttl(keys.run_info("lim-1")) <= 7 * 86_400  # run summaries expire (bounded memory)
    res = CliRunner().invoke(main, ["replay", str(clip.path), "--camera", "cam-m", "--fps", "5", "--detect-size",
                                    "160", "--run-id", "lim-2", "--duration", "2", "--json"], env=env)
    assert json.loads(res.output.strip().splitlines()[-1])["frames_published"] == "10"  # 2 s at 5 fps
    res = CliRunner().invoke(main, ["replay", "rtsp://127.0.0.1:1/x", "--camera", "cam-m"], env=env)
    assert res.exit_code == 2 and "--duration" in res.output


@pytest.mark.chaos
def test_sigterm_marks_a_replay_failed_not_running(redis_settings, r, keys, clip, tmp_path):
    import sys

    env = {**_env(redis_settings), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "facestream.cli", "replay", str(clip.path), "--camera", "cam-t",
                          "--pace", "realtime", "--run-id", "term-1"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    wait_for(lambda: r.hget(keys.run_info("term-1"), "status") == b"running", timeout=30, what="replay running")
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=20)[0].decode()
    assert p.returncode == 143, out
    info = r.hgetall(keys.run_info("term-1"))
    assert info[b"status"] == b"failed" and b"SIGTERM" in info[b"error"]
    assert int(info[b"ended_ns"]) > 0


def test_cli_camera_url_from_env_file_stdin_and_password_env(redis_settings, r, keys, tmp_path):
    from facestream.cli import main

    env = {"FACESTREAM_REDIS__PREFIX": redis_settings.prefix, "FACESTREAM_REDIS__URL": redis_settings.url,
           "CAM_URL": "rtsp://admin:S3cret@10.1.2.3/a", "CAM_PW": "p@ss:w/rd"}
    run = CliRunner().invoke
    res = run(main, ["camera", "add", "c-env", "--url-env", "CAM_URL"], env=env)
    assert res.exit_code == 0 and "S3cret" not in res.output, res.output
    f = tmp_path / "url.txt"
    f.write_text("rtsp://admin:S3cret@10.1.2.3/b\n")
    assert run(main, ["camera", "add", "c-file", "--url-file", str(f)], env=env).exit_code == 0
    assert run(main, ["camera", "add", "c-stdin", "--url-file", "-"], env=env,
               input="rtsp://admin:S3cret@10.1.2.3/c\n").exit_code == 0
    res = run(main, ["camera", "add", "c-pw", "rtsp://admin@10.1.2.3/d", "--password-env", "CAM_PW"], env=env)
    assert res.exit_code == 0 and "p@ss" not in res.output
    from ingest.registry import Registry

    reg = Registry(r, keys)
    assert [reg.get(c).url for c in ("c-env", "c-file", "c-stdin")] == [
        "rtsp://admin:S3cret@10.1.2.3/a", "rtsp://admin:S3cret@10.1.2.3/b", "rtsp://admin:S3cret@10.1.2.3/c"]
    assert reg.get("c-pw").url == "rtsp://admin:p%40ss%3Aw%2Frd@10.1.2.3/d"
    for args, msg in [(["c-x"], "give the URL once"), (["c-x", "--url-env", "NOPE"], "not set"),
                      (["c-x", "rtsp://h/x", "--url-env", "CAM_URL"], "give the URL once"),
                      (["c-x", "rtsp://h/x", "--password-env", "CAM_PW"], "needs a user name")]:
        res = run(main, ["camera", "add", *args], env=env)
        assert res.exit_code == 2 and msg in res.output, res.output


def test_status_since_is_when_the_camera_went_down_not_the_last_retry(r, keys):
    from ingest.supervisor import Supervisor
    from testkit import free_port

    reg = Registry(r, keys)
    reg.add("down-cam", f"rtsp://127.0.0.1:{free_port()}/x", fps=5)  # nothing listens: refused, retried
    s = fast_settings(backoff_min_s=0.1, backoff_max_s=0.2, open_timeout_s=1.0, status_interval_s=0.1)
    with Supervisor(r, keys, s):
        wait_for(lambda: (st := reg.status("down-cam")) is not None and st.reconnects >= 1, 15, what="a retry")
        first = reg.status("down-cam")
        wait_for(lambda: reg.status("down-cam").reconnects >= first.reconnects + 3, 15, what="more retries")
        later = reg.status("down-cam")
        assert later.since_ns == first.since_ns  # not reset by each retry
        assert later.state is not CameraState.online and later.fps == 0
    stopped = reg.status("down-cam")
    assert stopped.state is CameraState.stopped and stopped.fps == 0 and stopped.published_fps == 0
