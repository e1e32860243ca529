"""Training loop: AdamW, warm-up + cosine LR, EMA, AMP on CUDA, exact resume, JSONL log and plots.

Checkpoints: `last.safetensors` (EMA weights, loadable by every runtime) plus `last.state.pt`
(optimizer, model, step, RNG; loaded with weights_only=True, never unpickling code).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from models.facedet import build_model, get_config
from models.facedet.weights import load_model, save_weights

from .config import TrainConfig
from .data import hard_negatives
from .data.augment import AugmentConfig
from .data.dataset import FaceDataset, ImageCache, SourceSpec, collate, load_source, split_dev
from .deepen import load_deepened
from .devset import evaluate_dev
from .distill.score_maps import load_score_teacher
from .forward import mixed_forward
from .losses import detection_loss, score_distillation

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class EMA:
    """Exponential moving average of weights, with the usual warm-up of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = self.decay * (1 - math.exp(-step / 2000))
        msd = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_iters:
        return cfg.lr * (0.01 + 0.99 * step / max(1, cfg.warmup_iters))
    t = (step - cfg.warmup_iters) / max(1, total - cfg.warmup_iters)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def native_cpu_bf16() -> bool:
    """The CPU computes bf16 in hardware (AMX tiles or AVX512-BF16): elsewhere bf16 is emulated and slower."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The training forward's mixed-precision dtype: fp16 on CUDA (`amp`), bf16 on a CPU with native bf16
    (`cpu_bf16`), None for fp32. The loss, the optimizer and the EMA stay fp32 either way."""
    if device.type == "cuda":
        return torch.float16 if cfg.amp else None
    if device.type == "cpu" and cfg.cpu_bf16:
        if native_cpu_bf16():
            return torch.bfloat16
        log.warning("cpu_bf16: this CPU has no native bf16 (AMX / AVX512-BF16); training in fp32")
    return None


def freeze_modules(model: torch.nn.Module, names: list[str]) -> list[torch.nn.Module]:
    """Stop training the named modules (checked by TrainConfig.check); returns them for `train_mode`."""
    known = dict(model.named_modules())
    for n in names:
        known[n].requires_grad_(False)
    return [known[n] for n in names]


def train_mode(model: torch.nn.Module, frozen: list[torch.nn.Module]) -> None:
    """model.train() with the frozen modules left in eval mode: their BatchNorm statistics stay the init's."""
    model.train()
    for m in frozen:
        m.eval()


def param_groups(model: torch.nn.Module, wd: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(cfg: TrainConfig, resume: bool = True, root: Path = Path(".")) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    (out / "config.json").write_text(json.dumps({**cfg.model_dump(), "git_sha": git_sha()}, indent=2))

    records = []
    for s in cfg.sources:
        recs = load_source(SourceSpec(**s.model_dump()), root)
        log.info("source %s: %d images, %d faces", s.labels, len(recs), sum(len(r.boxes) for r in recs))
        records += recs
    train_recs, dev_recs = split_dev(records, cfg.dev_fraction)
    aug = AugmentConfig(canvas=cfg.canvas, window=cfg.window, degrade=cfg.degrade,
                        face_window_prob=cfg.face_window_prob, hard_negative_prob=cfg.hard_negative_prob,
                        rotate_prob=cfg.rotate_prob, rotate_deg=cfg.rotate_deg)
    negatives = hard_negatives.read(Path(cfg.hard_negatives)) if cfg.hard_negatives else None
    ds = FaceDataset(train_recs, aug, cfg.seed, ImageCache(Path(cfg.image_cache) if cfg.image_cache else None),
                     negatives)
    iters_per_epoch = max(1, len(ds) // cfg.batch)
    total = iters_per_epoch * cfg.epochs

    net_cfg = cfg.network()
    model = build_model(net_cfg)
    state_path = out / "last.state.pt"
    if cfg.init and not (resume and state_path.exists()):
        start, _ = load_model(cfg.init)
        if cfg.deepen:
            added = load_deepened(model, start)
            log.info("initialised from %s, deepened to %s (new identity blocks: %s)", cfg.init,
                     list(net_cfg.depths), ", ".join(added) or "none")
        else:
            model.load_state_dict(start.state_dict())  # strict: other shapes fail here, not mid-run
            log.info("initialised from %s", cfg.init)
    model = model.to(device).to(memory_format=torch.channels_last)
    frozen = freeze_modules(model, cfg.freeze)
    teacher = (load_score_teacher(cfg.distill_from, tuple(model.cfg.strides), device, cfg.threads)
               if cfg.distill_from else None)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    amp_dtype = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    step, epoch, best = 0, 0, -1.0
    if resume and state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(st["model"])
        ema.model.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        scaler.load_state_dict(st["scaler"])
        step, epoch, best = int(st["step"]), int(st["epoch"]), float(st["best"])
        torch.set_rng_state(st["torch_rng"])
        log.info("resumed from %s at epoch %d step %d", state_path, epoch, step)

    def save(tag: str) -> None:
        meta = {"trained_on": ",".join(Path(s.images).name for s in cfg.sources),
                "epochs": str(epoch), "step": str(step), "git_sha": git_sha()}
        save_weights(ema.model, out / f"{tag}.safetensors", **meta)
        if tag == "last":
            tmp = out / "last.state.pt.tmp"
            torch.save({"model": model.state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(),
                        "scaler": scaler.state_dict(), "step": step, "epoch": epoch, "best": best,
                        "torch_rng": torch.get_rng_state()}, tmp)
            tmp.replace(state_path)  # atomic: a kill mid-save never corrupts the resume point

    log_path = out / "log.jsonl"
    started = time.time()
    last_ckpt = time.time()
    stop = False
    while epoch < cfg.epochs and not stop:
        ds.epoch = epoch
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        sampler = WeightedRandomSampler(ds.weights(), iters_per_epoch * cfg.batch, replacement=True, generator=g)
        loader = DataLoader(ds, cfg.batch, sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                            drop_last=True, persistent_workers=False, prefetch_factor=4 if cfg.workers else None)
        train_mode(model, frozen)
        agg: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        t0 = time.time()
        n = 0
        for imgs, tg in bar:
            n += 1
            imgs = imgs.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            tg = {k: v.to(device) for k, v in tg.items()}
            for gr in opt.param_groups:
                gr["lr"] = lr_at(step, total, cfg)
            levels = mixed_forward(model, imgs, amp_dtype)
            loss, st = detection_loss(levels, tg, get_config(cfg.variant).anchor_scale, cfg.box_weight,
                                      cfg.landmark_weight, cfg.neg_weight, cfg.score_target_power)
            if teacher is not None:
                kd = score_distillation(levels, teacher(imgs, amp_dtype))
                loss = loss + cfg.distill_weight * kd
                st["distill"] = float(kd.detach())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(opt)
            scaler.update()
            step += 1
            ema.update(model, step)
            for k, v in st.items():
                agg[k] = agg.get(k, 0.0) + v
            bar.set_postfix(loss=f"{st['loss']:.3f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
            if time.time() - last_ckpt > cfg.checkpoint_every_s:
                save("last")
                last_ckpt = time.time()
            if cfg.max_hours and time.time() - started > cfg.max_hours * 3600:
                stop = True
                break
        n = max(1, n)
        row = {"epoch": epoch + 1, "step": step, "lr": opt.param_groups[0]["lr"],
               "img_per_s": n * cfg.batch / (time.time() - t0), "time": time.time(),
               **{k: v / n for k, v in agg.items()}}
        if stop:
            save("last")
            log.info("stopping after max_hours; resume with the same command")
            break
        epoch += 1
        if dev_recs and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            row["dev_ap"] = evaluate_dev(ema.model, dev_recs, device=device)
            if row["dev_ap"] > best:
                best = row["dev_ap"]
                save("best")
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("epoch %d %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        save("last")
        last_ckpt = time.time()
        plot_log(log_path, out / "training.png")
    return out


def plot_log(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for k in ("loss", "cls", "box", "kps"):
        ax[0].plot(ep, [r.get(k, np.nan) for r in rows], label=k)
    ax[0].set_xlabel("epoch")
    ax[0].set_title("training loss")
    ax[0].legend()
    dev = [(r["epoch"], r["dev_ap"]) for r in rows if "dev_ap" in r]
    if dev:
        ax[1].plot(*zip(*dev, strict=True), marker="o")
    ax[1].set_xlabel("epoch")
    ax[1].set_title("dev AP (IoU 0.5)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
