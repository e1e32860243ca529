"""Docker files: lint clean (hadolint), and every FACESTREAM_* variable they set is a real setting."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.settings import Settings

DOCKER = Path(__file__).resolve().parents[1] / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def _setting_exists(var: str) -> bool:
    parts = var.removeprefix("FACESTREAM_").lower().split("__")
    model = Settings
    for p in parts:
        field = model.model_fields.get(p)
        if field is None:
            return False
        model = field.annotation
    return True


def test_dockerfiles_lint_clean():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    res = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_env_vars_are_settings(path):
    names = re.findall(r"\b(FACESTREAM_[A-Z0-9_]+)=", path.read_text())
    assert all(_setting_exists(n) for n in names), names


def test_compose_services_and_env():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "ingest", "worker"} <= set(services)
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).exists(), name
        for var in svc.get("environment", {}):
            if var.startswith("FACESTREAM_"):
                assert _setting_exists(var), f"{name}: {var} is not a facestream setting"
    assert services["worker"]["command"] == ["worker"] and services["ingest"]["command"] == ["ingest"]
    # private by default: Redis publishes no port, needs a password, and every role is given it
    assert "ports" not in services["redis"] and "--requirepass" in services["redis"]["command"]
    for name in ("ingest", "worker", "cli"):
        assert "FACESTREAM_REDIS__PASSWORD" in services[name]["environment"], name
