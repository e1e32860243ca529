"""Structured channel pruning of FSDet into a narrower FSDet (a normal weights file, its own config).

Channels are pruned by coupled group, the way the network ties them: the stem, each backbone stage (a
stage's blocks share their width through the residuals and the depthwise convolutions), and the neck
(FPN laterals, FPN smoothing and the shared head all carry the neck's channels). Each group keeps its
most important channels, importance being the BatchNorm scale |gamma| of every BatchNorm that
normalises the channel, each BatchNorm's |gamma| divided by its mean (network slimming). Every tensor is
sliced along the dimensions that belong to a group, so the result is exactly the network a smaller
DetectorConfig describes: it loads, exports and serves like any other model. Widths stay multiples of 8
(SIMD-friendly kernels). A short fine-tune through the training pipeline recovers the accuracy.
"""

from __future__ import annotations

import dataclasses
import re

import torch

from models.facedet.config import DetectorConfig

STAGES = ("s4", "s8", "s16", "s32")
GROUPS = ("stem", "w0", "w1", "w2", "w3", "neck")  # w0..w3: the stages' widths (strides 4..32)
BN_FIELDS = r"(weight|bias|running_mean|running_var)"


def _stage_in(k: int, j: int) -> str:
    """The group of a stage block's input channels."""
    if j > 0:
        return f"w{k}"
    return "stem" if k == 0 else f"w{k - 1}"


def tensor_groups(key: str) -> list[tuple[str, int]]:
    """(group, dim) pairs: which dimensions of state-dict tensor `key` index which channel group."""
    if key.endswith("num_batches_tracked") or re.fullmatch(r"head\.(cls|box|kps)\.bias|head\.scale", key):
        return []
    if re.fullmatch(rf"backbone\.stem\.(0\.weight|1\.{BN_FIELDS})", key):
        return [("stem", 0)]
    m = re.fullmatch(rf"backbone\.(s4|s8|s16|s32)\.(\d+)\.(dw|pw)\.(0\.weight|1\.{BN_FIELDS})", key)
    if m:
        k, j, part, leaf = STAGES.index(m[1]), int(m[2]), m[3], m[4]
        cin, cout = _stage_in(k, j), f"w{k}"
        if part == "dw":
            return [(cin, 0)]
        return [(cout, 0), (cin, 1)] if leaf == "0.weight" else [(cout, 0)]
    m = re.fullmatch(rf"neck\.lateral\.(\d+)\.(0\.weight|1\.{BN_FIELDS})", key)
    if m:
        return [("neck", 0), (f"w{int(m[1]) + 1}", 1)] if m[2] == "0.weight" else [("neck", 0)]
    if re.fullmatch(r"neck\.smooth\.\d+\.pw\.0\.weight|head\.pw\.\d+\.weight", key):
        return [("neck", 0), ("neck", 1)]
    if re.fullmatch(rf"neck\.smooth\.\d+\.(dw|pw)\.(0\.weight|1\.{BN_FIELDS})|head\.dw\.\d+\.weight"
                    rf"|head\.bn\.\d+\.\d+\.{BN_FIELDS}", key):
        return [("neck", 0)]
    if re.fullmatch(r"head\.(cls|box|kps)\.weight", key):
        return [("neck", 1)]
    raise ValueError(f"pruning does not know tensor {key!r}: the network changed; teach tensor_groups")


def importance(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group, per channel: the sum over the group's BatchNorms of |gamma| / mean |gamma|."""
    score: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if not (key.endswith(".weight") and t.ndim == 1):  # BatchNorm scales are the only 1-D weights
            continue
        for group, _dim in tensor_groups(key):
            g = t.detach().abs().float()
            g = g / g.mean().clamp_min(1e-12)
            score[group] = score.get(group, torch.zeros_like(g)) + g
    return score


def kept_width(c: int, ratio: float, multiple: int = 8) -> int:
    return max(multiple, min(c, round(c * (1.0 - ratio) / multiple) * multiple))


def check_groups(groups: tuple[str, ...] | None) -> None:
    unknown = set(groups or ()) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown channel groups {sorted(unknown)}: choose from {', '.join(GROUPS)}")


def parse_groups(text: str) -> tuple[str, ...] | None:
    """"neck,w0" -> ("neck", "w0"); "all" or "" -> None (every group). Unknown names raise ValueError."""
    groups = tuple(g.strip() for g in text.split(",") if g.strip() and g.strip() != "all") or None
    check_groups(groups)
    return groups


def variant_name(base: str, ratio: float, groups: tuple[str, ...] | None = None) -> str:
    """fsdet-m-p50 (every group), fsdet-m-p50-neck (only the neck)."""
    check_groups(groups)
    if ratio == 0:
        return base
    only = "" if not groups or set(groups) == set(GROUPS) else "-" + "-".join(g for g in GROUPS if g in groups)
    return f"{base}-p{round(ratio * 100)}{only}"


def prune_state(model, ratio: float, groups: tuple[str, ...] | None = None,
                ) -> tuple[DetectorConfig, dict[str, torch.Tensor], dict[str, list[int]]]:
    """(pruned config, pruned state dict, kept channel indices per group) keeping 1-ratio of each group in
    `groups` (default: all); the other groups keep every channel and their weights as trained."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune ratio must be in [0, 1), got {ratio}")
    check_groups(groups)
    cfg: DetectorConfig = model.cfg
    state = model.state_dict()
    widths = {"stem": cfg.stem, "neck": cfg.neck, **{f"w{i}": w for i, w in enumerate(cfg.widths)}}
    scores = importance(state)
    keep: dict[str, torch.Tensor] = {}
    for group, c in widths.items():
        n = kept_width(c, ratio) if ratio > 0 and (not groups or group in groups) else c
        keep[group] = torch.sort(torch.topk(scores[group], n).indices).values
    new_state = {}
    for key, t in state.items():
        for group, dim in tensor_groups(key):
            t = t.index_select(dim, keep[group])
        new_state[key] = t.clone()
    new_cfg = dataclasses.replace(
        cfg, name=variant_name(cfg.name, ratio, groups),
        stem=len(keep["stem"]), widths=tuple(len(keep[f"w{i}"]) for i in range(4)), neck=len(keep["neck"]))
    return new_cfg, new_state, {g: k.tolist() for g, k in keep.items()}


def prune_model(model, ratio: float, groups: tuple[str, ...] | None = None):
    """A new FaceDetNet (eval mode) with the pruned config and weights."""
    from models.facedet.network import build_model

    new_cfg, new_state, _ = prune_state(model, ratio, groups)
    pruned = build_model(new_cfg)
    pruned.load_state_dict(new_state, strict=True)
    return pruned.eval()
