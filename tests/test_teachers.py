"""Peer-detector runners (teachers): type detection, decoding checked on a real photo with known faces.

Needs the peer models and the WIDER val mini in ../shared (or $FACESTREAM_SHARED); skips otherwise.
The full accuracy check (AP on the 98 images, ~minutes) is `bench/accuracy.py`, and a slow test below.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESTREAM_SHARED", REPO.parent / "shared"))
PEERS = SHARED / "models" / "peers"
VAL = SHARED / "data" / "eval" / "widerface-val-mini"
IMAGE = "2--Demonstration/2_Demonstration_Political_Rally_2_816.jpg"  # 20 faces, 22-96 px wide

pytestmark = pytest.mark.skipif(not (PEERS / "scrfd_pypi_0.3.0.onnx").exists() or not (VAL / "images").exists(),
                                reason=f"peer models / WIDER val mini not found under {SHARED}")

CASES = [  # file, kind, has landmarks
    ("libfd_scrfd_500m_bnkps.onnx", "scrfd", True),
    ("scrfd_pypi_0.3.0.onnx", "scrfd", True),
    ("libfd_yunet_n_dynamic.onnx", "yunet", True),
    ("libfd_yunet_s_dynamic.onnx", "yunet", True),
    ("libfd_yunet_n_640_640.onnx", "yunet", True),
    ("centerface.onnx", "centerface", True),
    ("libfd_retinaface_mbnet0.25.onnx", "retinaface", True),
    ("ulfg_version-RFB-640.onnx", "ulfd", False),
    ("libfd_yolo5face_500m_320x320.onnx", "yolo5face", True),
]


@pytest.fixture(scope="module")
def photo():
    import cv2

    from training.widerio import read_wider_labels

    gt = next(im for im in read_wider_labels(VAL / "wider_face_val_bbx_gt.txt") if im.path == IMAGE)
    img = cv2.imread(str(VAL / "images" / IMAGE))
    assert img is not None
    return img, gt.xyxy


def _recall(dets: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> tuple[float, np.ndarray]:
    from training.evaluate.metrics import iou_xyxy

    if len(dets) == 0:
        return 0.0, np.full(len(gt), -1)
    ov = iou_xyxy(gt, dets[:, :4])
    best = ov.argmax(1)
    hit = ov.max(1) >= iou
    return float(hit.mean()), np.where(hit, best, -1)


@pytest.mark.parametrize(("fname", "kind", "has_lms"), CASES)
def test_runner_finds_the_faces(photo, fname, kind, has_lms):
    from training.distill.teachers import detect_model_type, load_teacher

    path = PEERS / fname
    if not path.exists():
        pytest.skip(f"{path} absent")
    assert detect_model_type(path) == kind
    t = load_teacher(path, score_threshold=0.3, threads=1)
    img, gt = photo
    dets, lms = t.detect(img)
    assert dets.ndim == 2 and dets.shape[1] == 5 and dets.dtype == np.float32
    assert (dets[:, 2] > dets[:, 0]).all() and (dets[:, 3] > dets[:, 1]).all()
    assert (dets[:, 0] >= 0).all() and (dets[:, 2] <= img.shape[1]).all()
    assert np.all(np.diff(dets[:, 4]) <= 0)  # sorted by score
    rec, match = _recall(dets, gt)
    assert rec >= (0.15 if "320" in fname else 0.4), f"{fname}: recall {rec:.2f} on {IMAGE}"
    if has_lms:
        assert lms is not None and lms.shape == (len(dets), 5, 2)
        # landmarks of the matched faces lie inside their boxes (decode order / axes right)
        j = match[match >= 0]
        b, c = dets[j, :4], lms[j]
        inside = ((c[..., 0] >= b[:, None, 0] - 2) & (c[..., 0] <= b[:, None, 2] + 2)
                  & (c[..., 1] >= b[:, None, 1] - 2) & (c[..., 1] <= b[:, None, 3] + 2))
        assert inside.mean() > 0.95
        assert (c[:, 0, 0] < c[:, 1, 0]).mean() > 0.8  # left eye left of right eye (image coordinates)
        assert (c[:, 3, 1] > c[:, 0, 1]).mean() > 0.8  # mouth below the eyes
    else:
        assert lms is None
    assert len(t(img)) == len(dets)  # __call__ = detect_fn contract


def test_haar_runs(photo):
    from training.distill.teachers import load_teacher

    img, _ = photo
    h = load_teacher("haar")
    dets = h(img)
    assert dets.shape[1] == 5 and len(dets) >= 1


def test_unknown_onnx_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from training.distill.teachers import detect_model_type

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    p = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(p))
    with pytest.raises(ValueError, match="unrecognised"):
        detect_model_type(p)


def test_ensemble_label_image(photo):
    from training.distill.label import TeacherEnsemble
    from training.distill.teachers import load_teacher

    img, gt = photo
    ens = TeacherEnsemble([load_teacher(PEERS / "libfd_yunet_n_dynamic.onnx", threads=1),
                           load_teacher(PEERS / "libfd_scrfd_500m_bnkps.onnx", threads=1)])
    fused = ens.label_image(img)
    rec, _ = _recall(fused.dets[fused.dets[:, 4] >= 0.5], gt)
    assert rec >= 0.4 and fused.landmarks.shape == (len(fused), 5, 2)


@pytest.mark.slow
@pytest.mark.parametrize(("fname", "kw", "expected"), [
    ("libfd_scrfd_500m_bnkps.onnx", {"max_size": 640}, (0.812, 0.798, 0.647)),
    ("libfd_yunet_n_dynamic.onnx", {}, (0.797, 0.798, 0.741)),
    ("scrfd_pypi_0.3.0.onnx", {}, (0.862, 0.856, 0.722)),
])
def test_reference_ap_on_val_mini(fname, kw, expected):
    """Runner + evaluator reproduce independently measured APs (official protocol, score >= 0.02)."""
    from training.distill.teachers import load_teacher
    from training.evaluate.wider import evaluate_detector

    t = load_teacher(PEERS / fname, score_threshold=0.02, **kw)
    r = evaluate_detector(t, VAL / "images", VAL / "ground_truth", progress=False)
    for s, e in zip(("easy", "medium", "hard"), expected, strict=True):
        assert abs(r.ap[s] - e) < 0.01, (s, r.ap[s], e)


GROUP = SHARED / "data" / "unlabeled" / "group-photos" / "10.jpg"


@pytest.mark.skipif(not GROUP.exists(), reason=f"{GROUP} absent")
def test_label_cli_images_merge_and_video(tmp_path):
    import shutil

    import cv2
    from click.testing import CliRunner

    from facestream.cli import main
    from training.widerio import read_wider_labels, write_wider_labels

    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    shutil.copy(GROUP, imgs / "sub" / "a.jpg")
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    teacher = str(PEERS / "libfd_yunet_n_dynamic.onnx")
    out = tmp_path / "labels.txt"
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--teacher", teacher, "--images", str(imgs),
                                  "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "1 unreadable images skipped" in r.output
    (lab,) = read_wider_labels(out)
    assert lab.path == "sub/a.jpg" and len(lab) > 40  # ~90 faces in this group photo
    assert lab.scores is not None and lab.landmarks is not None
    assert set(lab.attrs[:, 3].tolist()) <= {0, 1}

    # merge: pretend the human labelled the first 10 faces; only the others come back (fill-only)
    human = tmp_path / "human.txt"
    keep = lab.attrs[:, 3] == 0
    from training.widerio import WiderImage

    write_wider_labels(human, [WiderImage("sub/a.jpg", lab.boxes[keep][:10], np.zeros((10, 6), np.int32))])
    fill = tmp_path / "fill.txt"
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--images", str(imgs), "--merge-with",
                                  str(human), "--fill-as", "ignore", "--fill-only", "--out", str(fill),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    (f,) = read_wider_labels(fill)
    assert len(f) >= len(lab) - 10 - 5 and (f.attrs[:, 3] == 1).all()

    # --snap-iou: human boxes drawn 1.3x wider than the teacher's come back as the teacher's boxes
    big = lab.boxes[keep][:10].copy()
    big[:, 0] -= 0.15 * big[:, 2]
    big[:, 2] *= 1.3
    write_wider_labels(human, [WiderImage("sub/a.jpg", big, np.zeros((10, 6), np.int32))])
    snapped = tmp_path / "snapped.txt"
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--images", str(imgs), "--merge-with",
                                  str(human), "--snap-iou", "0.4", "--out", str(snapped), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "10 human boxes snapped" in r.output
    (s,) = read_wider_labels(snapped)
    np.testing.assert_allclose(s.boxes[:10], lab.boxes[keep][:10], atol=1.0)
    assert len(s) >= len(lab) - 5  # the human faces plus the fills
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--images", str(imgs), "--snap-iou", "0.4",
                                  "--out", str(snapped), "--no-progress"])
    assert r.exit_code != 0 and "--snap-iou works with --merge-with" in r.output

    # video: 3 frames, every 2nd -> frames 0 and 2
    vid = tmp_path / "v.avi"
    frame = cv2.imread(str(GROUP))
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 5, (frame.shape[1], frame.shape[0]))
    for _ in range(3):
        w.write(frame)
    w.release()
    vout = tmp_path / "video.txt"
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--video", str(vid), "--every", "2",
                                  "--out", str(vout), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [im.path for im in read_wider_labels(vout)] == ["v.avi/000000", "v.avi/000002"]

    # --frames-dir: the frames are saved, and frames + labels load as a training source
    from training.data.dataset import SourceSpec, load_source

    fdir = tmp_path / "frames"
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--video", str(vid), "--every", "2",
                                  "--frames-dir", str(fdir), "--out", str(vout), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [im.path for im in read_wider_labels(vout)] == ["v/000000.jpg", "v/000002.jpg"]
    recs = load_source(SourceSpec(str(fdir), str(vout)))
    assert len(recs) == 2 and all(cv2.imread(str(rec.path)) is not None and len(rec.boxes) > 40 for rec in recs)
    r = CliRunner().invoke(main, ["label", "--teacher", teacher, "--images", str(imgs), "--frames-dir",
                                  str(fdir), "--out", str(vout), "--no-progress"])
    assert r.exit_code != 0 and "--frames-dir works with --video" in r.output


def test_yunet_score_maps_line_up_with_the_students_points(photo):
    """distill_from = YuNet .onnx: its score maps come out point for point in the student's layout (levels
    8/16/32, row-major), high on the labelled faces and low away from them; any other ONNX is refused."""
    import cv2
    import torch

    from models.facedet import build_model, get_config
    from training.distill.score_maps import load_score_teacher

    img, gt = photo
    k = 640 / max(img.shape[:2])
    small = cv2.resize(img, None, fx=k, fy=k)
    h, w = (small.shape[0] + 31) // 32 * 32, (small.shape[1] + 31) // 32 * 32
    canvas = np.zeros((h, w, 3), np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    x = torch.from_numpy(np.stack([canvas, canvas[:, ::-1]])).permute(0, 3, 1, 2).float()  # a batch of two
    teacher = load_score_teacher(str(PEERS / "libfd_yunet_n_dynamic.onnx"), (8, 16, 32), torch.device("cpu"), 1)
    probs = teacher(x)
    student = build_model(get_config("fsdet-m")).eval()
    with torch.no_grad():
        levels = student.forward_levels(x)
    assert probs.shape == (2, sum(lv[0].shape[1] for lv in levels))
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1
    # the face-size point of each labelled face, at the student's own point coordinates
    pts = torch.cat([lv[3] for lv in levels]).numpy()
    boxes = gt * k
    inside = ((pts[None, :, 0] >= boxes[:, None, 0]) & (pts[None, :, 0] <= boxes[:, None, 2])
              & (pts[None, :, 1] >= boxes[:, None, 1]) & (pts[None, :, 1] <= boxes[:, None, 3]))
    p = probs[0].numpy()
    peak = np.array([p[row].max() if row.any() else 0.0 for row in inside])
    assert (peak > 0.5).mean() >= 0.6, peak  # the faces light up where the student's points are
    far = ~np.any(inside, 0)
    assert np.median(p[far]) < 0.05 and (p[far] > 0.5).mean() < 0.01
    # the flipped window's maps are the flipped maps (batch rows independent, row-major order right)
    s8 = (h // 8, w // 8)
    m0, m1 = p[: s8[0] * s8[1]].reshape(s8), probs[1].numpy()[: s8[0] * s8[1]].reshape(s8)
    assert np.corrcoef(m0.ravel(), m1[:, ::-1].ravel())[0, 1] > 0.8
    with pytest.raises(ValueError, match="YuNet"):
        load_score_teacher(str(PEERS / "libfd_scrfd_500m_bnkps.onnx"), (8, 16, 32), torch.device("cpu"))
