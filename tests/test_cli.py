"""facestream CLI: help/version, config show/check/docs, invalid settings stop at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.settings import settings_markdown
from facestream import __version__
from facestream.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@pytest.fixture
def run(monkeypatch, redis_settings):
    for k in list(__import__("os").environ):
        if k.startswith("FACESTREAM_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("FACESTREAM_REDIS__URL", redis_settings.url)
    monkeypatch.setenv("FACESTREAM_REDIS__CONNECT_TIMEOUT_S", "1")

    def invoke(*args, **env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_help_and_version(run):
    r = run("--help")
    assert r.exit_code == 0 and "config" in r.output and "--log-level" in r.output
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_config_show_redacts(run):
    r = run("config", "show", FACESTREAM_REDIS__URL="redis://app:s3cret@127.0.0.1:6379/0",
            FACESTREAM_REDIS__PASSWORD="hunter2", FACESTREAM_WORKER__MAX_BATCH="12")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["worker"]["max_batch"] == 12
    assert data["redis"]["url"] == "redis://app:***@127.0.0.1:6379/0" and data["redis"]["password"] == "***"
    assert "s3cret" not in r.output and "hunter2" not in r.output
    r = run("config", "show", "--format", "env")
    assert "FACESTREAM_WORKER__MAX_BATCH=12" in r.output


def test_config_check(run):
    r = run("config", "check")
    assert r.exit_code == 0 and "redis: ok" in r.output, r.output
    r = run("config", "check", FACESTREAM_REDIS__URL="redis://u:pw@127.0.0.1:1/0",
            FACESTREAM_REDIS__CONNECT_TIMEOUT_S="0.2", FACESTREAM_REDIS__RETRY_ATTEMPTS="0")
    assert r.exit_code == 1 and "FAILED" in r.output and "pw@" not in r.output
    r = run("config", "check", "--offline")
    assert r.exit_code == 0


def test_invalid_setting_fails_at_start_naming_the_variable(run):
    r = run("config", "show", FACESTREAM_WORKER__MAX_BATCH="0")
    assert r.exit_code == 2
    assert "FACESTREAM_WORKER__MAX_BATCH" in r.output and "1..256" in r.output


def test_log_level_option(run):
    r = run("--log-level", "debug", "config", "show")
    assert r.exit_code == 0 and json.loads(r.output)["log"]["level"] == "DEBUG"


def test_configuration_docs_are_current():
    assert DOCS.read_text() == settings_markdown(), (
        "docs/configuration.md is stale: run `.venv/bin/facestream config docs > docs/configuration.md`"
    )
