"""Typed training config, read from a TOML file. Every run writes the resolved config beside it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.facedet.config import VARIANTS


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: str
    labels: str
    weight: float = Field(1.0, gt=0)
    fill: str | None = None
    fill_as: str = Field("ignore", pattern="^(ignore|label)$")
    min_score: float = Field(0.5, ge=0, le=1)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variant: str = "fsdet-m"
    sources: list[Source]
    out: str = "runs/fsdet-m"
    epochs: int = Field(100, ge=1)
    batch: int = Field(32, ge=1)
    canvas: int = Field(640, ge=64)
    window: int = Field(320, ge=64)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_iters: int = Field(300, ge=0)
    min_lr_ratio: float = Field(0.02, ge=0, le=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    box_weight: float = 2.0
    landmark_weight: float = 0.1
    neg_weight: float = Field(1.0, gt=0, description="loss weight of background points (hard negatives: hands, "
                              "backs of heads); >1 trades recall for precision")
    score_target_power: float = Field(1.0, ge=0, le=1, description="positives' score target = IoU ** this "
                                      "(1: quality focal loss's IoU; 0.5: sqrt, less spread; 0: 1 for every positive)")
    face_window_prob: float = Field(0.85, ge=0, le=1, description="how often a training window is centred near a "
                                    "face; the rest fall anywhere (more background)")
    rotate_prob: float = Field(0.0, ge=0, le=1, description="how often a training window is rotated in-plane "
                               "(head tilt, tilted cameras), uniform in +-rotate_deg")
    rotate_deg: float = Field(15.0, ge=0, le=90, description="largest in-plane rotation, degrees")
    hard_negatives: str | None = Field(None, description="file of mined false boxes (`facestream mine-negatives`)")
    hard_negative_prob: float = Field(0.0, ge=0, le=1, description="how often a window of an image with hard "
                                      "negatives is centred on one of them instead of a face")
    workers: int = Field(1, ge=0)
    threads: int = Field(2, ge=1)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA: fp16 autocast with a gradient scaler
    cpu_bf16: bool = Field(False, description="CPU: bf16 autocast where the CPU computes bf16 natively (AMX or "
                           "AVX512-BF16; else fp32, said once in the log)")
    dev_fraction: float = Field(0.05, ge=0, lt=0.5)
    eval_every: int = Field(5, ge=1, description="epochs between dev evaluations")
    checkpoint_every_s: float = Field(300, gt=0)
    max_hours: float | None = Field(None, gt=0, description="stop (resumably) after this much wall time")
    init: str | None = Field(None, description="weights (.safetensors) to start from when the run has no checkpoint")
    image_cache: str | None = Field(None, description="folder for decoded training images (memory-mapped)")
    degrade: bool = Field(True, description="camera degradations (blur, resampling, JPEG, noise, light)")
    deepen: list[int] | None = Field(None, description="extra blocks per backbone stage (strides 4..32) of the "
                                     "trained network: the init's own depths or more; new blocks start as the "
                                     "identity (training/deepen.py)")
    freeze: list[str] = Field([], description="modules kept as the init has them (weights and BatchNorm "
                              "statistics), e.g. backbone.stem: a fine-tune skips their backward pass")
    distill_from: str | None = Field(None, description="teacher whose score maps the model also learns, point "
                                     "by point: facestream weights (.safetensors, same strides; a pruned model "
                                     "from its float original) or YuNet (.onnx, strides 8/16/32)")
    distill_weight: float = Field(1.0, ge=0, description="weight of the score-map distillation loss")

    def network(self, deepened: bool = True):
        """The DetectorConfig this run trains: the init's when there is one (a pruned model fine-tunes in its own,
        narrower shape), else the variant's; with `deepen`, grown to those depths."""
        from models.facedet import get_config
        from models.facedet.weights import read_meta

        from .deepen import deepen_config

        net = read_meta(self.init, with_sha=False).config if self.init else get_config(self.variant)
        return deepen_config(net, self.deepen) if deepened and self.deepen else net

    def check(self) -> TrainConfig:
        from models.facedet import build_model, get_config
        from models.facedet.weights import ModelFileError

        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} unknown; choose one of {sorted(VARIANTS)}")
        if self.window > self.canvas:
            raise ValueError(f"window ({self.window}) must be <= canvas ({self.canvas})")
        try:  # the network this run trains; an unreadable init fails where it is loaded, with its own message
            base = self.network(deepened=False)
        except (OSError, ModelFileError):
            base = None
        trained = (self.network() if self.deepen else base) if base is not None else get_config(self.variant)
        if self.deepen and base is not None:  # a stage that would lose blocks: one line now, not mid-run
            from .deepen import new_blocks

            grown = new_blocks(base, trained)
            # a new block inside a frozen module never trains: it would stay the identity, silently
            idle = [b for b in grown if any(b == f or b.startswith(f + ".") for f in self.freeze)]
            if idle:
                raise ValueError(f"deepen adds {', '.join(idle)} inside a frozen module (freeze = {self.freeze}): "
                                 "it would never train; unfreeze that stage or deepen another")
        if self.distill_from:  # a missing, unreadable or unsupported teacher: one line now, not mid-run
            import torch

            from .distill.score_maps import load_score_teacher

            try:
                load_score_teacher(self.distill_from, tuple(trained.strides), torch.device("cpu"), 1)
            except ValueError:
                raise
            except Exception as e:  # ONNX Runtime and the weights loader raise their own kinds
                first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                raise ValueError(f"distill_from {self.distill_from}: unreadable ({first})") from e
        if self.freeze:  # module names of the trained network (a deepened one has more blocks)
            known = {n for n, _ in build_model(trained).named_modules()}
            unknown = [n for n in self.freeze if n not in known]
            if unknown:
                tops = sorted(n for n in known if n and n.count(".") <= 1)
                raise ValueError(f"freeze: no module {', '.join(unknown)} (modules: {', '.join(tops)})")
        return self


def apply_set(raw: dict, assignment: str) -> None:
    """One KEY=VALUE override into a raw config dict; VALUE is a TOML value (bare words are strings) and
    KEY may be dotted, with list indices (sources.0.weight=2)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {assignment!r}: expected KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    *path, last = key.strip().split(".")
    node = raw
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(path: str | Path, sets: tuple[str, ...] | list[str] = (), **overrides) -> TrainConfig:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    for s in sets:
        try:
            apply_set(raw, s)
        except (IndexError, KeyError, TypeError) as e:
            raise ValueError(f"--set {s!r}: no such key ({e})") from None
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = TrainConfig(**raw)
    except ValidationError as e:  # one line naming each bad key, not pydantic's multi-line report
        raise ValueError("; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}"
                                   + (f" (got {str(err['input'])[:60]!r})" if err["type"] != "missing" else "")
                                   for err in e.errors(include_url=False))) from None
    return cfg.check()
