"""Weights files: safetensors + metadata; every bad file is a clear ModelFileError, never an unpickle."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from models.facedet import get_config
from models.facedet import weights as W
from models.facedet.weights import (
    MissingWeightsError,
    ModelFileError,
    file_sha256,
    load_model,
    random_model,
    read_meta,
    save_weights,
)


@pytest.fixture(scope="module")
def model():
    return random_model("fsdet-s", seed=1)


def test_roundtrip_and_metadata(tmp_path, model):
    p = save_weights(model, tmp_path / "m.safetensors", version="2024.1", trained_on="wider-train",
                     threshold=0.42, recipe="r1", epochs=12)
    loaded, meta = load_model(p)
    assert meta.config == model.cfg
    assert (meta.name, meta.version, meta.trained_on, meta.threshold) == ("fsdet-s", "2024.1", "wider-train", 0.42)
    assert meta.extra == {"recipe": "r1", "epochs": "12"}
    assert meta.sha256 == file_sha256(p) and len(meta.sha256) == 64
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert read_meta(p).sha256 == meta.sha256


def test_sha_is_deterministic(tmp_path, model):
    a = save_weights(model, tmp_path / "a.safetensors", version="1", x="y", z="w")
    b = save_weights(model, tmp_path / "b.safetensors", version="1", z="w", x="y")
    assert file_sha256(a) == file_sha256(b)


def test_threshold_optional(tmp_path, model):
    _, meta = load_model(save_weights(model, tmp_path / "m.safetensors"))
    assert meta.threshold is None and meta.version == "0"


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.safetensors"):
        load_model(tmp_path / "nope.safetensors")


def test_missing_default_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(MissingWeightsError, match=r"facestream train configs/fsdet-m\.toml") as e:
        load_model()
    assert str(tmp_path / "fsdet-m.safetensors") in str(e.value)
    assert W.default_weights_path() == tmp_path / "fsdet-m.safetensors"


def test_truncated(tmp_path, model):
    p = save_weights(model, tmp_path / "m.safetensors")
    data = p.read_bytes()
    for cut in (len(data) - 100, 200, 5):
        p.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=str(p.name)):
            load_model(p)


def test_not_safetensors_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model(p)
    torch.save({"a": torch.zeros(2)}, tmp_path / "t.safetensors")
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model(tmp_path / "t.safetensors")
    assert not marker.exists()


def test_mismatched_tensors(tmp_path, model):
    # fsdet-s tensors under an fsdet-m config
    meta = W.WeightsMeta(config=get_config("fsdet-m"), name="fsdet-m").to_metadata()
    p = tmp_path / "mix.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p), metadata=meta)
    with pytest.raises(ModelFileError, match=r"shape mismatches|missing tensors") as e:
        load_model(p)
    assert "mix.safetensors" in str(e.value) and "fsdet-m" in str(e.value)
    # a missing tensor
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "head.cls.bias"}
    save_file(state, str(p), metadata=W.WeightsMeta(config=model.cfg, name="x").to_metadata())
    with pytest.raises(ModelFileError, match=r"1 missing tensors.*head\.cls\.bias"):
        load_model(p)


def test_wrong_format_metadata(tmp_path, model):
    p = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p))
    with pytest.raises(ModelFileError, match="not an FSDet weights file"):
        load_model(p)
    save_file({"a": torch.zeros(1)}, str(p), metadata={"format": "fsdet-v1", "config": "{bad"})
    with pytest.raises(ModelFileError, match="config"):
        load_model(p)
