"""`facestream train` end to end on a tiny synthetic set: checkpoints load, and resume is exact."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facestream.cli import main
from models.facedet.weights import load_model
from training.config import TrainConfig
from training.train import train


def _make_set(root):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(8):
        img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        x, y, w = int(rng.integers(10, 90)), int(rng.integers(10, 60)), int(rng.integers(16, 40))
        cv2.ellipse(img, (x + w // 2, y + w // 2), (w // 2, w // 2), 0, 0, 360, (200, 180, 160), -1)
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), img)
        lines += [f"images/{i}.jpg", "1", f"{x} {y} {w} {w} 0 0 0 0 0 0"]
    (root / "labels.txt").write_text("\n".join(lines) + "\n")


def _cfg(tmp, out, epochs):
    return TrainConfig(variant="fsdet-s", out=str(out), epochs=epochs, batch=4, canvas=128, window=96, workers=0,
                       threads=1, warmup_iters=2, dev_fraction=0.0,
                       sources=[{"images": str(tmp / "set"), "labels": str(tmp / "set" / "labels.txt")}])


def test_resume_is_exact(tmp_path):
    _make_set(tmp_path / "set")
    straight = train(_cfg(tmp_path, tmp_path / "a", 2))
    train(_cfg(tmp_path, tmp_path / "b", 1))
    resumed = train(_cfg(tmp_path, tmp_path / "b", 2))  # same run dir: picks up last.state.pt
    a, _ = load_model(straight / "last.safetensors")
    b, _meta = load_model(resumed / "last.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    rows = [json.loads(x) for x in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((resumed / "config.json").read_text())["git_sha"]
    assert (resumed / "training.png").stat().st_size > 0


def test_cli_rejects_a_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('variant = "nope"\n[[sources]]\nimages = "x"\nlabels = "y"\n')
    res = CliRunner().invoke(main, ["train", str(bad)])
    assert res.exit_code != 0 and "nope" in res.output
    bad.write_text('variant = "fsdet-m"\nepochs = "many"\nlr = -1\n')  # pydantic's errors, in one line
    res = CliRunner().invoke(main, ["train", str(bad)])
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1, res.output
    assert all(k in res.output for k in ("epochs", "'many'", "lr", "sources: Field required"))


@pytest.mark.parametrize("teacher", ["missing.onnx", "truncated.onnx", "truncated.safetensors"])
def test_cli_refuses_an_unusable_distillation_teacher_before_training(tmp_path, teacher):
    _make_set(tmp_path / "set")
    for name in ("truncated.onnx", "truncated.safetensors"):
        (tmp_path / name).write_bytes(b"\x08\x07garbage")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'variant = "fsdet-s"\nout = "{tmp_path / "run"}"\nepochs = 1\nbatch = 2\ncanvas = 128\n'
                   f'window = 96\nworkers = 0\ndistill_from = "{tmp_path / teacher}"\n[[sources]]\n'
                   f'images = "{tmp_path / "set"}"\nlabels = "{tmp_path / "set" / "labels.txt"}"\n')
    res = CliRunner().invoke(main, ["train", str(cfg)])
    assert res.exit_code != 0 and "distill_from" in res.output and teacher in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "log.jsonl").exists()  # nothing trained


def test_image_cache_returns_the_decoded_pixels_and_follows_edits(tmp_path):
    import os

    from training.data.dataset import ImageCache

    p = tmp_path / "a.png"
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(p), img)
    cache = ImageCache(tmp_path / "cache")
    assert np.array_equal(cache.read(p), img)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    assert np.array_equal(cache.read(p), img)  # from the cache now
    cv2.imwrite(str(p), img[::-1].copy())  # edited: decoded again
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert np.array_equal(cache.read(p), img[::-1])
    assert cache.read(tmp_path / "missing.png") is None


def test_init_starts_from_given_weights(tmp_path):
    _make_set(tmp_path / "set")
    first = train(_cfg(tmp_path, tmp_path / "a", 1))
    cfg = _cfg(tmp_path, tmp_path / "b", 1).model_copy(update={"init": str(first / "last.safetensors"), "lr": 1e-9,
                                                                "ema_decay": 0.0})
    second = train(cfg)
    a, _ = load_model(first / "last.safetensors")
    b, _ = load_model(second / "last.safetensors")
    # with a vanishing learning rate the run ends where its init began
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if va.dtype.is_floating_point and "running" not in k:
            assert torch.allclose(va, vb, atol=1e-5), k


def test_eval_dev_reports_ap_per_source(tmp_path):
    _make_set(tmp_path / "set")
    run = train(_cfg(tmp_path, tmp_path / "a", 1))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'variant = "fsdet-s"\ndev_fraction = 0.45\n[[sources]]\nimages = "{tmp_path / "set"}"\n'
                   f'labels = "{tmp_path / "set" / "labels.txt"}"\n')
    res = CliRunner().invoke(main, ["eval", "dev", "--model", str(run / "last.safetensors"), "--config", str(cfg),
                                    "--input-size", "128"])
    assert res.exit_code == 0, res.output
    row = res.output.strip().splitlines()[-1].split("|")
    assert "last.safetensors" in row[1] and 0.0 <= float(row[2]) <= 1.0 and len(row) == 10  # + AP >= 16/32/64 px
    one = CliRunner().invoke(main, ["eval", "dev", "--model", str(run / "last.safetensors"), "--config", str(cfg),
                                    "--input-size", "128", "--source", "set"])
    assert one.exit_code == 0 and one.output.strip().splitlines()[-1] == res.output.strip().splitlines()[-1]
    none = CliRunner().invoke(main, ["eval", "dev", "--model", str(run / "last.safetensors"), "--config", str(cfg),
                                     "--source", "nope"])
    assert none.exit_code != 0 and "no source 'nope'" in none.output and "Traceback" not in none.output
    bad = CliRunner().invoke(main, ["eval", "dev", "--model", str(cfg), "--config", str(cfg)])
    assert bad.exit_code != 0 and "cannot load" in bad.output and "Traceback" not in bad.output


def test_set_overrides_any_key_and_rejects_unknown_ones(tmp_path):
    from training.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('variant = "fsdet-s"\n[[sources]]\nimages = "x"\nlabels = "y"\nfill_as = "label"\n')
    c = load_config(cfg, sets=["neg_weight=2", "sources.0.fill_as=ignore", "out=runs/ab", "face_window_prob=0.5"])
    assert (c.neg_weight, c.sources[0].fill_as, c.out, c.face_window_prob) == (2.0, "ignore", "runs/ab", 0.5)
    for bad in (["neg_wieght=2"], ["sources.3.weight=1"], ["lr"], ["neg_weight=-1"]):
        res = CliRunner().invoke(main, ["train", str(cfg), *[a for s in bad for a in ("--set", s)]])
        assert res.exit_code != 0 and "Traceback" not in res.output, (bad, res.output)


def test_freeze_keeps_the_named_modules_as_the_init_has_them(tmp_path):
    _make_set(tmp_path / "set")
    first = train(_cfg(tmp_path, tmp_path / "a", 1))
    cfg = _cfg(tmp_path, tmp_path / "b", 1).model_copy(
        update={"init": str(first / "last.safetensors"), "ema_decay": 0.0, "lr": 1e-2,
                "freeze": ["backbone.stem", "backbone.s4"]})
    second = train(cfg.check())
    a, _ = load_model(first / "last.safetensors")
    b, _ = load_model(second / "last.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    frozen = [k for k in sa if k.startswith(("backbone.stem.", "backbone.s4."))]
    assert frozen and all(torch.equal(sa[k], sb[k]) for k in frozen)  # weights and BatchNorm statistics
    moved = [k for k in sa if k.startswith("backbone.s8.") and sa[k].dtype.is_floating_point]
    assert any(not torch.equal(sa[k], sb[k]) for k in moved)  # the rest still trains
    toml = tmp_path / "c.toml"
    toml.write_text(f'variant = "fsdet-s"\n[[sources]]\nimages = "{tmp_path / "set"}"\nlabels = "x"\n')
    res = CliRunner().invoke(main, ["train", str(toml), "--set", 'freeze=["backbone.stm"]'])
    assert res.exit_code != 0 and "no module backbone.stm" in res.output and "Traceback" not in res.output


def test_mine_negatives_writes_false_boxes_that_train_reads(tmp_path):
    from training.data import hard_negatives
    from training.evaluate.replay.match import ioa

    _make_set(tmp_path / "set")
    run = train(_cfg(tmp_path, tmp_path / "a", 1))  # an untrained model: its boxes are mostly false
    toml = tmp_path / "c.toml"
    toml.write_text(f'variant = "fsdet-s"\ndev_fraction = 0.0\ncanvas = 128\nwindow = 96\nbatch = 4\nworkers = 0\n'
                    f'threads = 1\nepochs = 1\nout = "{tmp_path / "b"}"\n'
                    f'[[sources]]\nimages = "{tmp_path / "set"}"\nlabels = "{tmp_path / "set" / "labels.txt"}"\n')
    out = tmp_path / "neg.json"
    res = CliRunner().invoke(main, ["mine-negatives", "--model", str(run / "last.safetensors"), "--config", str(toml),
                                    "--out", str(out), "--min-score", "0.0", "--input-size", "128"])
    assert res.exit_code == 0, res.output
    mined = hard_negatives.read(out)
    assert mined and "false boxes on" in res.output
    names = {f"{i}.jpg" for i in range(8)}
    for path, boxes in mined.items():
        assert Path(path).name in names and len(boxes)
    labels = (tmp_path / "set" / "labels.txt").read_text().split("\n")
    for i in range(8):
        x, y, w, h = map(float, labels[3 * i + 2].split()[:4])
        boxes = mined.get(str((tmp_path / "set" / "images" / f"{i}.jpg").resolve()))
        if boxes is not None:
            assert ioa(boxes, np.array([[x, y, x + w, y + h]])).max() <= 0.2
    trained = CliRunner().invoke(main, ["train", str(toml), "--set", f'hard_negatives="{out}"',
                                        "--set", "hard_negative_prob=1.0"])
    assert trained.exit_code == 0, trained.output
    out.write_text("{not json")
    bad = CliRunner().invoke(main, ["train", str(toml), "--set", f'hard_negatives="{out}"'])
    assert bad.exit_code != 0 and "hard negatives" in bad.output and "Traceback" not in bad.output


def test_distillation_trains_the_student_toward_the_teachers_score_maps(tmp_path):
    """distill_from: the loop runs the frozen teacher on the same windows and logs the distillation loss; a
    student taught only by the teacher (lr high, detection loss unchanged) ends closer to its scores."""
    from training.distill.score_maps import load_score_teacher
    from training.forward import mixed_forward
    from training.losses import score_distillation

    _make_set(tmp_path / "set")
    teacher = train(_cfg(tmp_path, tmp_path / "t", 2)) / "last.safetensors"
    base = _cfg(tmp_path, tmp_path / "plain", 1).model_copy(update={"seed": 5, "ema_decay": 0.0})
    plain = train(base)
    taught = train(base.model_copy(update={"out": str(tmp_path / "kd"), "distill_from": str(teacher),
                                           "distill_weight": 5.0}))
    rows = [json.loads(x) for x in (taught / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["distill"] > 0 and "distill" not in json.loads((plain / "log.jsonl").read_text())
    t = load_score_teacher(str(teacher), (8, 16, 32), torch.device("cpu"))
    x = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        t_probs = t(x)
        gap = {n: float(score_distillation(mixed_forward(load_model(p / "last.safetensors")[0], x, None), t_probs))
               for n, p in (("plain", plain), ("kd", taught))}
    assert gap["kd"] < gap["plain"]
    bad = base.model_copy(update={"out": str(tmp_path / "bad"), "distill_from": str(tmp_path / "missing.safetensors")})
    with pytest.raises(Exception, match="missing"):
        train(bad)


def test_deepen_starts_as_the_init_and_grows_its_new_blocks(tmp_path):
    """deepen: the deeper network computes exactly what its init computes, then its new blocks train (their
    zeroed output BatchNorm moves); the run resumes in the deeper shape; a stage losing blocks is one line."""
    from training.deepen import deepen_config, load_deepened, new_blocks

    _make_set(tmp_path / "set")
    first = train(_cfg(tmp_path, tmp_path / "a", 1))
    init, _ = load_model(first / "last.safetensors")
    deep_cfg = deepen_config(init.cfg, [1, 1, 3, 4])
    assert new_blocks(init.cfg, deep_cfg) == ["backbone.s16.3", "backbone.s32.3", "backbone.s32.4"]
    from models.facedet.network import build_model

    deep = build_model(deep_cfg).eval()
    load_deepened(deep, init)
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        for a, b in zip(init(x), deep(x), strict=True):
            assert torch.equal(a, b)

    cfg = _cfg(tmp_path, tmp_path / "b", 2).model_copy(
        update={"init": str(first / "last.safetensors"), "ema_decay": 0.0, "lr": 1e-2, "deepen": [1, 1, 3, 4]})
    run_dir = train(cfg.check(), resume=True)
    grown, meta = load_model(run_dir / "last.safetensors")
    assert meta.config.depths == (1, 1, 3, 4)
    gammas = dict(grown.named_modules())["backbone.s32.4.pw.1"].weight.detach()
    assert float(gammas.abs().max()) > 0  # the identity block trained
    resumed = train(cfg.model_copy(update={"epochs": 3}), resume=True)  # resumes the deeper network
    assert json.loads((resumed / "log.jsonl").read_text().splitlines()[-1])["epoch"] == 3

    toml = tmp_path / "c.toml"
    toml.write_text(f'variant = "fsdet-s"\n[[sources]]\nimages = "{tmp_path / "set"}"\nlabels = "x"\n')
    res = CliRunner().invoke(main, ["train", str(toml), "--set", "deepen=[1,0,2,2]"])
    assert res.exit_code != 0 and "s8 1 -> 0" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["train", str(toml), "--set", "deepen=[1,2,2,2]", "--set",
                                    'freeze=["backbone.stem","backbone.s8"]'])
    assert res.exit_code != 0 and "backbone.s8.2 inside a frozen module" in res.output
