"""`facestream demo` on the bundled clip (random fsdet-s; no Redis at the configured URL -> private one)."""

from __future__ import annotations

import json

import av
from click.testing import CliRunner

from testkit import free_port
from tests.worker.conftest import make_settings


def test_demo_replays_bundled_clip_with_private_redis(tmp_path, wprefix, random_weights, low_threshold_detector):
    from facestream.demo import DEMO_CLIP, run_demo

    settings = make_settings(wprefix, random_weights)
    dead = settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0", "connect_timeout_s": 1})
    settings = settings.model_copy(update={"redis": dead})
    lines: list[str] = []
    s = run_demo(settings, out_dir=tmp_path / "out", pace="asfast", echo=lines.append,
                 detector=low_threshold_detector)
    assert DEMO_CLIP.stat().st_size < 300_000
    assert "redis-server" in s.redis
    assert s.frames_published == s.events == 41 and s.stale_drops == 0
    assert s.faces == 5 * 41  # threshold 0: the random model 'finds' max_detections faces per frame
    assert s.latency_ms_p99 >= s.latency_ms_p50 > 0
    assert sum(1 for x in lines if "demo-cam #" in x) == 41
    assert len((tmp_path / "out/events.jsonl").read_text().splitlines()) == 41
    assert json.loads((tmp_path / "out/summary.json").read_text())["events"] == 41
    with av.open(str(tmp_path / "out/annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 41


def test_demo_without_weights_fails_clearly(tmp_path, wprefix):
    from facestream.cli import main

    env = {"FACESTREAM_REDIS__PREFIX": wprefix, "FACESTREAM_WORKER__WEIGHTS": str(tmp_path / "none.safetensors")}
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "o")], env=env)
    assert res.exit_code == 3
    assert "cannot load the face detector" in res.output
