"""``facestream ingest``: run the ingest supervisor (leases, one reader per camera) until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

import click

from facestream.commands._common import get_app


@click.command("ingest")
@click.option("--max-cameras", type=click.IntRange(0), default=None,
              help="Most cameras this process holds (0: fair share only) [FACESTREAM_INGEST__MAX_CAMERAS].")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Prometheus /metrics port, 0 disables [FACESTREAM_INGEST__HTTP_PORT].")
@click.option("--id", "ingest_id", default=None, help="This process's id in leases [FACESTREAM_INGEST__INGEST_ID].")
@click.pass_context
def ingest(ctx: click.Context, max_cameras: int | None, metrics_port: int | None, ingest_id: str | None) -> None:
    """Read the registered cameras this process can claim and publish sampled frames to Redis.

    Several ingest processes share the fleet through Redis leases; a dead one's cameras are taken
    over within the lease TTL. Stops cleanly on SIGTERM/SIGINT (status 'stopped', leases released).
    """
    from core.bus import BusError, connect
    from core.keys import Keys
    from ingest.supervisor import Supervisor

    settings = get_app(ctx).settings
    ing = settings.ingest
    if ingest_id is not None:
        ing = ing.model_copy(update={"ingest_id": ingest_id})
    try:
        r = connect(settings.redis)
    except BusError as exc:
        click.echo(f"facestream ingest: {exc}", err=True)
        sys.exit(1)
    sup = Supervisor(r, Keys(settings.redis.prefix), ing, max_cameras=max_cameras, metrics_port=metrics_port)
    try:
        sup.run()
    except OSError as exc:  # e.g. the metrics port is busy
        click.echo(f"facestream ingest: {exc}", err=True)
        sys.exit(1)
