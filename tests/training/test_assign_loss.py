"""Target assignment and loss: behaviour on small, known layouts."""

import pytest
import torch

from models.facedet import build_model, get_config
from models.facedet.network import grid_points
from training.assign import atss_assign, points_in_boxes
from training.losses import detection_loss


def _points(size: int, strides=(8, 16, 32)):
    grids = [(size // s, size // s, s) for s in strides]
    st = torch.cat([torch.full((h * w,), float(s)) for h, w, s in grids])
    return grids, st


def _dense_reference(grids, gt, valid, anchor_scale=4.0, topk=9):
    """ATSS written the direct way (faces x all points): the oracle the sparse version must match."""
    pts = torch.cat([grid_points(h, w, s) for h, w, s in grids])
    st = torch.cat([torch.full((h * w,), float(s)) for h, w, s in grids])
    B, M = valid.shape
    half = st[:, None] * anchor_scale / 2
    anchors = torch.cat([pts - half, pts + half], 1)
    lt = torch.maximum(gt[..., :, None, :2], anchors[None, None, :, :2])
    rb = torch.minimum(gt[..., :, None, 2:], anchors[None, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (gt[..., 2:] - gt[..., :2]).prod(-1)[..., None] + (anchors[:, 2:] - anchors[:, :2]).prod(-1)
    ious = inter / (area - inter)
    centre = (gt[..., :2] + gt[..., 2:]) / 2
    dist = (centre[:, :, None, :] - pts[None, None]).pow(2).sum(-1)
    cand, start = [], 0
    for h, w, _ in grids:
        cand.append(dist[..., start:start + h * w].topk(topk, dim=-1, largest=False).indices + start)
        start += h * w
    cand = torch.cat(cand, -1)
    ci = ious.gather(-1, cand)
    pos = ci >= ci.mean(-1, keepdim=True) + ci.std(-1, keepdim=True)
    half_wh = torch.maximum((gt[..., 2:] - gt[..., :2])[:, :, None, :] / 2, st[cand][..., None] / 2)
    pos &= ((pts[cand] - centre[:, :, None, :]).abs() <= half_wh).all(-1) & valid[..., None]
    mask = torch.zeros(B, M, len(pts), dtype=torch.bool).scatter_(-1, cand, pos)
    best, idx = torch.where(mask, ious, torch.full_like(ious, -1.0)).max(1)
    return torch.where(best >= 0, idx, torch.full_like(idx, -1))


def test_sparse_assignment_matches_the_dense_definition_on_crowds():
    torch.manual_seed(0)
    grids, _ = _points(320)
    xy = torch.rand(4, 150, 2) * 320
    wh = torch.rand(4, 150, 2) ** 3 * 150 + 2
    gt = torch.cat([xy - wh / 2, xy + wh / 2], -1).clamp(0, 320)
    valid = torch.rand(4, 150) < 0.8
    got = atss_assign(grids, gt, valid)
    assert (got >= 0).sum() > 1000
    assert torch.equal(got, _dense_reference(grids, gt, valid))


def test_points_in_boxes_marks_exactly_the_cells_whose_centre_is_inside():
    grids, _ = _points(64)
    pts = torch.cat([grid_points(h, w, s) for h, w, s in grids])
    boxes = torch.tensor([[[3.0, 4.0, 20.0, 12.0], [40, 40, 41, 41], [0, 0, 64, 64]]])
    mask = torch.tensor([[True, True, False]])
    got = points_in_boxes(grids, boxes, mask)[0]
    b = boxes[0, :2]
    want = ((pts[:, None, 0] >= b[:, 0]) & (pts[:, None, 0] <= b[:, 2])
            & (pts[:, None, 1] >= b[:, 1]) & (pts[:, None, 1] <= b[:, 3])).any(1)
    assert got.any() and torch.equal(got, want)


def test_every_face_gets_a_positive_even_tiny_ones():
    grids, st = _points(320)
    gt = torch.tensor([[[100, 100, 104, 104], [10, 10, 250, 250], [200, 40, 232, 72]]], dtype=torch.float32)
    valid = torch.ones(1, 3, dtype=torch.bool)
    idx = atss_assign(grids, gt, valid)
    for j in range(3):
        assert (idx[0] == j).any(), f"face {j} has no positive"
    # the tiny face is learnt at stride 8, the large one not there only
    assert set(st[idx[0] == 0].tolist()) == {8.0}
    assert 32.0 in set(st[idx[0] == 1].tolist())


def test_padding_faces_are_never_assigned():
    grids, _ = _points(320)
    gt = torch.tensor([[[100, 100, 140, 140], [0, 0, 0, 0]]], dtype=torch.float32)
    valid = torch.tensor([[True, False]])
    idx = atss_assign(grids, gt, valid)
    assert (idx[0] == 0).any() and not (idx[0] == 1).any()


def test_assignment_is_per_image():
    grids, _ = _points(320)
    gt = torch.tensor([[[100, 100, 140, 140]], [[0, 0, 1, 1]]], dtype=torch.float32)
    valid = torch.tensor([[True], [False]])
    idx = atss_assign(grids, gt, valid)
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


def test_neg_weight_scales_only_the_background_score_loss():
    torch.manual_seed(0)
    model = build_model(get_config("fsdet-s"))
    img = torch.zeros(1, 3, 160, 160)
    img[..., 40:90, 50:100] = 255
    tg = _targets([[50, 40, 100, 90]], [False])
    levels = model.forward_levels(img)
    one = detection_loss(levels, tg)[1]
    three = detection_loss(levels, tg, neg_weight=3.0)[1]
    assert three["box"] == one["box"] and three["pos"] == one["pos"] > 0
    assert one["cls"] < three["cls"] < 3 * one["cls"]  # the positives' part is not scaled


def test_ignore_small_turns_faces_under_the_size_into_ignore_regions():
    import numpy as np

    from training.devset import average_precision, ignore_small

    gt = [(np.array([[0, 0, 40, 40], [100, 100, 110, 110]], float), np.array([False, False]))]
    dets = [(np.array([[0, 0, 40, 40]], float), np.array([0.9]))]
    assert abs(average_precision(dets, gt) - 0.5) < 1e-9
    small = ignore_small(gt, [1.0], 16)
    assert small[0][1].tolist() == [False, True] and average_precision(dets, small) == 1.0
    assert ignore_small(gt, [2.0], 16)[0][1].tolist() == [False, False]  # 10 px at 2x serving scale is 20 px


def _levels(logits_per_level):
    return [(lg[..., None], None, None, None, s) for lg, s in logits_per_level]


def test_score_distillation_is_zero_at_the_teacher_and_pulls_the_student_to_it():
    from training.losses import score_distillation

    g = torch.Generator().manual_seed(0)
    teacher = _levels([(torch.randn(2, 64, generator=g) * 3, 8), (torch.randn(2, 16, generator=g) * 3, 16)])
    probs = torch.cat([lv[0][..., 0] for lv in teacher], 1).sigmoid()
    assert float(score_distillation(teacher, probs)) == 0.0
    student = [(torch.zeros(2, 64, requires_grad=True), 8), (torch.zeros(2, 16, requires_grad=True), 16)]
    loss = score_distillation(_levels(student), probs)
    assert float(loss.detach()) > 0
    loss.backward()
    for (s, _), (t, _, _, _, _) in zip(student, teacher, strict=True):
        # gradient descent moves each logit toward the teacher's (where the teacher is not already at 0.5)
        step = -s.grad
        far = t[..., 0].abs() > 0.5
        assert bool((torch.sign(step[far]) == torch.sign(t[..., 0][far])).all())
    with pytest.raises(ValueError, match="differ"):
        score_distillation(_levels([(torch.zeros(2, 64), 8)]), probs)


def test_score_target_power_raises_the_positives_targets_below_one():
    """IoU ** p: p = 1 is QFL's IoU target, p = 0 a target of 1 for every positive. A fresh model boxes its
    positives poorly (IoU < 1), so a lower power raises their targets and with them the score loss."""
    torch.manual_seed(0)
    model = build_model(get_config("fsdet-s"))
    img = torch.zeros(1, 3, 160, 160)
    img[..., 40:90, 50:100] = 255
    tg = _targets([[50, 40, 100, 90]], [False])
    with torch.no_grad():
        levels = model.forward_levels(img)
        cls = [detection_loss(levels, tg, score_target_power=p)[1]["cls"] for p in (1.0, 0.5, 0.0)]
    assert cls[0] < cls[1] < cls[2]
