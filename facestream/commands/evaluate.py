"""``facestream eval``: the evaluation group.

* ``facestream eval wider --model M --data DIR``: the official WIDER FACE protocol (easy/medium/hard AP)
  plus P/R/F1 at the model's shipped threshold, per-attribute recall and PR curves. ``M`` is our weights
  (.safetensors / our .onnx), a peer ONNX (SCRFD, YuNet, CenterFace, RetinaFace, ULFD, YOLO5Face) or
  ``haar``. ``DIR`` holds ``images/``, ``ground_truth/*.mat`` and optionally ``wider_face_val_bbx_gt.txt``
  (e.g. ``../shared/data/eval/widerface-val-mini``); only images present are scored.
* ``facestream eval replay`` / ``facestream eval gate``: replay-run scoring and the regression gate
  (facestream/commands/eval_replay.py).

``eval`` is a group (not a command with options) so that every evaluation is a named subcommand.
"""

from __future__ import annotations

from pathlib import Path

import click

from core.schema import RUNTIMES


@click.group("eval")
def eval_group() -> None:
    """Evaluate detectors: WIDER FACE protocol (wider), replay runs (replay), regression gate (gate)."""


@eval_group.command("wider")
@click.option("--model", required=True,
              help="Our weights (.safetensors/.onnx), a peer ONNX, or 'haar'.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="WIDER val folder with images/ and ground_truth/.")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Images folder (<event>/<name>.jpg); overrides DATA/images.")
@click.option("--gt", "gt_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat; overrides "
                   "DATA/ground_truth.")
@click.option("--threshold", type=float, default=None,
              help="Score threshold for P/R/F1 (raw scores). Default: the model's shipped threshold.")
@click.option("--min-score", type=float, default=0.02, show_default=True,
              help="Detections below this are dropped before evaluation (the published convention).")
@click.option("--max-size", type=int, default=None,
              help="Long side for dynamic-input models (default: original size; ours: its input size).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="Runtime for our weights.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--name", default=None, help="Name in the report (default: the model file's stem).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write result.json, result.md, pr.png and the official prediction files here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of markdown.")
@click.option("--progress/--no-progress", default=True)
def wider(model, data_dir, images_dir, gt_dir, threshold, min_score, max_size, runtime, threads, name,
          out_dir, as_json, progress) -> None:
    """Official WIDER FACE evaluation of one model on the images present."""
    from training.evaluate.adapters import ModelLoadError, WiderDataError, wider_eval
    from training.evaluate.plots import plot_pr_curves

    try:
        res = wider_eval(model, data_dir=data_dir, images_dir=images_dir, gt_dir=gt_dir, threshold=threshold,
                         min_score=min_score, max_size=max_size, runtime=runtime, threads=threads, name=name,
                         progress=progress, pred_dir=(out_dir / "predictions") if out_dir else None)
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from e
    except WiderDataError:
        raise click.UsageError("need --data DIR (with images/ and ground_truth/) or --images and --gt") from None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "result.json").write_text(res.to_json(curves=True))
        (out_dir / "result.md").write_text(res.to_markdown())
        plot_pr_curves(res, out_dir / "pr.png")
    click.echo(res.to_json() if as_json else res.to_markdown())


# "AP >= N px" columns: faces under N px at the serving size become ignore regions. The dev split is two-thirds
# faces under 16 px; WIDER's easy / medium and most camera faces are the larger ones.
SIZE_FLOORS_PX = (16, 32, 64)


@eval_group.command("dev")
@click.option("--model", "models", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="Weights (.safetensors) or an exported/compressed .onnx; repeat to compare several.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Training config whose sources and dev_fraction define the dev split.")
@click.option("--source", "only", multiple=True,
              help="Score only these sources (their folder names, as in the AP columns); repeatable.")
@click.option("--input-size", type=click.IntRange(32), default=640, show_default=True)
def dev(models, config, only, input_size) -> None:
    """AP (IoU 0.5) and max-F1 threshold on a training config's dev split: the held-out part of the
    training sources on which every recipe choice is made (never the evaluation set)."""
    from models.detector import load_detector
    from training.config import load_config
    from training.data.dataset import source_splits
    from training.devset import average_precision, best_f1_threshold, ignore_small, predict_dev, serving_scales

    try:
        cfg = load_config(config)
    except (ValueError, OSError) as e:
        raise click.ClickException(f"{config}: {e}") from e
    recs, source = [], []
    splits = source_splits(cfg)
    unknown = set(only) - {name for name, _, _ in splits}
    if unknown:
        raise click.ClickException(f"{config} has no source {sorted(unknown)[0]!r}; its sources: "
                                   + ", ".join(name for name, _, _ in splits))
    for name, _, d in splits:
        if only and name not in only:
            continue
        recs += d
        source += [name] * len(d)
    if not recs:
        raise click.ClickException(f"{config}: the dev split is empty (dev_fraction = {cfg.dev_fraction})")
    names = list(dict.fromkeys(source))
    click.echo(f"dev split of {config}: {len(recs)} images, {sum(int((~r.ignore).sum()) for r in recs)} faces")
    scales = serving_scales(recs, input_size)
    click.echo("| model | dev AP | " + " | ".join(f"AP >= {px} px" for px in SIZE_FLOORS_PX)
               + " | max-F1 threshold | F1 | " + " | ".join(f"AP {n}" for n in names) + " |")
    click.echo("| --- " * (4 + len(SIZE_FLOORS_PX) + len(names)) + "|")
    for m in models:
        try:  # an .onnx (float, fp16, int8) runs on ONNX Runtime; weights on torch
            det = load_detector(runtime="onnx" if m.lower().endswith(".onnx") else "torch", weights=m,
                                threshold=0.02, nms_iou=0.4, input_size=input_size)
        except Exception as e:
            raise click.ClickException(f"cannot load {m}: {e}") from e
        dets, gts = predict_dev(det, recs)
        thr, f1 = best_f1_threshold(dets, gts)
        per = [average_precision([d for d, src in zip(dets, source, strict=True) if src == n],
                                 [g for g, src in zip(gts, source, strict=True) if src == n]) for n in names]
        big = [average_precision(dets, ignore_small(gts, scales, px)) for px in SIZE_FLOORS_PX]
        click.echo(f"| {m} | {average_precision(dets, gts):.3f} | " + " | ".join(f"{a:.3f}" for a in big)
                   + f" | {thr:.2f} | {f1:.3f} | "
                   + " | ".join(f"{a:.3f}" for a in per) + " |")


def _attach_replay() -> None:
    try:
        from facestream.commands.eval_replay import gate, replay
    except ImportError:  # pragma: no cover - the replay commands are optional in this group
        return
    eval_group.add_command(replay)
    eval_group.add_command(gate)


_attach_replay()
