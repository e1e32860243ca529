"""`facestream detect`: images, folders, videos, WIDER output, failures and exit codes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from models.facedet.weights import random_model, save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    p = save_weights(random_model("fsdet-s", seed=4), tmp_path_factory.mktemp("w") / "w.safetensors",
                     threshold=0.9)
    yield p
    torch.set_num_threads(n)


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    sizes = {"0--Parade/a.jpg": (120, 160), "0--Parade/b.png": (90, 70), "1--Handshaking/c.jpg": (64, 64)}
    for rel, (h, w) in sizes.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(p), cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    (root / "1--Handshaking" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("ignored: not an image")
    return root


def run(args):
    from facestream.cli import main

    return CliRunner().invoke(main, ["detect", *args], catch_exceptions=False)


def test_images_json_and_annotated(tree, tmp_path, weights):
    out = tmp_path / "out"
    r = run([str(tree), "--out", str(out), "--weights", str(weights), "--runtime", "torch", "--quiet",
             "--input-size", "160", "--threshold", "0.5"])
    assert r.exit_code == 1, r.output  # broken.jpg failed
    assert "broken.jpg" in r.output
    for rel in ("0--Parade/a", "0--Parade/b", "1--Handshaking/c"):
        doc = json.loads((out / f"{rel}.json").read_text())
        assert doc["model"]["runtime"] == "torch" and doc["count"] == len(doc["faces"])
        for f in doc["faces"]:
            x1, y1, x2, y2 = f["box"]
            assert 0 <= x1 <= x2 <= doc["width"] and 0 <= y1 <= y2 <= doc["height"]
            assert len(f["landmarks"]) == 5 and f["score"] >= 0.5
    assert cv2.imread(str(out / "0--Parade/a.jpg")).shape == (120, 160, 3)
    assert (out / "0--Parade/b.png").is_file()


def test_wider_format(tree, tmp_path, weights):
    out = tmp_path / "wider"
    r = run([str(tree / "0--Parade"), str(tree / "1--Handshaking" / "c.jpg"), "--out", str(out),
             "--weights", str(weights), "--format", "wider", "--quiet", "--input-size", "160",
             "--threshold", "0.02", "--runtime", "onnx"])
    assert r.exit_code == 0, r.output
    lines = (out / "a.txt").read_text().splitlines()
    assert lines[0] == "a" and int(lines[1]) == len(lines) - 2 > 0
    scores = [float(x.split()[4]) for x in lines[2:]]
    assert scores == sorted(scores, reverse=True)
    assert all(len(x.split()) == 5 and float(x.split()[2]) >= 0 for x in lines[2:])
    assert (out / "c.txt").is_file() and (out / "b.txt").is_file()
    assert not list(out.rglob("*.jpg"))  # no annotation by default for wider


def test_wider_mirrors_layout(tree, tmp_path, weights):
    out = tmp_path / "w2"
    r = run([str(tree), "--out", str(out), "--weights", str(weights), "--format", "wider", "--quiet",
             "--input-size", "160", "--runtime", "torch"])
    assert r.exit_code == 1
    assert (out / "0--Parade" / "a.txt").is_file() and (out / "1--Handshaking" / "c.txt").is_file()


def test_video(tmp_path, weights):
    import av

    src = tmp_path / "clip.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for i in range(6):
            img = np.full((64, 96, 3), 40 * i, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    out = tmp_path / "out"
    r = run([str(src), "--out", str(out), "--weights", str(weights), "--every", "2", "--batch", "2", "--quiet",
             "--input-size", "96", "--runtime", "torch"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "clip.json").read_text())
    assert [f["index"] for f in doc["frames"]] == [0, 2, 4] and doc["width"] == 96
    with av.open(str(out / "clip.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 3


def test_bad_video_and_missing_path_continue(tmp_path, weights, tree):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "o"
    r = run([str(bad), str(tmp_path / "nope.jpg"), str(tree / "0--Parade" / "a.jpg"), "--out", str(out),
             "--weights", str(weights), "--quiet", "--input-size", "160", "--runtime", "torch"])
    assert r.exit_code == 1
    assert "bad.mp4" in r.output and "nope.jpg" in r.output
    assert (out / "a.json").is_file()


def test_refuses_without_weights(tmp_path, monkeypatch, tree):
    from models.facedet import weights as W

    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path / "empty")
    r = run([str(tree), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "facestream train configs/fsdet-m.toml" in r.output


def test_usage_errors(tmp_path, weights):
    assert run([]).exit_code == 2
    assert run(["x.jpg", "--runtime", "tflite"]).exit_code == 2
    assert run(["x.jpg", "--batch", "0"]).exit_code == 2
    assert run(["x.jpg", "--weights", str(weights), "--input-size", "100"]).exit_code == 2
