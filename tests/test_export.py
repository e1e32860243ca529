"""ONNX export: one self-contained file, dynamic N/H/W, BN folded, metadata, checker, ORT parity."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from models.facedet.export import OUTPUT_NAMES, check_onnx, export_onnx, read_onnx_meta
from models.facedet.weights import ModelFileError, file_sha256, load_model, random_model, save_weights


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("exp")
    w = save_weights(random_model("fsdet-s", seed=2), d / "fsdet-s.safetensors", version="9",
                     trained_on="random-init", threshold=0.55)
    model, _ = load_model(w)
    path = export_onnx(w, d / "fsdet-s.onnx")
    yield w, path, model
    torch.set_num_threads(n)


def test_single_file_no_side_data(exported):
    _, path, _ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == ["fsdet-s.onnx", "fsdet-s.safetensors"]
    m = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


def test_graph_contract(exported):
    _, path, _ = exported
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = m.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    assert [o.name for o in m.graph.output] == list(OUTPUT_NAMES)
    ops = {n.op_type for n in m.graph.node}
    assert "BatchNormalization" not in ops  # folded into the convolutions


def test_metadata(exported):
    w, path, _ = exported
    md = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    for key in ("input_size", "mean", "std", "channel_order", "strides", "outputs", "model_name",
                "model_version", "weights_sha256", "pad_multiple", "threshold", "config", "format"):
        assert key in md, key
    assert md["input_size"] == "640" and md["channel_order"] == "bgr" and md["pad_multiple"] == "32"
    assert json.loads(md["strides"]) == [8, 16, 32] and json.loads(md["outputs"]) == list(OUTPUT_NAMES)
    assert json.loads(md["mean"]) == [127.5] * 3 and json.loads(md["std"]) == [128.0] * 3
    assert md["weights_sha256"] == file_sha256(w) and md["model_version"] == "9"
    meta, _ = read_onnx_meta(path)
    assert meta.sha256 == file_sha256(w) and meta.threshold == 0.55 and meta.name == "fsdet-s"
    assert meta.config.name == "fsdet-s" and meta.trained_on == "random-init"


def test_dynamic_batch_and_size_parity(exported):
    import onnxruntime as ort

    _, path, model = exported
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 320, 320), (3, 3, 256, 320), (2, 3, 160, 96)]:
        x = rng.uniform(0, 255, shape).astype(np.float32)
        outs = sess.run(None, {"images": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x))
        for o, r, tol in zip(outs, ref, (1e-3, 2e-2, 2e-2), strict=True):  # scores; boxes/landmarks in px
            assert o.shape == tuple(r.shape)
            np.testing.assert_allclose(o, r.numpy(), atol=tol, rtol=1e-4)
    check_onnx(path, model)


def test_bad_onnx_file(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelFileError, match=r"x\.onnx"):
        read_onnx_meta(p)
    with pytest.raises(ModelFileError, match="no such ONNX file"):
        read_onnx_meta(tmp_path / "missing.onnx")
