"""Release a trained checkpoint: pick the score threshold on the dev split, write the weights with
their metadata, the ONNX beside them, and (on a GPU host with TensorRT) warm the engine cache."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from models.facedet.export import export_onnx
from models.facedet.weights import load_model, save_weights

from .config import TrainConfig
from .data.dataset import SourceSpec, load_source, split_dev
from .devset import average_precision, best_f1_threshold, predict_dev

log = logging.getLogger(__name__)


def calibrate_threshold(model: torch.nn.Module, cfg: TrainConfig, root: Path = Path(".")) -> dict:
    """Max-F1 score threshold and AP on the config's dev split (never the evaluation set)."""
    records = [r for s in cfg.sources for r in load_source(SourceSpec(**s.model_dump()), root)]
    _, dev = split_dev(records, cfg.dev_fraction)
    if not dev:
        raise ValueError("the config's dev split is empty (dev_fraction = 0): cannot calibrate a threshold")
    dets, gts = predict_dev(model, dev)
    thr, f1 = best_f1_threshold(dets, gts)
    return {"threshold": round(thr, 3), "dev_f1": f1, "dev_ap": average_precision(dets, gts), "dev_images": len(dev)}


def release(weights: Path, out: Path, name: str, version: str, cfg: TrainConfig | None = None,
            threshold: float | None = None, extra_meta: dict[str, str] | None = None) -> dict:
    model, meta = load_model(weights)
    info: dict = {}
    if threshold is None:
        if cfg is None:
            raise ValueError("give --threshold or a training config to calibrate it on the dev split")
        info = calibrate_threshold(model, cfg)
        threshold = info["threshold"]
    extra = {k: v for k, v in meta.extra.items() if k not in {"name", "version", "threshold", "trained_on"}}
    extra.update({k: str(v) for k, v in info.items() if k != "threshold"})
    extra.update(extra_meta or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    safet = save_weights(model, out.with_suffix(".safetensors"), name=name, version=version,
                         trained_on=meta.trained_on, threshold=threshold, **extra)
    onnx = export_onnx(safet, out.with_suffix(".onnx"))
    return {"weights": str(safet), "onnx": str(onnx), "threshold": threshold, **info}
