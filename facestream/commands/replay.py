"""``facestream replay FILE --camera ID``: publish every sampled frame of a file, losslessly."""

from __future__ import annotations

import signal
import sys

import click

from facestream.commands._common import get_app


@click.command("replay")
@click.argument("file")
@click.option("--camera", "camera_id", required=True, help="Camera id the frames are tagged with.")
@click.option("--pace", type=click.Choice(["realtime", "asfast"]), default="asfast", show_default=True,
              help="realtime: by PTS; asfast: as fast as decode and the workers allow (backpressure).")
@click.option("--run-id", default=None, help="Run id (default: timestamp + random).")
@click.option("--fps", type=click.FloatRange(0, 120, min_open=True), default=None,
              help="Detect fps (default: the registered camera's, else 5).")
@click.option("--detect-size", type=click.IntRange(64, 4096), default=None,
              help="Long side of published frames (default: the camera's, else 640).")
@click.option("--codec", type=click.Choice(["jpeg", "raw"]), default=None, help="Payload codec [jpeg].")
@click.option("--window", type=click.IntRange(1), default=None,
              help="Most frames outstanding in the worker group [FACESTREAM_INGEST__REPLAY_WINDOW].")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after publishing N frames.")
@click.option("--duration", "duration_s", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after S seconds of source time (needed for rtsp:// and http:// sources).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def replay(ctx, file, camera_id, pace, run_id, fps, detect_size, codec, window, max_frames, duration_s,
           as_json) -> None:
    """Replay FILE through the ingest path as camera --camera, tagged source=replay and a run id.

    Never drops a frame: waits when the workers lag. Writes the run summary to Redis
    (run:<run_id>) and prints it.
    """
    import json

    from core.bus import BusError, connect
    from core.keys import Keys
    from core.schema import validate_camera_id
    from ingest.registry import Registry
    from ingest.replay import ReplayError, ReplayStopped
    from ingest.replay import replay as run_replay
    from ingest.sources import is_live_url

    settings = get_app(ctx).settings
    if is_live_url(file) and max_frames is None and duration_s is None:
        raise click.UsageError("a live URL has no end: give --duration S or --max-frames N")
    try:
        validate_camera_id(camera_id)
        if run_id is not None:
            validate_camera_id(run_id)
    except ValueError as exc:
        click.echo(f"facestream replay: {exc}", err=True)
        sys.exit(2)
    try:
        r = connect(settings.redis)
    except BusError as exc:
        click.echo(f"facestream replay: {exc}", err=True)
        sys.exit(1)
    keys = Keys(settings.redis.prefix)
    cam = Registry(r, keys).get(camera_id)
    fps = fps or (cam.fps if cam else 5.0)
    detect_size = detect_size or (cam.detect_size if cam else 640)
    codec = codec or (cam.codec.value if cam else "jpeg")

    def progress(s) -> None:
        click.echo(f"  ... {s.frames_published} frames published ({s.frames_decoded} decoded)", err=True)

    def on_term(signum, _frame) -> None:  # default SIGTERM would skip the run's final status write
        raise ReplayStopped(f"stopped by {signal.Signals(signum).name}")

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        summary = run_replay(file, camera_id, redis=r, keys=keys, settings=settings.ingest, pace=pace,
                             run_id=run_id, fps=fps, detect_size=detect_size, codec=codec, window=window,
                             progress=progress, max_frames=max_frames, duration_s=duration_s)
    except ReplayStopped as exc:
        click.echo(f"facestream replay: {exc}; run marked failed", err=True)
        sys.exit(143)
    except ReplayError as exc:
        if exc.summary is not None:
            click.echo(exc.summary.text(), err=True)
        click.echo(f"facestream replay: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("facestream replay: interrupted", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, old_term)
    if as_json:
        click.echo(json.dumps(summary.to_hash()))
    else:
        click.echo(summary.text())
