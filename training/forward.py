"""The training forward pass under mixed precision, shared by the loop and the distillation teachers."""

from __future__ import annotations

import torch


def mixed_forward(model: torch.nn.Module, imgs: torch.Tensor, dtype: torch.dtype | None):
    """`forward_levels` under autocast to `dtype` (None: plain fp32), its outputs in fp32 for the loss."""
    with torch.autocast(imgs.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        levels = model.forward_levels(imgs)
    return [(c.float(), b.float(), None if k is None else k.float(), p.float(), s) for c, b, k, p, s in levels]
