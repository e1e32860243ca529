"""``facestream camera add|list|remove|status``: the camera registry (see docs/ingest.md)."""

from __future__ import annotations

import json
import sys
import time

import click

from facestream.commands._common import get_app


def _registry(ctx: click.Context):
    from core.bus import BusError, connect
    from core.keys import Keys
    from ingest.registry import Registry

    settings = get_app(ctx).settings
    try:
        r = connect(settings.redis)
    except BusError as exc:
        click.echo(f"facestream: {exc}", err=True)
        sys.exit(1)
    return Registry(r, Keys(settings.redis.prefix))


@click.group()
def camera() -> None:
    """Register, list and remove cameras; show their status. Changes reach running ingest at once."""


def _url_from(url: str | None, url_env: str | None, url_file: str | None, password_env: str | None) -> str:
    """The camera URL from exactly one of: the argument, an environment variable, a file or stdin ('-');
    optionally with the password from an environment variable. Keeps secrets out of `ps` and history."""
    import os
    from urllib.parse import quote, urlsplit, urlunsplit

    given = [x for x in (url, url_env, url_file) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give the URL once: as URL, --url-env VAR or --url-file PATH|-")
    if url_env is not None:
        url = os.environ.get(url_env)
        if not url:
            raise click.UsageError(f"--url-env: environment variable {url_env} is not set")
    elif url_file is not None:
        try:
            url = sys.stdin.read() if url_file == "-" else open(url_file, encoding="utf-8").read()  # noqa: SIM115
        except (OSError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"--url-file {url_file}: cannot read it ({exc})") from None
        url = url.strip()
    if password_env is not None:
        pw = os.environ.get(password_env)
        if pw is None:
            raise click.UsageError(f"--password-env: environment variable {password_env} is not set")
        parts = urlsplit(url)
        if not parts.username:
            raise click.UsageError("--password-env needs a user name in the URL (rtsp://USER@host/...)")
        host = parts.netloc.rsplit("@", 1)[1]
        url = urlunsplit(parts._replace(netloc=f"{parts.username}:{quote(pw, safe='')}@{host}"))
    return url


@camera.command("add")
@click.argument("camera_id")
@click.argument("url", required=False)
@click.option("--url-env", metavar="VAR", default=None, help="Read the URL from environment variable VAR.")
@click.option("--url-file", metavar="PATH", default=None, help="Read the URL from a file ('-': stdin).")
@click.option("--password-env", metavar="VAR", default=None,
              help="Put the password from environment variable VAR into the URL's user info.")
@click.option("--fps", type=float, default=None, help="Detect fps: frames sampled per second [5].")
@click.option("--detect-size", type=int, default=None, help="Long side of published frames, px [640].")
@click.option("--transport", type=click.Choice(["tcp", "udp"]), default=None, help="RTSP transport [tcp].")
@click.option("--codec", type=click.Choice(["jpeg", "raw"]), default=None, help="Payload codec [jpeg].")
@click.option("--jpeg-quality", type=int, default=None, help="JPEG quality 10..100 [90].")
@click.option("--disabled", is_flag=True, help="Register without ingesting it.")
@click.option("--replace", is_flag=True, help="Replace an existing camera with this id.")
@click.pass_context
def add(ctx, camera_id, url, url_env, url_file, password_env, fps, detect_size, transport, codec, jpeg_quality,
        disabled, replace) -> None:
    """Register CAMERA_ID reading URL (rtsp://, rtsps://, http(s):// or a file path).

    A URL on the command line lands in `ps` and shell history: with credentials, prefer
    --url-env VAR, --url-file PATH (or - for stdin), or --password-env VAR."""
    from core.logging import redact_url
    from ingest.registry import RegistryError

    url = _url_from(url, url_env, url_file, password_env)
    reg = _registry(ctx)
    try:
        cam = reg.add(camera_id, url, replace=replace, fps=fps, detect_size=detect_size, transport=transport,
                      codec=codec, jpeg_quality=jpeg_quality, enabled=not disabled)
    except RegistryError as exc:
        click.echo(f"facestream camera add: {exc}", err=True)
        sys.exit(2)
    click.echo(f"camera {cam.id}: {redact_url(cam.url)} fps={cam.fps:g} detect_size={cam.detect_size} "
               f"transport={cam.transport.value} codec={cam.codec.value}{' (disabled)' if disabled else ''}")


@camera.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per camera (URL redacted).")
@click.pass_context
def list_(ctx, as_json: bool) -> None:
    """List registered cameras (URLs redacted)."""
    from ingest.registry import camera_public

    cams = _registry(ctx).list()
    if as_json:
        for c in cams:
            click.echo(json.dumps(camera_public(c)))
        return
    if not cams:
        click.echo("no cameras")
        return
    rows = [("ID", "FPS", "SIZE", "TRANSPORT", "CODEC", "ENABLED", "URL")]
    for c in cams:
        p = camera_public(c)
        rows.append((c.id, f"{c.fps:g}", str(c.detect_size), c.transport.value, c.codec.value,
                     "yes" if c.enabled else "no", p["url"]))
    _table(rows)


@camera.command("remove")
@click.argument("camera_id")
@click.pass_context
def remove(ctx, camera_id: str) -> None:
    """Unregister CAMERA_ID (the ingest process holding it stops reading it)."""
    try:
        ok = _registry(ctx).remove(camera_id)
    except ValueError as exc:
        click.echo(f"facestream camera remove: {exc}", err=True)
        sys.exit(2)
    if not ok:
        click.echo(f"facestream camera remove: no camera {camera_id!r}", err=True)
        sys.exit(1)
    click.echo(f"removed {camera_id}")


def _age(ns: int, now_ns: int) -> str:
    if not ns:
        return "-"
    s = max(0.0, (now_ns - ns) / 1e9)
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.1f}h"


@camera.command("status")
@click.argument("camera_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per camera.")
@click.pass_context
def status(ctx, camera_id: str | None, as_json: bool) -> None:
    """State, reason, since, fps, last frame age, reconnects and drops of one or every camera."""
    reg = _registry(ctx)
    sts = reg.statuses()
    if camera_id is not None:
        sts = [s for s in sts if s.camera_id == camera_id]
        if not sts:
            click.echo(f"facestream camera status: no camera {camera_id!r}", err=True)
            sys.exit(1)
    now = time.time_ns()
    if as_json:
        for s in sts:
            d = s.model_dump(mode="json")
            d["last_frame_age_s"] = round((now - s.last_frame_ns) / 1e9, 3) if s.last_frame_ns else None
            click.echo(json.dumps(d))
        return
    if not sts:
        click.echo("no cameras")
        return
    rows = [("ID", "STATE", "REASON", "SINCE", "FPS", "PUB FPS", "LAST FRAME", "RECONNECTS", "DROPS", "DETAIL")]
    for s in sts:
        rows.append((s.camera_id, s.state.value, s.reason.value or "-", _age(s.since_ns, now), f"{s.fps:.1f}",
                     f"{s.published_fps:.1f}", _age(s.last_frame_ns, now), str(s.reconnects), str(s.drops),
                     s.detail[:60] or "-"))
    _table(rows)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
