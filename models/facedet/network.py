"""FSDet: a single-stage, anchor-free face detector (SCRFD/YuNet family).

Backbone of depthwise-separable blocks down to stride 32, a top-down FPN over strides 8/16/32,
and one head whose convolutions are shared by all levels (with per-level BatchNorm, which folds
into the convolutions at export). Per location it predicts a face score, four box distances
(left, top, right, bottom, in stride units) and optionally five landmarks.

The graph takes BGR float pixels in 0..255 (normalisation is inside), so every runtime feeds
the same tensor the letterbox produces.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import NUM_LANDMARKS, DetectorConfig


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DWBlock(nn.Module):
    """Depthwise 3x3 + pointwise 1x1, residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = conv_bn(cin, cin, 3, stride, groups=cin)
        self.pw = conv_bn(cin, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return F.relu(y + x if self.residual else y)


def stage(cin: int, cout: int, extra: int) -> nn.Sequential:
    return nn.Sequential(DWBlock(cin, cout, 2), *[DWBlock(cout, cout) for _ in range(extra)])


class Backbone(nn.Module):
    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        w, d = cfg.widths, cfg.depths
        self.stem = conv_bn(3, cfg.stem, 3, 2)  # stride 2
        self.s4 = stage(cfg.stem, w[0], d[0])
        self.s8 = stage(w[0], w[1], d[1])
        self.s16 = stage(w[1], w[2], d[2])
        self.s32 = stage(w[2], w[3], d[3])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c8 = self.s8(self.s4(self.stem(x)))
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        return [c8, c16, c32]


class FPN(nn.Module):
    def __init__(self, cins: tuple[int, ...], cout: int):
        super().__init__()
        self.lateral = nn.ModuleList(conv_bn(c, cout, 1) for c in cins)
        self.smooth = nn.ModuleList(DWBlock(cout, cout) for _ in cins)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [m(f) for m, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [m(x) for m, x in zip(self.smooth, lat, strict=True)]


class SharedHead(nn.Module):
    """Convolutions shared across levels; BatchNorm and the box scale are per level."""

    def __init__(self, ch: int, n_convs: int, n_levels: int, landmarks: bool):
        super().__init__()
        self.dw = nn.ModuleList(nn.Conv2d(ch, ch, 3, 1, 1, groups=ch, bias=False) for _ in range(n_convs))
        self.pw = nn.ModuleList(nn.Conv2d(ch, ch, 1, bias=False) for _ in range(n_convs))
        self.bn = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(ch) for _ in range(2 * n_convs)) for _ in range(n_levels)
        )
        self.cls = nn.Conv2d(ch, 1, 1)
        self.box = nn.Conv2d(ch, 4, 1)
        self.kps = nn.Conv2d(ch, 2 * NUM_LANDMARKS, 1) if landmarks else None
        self.scale = nn.Parameter(torch.ones(n_levels))
        # Focal-loss prior: start with p(face) ~ 0.01 so early training is not swamped by negatives.
        nn.init.constant_(self.cls.bias, -math.log(99.0))
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.constant_(self.box.bias, 1.0)

    def forward(self, x: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        bns = self.bn[level]
        for i, (dw, pw) in enumerate(zip(self.dw, self.pw, strict=True)):
            x = F.relu(bns[2 * i](dw(x)))
            x = F.relu(bns[2 * i + 1](pw(x)))
        cls = self.cls(x)
        box = F.softplus(self.box(x) * self.scale[level])  # distances > 0, in stride units
        kps = self.kps(x) if self.kps is not None else None
        return cls, box, kps


def grid_points(h: int, w: int, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Cell centres (x, y) in input pixels, row-major: shape (h*w, 2)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


class FaceDetNet(nn.Module):
    """forward(images) -> raw per-level maps (training); decode(...) -> flat input-pixel outputs."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.neck = FPN(tuple(cfg.widths[1:]), cfg.neck)
        self.head = SharedHead(cfg.neck, cfg.head_convs, len(cfg.strides), cfg.landmarks)
        self.register_buffer("mean", torch.tensor(cfg.mean), persistent=False)
        self.register_buffer("inv_std", torch.tensor(1.0 / cfg.std), persistent=False)

    def forward_levels(self, images: torch.Tensor):
        """Per level: cls logits (B, HW, 1), box distances in stride units (B, HW, 4),
        landmark offsets in stride units (B, HW, 10) or None, and the level's points (HW, 2)."""
        x = (images - self.mean) * self.inv_std
        feats = self.neck(self.backbone(x))
        out = []
        for lvl, (f, s) in enumerate(zip(feats, self.cfg.strides, strict=True)):
            cls, box, kps = self.head(f, lvl)
            b, _, h, w = cls.shape
            pts = grid_points(h, w, s, device=f.device)  # fp32 even under fp16: exact coordinates
            out.append(
                (
                    cls.permute(0, 2, 3, 1).reshape(b, h * w, 1),
                    box.permute(0, 2, 3, 1).reshape(b, h * w, 4),
                    None if kps is None else kps.permute(0, 2, 3, 1).reshape(b, h * w, 2 * NUM_LANDMARKS),
                    pts,
                    s,
                )
            )
        return out

    def forward(self, images: torch.Tensor):
        """Flat outputs over all levels, in input pixels:
        scores (B, A) in 0..1, boxes (B, A, 4) xyxy, landmarks (B, A, 10) (zeros without a landmark head)."""
        return decode_levels(self.forward_levels(images))


def decode_levels(levels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scores, boxes, kpss = [], [], []
    for cls, box, kps, pts, s in levels:
        scores.append(torch.sigmoid(cls[..., 0]))
        boxes.append(distance_to_box(pts, box * s))
        if kps is None:
            kpss.append(torch.zeros(*box.shape[:2], 2 * NUM_LANDMARKS, dtype=box.dtype, device=box.device))
        else:
            kpss.append(offsets_to_landmarks(pts, kps * s))
    return torch.cat(scores, 1), torch.cat(boxes, 1), torch.cat(kpss, 1)


def distance_to_box(points: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - dist[..., 0], y - dist[..., 1], x + dist[..., 2], y + dist[..., 3]], -1)


def offsets_to_landmarks(points: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    return off + points.repeat(1, NUM_LANDMARKS)


def build_model(cfg: DetectorConfig) -> FaceDetNet:
    return FaceDetNet(cfg)


def count_gmacs(cfg: DetectorConfig, height: int = 640, width: int = 640) -> float:
    """Multiply-adds (G) of one forward pass at height x width (torch's FLOP counter, halved)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = build_model(cfg).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, 3, height, width))
    return fc.get_total_flops() / 2e9
