"""Compression: structured pruning, INT8 / FP16 variants of the shipped model, and the accuracy gate that
fails a variant losing too much (a deliberately over-pruned model) and passes one that loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from facestream.cli import main
from models.detector import load_detector
from models.facedet.export import read_onnx_meta
from models.facedet.weights import file_sha256, load_model, random_model, save_weights
from training.compress.calibration import calibration_frames
from training.compress.prune import prune_model, prune_state, tensor_groups
from training.compress.quantize import decode_nodes, stem_convs

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models/weights/fsdet-m.safetensors"
CLIP = REPO / "facestream/assets/face-demographics-walking-and-pause.mp4"
VAL_MINI = REPO.parent / "shared/data/eval/widerface-val-mini"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- pruning --------------------------------------------------------------------------------------------

def test_prune_ratio_zero_is_the_same_network():
    m = random_model("fsdet-s", seed=3)
    x = torch.rand(1, 3, 96, 128) * 255
    with torch.no_grad():
        ref, got = m(x), prune_model(m, 0.0)(x)
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(a, b)


def test_pruned_model_is_a_smaller_config_that_saves_loads_and_exports(tmp_path):
    m, meta = load_model(SHIPPED)
    p = prune_model(m, 0.5)
    assert p.cfg.widths == (16, 32, 64, 128) and p.cfg.neck == 32 and p.cfg.name == "fsdet-m-p50"
    assert all(w % 8 == 0 for w in (p.cfg.stem, *p.cfg.widths, p.cfg.neck))
    assert sum(t.numel() for t in p.parameters()) < 0.35 * sum(t.numel() for t in m.parameters())
    w = save_weights(p, tmp_path / "p50.safetensors", threshold=0.3, pruned_from=meta.sha256)
    det = load_detector(runtime="onnx", weights=w, threads=1)  # exports on the fly, like any model
    assert det.config.widths == (16, 32, 64, 128)
    assert det.meta.extra["pruned_from"] == meta.sha256


def test_pruning_drops_the_channels_with_the_smallest_batchnorm_scales():
    m = random_model("fsdet-s", seed=1)
    state = m.state_dict()
    # make stage-32 channels 0..63 unimportant in every BatchNorm that normalises them
    for k, t in state.items():
        if k.endswith(".weight") and t.ndim == 1 and ("w3", 0) in tensor_groups(k):
            t[:64] *= 1e-3
    _, _, keep = prune_state(m, 0.5)
    assert keep["w3"] == list(range(64, 128))


def test_unknown_tensors_fail_loudly():
    with pytest.raises(ValueError, match="does not know tensor"):
        tensor_groups("backbone.s64.0.dw.0.weight")


# -- quantization -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "fsdet-m-int8.onnx"
    res = run("compress", "quantize", "--model", SHIPPED, "--calib", CLIP, "--frames", 4, "--method", "minmax",
              "--no-gate", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_int8_variant_says_what_it_is_and_where_it_came_from(int8):
    meta, md = read_onnx_meta(int8)
    assert md["precision"] == "int8" and md["compressed_from"] == file_sha256(SHIPPED)
    assert meta.threshold is not None and meta.name == "fsdet-m"
    det = load_detector(runtime="onnx", weights=int8, threads=1)
    assert det.info.precision == "int8"  # what worker events report
    assert int8.with_suffix(".md").read_text().count("int8") >= 1  # its card


def test_int8_keeps_the_decode_in_float(int8):
    """Pixel coordinates do not fit in 8 bits: nothing downstream of the score sigmoid / box softplus is
    quantized, while the convolutions and residual adds are."""
    g = onnx.load(str(int8)).graph
    assert len(decode_nodes(onnx.load(str(SHIPPED.with_suffix(".onnx"))).graph)) > 20
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    todo = [o for n in g.node if n.op_type in ("Sigmoid", "Softplus") for o in n.output]
    assert len(todo) == 6  # one score and one box map per level
    seen = set()
    while todo:
        for n in consumers.get(todo.pop(), []):
            assert n.op_type not in ("QuantizeLinear", "DequantizeLinear"), n.name
            if n.name not in seen:
                seen.add(n.name)
                todo.extend(n.output)
    assert sum(n.op_type == "QuantizeLinear" for n in g.node) > 40


def test_int8_and_fp16_find_the_faces_the_float_model_finds(int8, tmp_path):
    fp16 = tmp_path / "fsdet-m-fp16.onnx"
    res = run("compress", "quantize", "--model", SHIPPED, "--precision", "fp16", "--no-gate", "--out", fp16)
    assert res.exit_code == 0, res.output
    assert read_onnx_meta(fp16)[1]["precision"] == "fp16"
    frames = calibration_frames([CLIP], 3)
    ref = load_detector(runtime="onnx", weights=SHIPPED.with_suffix(".onnx"), threads=1)
    for variant in (int8, fp16):
        det = load_detector(runtime="onnx", weights=variant, threads=1)
        for f in frames:
            (a,), (b,) = ref.detect([f]), det.detect([f])
            assert len(a) > 0
            from torchvision.ops import box_iou

            iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)) if len(b) else torch.zeros(len(a), 1)
            assert (iou.max(1).values > 0.7).float().mean() >= 0.8, variant.name


def test_keep_float_stem_leaves_the_first_convolution_in_float(tmp_path):
    out = tmp_path / "stem-int8.onnx"
    res = run("compress", "quantize", "--model", SHIPPED, "--calib", CLIP, "--frames", 2, "--method", "minmax",
              "--keep-float", "stem", "--no-gate", "--out", out)
    assert res.exit_code == 0, res.output
    (stem,) = stem_convs(onnx.load(str(SHIPPED.with_suffix(".onnx"))).graph)
    g = onnx.load(str(out)).graph
    producers = {o: n for n in g.node for o in n.output}
    conv = next(n for n in g.node if n.name == stem)
    # a float Conv: its input and weight come straight from float tensors, no DequantizeLinear before it
    assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in conv.input)
    assert sum(n.op_type == "QuantizeLinear" for n in g.node) > 40  # the rest is still int8
    det = load_detector(runtime="onnx", weights=out, threads=1)
    (d,) = det.detect(calibration_frames([CLIP], 1))
    assert len(d) > 0 and det.info.precision == "int8"


def test_quantize_refuses_bad_calibration_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run("compress", "quantize", "--model", SHIPPED, "--calib", tmp_path / "empty", "--no-gate",
              "--out", tmp_path / "x.onnx")
    assert res.exit_code == 1 and "no readable frames" in res.output and "Traceback" not in res.output


# -- the gate ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wider_subset(tmp_path_factory):
    """Twelve WIDER val mini images with the official ground truth (the evaluator scores the images present)."""
    if not (VAL_MINI / "ground_truth").is_dir():
        pytest.fail(f"WIDER val mini not found at {VAL_MINI}")
    root = tmp_path_factory.mktemp("wider")
    (root / "ground_truth").symlink_to(VAL_MINI / "ground_truth")
    images = sorted((VAL_MINI / "images").rglob("*.jpg"))[:12]
    for p in images:
        d = root / "images" / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        (d / p.name).symlink_to(p)
    return root


def test_gate_fails_an_over_pruned_model_with_the_numbers(wider_subset, tmp_path):
    m, _ = load_model(SHIPPED)
    bad = save_weights(prune_model(m, 0.75), tmp_path / "over-pruned.safetensors", threshold=0.3)
    res = run("compress", "gate", "--model", bad, "--baseline", SHIPPED, "--wider", wider_subset)
    assert res.exit_code == 1, res.output
    assert "gate FAIL" in res.output and "easy" in res.output and "Traceback" not in res.output


def test_gate_passes_a_variant_that_loses_nothing(wider_subset):
    # the exported float ONNX is the same model as its weights: no AP lost
    res = run("compress", "gate", "--model", SHIPPED.with_suffix(".onnx"), "--baseline", SHIPPED,
              "--wider", wider_subset, "--max-drop", "0.1")
    assert res.exit_code == 0, res.output
    assert "pass" in res.output


def test_a_variant_failing_the_gate_is_renamed_so_no_worker_serves_it(wider_subset, tmp_path):
    import click

    from facestream.commands.compress import _gate
    from models.facedet.export import export_onnx

    m, _ = load_model(SHIPPED)
    w = save_weights(prune_model(m, 0.75), tmp_path / "v.safetensors", threshold=0.3)
    variant = export_onnx(w, tmp_path / "v.onnx")
    with pytest.raises(click.ClickException, match="gate FAIL"):
        _gate(variant, SHIPPED, True, wider_subset, (), 1.0)
    assert not variant.exists() and (tmp_path / "v.rejected.onnx").exists()
    assert (tmp_path / "v.gate" / "gate.json").exists()


def test_prune_command_fine_tunes_through_the_training_pipeline(tmp_path):
    """`compress prune`: prune, fine-tune (train()), calibrate the threshold on the dev split, write weights +
    ONNX + card with where the model came from. A tiny synthetic set keeps it to seconds."""
    import cv2

    from models.facedet.weights import read_meta

    rng = np.random.default_rng(0)
    (tmp_path / "set" / "images").mkdir(parents=True)
    lines = []
    for i in range(12):
        img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        x, y, w = int(rng.integers(10, 90)), int(rng.integers(10, 60)), int(rng.integers(16, 40))
        cv2.ellipse(img, (x + w // 2, y + w // 2), (w // 2, w // 2), 0, 0, 360, (200, 180, 160), -1)
        cv2.imwrite(str(tmp_path / "set" / "images" / f"{i}.jpg"), img)
        lines += [f"images/{i}.jpg", "1", f"{x} {y} {w} {w} 0 0 0 0 0 0"]
    (tmp_path / "set" / "labels.txt").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'variant = "fsdet-m"\nbatch = 4\ncanvas = 128\nwindow = 96\nworkers = 0\nthreads = 1\n'
                   f'dev_fraction = 0.25\neval_every = 1\nfreeze = ["backbone.stem"]\n[[sources]]\n'
                   f'images = "{tmp_path / "set"}"\nlabels = "{tmp_path / "set" / "labels.txt"}"\n')
    out = tmp_path / "run"
    res = run("compress", "prune", "--model", SHIPPED, "--ratio", "0.5", "--config", cfg, "--epochs", 1,
              "--out", out, "--no-gate", "--distill", "--eval-every", 1)
    assert res.exit_code == 0, res.output
    w = out / "fsdet-m-p50.safetensors"
    meta = read_meta(w)
    assert meta.config.widths == (16, 32, 64, 128) and meta.threshold is not None
    assert meta.extra["pruned_from"].startswith("fsdet-m") and meta.extra["prune_ratio"] == "0.5"
    assert meta.extra["finetune_distill_from"].startswith("fsdet-m")  # learnt the float model's score maps too
    assert json.loads((out / "config.json").read_text())["distill_from"] == str(SHIPPED)
    assert (out / "fsdet-m-p50.onnx").exists()
    assert "prune_ratio" in w.with_suffix(".md").read_text()
    assert json.loads((out / "config.json").read_text())["freeze"] == []  # a pruned net trains every layer


def test_pruning_only_the_neck_keeps_the_backbone_as_trained():
    from training.compress.variants import untouched

    m, _ = load_model(SHIPPED)
    p = prune_model(m, 0.5, ("neck",))
    assert p.cfg.name == "fsdet-m-p50-neck" and p.cfg.neck == 32 and p.cfg.widths == m.cfg.widths
    sa, sb = m.state_dict(), p.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("backbone."))
    assert untouched(["backbone.stem", "backbone.s8", "neck.lateral"], sa, sb) == ["backbone.stem", "backbone.s8"]
    whole = prune_model(m, 0.5)
    assert untouched(["backbone.stem", "backbone.s8"], sa, whole.state_dict()) == []
    with pytest.raises(ValueError, match="unknown channel groups"):
        prune_model(m, 0.5, ("necks",))


def test_prune_command_refuses_unknown_groups_in_one_line_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["compress", "prune", "--model", str(SHIPPED), "--ratio", "0.5", "--groups",
                                    "neck,w9", "--out", str(out), "--no-gate"])
    assert res.exit_code == 1 and "unknown channel groups ['w9']" in res.output
    assert "Traceback" not in res.output and not out.exists()
