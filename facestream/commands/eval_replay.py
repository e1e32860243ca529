"""``facestream eval replay`` (score a replay run against footage labels) and ``facestream eval gate``
(compare two report.json files): the regression gate a new model passes before it replaces the old one.

Both are plain click commands attached to the ``eval`` group (facestream/commands/evaluate.py).
Exit codes: 0 ok / gate passed, 1 gate failed, 2 bad input (usage, unknown run, unreadable files).
"""

from __future__ import annotations

import json
import sys

import click

from facestream.commands._common import get_app

EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2

_gate_options = [
    click.option("--max-drop", type=click.FloatRange(0, 1), default=0.01, show_default=True,
                 help="Largest allowed drop (absolute) of each gated metric against the baseline."),
    click.option("--max-faces", type=click.IntRange(0), default=0, show_default=True,
                 help="A metric that drops by more than --max-drop still passes when the new run has at most "
                      "this many more missed faces plus false boxes (at the threshold) than the baseline: "
                      "for short clips, where one face moves F1 by several points. 0: ratios only."),
    click.option("--metric", "metrics", multiple=True, type=click.Choice(["recall", "precision", "f1", "ap"]),
                 help="Metrics to gate (repeatable) [recall, f1, ap]."),
    click.option("--per-camera", is_flag=True, help="Also gate every camera of the baseline, not just overall."),
    click.option("--allow-missing", is_flag=True,
                 help="Do not fail the gate on published frames without an event."),
    click.option("--allow-mismatch", is_flag=True,
                 help="Compare reports made with different labels files or threshold/IoU settings."),
]


def gate_options(f):
    for opt in reversed(_gate_options):
        f = opt(f)
    return f


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"facestream eval: {msg}", err=True)
    sys.exit(code)


def _run_gate(new: dict, baseline_path: str, max_drop, max_faces, metrics, per_camera, allow_missing,
              allow_mismatch):
    from training.evaluate.replay import GATED_METRICS, ReplayEvalError, gate, load_report

    try:
        base = load_report(baseline_path)
    except ReplayEvalError as exc:
        _fail(str(exc))
    return gate(new, base, max_drop=max_drop, metrics=metrics or GATED_METRICS, per_camera=per_camera,
                allow_missing=allow_missing, allow_mismatch=allow_mismatch, max_faces=max_faces)


@click.command("replay", short_help="Score replay run(s) against footage labels; optional regression gate.")
@click.option("--run-id", "run_ids", multiple=True, required=True,
              help="Replay run to score (repeatable: one --labels per run, or one for all).")
@click.option("--labels", "labels_paths", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Footage labels: .jsonl (facestream format) or MOT-style .csv/.txt.")
@click.option("--labels-format", type=click.Choice(["auto", "footage", "mot"]), default="auto", show_default=True)
@click.option("--fps", "labels_fps", type=float, default=None,
              help="Video fps for MOT labels without a seqinfo.ini (default: the run's source fps).")
@click.option("--dense", is_flag=True,
              help="Treat frames missing from the labels as labelled with no face.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Score threshold for precision / recall / F1 (AP uses every published detection).")
@click.option("--iou", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.md, report.json, frames.csv and PNG plots here.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write the PNG plots into --out.")
@click.option("--wait", "wait_s", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Wait up to this long for the replay to end and every frame's event to arrive.")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False), default=None,
              help="report.json of the current model: exit 1 when this run regresses against it.")
@gate_options
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the summary.")
@click.pass_context
def replay(ctx, run_ids, labels_paths, labels_format, labels_fps, dense, threshold, iou, out_dir, plots,
           wait_s, baseline, max_drop, max_faces, metrics, per_camera, allow_missing, allow_mismatch,
           as_json) -> None:
    """Score replay run(s) against footage labels: P/R/F1 at --threshold, AP (IoU 0.5, VOC), drops, latency.

    \b
    facestream replay lobby.mp4 --camera lobby --run-id r1      # with a worker running
    facestream eval replay --run-id r1 --labels lobby.jsonl --out eval/r1
    facestream eval replay --run-id r2 --labels lobby.jsonl --baseline eval/r1/report.json --max-drop 0.01
    """
    from core.bus import BusError, connect
    from core.keys import Keys
    from training.evaluate.footage_labels import LabelsError, load_labels
    from training.evaluate.replay import ReplayEvalError, collect_run, evaluate_runs, write_report

    if len(labels_paths) not in (1, len(run_ids)):
        _fail(f"give one --labels for all runs or one per --run-id ({len(run_ids)} runs, "
              f"{len(labels_paths)} labels)")
    for path in labels_paths:  # before waiting on any run: a wrong file fails at once
        try:
            with open(path, encoding="utf-8") as f:
                f.read(1 << 20)
        except UnicodeDecodeError:
            _fail(f"{path}: not a labels file (not UTF-8 text: a video or image?)")
        except OSError as exc:
            _fail(f"{path}: cannot read it ({exc.strerror or exc})")
    settings = get_app(ctx).settings
    try:
        r = connect(settings.redis)
    except BusError as exc:
        _fail(str(exc))
    keys = Keys(settings.redis.prefix)
    pairs = []
    try:
        for i, run_id in enumerate(run_ids):
            run = collect_run(r, keys, run_id, wait_s=wait_s)
            if not run.complete:
                click.echo(f"facestream eval: run {run_id}: not complete after {wait_s:g}s "
                           f"(status {run.info.get('status')!r}, {len(run.events)} events of "
                           f"{run.expected} frames); scoring what is there", err=True)
            path = labels_paths[i if len(labels_paths) > 1 else 0]
            kw = {}
            fmt = labels_format
            if fmt == "mot" or (fmt == "auto" and path.lower().endswith((".csv", ".txt"))):
                kw = {"fps": labels_fps or float(run.info.get("source_fps") or 0) or None}
            labels = load_labels(path, fmt, **kw)
            if dense:
                labels.dense = True
            pairs.append((run, labels))
        report = evaluate_runs(pairs, threshold=threshold, iou=iou)
    except (ReplayEvalError, LabelsError) as exc:
        _fail(str(exc))
    finally:
        r.close()
    result = None
    if baseline:
        result = _run_gate(report.data, baseline, max_drop, max_faces, metrics, per_camera, allow_missing,
                           allow_mismatch)
    if out_dir:
        paths = write_report(report, out_dir, result, plots=plots)
        click.echo(f"report: {paths['md']} (+ {', '.join(p.name for k, p in paths.items() if k != 'md')})",
                   err=True)
    if as_json:
        data = dict(report.data)
        if result is not None:
            data["gate"] = result.to_dict()
        click.echo(json.dumps(data, indent=1))
    else:
        click.echo(summary_text(report.data))
    if result is not None:
        click.echo(result.text(), err=as_json)
        if not result.passed:
            sys.exit(EXIT_GATE_FAILED)


def summary_text(d: dict) -> str:
    from training.evaluate.replay import OVERALL

    lines = []
    for name, m in [*d["per_camera"].items(), (OVERALL, d[OVERALL])]:
        ap = "n/a" if m["ap"] is None else f"{m['ap']:.4f}"
        lines.append(f"{name:>12}: P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  AP {ap}  "
                     f"(tp {m['tp']}, fp {m['fp']}, faces {m['faces']}, {m['frames_scored']} frames scored, "
                     f"{m['frames_unlabelled']} unlabelled)")
    p = d["pipeline"]
    lat = d["latency_ms"]["capture_to_event"]
    lines.append(f"pipeline: {p['events']}/{p['frames_expected']} events, {p['missing']} missing (errors), "
                 f"{p['duplicates']} duplicates")
    if lat.get("n"):
        lines.append(f"latency capture->event: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                     f"max {lat['max']:.1f} ms")
    for w in d.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


@click.command("gate", short_help="Compare two report.json files (no Redis): the regression gate.")
@click.argument("new_report", type=click.Path(exists=True, dir_okay=False))
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False), required=True,
              help="report.json of the model in service.")
@gate_options
@click.option("--json", "as_json", is_flag=True, help="Print the gate result as JSON.")
def gate_cmd(new_report, baseline, max_drop, max_faces, metrics, per_camera, allow_missing, allow_mismatch,
             as_json) -> None:
    """Compare NEW_REPORT (report.json) with --baseline without Redis; exit 1 when the new model regresses."""
    from training.evaluate.replay import ReplayEvalError, load_report

    try:
        new = load_report(new_report)
    except ReplayEvalError as exc:
        _fail(str(exc))
    result = _run_gate(new, baseline, max_drop, max_faces, metrics, per_camera, allow_missing, allow_mismatch)
    click.echo(json.dumps(result.to_dict(), indent=1) if as_json else result.text())
    if not result.passed:
        sys.exit(EXIT_GATE_FAILED)


gate = gate_cmd
COMMANDS = (replay, gate_cmd)
