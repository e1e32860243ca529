"""Replay-eval fixtures: a private key prefix on the shared Redis (cleaned up), settings, a generated clip
of drawn faces with exact labels, and in-process workers (thread) around any detector."""

from __future__ import annotations

import threading

import pytest

from core import bus
from core.keys import Keys
from core.settings import IngestSettings, RedisSettings, Settings, WorkerSettings
from testkit.redis_service import session_url


def make_settings(prefix: str, **worker) -> Settings:
    ws = dict(runtime="onnx", device="cpu", threshold=0.5, http_port=0, claim_idle_ms=2_000, max_wait_ms=20,
              max_batch=8, heartbeat_interval_ms=500, max_deliveries=3)
    ws.update(worker)
    return Settings(redis=RedisSettings(url=session_url(), prefix=prefix, connect_timeout_s=5),
                    worker=WorkerSettings(**ws),
                    ingest=IngestSettings(frames_maxlen=200, replay_window=50, http_port=0))


@pytest.fixture
def prefix(redis_settings, redis_client):
    """The test's key prefix; `redis_client` (tests/conftest.py) deletes its keys afterwards."""
    return redis_settings.prefix


@pytest.fixture
def settings(prefix) -> Settings:
    return make_settings(prefix)


@pytest.fixture
def r(settings):
    c = bus.connect(settings.redis)
    yield c
    c.close()


@pytest.fixture
def keys(settings) -> Keys:
    return Keys(settings.redis.prefix)


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory):
    from tests.replay_eval.synth import make_face_clip

    return make_face_clip(tmp_path_factory.mktemp("clips") / "faces.mp4", frames=50, fps=25)


@pytest.fixture(scope="session")
def random_detector(tmp_path_factory):
    """A random fsdet-s on ONNX Runtime CPU, threshold 0 and 5 detections a frame (arbitrary boxes)."""
    import dataclasses

    import torch

    from models.detector import load_detector
    from models.facedet.config import get_config
    from models.facedet.network import build_model
    from models.facedet.weights import save_weights

    torch.manual_seed(0)
    path = save_weights(build_model(get_config("fsdet-s")), tmp_path_factory.mktemp("w") / "random.safetensors",
                        name="fsdet-s", version="random")
    det = load_detector(runtime="onnx", weights=path, threshold=0.0, max_detections=5, device="cpu", threads=1)
    det.post = dataclasses.replace(det.post, pre_nms_topk=20)
    return det


class WorkerThread:
    def __init__(self, worker):
        self.worker = worker
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: worker.run(self.stop), daemon=True)

    def __enter__(self):
        self.thread.start()
        assert self.worker.ready.wait(60), "worker did not start"
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def worker(settings):
    """``with worker(detector): ...`` runs a real worker (consumer group, batching, publish) in a thread."""
    from worker.main import Worker

    def _make(detector, worker_id: str = "w-eval"):
        return WorkerThread(Worker(settings, detector=detector, worker_id=worker_id, idle_block_ms=100))

    return _make
