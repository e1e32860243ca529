"""``facestream worker``: a detector worker (consumer group on the frames stream)."""

from __future__ import annotations

import sys

import click

from core.schema import RUNTIMES
from core.settings import SettingsError, with_overrides
from facestream.commands._common import get_app

EXIT_NO_MODEL = 3


@click.command()
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Weights file (.safetensors or .onnx); default FACESTREAM_WORKER__WEIGHTS or the shipped ones.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
              help="Inference runtime (FACESTREAM_WORKER__RUNTIME).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (FACESTREAM_WORKER__DEVICE).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Score threshold.")
@click.option("--max-batch", type=click.IntRange(1, 256), default=None, help="Largest inference batch.")
@click.option("--max-wait-ms", type=click.IntRange(0, 10_000), default=None,
              help="Wait at most this long to fill a batch.")
@click.option("--http-port", type=click.IntRange(0, 65_535), default=None,
              help="Port of /healthz and /metrics (0: off).")
@click.option("--worker-id", default=None, help="Consumer name in the group (default host:pid).")
@click.pass_context
def worker(ctx: click.Context, weights, runtime, device, threshold, max_batch, max_wait_ms, http_port,
           worker_id) -> None:
    """Run a detector worker until SIGTERM/SIGINT.

    Joins the `detectors` consumer group on the frames stream, batches frames across cameras,
    runs the detector and publishes one DetectionEvent per frame (events stream + per-camera
    channel). On SIGTERM it finishes the batch in hand, acks it and exits 0. See docs/worker.md.
    """
    from core.http_health import HttpBindError
    from worker.loading import DetectorLoadError
    from worker.main import run_worker

    settings = get_app(ctx).settings
    overrides = {
        k: v
        for k, v in dict(weights=weights, runtime=runtime, device=device, threshold=threshold,
                         max_batch=max_batch, max_wait_ms=max_wait_ms, http_port=http_port,
                         worker_id=worker_id).items()
        if v is not None
    }
    if overrides:
        try:
            settings = with_overrides(settings, worker=overrides)
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        run_worker(settings)
    except DetectorLoadError as exc:
        click.echo(f"facestream worker: {exc}", err=True)
        sys.exit(EXIT_NO_MODEL)
    except HttpBindError as exc:
        click.echo(f"facestream worker: {exc}", err=True)
        sys.exit(1)
