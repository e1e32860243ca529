"""Make a compressed variant of any facestream model: prune + fine-tune, or quantize (INT8 / FP16).

Every variant is a normal model file (a .safetensors with its ONNX beside it, or an .onnx) whose metadata
says what it was made from and how; `card()` writes the markdown card beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from models.facedet.export import read_model_meta
from models.facedet.weights import file_sha256, load_model, read_meta, save_weights

from .calibration import calibration_batches, calibration_frames, config_frames
from .prune import prune_model
from .quantize import convert_fp16, quantize_int8

log = logging.getLogger(__name__)


def float_onnx(model: Path) -> Path:
    """The float ONNX of a model: itself when it is one, else its export (sibling or the model cache)."""
    if model.suffix.lower() == ".onnx":
        return model
    from models.detector import onnx_for_weights

    return onnx_for_weights(model, read_meta(model))


def quantize_variant(model: Path, out: Path, precision: str = "int8", *, calib: list[Path] | None = None,
                     config: Path | None = None, frames: int = 64, method: str = "percentile",
                     keep_float: str = "none") -> Path:
    src = float_onnx(model)
    if precision == "fp16":
        return convert_fp16(src, out)
    if precision != "int8":
        raise ValueError(f"precision {precision!r}: int8 or fp16")
    if calib:
        imgs = calibration_frames(calib, frames)
    elif config is not None:
        imgs = config_frames(config, frames)
    else:
        raise ValueError("INT8 needs calibration frames: give --calib (images, folders, videos) or --config")
    size = read_model_meta(src).config.input_size
    return quantize_int8(src, out, calibration_batches(imgs, size), method=method, keep_float=keep_float)


def untouched(prefixes: list[str], before: dict, after: dict) -> list[str]:
    """The module prefixes none of whose tensors pruning changed (they may stay frozen in the fine-tune)."""
    changed = [k for k, t in before.items() if after[k].shape != t.shape]
    return [p for p in prefixes if not any(k == p or k.startswith(p + ".") for k in changed)]


def prune_variant(model: Path, ratio: float, config: Path, out: Path, *, epochs: int = 12,
                  max_hours: float | None = None, lr: float = 1e-3, version: str | None = None,
                  groups: tuple[str, ...] | None = None, distill: bool = False, **overrides) -> dict:
    """Prune `groups` (default: all) of `model` by `ratio`, fine-tune it with `config`'s recipe (run folder
    `out`, resumable), calibrate its threshold on the dev split and write out/<name>.safetensors + .onnx.
    With `distill`, the fine-tune also learns the float model's score maps (`distill_from`)."""
    from training.config import load_config
    from training.export import release
    from training.train import train

    out.mkdir(parents=True, exist_ok=True)
    src, meta = load_model(model)
    provenance = {"pruned_from": f"{meta.name} {meta.version} ({meta.sha256[:12]})", "prune_ratio": str(ratio),
                  "prune_method": "structured channels, BatchNorm |gamma| per coupled group",
                  "prune_groups": ",".join(groups) if groups else "all",
                  "finetune_epochs": str(epochs), "finetune_config": str(config),
                  "finetune_distill_from": f"{meta.name} {meta.version}" if distill else "none"}
    init = out / "pruned-init.safetensors"
    pruned = prune_model(src, ratio, groups)
    if not init.exists():
        save_weights(pruned, init, name=pruned.cfg.name, version="0", trained_on=meta.trained_on,
                     threshold=meta.threshold, **provenance)
    # a pruned layer trains, it has to recover what it lost; the recipe's frozen layers that pruning left
    # whole stay frozen (their input and output channels are the float model's)
    freeze = untouched(list(load_config(config).freeze), src.state_dict(), pruned.state_dict())
    cfg = load_config(config, init=str(init), out=str(out), epochs=epochs, max_hours=max_hours, lr=lr,
                      warmup_iters=50, **{"freeze": freeze, "distill_from": str(model) if distill else None,
                                          **overrides})
    train(cfg)
    ckpt = out / "best.safetensors" if (out / "best.safetensors").exists() else out / "last.safetensors"
    name = read_meta(init, with_sha=False).name
    res = release(ckpt, out / name, name, version or meta.version, cfg, extra_meta=provenance)
    return res


def model_stats(path: Path) -> dict:
    """Parameters, MACs at 640x640 and file size of a model file (ONNX graph for .onnx)."""
    from models.facedet.network import build_model, count_gmacs

    cfg = read_model_meta(path).config
    params = sum(p.numel() for p in build_model(cfg).parameters())
    return {"params": params, "gmacs_640": count_gmacs(cfg), "file_kb": path.stat().st_size / 1024,
            "sha256": file_sha256(path)}


def card(path: Path, gate_md: str = "") -> Path:
    """The variant's card, beside it: what it is, where it came from, its size and its gate result."""
    from models.facedet.export import read_onnx_meta

    if path.suffix.lower() == ".onnx":
        meta, md = read_onnx_meta(path)
        how = json.loads(md.get("compression", "{}") or "{}")
        precision = md.get("precision", "fp32")
    else:
        meta = read_meta(path)
        how = {k: v for k, v in meta.extra.items() if k.startswith(("prune", "finetune"))}
        precision = "fp32"
    st = model_stats(path)
    lines = [f"# {path.name}: {meta.name} {meta.version}, {precision}", "",
             f"- made from: {meta.extra.get('pruned_from') or meta.extra.get('compressed_from') or meta.sha256}",
             f"- how: `{json.dumps(how, sort_keys=True)}`",
             f"- threshold: {meta.threshold}", f"- parameters: {st['params']:,}; {st['gmacs_640']:.2f} GMACs "
             f"at 640x640; file {st['file_kb']:.0f} KB", "", gate_md]
    out = path.with_suffix(".md")
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out
