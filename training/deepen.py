"""Deepen a trained FSDet: more residual blocks in its backbone stages, each starting as the identity.

A new block's last BatchNorm starts with weight and bias 0, so it adds nothing (the block returns
relu(0 + x) = x, and x is already a ReLU output): the deepened network computes exactly what the init
computes, and training grows the new blocks from there (the "zero-init residual" trick). Capacity is
added where it is cheap per frame: a block at stride 16 or 32 costs a few percent of a 640x480 frame,
one at stride 4 or 8 far more (`bench/detector_cpu.py`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from models.facedet.config import DetectorConfig

STAGES = ("s4", "s8", "s16", "s32")


def deepen_config(cfg: DetectorConfig, depths: list[int] | tuple[int, ...]) -> DetectorConfig:
    """cfg with `depths` (extra blocks per stage, stride 4 to 32); a stage may only keep or gain blocks."""
    depths = tuple(int(d) for d in depths)
    if len(depths) != len(cfg.depths):
        raise ValueError(f"deepen: {len(cfg.depths)} stage depths expected (strides 4..32), got {list(depths)}")
    shallower = [f"{s} {old} -> {new}" for s, old, new in zip(STAGES, cfg.depths, depths, strict=True) if new < old]
    if shallower:
        raise ValueError(f"deepen: stages can only gain blocks ({', '.join(shallower)}); prune to remove channels")
    return replace(cfg, depths=depths)


def new_blocks(before: DetectorConfig, after: DetectorConfig) -> list[str]:
    """Module names of the blocks `after` has and `before` has not (stage block 0 is the strided one)."""
    return [f"backbone.{s}.{i}" for s, old, new in zip(STAGES, before.depths, after.depths, strict=True)
            for i in range(old + 1, new + 1)]


def load_deepened(model: torch.nn.Module, init: torch.nn.Module) -> list[str]:
    """Copy every tensor of `init` into the deeper `model` and make its new blocks the identity.
    Returns the new blocks' names. Any tensor of `init` that `model` lacks, or has in another shape, fails."""
    added = new_blocks(init.cfg, model.cfg)
    state = model.state_dict()
    src = init.state_dict()
    for k, v in src.items():
        if k not in state or state[k].shape != v.shape:
            raise ValueError(f"deepen: {k} {tuple(v.shape)} has no place in the deeper network")
        state[k] = v
    fresh = [k for k in state if k not in src]
    if any(not any(k.startswith(b + ".") for b in added) for k in fresh):
        raise ValueError(f"deepen: tensors outside the new blocks are missing from the init: {fresh[:3]}")
    model.load_state_dict(state)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for b in added:
            bn = modules[f"{b}.pw.1"]  # the block's output BatchNorm (conv_bn: conv, bn)
            bn.weight.zero_()
            bn.bias.zero_()
    return added
