"""``facestream mine-negatives``: a model's confident false boxes on a training config's images.

    facestream mine-negatives --model models/weights/fsdet-m.safetensors --config configs/fsdet-m.toml \\
        --out work-data/hard-negatives.json

Train on them with ``hard_negatives = "<out>"`` and ``hard_negative_prob`` in the config (see
training/data/hard_negatives.py). Only the training split is mined: the dev split stays untouched.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("mine-negatives")
@click.option("--model", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Weights (.safetensors) or .onnx whose false boxes to mine (the model being fine-tuned).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Training config: its sources (labels, fills, ignore regions) and dev split.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Boxes scoring at least this count.")
@click.option("--max-ioa", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="At most this fraction of a box may lie inside a label, fill or ignore region.")
@click.option("--input-size", type=click.IntRange(32), default=640, show_default=True)
def mine_negatives(model, config, out, min_score, max_ioa, input_size) -> None:
    """Write {image: false boxes} for the training split of CONFIG's sources."""
    from tqdm import tqdm

    from models.detector import load_detector
    from training.config import load_config
    from training.data import hard_negatives
    from training.data.dataset import source_splits

    try:
        cfg = load_config(config)
    except (ValueError, OSError) as e:
        raise click.ClickException(f"{config}: {e}") from e
    try:
        det = load_detector(runtime="onnx" if model.lower().endswith(".onnx") else "torch", weights=model,
                            threshold=min_score, nms_iou=0.4, input_size=input_size)
    except Exception as e:
        raise click.ClickException(f"cannot load {model}: {e}") from e
    mined: dict = {}
    for name, train, _ in source_splits(cfg):
        got: dict = {}
        chunk = 64  # mine() takes a list; chunks give the progress bar something to count
        for i in tqdm(range(0, len(train), chunk), desc=name, leave=False):
            got.update(hard_negatives.mine(det, train[i:i + chunk], min_score, max_ioa))
        click.echo(f"{name}: {sum(len(v) for v in got.values())} false boxes on {len(got)} of "
                   f"{len(train)} training images")
        mined.update(got)
    hard_negatives.write(out, mined)
    click.echo(f"wrote {out}: {sum(len(v) for v in mined.values())} boxes on {len(mined)} images")
