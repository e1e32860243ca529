"""`facestream label --video ... --out X.jsonl` writes footage labels (teacher: OpenCV's Haar cascade,
which needs no model file)."""

from __future__ import annotations

from click.testing import CliRunner

from facestream.cli import main
from training.evaluate.footage_labels import load_labels


def test_label_video_footage_format(face_clip, tmp_path):
    clip, truth = face_clip
    out = tmp_path / "draft.jsonl"
    res = CliRunner().invoke(main, ["label", "--teacher", "haar", "--video", str(clip), "--every", "10",
                                    "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "footage labels" in res.output
    lab = load_labels(out)
    assert sorted(lab.frames) == [0, 10, 20, 30, 40] and not lab.dense
    assert (lab.width, lab.height, lab.fps) == (truth.width, truth.height, truth.fps)
    assert lab.time_base == truth.time_base and lab.start_time == 0.0
    assert [lab.frames[i].pts for i in lab.frames] == [truth.frames[i].pts for i in lab.frames]
    assert lab.header()["teachers"] == ["haar-frontalface"]
    # --format wider keeps the WIDER text output for videos
    res = CliRunner().invoke(main, ["label", "--teacher", "haar", "--video", str(clip), "--every", "25",
                                    "--format", "wider", "--out", str(tmp_path / "w.txt"), "--no-progress"])
    assert res.exit_code == 0 and (tmp_path / "w.txt").read_text().startswith(f"{clip.name}/000000")
    res = CliRunner().invoke(main, ["label", "--teacher", "haar", "--images", str(tmp_path), "--format", "footage",
                                    "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "--format footage works with --video" in res.output
