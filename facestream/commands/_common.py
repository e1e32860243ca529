"""Shared CLI plumbing: settings are loaded and validated once, before any command runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from core.logging import setup_logging
from core.settings import Settings, SettingsError, get_settings, with_overrides

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

EXIT_CONFIG = 2  # invalid configuration (same code click uses for usage errors)


@dataclass
class App:
    settings: Settings


def init_app(ctx: click.Context, log_level: str | None = None) -> App:
    """Load settings (exit 2 with a message naming the variable on error) and set up logging."""
    overrides = {"log": {"level": log_level.upper()}} if log_level else {}
    try:
        settings = get_settings()
        if overrides:
            settings = with_overrides(settings, **overrides)
    except SettingsError as exc:
        click.echo(f"facestream: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    setup_logging(settings.log)
    app = App(settings=settings)
    ctx.obj = app
    return app


def get_app(ctx: click.Context) -> App:
    """The App of the running CLI (settings); usable from any subcommand."""
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        init_app(root)
    return root.obj


