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


# -- images -------------------------------------------------------------------------------------------

def _final_stage(path: Path) -> str:
    return re.split(r"^FROM ", path.read_text(), flags=re.M)[-1]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_non_root_with_a_real_healthcheck_and_no_build_tools(path):
    final = _final_stage(path)
    users = re.findall(r"^USER (\S+)", final, flags=re.M)
    assert users and users[-1] not in ("root", "0"), "the final stage must drop root"
    assert "COPY --from=build" in final, "the final stage copies the built venv: no compilers or pip caches"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", final)
    port = re.search(r"HEALTHCHECK.*?127\.0\.0\.1:(\d+)/healthz", final, flags=re.S)
    assert port, "HEALTHCHECK must call the role's /healthz"
    role = "ingest" if "CMD [\"ingest\"]" in final else "worker"
    assert int(port[1]) == getattr(Settings(), role).http_port  # the port the role really serves


def test_ingest_image_requirements_match_the_project_pins():
    import tomllib

    pins = {re.split(r"[=<>\[]", d)[0]: d for d in
            tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["project"]["dependencies"]}
    reqs = [ln.strip() for ln in (DOCKER / "requirements-ingest.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert reqs and all(r == pins[re.split(r"[=<>\[]", r)[0]] for r in reqs), reqs


def test_ingest_roles_import_nothing_the_slim_image_lacks(tmp_path):
    """The ingest image has no torch / ONNX / SciPy: ingest, camera and events must not import them."""
    import sys

    blocked = {"torch", "torchvision", "onnx", "onnxruntime", "scipy", "matplotlib", "safetensors"}
    script = tmp_path / "blocked.py"
    script.write_text(
        "import sys, importlib.abc\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {sorted(blocked)!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import ingest.supervisor, ingest.publisher, ingest.sources, ingest.reader, ingest.registry\n"
        "from facestream.cli import main\n"
        "sys.argv = ['facestream'] + sys.argv[1:]\n"
        "main()\n")
    for args in (["ingest", "--help"], ["camera", "add", "--help"], ["events", "tail", "--help"]):
        res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                             cwd=DOCKER.parent)
        assert res.returncode == 0, res.stderr[-2000:]


# -- compose --------------------------------------------------------------------------------------------

def _compose(*args, env=None):
    import os

    exe = shutil.which("docker-compose")
    assert exe, "docker-compose not found: scripts/setup.sh installs Debian's docker-compose"
    return subprocess.run([exe, "-f", str(DOCKER / "docker-compose.yml"), *args], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"} | (env or {}))


def test_compose_file_validates_with_every_profile():
    for profile in ([], ["--profile", "demo"], ["--profile", "gpu"], ["--profile", "tools"]):
        res = _compose(*profile, "config", "-q", env={"REDIS_PASSWORD": "s3cret"})
        assert res.returncode == 0, res.stderr
    res = _compose("--profile", "demo", "config", "--services", env={"REDIS_PASSWORD": "s3cret"})
    assert {"camera", "camera-feed", "demo-register", "demo-events", "worker", "ingest"} <= set(res.stdout.split())


def test_compose_refuses_to_start_without_a_redis_password():
    res = _compose("config", "-q")
    assert res.returncode != 0 and "set REDIS_PASSWORD" in res.stderr


# -- kubernetes -------------------------------------------------------------------------------------------

K8S = DOCKER.parent / "deploy" / "k8s"


def _k8s_docs():
    return [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def test_kubernetes_manifests_validate_against_the_api_schemas():
    import sys

    exe = Path(sys.executable).parent / "kubernetes-validate"
    core = [p for p in sorted(K8S.glob("*.yaml")) if "keda" not in p.name]
    res = subprocess.run([str(exe), "--strict", *map(str, core)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("passed") == sum(1 for p in core for d in yaml.safe_load_all(p.read_text()) if d)


def test_keda_scales_the_worker_deployment_on_the_worker_groups_lag():
    """KEDA's CRDs have no schema in kubernetes-validate: check the fields the redis-streams scaler reads."""
    from core.keys import Keys

    docs = _k8s_docs()
    so = next(d for d in docs if d["kind"] == "ScaledObject")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert so["spec"]["scaleTargetRef"]["name"] in deployments
    (trig,) = so["spec"]["triggers"]
    md = trig["metadata"]
    keys = Keys(Settings().redis.prefix)
    assert trig["type"] == "redis-streams"
    assert md["stream"] == keys.frames_stream("live") and md["consumerGroup"] == keys.worker_group
    assert int(md["lagCount"]) > 0 and md["address"].split(":")[0] in {
        d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert trig["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_kubernetes_env_vars_are_settings_and_probes_hit_the_health_port():
    for d in _k8s_docs():
        if d["kind"] not in ("Deployment", "StatefulSet") or d["metadata"]["name"].endswith("redis"):
            continue
        (c,) = d["spec"]["template"]["spec"]["containers"]
        for e in c["env"]:
            if e["name"].startswith("FACESTREAM_"):
                assert _setting_exists(e["name"]), e["name"]
        role = "ingest" if c["args"] == ["ingest"] else "worker"
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
        assert port == getattr(Settings(), role).http_port
        assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert "requests" in c["resources"]
        assert d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
