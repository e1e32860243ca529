"""bf16 training on the CPU (`cpu_bf16`): which dtype is used where, and that a bf16 step of the shipped model
on real frames computes the loss and the gradient the fp32 step does, within bf16's precision."""

import logging
from pathlib import Path

import numpy as np
import torch

from models.facedet.weights import load_model
from training import train as T
from training.compress.calibration import calibration_frames
from training.config import TrainConfig
from training.data.dataset import collate
from training.losses import detection_loss

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "facestream/assets/face-demographics-walking-and-pause.mp4"


def _cfg(**kw):
    return TrainConfig(sources=[{"images": "x", "labels": "y"}], **kw)


def test_autocast_dtype_per_device_and_setting(monkeypatch, caplog):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(T, "native_cpu_bf16", lambda: True)
    assert T.autocast_dtype(_cfg(cpu_bf16=True), cpu) == torch.bfloat16
    assert T.autocast_dtype(_cfg(), cpu) is None  # off unless asked: earlier runs resume as they were
    assert T.autocast_dtype(_cfg(cpu_bf16=True), cuda) == torch.float16  # CUDA keeps fp16 + the scaler
    assert T.autocast_dtype(_cfg(amp=False, cpu_bf16=True), cuda) is None
    monkeypatch.setattr(T, "native_cpu_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="training.train"):
        assert T.autocast_dtype(_cfg(cpu_bf16=True), cpu) is None  # emulated bf16 is slower than fp32
    assert "no native bf16" in caplog.text


def _step(model, imgs, tg, bf16: bool):
    model.zero_grad(set_to_none=True)
    loss, _ = detection_loss(T.mixed_forward(model, imgs, torch.bfloat16 if bf16 else None), tg)
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grad


def test_a_bf16_step_matches_the_fp32_step_on_real_frames():
    from models.detector import detector_from_model

    model, _ = load_model(REPO / "models/weights/fsdet-m.safetensors")
    frames = [np.ascontiguousarray(f[:320, :320]) for f in calibration_frames([CLIP], 4)]
    det = detector_from_model(model, threshold=0.3, input_size=320)
    batch = []
    for f, d in zip(frames, det.detect(frames), strict=True):
        boxes = d.boxes.astype(np.float32) + np.float32(3.0)  # off by a few pixels: a real box gradient
        batch.append((f, boxes, np.zeros(len(boxes), bool), np.full((len(boxes), 10), np.nan, np.float32)))
    assert sum(len(b[1]) for b in batch) >= 2, "the clip's faces are the targets"
    imgs, tg = collate(batch)
    model.train()
    loss32, g32 = _step(model, imgs, tg, bf16=False)
    loss16, g16 = _step(model, imgs, tg, bf16=True)
    assert abs(loss16 - loss32) <= 0.05 * loss32
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) > 0.98
    assert 0.8 < float(g16.norm() / g32.norm()) < 1.25
