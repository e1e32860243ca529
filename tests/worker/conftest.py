"""Worker test fixtures: a random fsdet-s model on ONNX Runtime CPU, settings with a private key
prefix on the shared Redis (cleaned up), and in-process workers on threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core import bus
from core.keys import Keys
from core.settings import IngestSettings, RedisSettings, Settings, WorkerSettings
from testkit.redis_service import session_url


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    import torch

    from models.facedet.config import get_config
    from models.facedet.network import build_model
    from models.facedet.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "fsdet-s-random.safetensors"
    return save_weights(build_model(get_config("fsdet-s")), path, name="fsdet-s", version="test")


@pytest.fixture(scope="session")
def detector(random_weights):
    from models.detector import load_detector

    return load_detector(runtime="onnx", weights=random_weights, threshold=0.5, device="cpu", threads=1)


@pytest.fixture(scope="session")
def low_threshold_detector(random_weights):
    """Threshold 0 and 5 detections a frame: a random model then always 'finds' faces."""
    import dataclasses

    from models.detector import load_detector

    det = load_detector(runtime="onnx", weights=random_weights, threshold=0.0, max_detections=5,
                        device="cpu", threads=1)
    det.post = dataclasses.replace(det.post, pre_nms_topk=20)  # keep NMS cheap on thousands of candidates
    return det


def make_settings(prefix: str, weights: Path | str = "", **worker) -> Settings:
    ws = dict(weights=str(weights), runtime="onnx", device="cpu", threshold=0.5, http_port=0,
              claim_idle_ms=500, max_wait_ms=20, max_batch=8, heartbeat_interval_ms=200, max_deliveries=3)
    ws.update(worker)
    return Settings(
        redis=RedisSettings(url=session_url(), prefix=prefix, connect_timeout_s=5),
        worker=WorkerSettings(**ws),
        ingest=IngestSettings(max_frame_age_ms=5_000),
    )


@pytest.fixture
def wprefix(redis_settings, redis_client):
    """The test's key prefix; `redis_client` (tests/conftest.py) deletes its keys afterwards."""
    return redis_settings.prefix


@pytest.fixture
def wsettings(wprefix, random_weights) -> Settings:
    return make_settings(wprefix, random_weights)


@pytest.fixture
def rconn(wsettings):
    r = bus.connect(wsettings.redis)
    yield r
    r.close()


@pytest.fixture
def keys(wsettings) -> Keys:
    return Keys(wsettings.redis.prefix)


class WorkerThread:
    def __init__(self, worker):
        self.worker = worker
        self.stop = threading.Event()
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.result = self.worker.run(self.stop)

    def start(self):
        self.thread.start()
        assert self.worker.ready.wait(30), "worker did not start"
        return self

    def close(self, timeout: float = 10):
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def start_worker(wsettings, detector):
    from worker.main import Worker

    started: list[WorkerThread] = []

    def _start(settings: Settings | None = None, det=None, worker_id: str | None = None, **kw) -> WorkerThread:
        w = Worker(settings or wsettings, detector=det or detector, worker_id=worker_id, idle_block_ms=100, **kw)
        t = WorkerThread(w).start()
        started.append(t)
        return t

    yield _start
    for t in started:
        if t.thread.is_alive():
            t.close()
