"""The WIDER FACE evaluator against known answers and an independent, literal re-implementation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from training.evaluate.metrics import voc_ap
from training.evaluate.wider import (
    SETTINGS,
    evaluate_detector,
    evaluate_predictions,
    evaluate_wider,
    load_wider_gt,
)
from training.widerio import write_prediction_file

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("FACESTREAM_SHARED", REPO.parent / "shared"))


VAL_MINI = shared_dir() / "data" / "eval" / "widerface-val-mini"
needs_val_mini = pytest.mark.skipif(not (VAL_MINI / "ground_truth" / "wider_face_val.mat").exists(),
                                    reason=f"WIDER val mini not found at {VAL_MINI} (set FACESTREAM_SHARED)")


# ------------------------------------------------------------------------------------ synthetic fixture

def write_fixture(root: Path, images: list[dict], write_images: bool = True) -> tuple[Path, Path]:
    """Official-layout .mat files (+ tiny jpgs) for `images`: dicts with event, name, boxes (n,4) xywh,
    easy/medium/hard 0-based index lists. Each image gets a distinct size so a fake detector can tell
    them apart."""
    import cv2
    from scipy.io import savemat

    gt_dir, img_dir = root / "ground_truth", root / "images"
    gt_dir.mkdir(parents=True)
    events = sorted({im["event"] for im in images})
    E = len(events)
    ev_list = np.empty((E, 1), object)
    file_list = np.empty((E, 1), object)
    bbx = np.empty((E, 1), object)
    lists = {s: np.empty((E, 1), object) for s in SETTINGS}
    for e, ev in enumerate(events):
        ims = [im for im in images if im["event"] == ev]
        ev_list[e, 0] = ev
        fl = np.empty((len(ims), 1), object)
        bl = np.empty((len(ims), 1), object)
        gl = {s: np.empty((len(ims), 1), object) for s in SETTINGS}
        for j, im in enumerate(ims):
            fl[j, 0] = im["name"]
            bl[j, 0] = np.asarray(im["boxes"], np.float64).reshape(-1, 4)
            for s in SETTINGS:
                gl[s][j, 0] = (np.asarray(im[s], np.float64) + 1).reshape(-1, 1)
            if write_images and not im.get("absent"):
                (img_dir / ev).mkdir(parents=True, exist_ok=True)
                h, w = im.get("size", (64, 64))
                cv2.imwrite(str(img_dir / ev / f"{im['name']}.jpg"), np.zeros((h, w, 3), np.uint8))
        file_list[e, 0], bbx[e, 0] = fl, bl
        for s in SETTINGS:
            lists[s][e, 0] = gl[s]
    base = {"event_list": ev_list, "file_list": file_list, "face_bbx_list": bbx}
    savemat(str(gt_dir / "wider_face_val.mat"), base)
    for s in SETTINGS:
        savemat(str(gt_dir / f"wider_{s}_val.mat"), {**base, "gt_list": lists[s]})
    return gt_dir, img_dir


def random_fixture(rng: np.random.Generator, n_events: int = 3, n_images: int = 12) -> list[dict]:
    images = []
    for i in range(n_images):
        n = int(rng.integers(0, 15))
        if n == 0:
            boxes = np.zeros((1, 4))  # the official placeholder of a face-less image
            idx = {"easy": [], "medium": [], "hard": []}
        else:
            xy = rng.uniform(0, 600, (n, 2))
            wh = rng.uniform(3, 120, (n, 2))
            boxes = np.round(np.concatenate([xy, wh], 1))
            order = rng.permutation(n)
            h = sorted(order[: max(1, int(0.8 * n))].tolist())
            m = sorted(h[: max(0, len(h) // 2)])
            e = sorted(m[: max(0, len(m) // 2)])
            idx = {"easy": e, "medium": m, "hard": h}
        images.append({"event": f"{i % n_events}--Ev{i % n_events}", "name": f"img_{i}", "boxes": boxes,
                       "size": (40 + i, 50 + i), **idx})
    return images


def random_predictions(rng: np.random.Generator, images: list[dict]) -> dict[str, np.ndarray]:
    preds = {}
    for im in images:
        rows = []
        for b in im["boxes"]:
            if b[2] == 0 or rng.random() < 0.2:
                continue
            for _ in range(int(rng.integers(1, 3))):  # duplicates make second-match FPs
                j = b + rng.normal(0, 0.15, 4) * np.r_[b[2:], b[2:]]
                rows.append([*j, rng.uniform(0.05, 1.0)])
        for _ in range(int(rng.integers(0, 6))):  # background FPs
            rows.append([*rng.uniform(0, 600, 2), *rng.uniform(5, 80, 2), rng.uniform(0.01, 0.9)])
        if rows and rng.random() < 0.9:  # some images have no prediction at all
            preds[f"{im['event']}/{im['name']}"] = np.asarray(rows)
    return preds


# ---------------------------------------------------------------- independent, literal re-implementation

def reference_ap(images: list[dict], preds: dict[str, np.ndarray], iou_thresh: float = 0.5,
                 thresh_num: int = 1000) -> dict[str, float]:
    """Straight loops following the official evaluation.py / wider_eval.m, written independently."""

    def overlap(p, g):  # one prediction (xyxy) vs every gt (xyxy), VOC +1
        out = np.zeros(len(g))
        for n in range(len(g)):
            iw = min(p[2], g[n, 2]) - max(p[0], g[n, 0]) + 1
            ih = min(p[3], g[n, 3]) - max(p[1], g[n, 1]) + 1
            if iw > 0 and ih > 0:
                ua = (p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (g[n, 2] - g[n, 0] + 1) * (g[n, 3] - g[n, 1] + 1)
                out[n] = iw * ih / (ua - iw * ih)
        return out

    # normalise (official: max from 0, min from 1)
    mx, mn = 0.0, 1.0
    for v in preds.values():
        if len(v):
            mx, mn = max(mx, v[:, 4].max()), min(mn, v[:, 4].min())
    normed = {}
    for k, v in preds.items():
        v = v[np.argsort(-v[:, 4], kind="stable")].astype(float).copy()
        v[:, 4] = (v[:, 4] - mn) / (mx - mn) if mx > mn else 1.0
        normed[k] = v
    aps = {}
    for s in SETTINGS:
        pr = np.zeros((thresh_num, 2))
        faces = 0
        for im in images:
            gt = np.asarray(im["boxes"], float).copy()
            keep = im[s]
            faces += len(keep)
            pred = normed.get(f"{im['event']}/{im['name']}")
            if pred is None or len(pred) == 0 or len(gt) == 0:
                continue
            ignore = np.zeros(len(gt))
            ignore[keep] = 1
            p = pred.copy()
            p[:, 2] += p[:, 0]
            p[:, 3] += p[:, 1]
            gt[:, 2] += gt[:, 0]
            gt[:, 3] += gt[:, 1]
            recall_list = np.zeros(len(gt))
            proposal_list = np.ones(len(p))
            pred_recall = np.zeros(len(p))
            for h in range(len(p)):
                ov = overlap(p[h], gt)
                idx = int(np.argmax(ov))
                if ov[idx] >= iou_thresh:
                    if ignore[idx] == 0:
                        recall_list[idx] = -1
                        proposal_list[h] = -1
                    elif recall_list[idx] == 0:
                        recall_list[idx] = 1
                pred_recall[h] = np.sum(recall_list == 1)
            for t in range(thresh_num):
                thresh = 1 - (t + 1) / thresh_num
                r_index = np.where(p[:, 4] >= thresh)[0]
                if len(r_index):
                    r = r_index[-1]
                    pr[t, 0] += np.sum(proposal_list[: r + 1] == 1)
                    pr[t, 1] += pred_recall[r]
        prec = np.array([pr[t, 1] / pr[t, 0] if pr[t, 0] else 0.0 for t in range(thresh_num)])
        rec = pr[:, 1] / faces
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = max(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        aps[s] = float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    return aps


# ----------------------------------------------------------------------------------------------- tests

def test_voc_ap_known_values():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    assert voc_ap(np.array([0.0, 0.0]), np.array([np.nan, np.nan])) == 0.0  # no NaN leaks
    # envelope: a later, higher precision lifts the earlier segment
    assert voc_ap(np.array([0.2, 0.4]), np.array([0.5, 1.0])) == pytest.approx(0.4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_independent_reimplementation(tmp_path, seed):
    rng = np.random.default_rng(seed)
    images = random_fixture(rng)
    gt_dir, img_dir = write_fixture(tmp_path, images)
    preds = random_predictions(rng, images)
    gt = load_wider_gt(gt_dir, img_dir)
    ours = evaluate_wider(preds, gt)
    ref = reference_ap(images, preds)
    for s in SETTINGS:
        assert ours[s].ap == pytest.approx(ref[s], abs=1e-12), s
        assert np.isfinite(ours[s].precision).all()


def test_prediction_files_match_dict_and_read_exactly_k_rows(tmp_path):
    rng = np.random.default_rng(7)
    images = random_fixture(rng)
    gt_dir, img_dir = write_fixture(tmp_path, images)
    preds = random_predictions(rng, images)
    pred_dir = tmp_path / "preds"
    for key, p in preds.items():
        ev, name = key.split("/")
        shuffled = p[rng.permutation(len(p))]  # unsorted on disk: the reader must sort
        f = write_prediction_file(pred_dir, ev, name, shuffled)
        with open(f, "a") as fh:  # junk beyond the K rows must be ignored
            fh.write("1 1 500 500 1.0\n")
    gt = load_wider_gt(gt_dir, img_dir)
    a = evaluate_wider(preds, gt)
    b = evaluate_wider(pred_dir, gt)
    for s in SETTINGS:
        assert a[s].ap == pytest.approx(b[s].ap, abs=1e-4)  # files keep 1 decimal for boxes


def hand_fixture() -> list[dict]:
    # well separated boxes: shifting one by its own width+1 cannot reach another face
    return [
        {"event": "0--A", "name": "a", "boxes": [[10, 10, 40, 40], [200, 10, 20, 20], [400, 10, 8, 8]],
         "easy": [0], "medium": [0, 1], "hard": [0, 1, 2], "size": (50, 60)},
        {"event": "0--A", "name": "b", "boxes": [[10, 200, 60, 60], [300, 300, 10, 10]],
         "easy": [0], "medium": [0], "hard": [0, 1], "size": (51, 60)},
        {"event": "1--B", "name": "c", "boxes": [[0, 0, 0, 0]], "easy": [], "medium": [], "hard": [],
         "size": (52, 60)},
        {"event": "1--B", "name": "d", "boxes": [[50, 50, 30, 30]], "easy": [0], "medium": [0], "hard": [0],
         "size": (53, 60)},
    ]


def test_known_answers_on_hand_fixture(tmp_path):
    images = hand_fixture()
    gt_dir, img_dir = write_fixture(tmp_path, images)
    gt = load_wider_gt(gt_dir, img_dir)
    perfect = {f"{im['event']}/{im['name']}": np.c_[np.asarray(im["boxes"], float), np.ones(len(im["boxes"]))]
               for im in images if im["name"] != "c"}
    r = evaluate_predictions(perfect, gt, threshold=0.5)
    assert r.ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    assert r.at_threshold["hard"]["recall"] == 1.0 and r.at_threshold["hard"]["precision"] == 1.0

    # drop image d's prediction (a missing file): its face still counts -> recall 2/3, 3/4, 5/6
    missing = {k: v for k, v in perfect.items() if not k.endswith("/d")}
    r = evaluate_predictions(missing, gt)
    assert r.ap["easy"] == pytest.approx(2 / 3)
    assert r.ap["medium"] == pytest.approx(3 / 4)
    assert r.ap["hard"] == pytest.approx(5 / 6)

    # shift every box right by its width + 1: IoU 0 -> AP 0 (and all FPs)
    shifted = {k: v + np.c_[v[:, 2:3] + 1, np.zeros((len(v), 4))] for k, v in perfect.items()}
    r = evaluate_predictions(shifted, gt)
    assert r.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert r.at_threshold["hard"]["precision"] == 0.0

    # a duplicate of a recalled face is an FP; a match to a face outside the setting is neither
    dup = dict(perfect)
    dup["0--A/a"] = np.r_[perfect["0--A/a"], [[10, 10, 40, 40, 0.5]]]
    r = evaluate_predictions(dup, gt, threshold=0.4)
    assert r.at_threshold["easy"]["fp"] == 1  # faces 1, 2 of image a are ignored for easy: no FP
    assert r.at_threshold["hard"]["fp"] == 1
    assert r.at_threshold["easy"]["tp"] == 3

    # the face-less image's detections are FPs at the threshold (its 0 0 0 0 row is no face)
    fp_img = dict(perfect)
    fp_img["1--B/c"] = np.array([[5, 5, 10, 10, 0.9]])
    r = evaluate_predictions(fp_img, gt, threshold=0.5)
    assert r.at_threshold["all"]["fp"] == 1 and r.num_faces["all"] == 6


def test_restricts_to_present_images_and_runs_a_detector(tmp_path):
    images = hand_fixture()
    images[1]["absent"] = True  # image b is in the .mat but not on disk: not scored at all
    gt_dir, img_dir = write_fixture(tmp_path, images)
    by_size = {(im["size"][0], im["size"][1]): np.asarray(im["boxes"], float) for im in images}

    def detect(bgr):
        b = by_size[bgr.shape[:2]].copy()
        b = b[b[:, 2] > 0]
        b[:, 2:] += b[:, :2]
        return np.c_[b, np.full(len(b), 0.9)]

    r = evaluate_detector(detect, img_dir, gt_dir, threshold=0.5, name="oracle", progress=False,
                          pred_dir=tmp_path / "p")
    assert r.num_images == 3
    assert r.num_faces["hard"] == 4
    assert r.ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    assert (tmp_path / "p" / "0--A" / "a.txt").exists()
    assert "oracle" in r.to_markdown()
    import json

    assert json.loads(r.to_json())["ap"]["hard"] == 1.0


@needs_val_mini
def test_val_mini_perfect_and_perturbed():
    gt = load_wider_gt(VAL_MINI / "ground_truth", VAL_MINI / "images")
    assert len(gt) == 98
    perfect = {k: np.c_[b, np.ones(len(b))] for k, b in zip(gt.keys, gt.boxes, strict=True)}
    r = evaluate_predictions(perfect, gt)
    assert r.ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}

    # keep only every other hard face (by gt_list order): recall exactly computable, precision stays 1
    half, kept = {}, {s: 0 for s in SETTINGS}
    for k, b, i in zip(gt.keys, gt.boxes, range(len(gt)), strict=True):
        keep = gt.keep["hard"][i][::2]
        half[k] = np.c_[b[keep], np.ones(len(keep))]
        for s in SETTINGS:
            kept[s] += len(np.intersect1d(keep, gt.keep[s][i]))
    r = evaluate_predictions(half, gt)
    for s in SETTINGS:
        assert r.ap[s] == pytest.approx(kept[s] / gt.num_faces(s), abs=1e-12), s

    # shifted off their own face by (w + 1): nothing left at IoU >= 0.5 except by accident in crowds
    shifted = {k: v + np.c_[v[:, 2:3] + 1, np.zeros((len(v), 4))] for k, v in perfect.items()}
    r = evaluate_predictions(shifted, gt)
    assert max(r.ap.values()) < 0.02


PEER = shared_dir() / "models" / "peers" / "libfd_yunet_n_dynamic.onnx"


@pytest.mark.skipif(not PEER.exists(), reason=f"{PEER} absent")
def test_eval_wider_cli(tmp_path):
    import json

    from click.testing import CliRunner

    from facestream.cli import main

    write_fixture(tmp_path / "data", hand_fixture())
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "wider", "--model", str(PEER), "--data", str(tmp_path / "data"),
                                  "--out", str(out), "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    assert res["num_images"] == 4 and res["ap"]["hard"] == 0.0  # blank images: nothing to find
    assert res["threshold"] == 0.9  # YuNet's shipped threshold
    assert (out / "pr.png").stat().st_size > 0 and (out / "result.md").exists()
    r = CliRunner().invoke(main, ["eval", "wider", "--model", str(tmp_path / "nope.onnx"), "--data",
                                  str(tmp_path / "data")])
    assert r.exit_code != 0
