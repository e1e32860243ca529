"""Bad input gets one clear line and a non-zero exit, never a traceback (issue 12's list)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from facestream.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"
YUNET = SHARED / "models" / "peers" / "libfd_yunet_n_dynamic.onnx"
WEIGHTS_ONNX = Path(__file__).resolve().parents[1] / "models" / "weights" / "fsdet-m.onnx"


@pytest.fixture()
def corrupt_video(tmp_path) -> Path:
    p = tmp_path / "corrupt.mp4"
    p.write_bytes(bytes(range(256)) * 80)
    return p


def _one_clear_line(res, code, *needles):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    for n in needles:
        assert n in res.output, res.output


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_label_with_a_missing_or_truncated_teacher(tmp_path):
    trunc = tmp_path / "truncated.onnx"
    trunc.write_bytes(WEIGHTS_ONNX.read_bytes()[:3000])
    _one_clear_line(run("label", "--teacher", "/nonexistent.onnx", "--images", tmp_path, "--out", tmp_path / "o"),
                    1, "/nonexistent.onnx: no such file")
    _one_clear_line(run("label", "--teacher", trunc, "--images", tmp_path, "--out", tmp_path / "o"),
                    1, "truncated.onnx: cannot load it")


@pytest.mark.skipif(not YUNET.exists(), reason="needs ../shared/models/peers")
@pytest.mark.parametrize("out", ["o.txt", "o.jsonl"])
def test_label_a_corrupt_video(tmp_path, corrupt_video, out):
    res = run("label", "--teacher", YUNET, "--video", corrupt_video, "--out", tmp_path / out, "--no-progress")
    _one_clear_line(res, 1, "cannot read video", "Invalid data found")
    assert "Errno" not in res.output


def test_eval_replay_with_a_video_as_labels(tmp_path, corrupt_video):
    res = run("eval", "replay", "--run-id", "r1", "--labels", corrupt_video)
    _one_clear_line(res, 2, "not a labels file")
    _one_clear_line(run("eval", "replay", "--run-id", "r1", "--labels", tmp_path / "none.jsonl"), 2,
                    "cannot read it")


def test_events_tail_with_a_bad_camera_id():
    _one_clear_line(run("events", "tail", "--camera", "bad id", "--timeout", "0.2"), 2, "invalid camera id")


def test_worker_device_is_validated_from_flags_and_env(monkeypatch):
    _one_clear_line(run("worker", "--device", "tpu"), 2, "FACESTREAM_WORKER__DEVICE", "'tpu'")
    monkeypatch.setenv("FACESTREAM_WORKER__DEVICE", "tpu")
    from core.settings import SettingsError, get_settings

    with pytest.raises(SettingsError, match="FACESTREAM_WORKER__DEVICE"):
        get_settings()


def test_demo_with_a_corrupt_clip(corrupt_video, tmp_path):
    res = run("demo", "--source", corrupt_video, "--out", tmp_path / "demo", "--quiet")
    _one_clear_line(res, 1, "facestream demo:", "Invalid data found")
