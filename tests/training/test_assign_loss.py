"""Target assignment and loss: behaviour on small, known layouts."""

import torch

from models.facedet import build_model, get_config
from models.facedet.network import grid_points
from training.assign import atss_assign
from training.losses import detection_loss


def _points(size: int, strides=(8, 16, 32)):
    pts, st, sizes = [], [], []
    for s in strides:
        p = grid_points(size // s, size // s, s)
        pts.append(p)
        st.append(torch.full((len(p),), float(s)))
        sizes.append(len(p))
    return torch.cat(pts), torch.cat(st), sizes


def test_every_face_gets_a_positive_even_tiny_ones():
    pts, st, sizes = _points(320)
    gt = torch.tensor([[[100, 100, 104, 104], [10, 10, 250, 250], [200, 40, 232, 72]]], dtype=torch.float32)
    valid = torch.ones(1, 3, dtype=torch.bool)
    idx = atss_assign(pts, st, sizes, gt, valid)
    for j in range(3):
        assert (idx[0] == j).any(), f"face {j} has no positive"
    # the tiny face is learnt at stride 8, the large one not there only
    assert set(st[idx[0] == 0].tolist()) == {8.0}
    assert 32.0 in set(st[idx[0] == 1].tolist())


def test_padding_faces_are_never_assigned():
    pts, st, sizes = _points(320)
    gt = torch.tensor([[[100, 100, 140, 140], [0, 0, 0, 0]]], dtype=torch.float32)
    valid = torch.tensor([[True, False]])
    idx = atss_assign(pts, st, sizes, gt, valid)
    assert (idx[0] == 0).any() and not (idx[0] == 1).any()


def test_assignment_is_per_image():
    pts, st, sizes = _points(320)
    gt = torch.tensor([[[100, 100, 140, 140]], [[0, 0, 1, 1]]], dtype=torch.float32)
    valid = torch.tensor([[True], [False]])
    idx = atss_assign(pts, st, sizes, gt, valid)
    assert (idx[0] >= 0).any() and (idx[1] < 0).all()


def _targets(boxes, ignore):
    b = torch.tensor([boxes], dtype=torch.float32)
    return {"boxes": b, "valid": torch.ones(b.shape[:2], dtype=torch.bool),
            "ignore": torch.tensor([ignore]), "landmarks": torch.full((*b.shape[:2], 10), float("nan"))}


def test_ignored_face_contributes_no_box_loss_and_loss_decreases():
    torch.manual_seed(0)
    model = build_model(get_config("fsdet-s"))
    img = torch.zeros(1, 3, 160, 160)
    img[..., 40:90, 50:100] = 255
    ignored = detection_loss(model.forward_levels(img), _targets([[50, 40, 100, 90]], [True]))[1]
    assert ignored["box"] == 0 and ignored["pos"] == 0
    tg = _targets([[50, 40, 100, 90]], [False])
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    first = None
    for _ in range(30):
        loss, st = detection_loss(model.forward_levels(img), tg)
        first = first if first is not None else st["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert st["pos"] > 0 and st["loss"] < 0.7 * first


def test_dev_ap_and_f1_threshold():
    import numpy as np

    from training.devset import average_precision, best_f1_threshold

    gt = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([False, False]))]
    perfect = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0.9, 0.8]))]
    assert average_precision(perfect, gt) == 1.0
    half = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), np.array([0.9, 0.8]))]
    assert abs(average_precision(half, gt) - 0.5) < 1e-9
    thr, f1 = best_f1_threshold(half, gt)
    assert thr == 0.9 and abs(f1 - 2 / 3) < 1e-9
    # a match to an ignored face is neither TP nor FP
    ig = [(gt[0][0], np.array([False, True]))]
    assert average_precision(perfect, ig) == 1.0
