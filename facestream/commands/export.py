"""`facestream export`: turn a training checkpoint into a shippable model (weights + ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(short_help="Release a trained checkpoint: weights with metadata, and ONNX.")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("models/weights/fsdet-m"),
              show_default=True, help="Output stem: writes OUT.safetensors and OUT.onnx.")
@click.option("--name", default="fsdet-m", show_default=True)
@click.option("--version", "version", default="1.0.0", show_default=True)
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training config: calibrate the score threshold (max F1) on its dev split.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Use this threshold instead.")
def export(weights: Path, out: Path, name: str, version: str, config: Path | None, threshold: float | None) -> None:
    """Write WEIGHTS (a .safetensors checkpoint, e.g. runs/fsdet-m/best.safetensors) as a release:
    metadata (name, version, score threshold), the ONNX graph beside it (dynamic batch and size).
    TensorRT engines are built on the target GPU by the worker (`--runtime tensorrt`) and cached."""
    from models.facedet.weights import ModelFileError
    from training.config import load_config
    from training.export import release

    try:
        cfg = load_config(config) if config else None
        res = release(weights, out, name, version, cfg, threshold)
    except (ModelFileError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(res, indent=2))
