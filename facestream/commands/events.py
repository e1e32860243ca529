"""``facestream events tail``: print detection events as they are published."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from facestream.commands._common import get_app


@click.group()
def events() -> None:
    """Read detection events (see docs/events.md)."""


def format_event(ev) -> str:
    """One readable line per event."""
    ts = datetime.fromtimestamp(ev.frame.capture_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
    n = len(ev.detections)
    faces = " ".join(
        f"[{d.score:.2f} {d.box[0]:.0f},{d.box[1]:.0f},{d.box[2]:.0f},{d.box[3]:.0f}]" for d in ev.detections[:4]
    )
    if n > 4:
        faces += f" +{n - 4} more"
    run = f" run={ev.source.run_id}" if ev.source.run_id else ""
    t = ev.timings_ms
    return (
        f"{ts} {ev.camera_id} #{ev.frame.seq}{run} {ev.frame.width}x{ev.frame.height} "
        f"{n} face{'s' if n != 1 else ''} {faces}".rstrip()
        + f"  infer {t.infer:.1f} ms, total {t.total:.1f} ms"
    )


@events.command("tail")
@click.option("--camera", "cameras", multiple=True, help="Only this camera (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One DetectionEvent JSON object a line.")
@click.option("--group", default=None, help="Read through this consumer group (durable, acked).")
@click.option("--consumer", default=None, help="Consumer name within --group (default host:pid).")
@click.option("--from-start", is_flag=True, help="Start at the oldest retained event instead of now.")
@click.option("--run-id", default=None, help="A replay run's events instead of the live stream.")
@click.option("--pubsub", is_flag=True, help="Use the per-camera pub/sub channels (at-most-once).")
@click.option("--count", "max_events", type=click.IntRange(1), default=None, help="Exit after N events.")
@click.option("--timeout", "idle_timeout_s", type=click.FloatRange(0, min_open=True), default=None,
              help="Exit after this many seconds without an event.")
@click.pass_context
def tail(ctx, cameras, as_json, group, consumer, from_start, run_id, pubsub, max_events, idle_timeout_s) -> None:
    """Print events as they arrive (Ctrl-C to stop)."""
    from core.bus import BusError
    from core.schema import validate_camera_id
    from facestream.events import subscribe

    for cam in cameras:  # a bad id would match nothing and wait forever in silence
        try:
            validate_camera_id(cam)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--camera") from None
    settings = get_app(ctx).settings
    try:
        it = subscribe(camera=list(cameras) or None, group=group, from_now=not from_start, consumer=consumer,
                       run_id=run_id, pubsub=pubsub, settings=settings, idle_timeout_s=idle_timeout_s,
                       max_events=max_events)
        for ev in it:
            click.echo(ev.model_dump_json() if as_json else format_event(ev))
    except BusError as exc:
        click.echo(f"facestream events: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
