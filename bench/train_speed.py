"""Training throughput (images/s) of this tree beside a baseline git ref, in the same run.

    .venv/bin/python bench/train_speed.py [--config configs/fsdet-m.toml] [--baseline c889e08]
        [--steps 12] [--rounds 2] [--window 320] [--markdown]

The baseline is checked out into a temporary git worktree; both trees run the same loop (data
loading through one DataLoader worker as `facestream train` does, forward, loss with target
assignment, backward, AdamW step) on the same sources at the config's window size, alternating
baseline / current each round so that other load on the machine hits both alike. Reported: images/s
per tree (median over rounds) and their ratio. The current tree reads through its decoded-image cache
(warmed once before timing: the steady state of a run after its first epoch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside each tree (cwd = the repository root the data paths are relative to).
STEPS = r"""
import inspect, json, sys, time
from pathlib import Path
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
sys.path.insert(0, sys.argv[1])
from models.facedet import build_model, get_config
from training.data import dataset as D
from training.data.augment import AugmentConfig
from training.losses import detection_loss
cfg_path, steps, cache, window = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import tomllib
raw = tomllib.loads(Path(cfg_path).read_text())
raw.update(json.loads(sys.argv[6]))  # --set overrides (top-level keys)
if window:
    raw["window"] = window
torch.set_num_threads(raw.get("threads", 2))
recs = []
for s in raw["sources"]:
    spec = D.SourceSpec(**{k: v for k, v in s.items() if k in D.SourceSpec.__dataclass_fields__})
    recs += D.load_source(spec, Path("."))  # source weights included: the mix a real run samples
kw = {}
if "cache" in inspect.signature(D.FaceDataset).parameters and cache:
    kw["cache"] = D.ImageCache(Path(cache))
ds = D.FaceDataset(recs, AugmentConfig(canvas=raw.get("canvas", 640), window=raw.get("window", 320)), 0, **kw)
if kw:  # warm the cache once (the state of a run after its first epoch)
    for r in recs:
        kw["cache"].read(r.path)
batch = raw.get("batch", 32)
g = torch.Generator().manual_seed(0)
sampler = WeightedRandomSampler(ds.weights(), (steps + 2) * batch, replacement=True, generator=g)
loader = DataLoader(ds, batch, sampler=sampler, collate_fn=D.collate, num_workers=1, drop_last=True,
                    prefetch_factor=4)
model = build_model(get_config(raw.get("variant", "fsdet-m"))).to(memory_format=torch.channels_last)
model.train()
if raw.get("freeze"):  # a tree that can freeze modules does as the config says; older trees train them all
    try:
        from training.train import freeze_modules, train_mode
        train_mode(model, freeze_modules(model, raw["freeze"]))
    except ImportError:
        pass
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
forward = model.forward_levels  # older trees: fp32
try:  # a tree with mixed precision runs the forward as `facestream train` does (bf16 where the config asks)
    from training.config import TrainConfig
    from training.forward import mixed_forward
    from training.train import autocast_dtype
    amp = autocast_dtype(TrainConfig(**{k: v for k, v in raw.items() if k in TrainConfig.model_fields}),
                         torch.device("cpu"))
    forward = lambda x: mixed_forward(model, x, amp)  # noqa: E731
except ImportError:
    pass
t0, n = None, 0
for i, (imgs, tg) in enumerate(loader):
    if i == 2:
        t0 = time.perf_counter()
    imgs = imgs.contiguous(memory_format=torch.channels_last)
    loss, _ = detection_loss(forward(imgs), tg, 4.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if i >= 2:
        n += imgs.shape[0]
print(json.dumps({"img_per_s": n / (time.perf_counter() - t0)}))
"""


def run_tree(tree: Path, config: Path, steps: int, cache: str, window: int, sets: dict | None = None) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS, str(tree), str(config), str(steps), cache, str(window),
                          json.dumps(sets or {})],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["img_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs/fsdet-m.toml")
    ap.add_argument("--baseline", default="c889e08", help="git ref of the baseline (default: FSDet-m 1.0.0's tree)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", default="work-data/image-cache")
    ap.add_argument("--window", type=int, default=0, help="window size for both trees (default: the config's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a third arm: the current tree with this top-level config override (e.g. cpu_bf16=true)")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from training.config import apply_set

    sets: dict = {}
    for kv in a.set:
        apply_set(sets, kv)
    arms = {"baseline": None, "current": {}, **({"current " + " ".join(a.set): sets} if sets else {})}
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(wt), a.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            res: dict[str, list[float]] = {k: [] for k in arms}
            for r in range(a.rounds):
                for name, over in arms.items():
                    res[name].append(run_tree(wt, a.config, a.steps, "", a.window) if over is None
                                     else run_tree(ROOT, a.config, a.steps, a.cache, a.window, over))
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in res.items()), file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, check=False)
    med = {k: statistics.median(v) for k, v in res.items()}
    b = med["baseline"]
    if a.markdown:
        print(f"| tree | images/s (median of {a.rounds}) | ratio |\n| --- | --- | --- |")
        for k, v in med.items():
            print(f"| {f'baseline `{a.baseline}`' if k == 'baseline' else k} | {v:.1f} | **{v / b:.2f}x** |")
    else:
        print(json.dumps({**med, "ratio": med["current"] / b, "rounds": res}))


if __name__ == "__main__":
    main()
