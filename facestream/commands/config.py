"""``facestream config show|check|docs``: inspect and validate the configuration."""

from __future__ import annotations

import json
import sys

import click

from core.settings import env_var_name, iter_fields, redacted_dump, settings_markdown
from facestream.commands._common import get_app


@click.group()
def config() -> None:
    """Inspect and validate the configuration (FACESTREAM_* environment variables)."""


@config.command("show")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "env"]),
    default="json",
    show_default=True,
    help="json: nested object; env: one VARIABLE=value line per setting.",
)
@click.pass_context
def show(ctx: click.Context, fmt: str) -> None:
    """Print the resolved settings, secrets redacted."""
    data = redacted_dump(get_app(ctx).settings)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for loc, _info in iter_fields():
        value = data
        for part in loc:
            value = value[part]
        click.echo(f"{env_var_name(loc)}={'' if value is None else value}")


@config.command("check")
@click.option("--offline", is_flag=True, help="Only validate; do not connect to Redis.")
@click.pass_context
def check(ctx: click.Context, offline: bool) -> None:
    """Validate the settings and (unless --offline) PING Redis. Exit 0 when all is well."""
    from core.logging import redact_url

    settings = get_app(ctx).settings
    click.echo("settings: ok")
    if offline:
        return
    from core.bus import BusError, connect

    try:
        r = connect(settings.redis)
        info = r.info("server")
    except BusError as exc:
        click.echo(f"redis: FAILED: {exc}", err=True)
        sys.exit(1)
    click.echo(f"redis: ok ({redact_url(settings.redis.url)}, redis {info.get('redis_version', '?')})")


@config.command("docs")
def docs() -> None:
    """Print docs/configuration.md (every setting and its variable), generated from the models."""
    click.echo(settings_markdown(), nl=False)
