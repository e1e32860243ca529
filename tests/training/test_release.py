"""`facestream export`: a checkpoint becomes a release with a dev-calibrated threshold and an ONNX."""

import json

from click.testing import CliRunner

from facestream.cli import main
from models.facedet.export import read_onnx_meta
from models.facedet.weights import random_model, read_meta, save_weights
from training.config import TrainConfig

from .test_train_resume import _make_set


def test_release_calibrates_threshold_on_dev_split(tmp_path):
    _make_set(tmp_path / "set")
    ckpt = save_weights(random_model("fsdet-s", seed=0), tmp_path / "ckpt.safetensors")
    cfg = TrainConfig(variant="fsdet-s", dev_fraction=0.4,
                      sources=[{"images": str(tmp_path / "set"), "labels": str(tmp_path / "set" / "labels.txt")}])
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(
        f'variant = "fsdet-s"\ndev_fraction = 0.4\n[[sources]]\nimages = "{tmp_path / "set"}"\n'
        f'labels = "{tmp_path / "set" / "labels.txt"}"\n'
    )
    assert cfg.dev_fraction == 0.4
    res = CliRunner().invoke(main, ["export", str(ckpt), "--out", str(tmp_path / "rel" / "m"), "--name", "m",
                                    "--version", "9.9", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["dev_images"] > 0 and 0 <= out["threshold"] <= 1
    meta = read_meta(tmp_path / "rel" / "m.safetensors")
    assert (meta.name, meta.version, meta.threshold) == ("m", "9.9", out["threshold"])
    onnx_meta, _ = read_onnx_meta(tmp_path / "rel" / "m.onnx")
    assert onnx_meta.threshold == out["threshold"]


def test_release_refuses_without_threshold_or_config(tmp_path):
    ckpt = save_weights(random_model("fsdet-s", seed=0), tmp_path / "ckpt.safetensors")
    res = CliRunner().invoke(main, ["export", str(ckpt), "--out", str(tmp_path / "m")])
    assert res.exit_code != 0 and "threshold" in res.output
