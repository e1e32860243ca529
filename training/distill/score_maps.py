"""Teachers of score-map distillation: per training window, the teacher's face probability at every point of
the student's levels (strides 8/16/32, one point per cell, row-major), as one (B, A) tensor.

Two kinds: a facestream model (`.safetensors`, e.g. the float model teaching its pruned copy) and YuNet
(`.onnx`, libfacedetection's 2023 network, BSD-3): anchor-free, one point per cell at the same strides, and
trained on all of WIDER FACE train, so its maps might carry what our three WIDER events do not show (a
6-epoch ablation measured them worse than no distillation: docs/eval/ablation.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..forward import mixed_forward
from .teachers import detect_model_type, make_session, yunet_score

log = logging.getLogger(__name__)


class FaceDetScoreMaps:
    """A frozen facestream model: sigmoid of its score logits on the same windows."""

    def __init__(self, path: str, strides: tuple[int, ...], device: torch.device):
        from models.facedet.weights import load_model

        teacher, _ = load_model(path, device=device)
        if tuple(teacher.cfg.strides) != tuple(strides):
            raise ValueError(f"distill_from {path}: strides {teacher.cfg.strides} differ from the model's {strides}")
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.model = teacher.to(memory_format=torch.channels_last).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, amp_dtype=None) -> torch.Tensor:
        levels = mixed_forward(self.model, images, amp_dtype)
        return torch.cat([lv[0][..., 0] for lv in levels], 1).float().sigmoid()


class YuNetScoreMaps:
    """YuNet through ONNX Runtime on the whole batch (BGR 0..255 in, like ours)."""

    STRIDES = (8, 16, 32)

    def __init__(self, path: str, strides: tuple[int, ...], threads: int = 2):
        self.sess = make_session(path, threads)
        if detect_model_type(path, self.sess) != "yunet":
            raise ValueError(f"distill_from {path}: an ONNX teacher must be YuNet (cls_/obj_ outputs per stride)")
        if tuple(strides) != self.STRIDES:
            raise ValueError(f"distill_from {path}: YuNet's strides {self.STRIDES} differ from the model's {strides}")
        self.input_name = self.sess.get_inputs()[0].name
        self.names = [o.name for o in self.sess.get_outputs()]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, amp_dtype=None) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().float().cpu().numpy())
        outs = dict(zip(self.names, self.sess.run(None, {self.input_name: x}), strict=True))
        b = x.shape[0]
        maps = [yunet_score(outs[f"cls_{s}"], outs[f"obj_{s}"]).reshape(b, -1) for s in self.STRIDES]
        return torch.from_numpy(np.concatenate(maps, 1)).to(images.device)


def load_score_teacher(path: str, strides: tuple[int, ...], device: torch.device, threads: int = 2):
    """`distill_from` -> the teacher: `.safetensors` a facestream model, `.onnx` YuNet."""
    if not Path(path).is_file():
        raise ValueError(f"distill_from {path}: no such file")
    if str(path).lower().endswith(".onnx"):
        t = YuNetScoreMaps(path, strides, threads)
    else:
        t = FaceDetScoreMaps(path, strides, device)
    log.info("distilling the score maps of %s", path)
    return t
