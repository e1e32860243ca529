"""Ingest test helpers on top of the shared fixtures (tests/conftest.py, testkit/).

Aliases: ``r`` = redis_client, ``prefix`` = the test's key prefix; ``clip`` = a 100-frame clip (4 s at
25 fps, frame index drawn in); ``fast_settings()`` = IngestSettings with short timeouts for tests.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from core.settings import IngestSettings
from testkit import wait_for  # noqa: F401  (re-exported for the tests here)


def fast_settings(**kw) -> IngestSettings:
    base = dict(lease_ttl_ms=2000, lease_renew_ms=300, open_timeout_s=2.0, read_timeout_s=1.0,
                backoff_min_s=0.1, backoff_max_s=0.5, stable_s=1.0, status_interval_s=0.2, http_port=0,
                resync_s=30.0, frames_maxlen=1000, max_frame_age_ms=5000)
    base.update(kw)
    return IngestSettings(**base)


@pytest.fixture
def r(redis_client):
    return redis_client


@pytest.fixture
def prefix(redis_settings) -> str:
    return redis_settings.prefix


@pytest.fixture
def isettings() -> IngestSettings:
    return fast_settings()


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """4 s of 320x240 H.264 at 25 fps (100 frames, frame index drawn in)."""
    from testkit.clips import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=100, fps=25, width=320, height=240)


def url_path(url: str, path: str) -> str:
    """The same server, another mount path."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}{path}"


def facestream_exe() -> list[str]:
    exe = shutil.which("facestream", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "facestream.cli"]
