"""FSDet network: parameter and FLOP budgets per variant, output shapes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.facedet import VARIANTS, build_model, get_config
from models.facedet.config import DetectorConfig

# (max params, max GFLOPs at 640x640; FLOPs = 2 x MACs as torch.utils.flop_counter counts them)
BUDGETS = {"fsdet-s": (100_000, 0.35), "fsdet-m": (400_000, 1.0), "fsdet-l": (800_000, 2.5)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gflops(model, h=640, w=640) -> float:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    return fc.get_total_flops() / 1e9


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_params_and_flops(name):
    m = build_model(get_config(name)).eval()
    params = sum(p.numel() for p in m.parameters())
    gf = gflops(m)
    max_params, max_gf = BUDGETS[name]
    assert params <= max_params, (name, params)
    assert gf <= max_gf, (name, gf)
    assert gf > 0.5 * max_gf * (0.5 if name == "fsdet-s" else 1), (name, gf)  # budgets stay meaningful


def test_default_is_under_one_gflop():
    gf = gflops(build_model(get_config("fsdet-m")).eval())
    assert 0.8 < gf <= 1.0  # ~0.48 GMACs


def test_variants_ordered():
    g = {n: gflops(build_model(get_config(n)).eval(), 320, 320) for n in VARIANTS}
    assert g["fsdet-s"] < g["fsdet-m"] < g["fsdet-l"]


@pytest.mark.parametrize("hw", [(320, 320), (256, 320), (96, 64)])
def test_output_shapes(hw):
    m = build_model(get_config("fsdet-s")).eval()
    h, w = hw
    with torch.no_grad():
        s, b, k = m(torch.rand(2, 3, h, w) * 255)
    a = sum((h // st) * (w // st) for st in (8, 16, 32))
    assert s.shape == (2, a) and b.shape == (2, a, 4) and k.shape == (2, a, 10)
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    assert bool((b[..., 2] >= b[..., 0]).all() and (b[..., 3] >= b[..., 1]).all())
    assert s.dtype == b.dtype == k.dtype == torch.float32


def test_no_landmark_head_gives_zeros():
    m = build_model(DetectorConfig(name="x", stem=8, widths=(16, 32, 64, 128), neck=32, landmarks=False)).eval()
    with torch.no_grad():
        _, _, k = m(torch.rand(1, 3, 64, 64) * 255)
    assert k.shape[-1] == 10 and float(k.abs().max()) == 0


def test_box_centres_follow_the_grid():
    """Anchor points are cell centres: the first stride-8 point is (4, 4); boxes surround their point."""
    from models.facedet.network import grid_points

    pts = grid_points(2, 3, 8)
    assert pts.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    m = build_model(get_config("fsdet-s")).eval()
    with torch.no_grad():
        _, b, _ = m(torch.rand(1, 3, 64, 64) * 255)
    cx = (b[0, :64, 0] + b[0, :64, 2]) / 2
    assert torch.all(b[0, :64, 0] <= grid_points(8, 8, 8)[:, 0]) and torch.all(cx > 0)
