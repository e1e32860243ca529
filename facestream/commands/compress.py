"""`facestream compress`: pruned and quantized variants of any facestream model, each behind an accuracy gate."""

from __future__ import annotations

from pathlib import Path

import click

from training.compress.quantize import KEEP_FLOAT

DEFAULT_WIDER = Path("../shared/data/eval/widerface-val-mini")
DEFAULT_CONFIG = Path("configs/fsdet-m.toml")


def gate_options(f):
    f = click.option("--max-drop", type=click.FloatRange(0), default=1.0, show_default=True,
                     help="Most AP points the variant may lose on each of easy / medium / hard.")(f)
    f = click.option("--replay", "replay_clips", multiple=True, type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="Also gate replay F1 on this clip (needs Redis); repeatable.")(f)
    f = click.option("--wider", "wider_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help=f"WIDER val folder (images/, ground_truth/) for the gate [default: {DEFAULT_WIDER}].")(f)
    f = click.option("--gate/--no-gate", default=True, show_default=True,
                     help="Fail unless the variant stays within --max-drop of the float model.")(f)
    return f


@click.group("compress")
def compress() -> None:
    """Prune or quantize a model; every variant is gated against the float model (WIDER AP, replay F1)."""


def _wider(wider_dir: Path | None) -> Path:
    wider_dir = wider_dir or DEFAULT_WIDER
    if not (wider_dir / "ground_truth").is_dir():
        raise click.UsageError(f"the gate needs WIDER val data: {wider_dir} has no ground_truth/ "
                               "(give --wider DIR, or --no-gate to skip it)")
    return wider_dir


def _gate(variant: Path, baseline: Path, gate: bool, wider_dir: Path | None, replay_clips, max_drop: float) -> str:
    """Run the gate; on failure rename the variant to *.rejected* (never served by mistake) and exit 1."""
    if not gate:
        return ""
    from training.compress.gate import accuracy_gate
    from training.evaluate.adapters import ModelLoadError

    wider_dir = _wider(wider_dir)
    try:
        res = accuracy_gate(variant, baseline, wider_dir, max_drop=max_drop, replay_clips=list(replay_clips),
                            out=variant.with_name(variant.stem + ".gate"))
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from e
    click.echo(res.summary())
    if not res.passed:
        rejected = variant.with_name(variant.stem + ".rejected" + variant.suffix)
        variant.replace(rejected)
        onnx = variant.with_suffix(".onnx")
        if variant.suffix != ".onnx" and onnx.exists():
            onnx.replace(rejected.with_suffix(".onnx"))
        raise click.ClickException(f"{res.summary()}; kept as {rejected}")
    return res.to_markdown()


@compress.command("quantize")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Float model: .safetensors (exported on the fly) or its .onnx.")
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default="int8", show_default=True,
              help="int8: CPU (ONNX Runtime QDQ, per-channel weights); fp16: GPU runtimes.")
@click.option("--calib", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Calibration images, folders or videos (repeatable) [default: the --config's training images].")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=f"Training config whose train split calibrates INT8 when no --calib [default: {DEFAULT_CONFIG}].")
@click.option("--frames", type=click.IntRange(1), default=64, show_default=True, help="Calibration frames.")
@click.option("--method", type=click.Choice(["percentile", "minmax", "entropy"]), default="percentile",
              show_default=True, help="How activation ranges are calibrated.")
@click.option("--keep-float", type=click.Choice(list(KEEP_FLOAT)), default="none", show_default=True,
              help="Layers kept in float: head = the score/box/landmark output convolutions, stem = the first "
                   "convolution (int8 is slow on its 3 input channels), stem+head = both.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output .onnx [default: beside the model, <name>-<precision>.onnx].")
@click.option("--target", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True,
              help="tensorrt (GPU host): build the INT8/FP16 engine from the float ONNX into the engine cache, "
                   "calibrated on the same frames; the calibration cache is written beside the engine.")
@gate_options
def quantize(model: Path, precision: str, calib, config, frames, method, keep_float, out, target, gate,
             wider_dir, replay_clips, max_drop) -> None:
    """Write an INT8 or FP16 ONNX of MODEL; workers and `detect` serve it like any model (events say
    its precision)."""
    if target == "tensorrt":
        _tensorrt_engine(model, precision, calib, config or DEFAULT_CONFIG, frames)
        return
    from models.facedet.weights import ModelFileError
    from training.compress.calibration import CalibrationError
    from training.compress.variants import card, float_onnx, quantize_variant

    out = out or model.with_name(f"{model.stem}-{precision}.onnx")
    if config is None and not calib and precision == "int8":
        config = DEFAULT_CONFIG
    try:
        quantize_variant(model, out, precision, calib=list(calib), config=config, frames=frames, method=method,
                         keep_float=keep_float)
        baseline = float_onnx(model)
    except (ModelFileError, CalibrationError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"wrote {out}")
    gate_md = _gate(out, baseline, gate, wider_dir, replay_clips, max_drop)
    click.echo(f"card {card(out, gate_md)}")


def _tensorrt_engine(model: Path, precision: str, calib, config: Path, frames: int) -> None:
    from models.facedet.export import read_model_meta
    from models.runtimes.base import RuntimeUnavailable
    from models.runtimes.tensorrt_rt import TensorRTRuntime
    from training.compress.calibration import calibration_batches, calibration_frames, config_frames
    from training.compress.variants import float_onnx

    try:
        src = float_onnx(model)
        batches = None
        if precision == "int8":
            imgs = calibration_frames(calib, frames) if calib else config_frames(config, frames)
            batches = calibration_batches(imgs, read_model_meta(src).config.input_size)
        rt = TensorRTRuntime(src, precision=precision, calibration_batches=batches)
    except RuntimeUnavailable as e:
        raise click.ClickException(f"--target tensorrt: {e}") from e
    click.echo(f"engine {rt.engine_path} ({precision}, {'built' if rt.built else 'already cached'})")


@compress.command("prune")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Float weights (.safetensors) to prune.")
@click.option("--ratio", type=click.FloatRange(0, 1, max_open=True), required=True,
              help="Share of channels removed from every group (0.3: widths x0.7, rounded to multiples of 8).")
@click.option("--groups", default="all", show_default=True,
              help="Comma list of the channel groups to prune: stem, w0..w3 (the backbone stages, strides "
                   "4..32), neck (FPN and head channels); all = every group.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
              show_default=True, help="Training config: the fine-tune's data and recipe, and the dev split.")
@click.option("--distill/--no-distill", default=False, show_default=True,
              help="The fine-tune also learns MODEL's score maps point by point (knowledge distillation; "
                   "measured a tie at 0.6x the speed, docs/training.md).")
@click.option("--epochs", type=click.IntRange(0), default=12, show_default=True, help="Fine-tune epochs.")
@click.option("--eval-every", type=click.IntRange(1), default=None,
              help="Epochs between dev-split evaluations [default: the config's eval_every].")
@click.option("--max-hours", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop the fine-tune (resumably) after this much wall time.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (resumes there) [default: runs/<name>-p<ratio>].")
@gate_options
def prune(model: Path, ratio: float, groups: str, config: Path, distill: bool, epochs: int, eval_every, max_hours, lr,
          out_dir, gate, wider_dir, replay_clips, max_drop) -> None:
    """Prune MODEL's channels by RATIO, fine-tune it through the training pipeline, calibrate its threshold
    on the dev split; writes OUT/<name>-p<ratio>.safetensors and .onnx with its card."""
    from models.facedet.weights import ModelFileError, read_meta
    from training.compress.prune import parse_groups, variant_name
    from training.compress.variants import card, prune_variant

    try:
        chosen = parse_groups(groups)
        out_dir = out_dir or Path("runs") / variant_name(read_meta(model, with_sha=False).name, ratio, chosen)
        res = prune_variant(model, ratio, config, out_dir, epochs=max(1, epochs), max_hours=max_hours, lr=lr,
                            groups=chosen, distill=distill,
                            **({"eval_every": eval_every} if eval_every else {}))
    except (ModelFileError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from e
    weights = Path(res["weights"])
    click.echo(f"wrote {weights} and {res['onnx']} (threshold {res['threshold']}, dev AP {res.get('dev_ap', 0):.3f})")
    gate_md = _gate(weights, model, gate, wider_dir, replay_clips, max_drop)
    click.echo(f"card {card(weights, gate_md)}")


@compress.command("gate")
@click.option("--model", "variant", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The float model the variant was made from.")
@click.option("--wider", "wider_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--replay", "replay_clips", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--max-drop", type=click.FloatRange(0), default=1.0, show_default=True)
def gate_cmd(variant: Path, baseline: Path, wider_dir, replay_clips, max_drop) -> None:
    """Gate any variant against its float model; exit 1 with the numbers when it loses too much."""
    from training.compress.gate import accuracy_gate
    from training.evaluate.adapters import ModelLoadError

    wider_dir = _wider(wider_dir)
    try:
        res = accuracy_gate(variant, baseline, wider_dir, max_drop=max_drop, replay_clips=list(replay_clips))
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from e
    click.echo(res.to_markdown())
    if not res.passed:
        raise click.ClickException(res.summary())
