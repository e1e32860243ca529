"""Real footage: the bundled CC-BY clip (facestream/assets, 480x270, 12.5 fps, 41 frames, 3 faces) with
teacher labels shipped in tests/data/replay/walking-and-pause.jsonl, replayed through the pipeline.

Labels: ``facestream label --teacher libfd_scrfd_500m_bnkps.onnx --teacher libfd_yunet_n_dynamic.onnx
--teacher libfd_retinaface_mbnet0.25.onnx --video facestream/assets/face-demographics-walking-and-pause.mp4
--out tests/data/replay/walking-and-pause.jsonl`` (WBF of three peers), checked by eye on frames 0, 14, 27
and 40: three frontal faces on every frame, no misses, no false boxes.

* our model (models/weights/fsdet-m.safetensors): skipped until the shipped weights exist;
* a peer teacher as the worker's detector (SCRFD-500M from ../shared/models/peers): checks the
  real-footage path (real PTS, resize to the detect size and back) with a detector that is known good;
  skipped where ../shared is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.replay import replay as run_replay
from tests.replay_eval.synth import Dets
from training.evaluate.footage_labels import load_labels
from training.evaluate.replay import collect_run, evaluate_runs

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "facestream" / "assets" / "face-demographics-walking-and-pause.mp4"
LABELS = ROOT / "tests" / "data" / "replay" / "walking-and-pause.jsonl"
PEERS = ROOT.parent / "shared" / "models" / "peers"


class TeacherDetector:
    """A peer teacher behind the worker's detector interface."""

    def __init__(self, path: Path):
        from core.schema import ModelInfo
        from training.distill.teachers import load_teacher

        self.t = load_teacher(path, score_threshold=0.3, threads=1)
        self.info = ModelInfo(name=path.stem, version="peer", sha256=path.stem, runtime="onnxruntime")

    def detect(self, images):
        out = []
        for im in images:
            d = np.asarray(self.t.detect(im)[0], np.float32).reshape(-1, 5)
            out.append(Dets(d[:, :4], d[:, 4]))
        return out


def _score(r, keys, settings, worker, detector, run_id, threshold, fps=12.5):
    with worker(detector):
        s = run_replay(str(CLIP), "lobby", redis=r, keys=keys, settings=settings.ingest, run_id=run_id,
                       fps=fps, detect_size=480)
        run = collect_run(r, keys, run_id, wait_s=120)
    assert s.frames_decoded == 41 and len(run.events) == s.frames_published
    d = evaluate_runs([(run, load_labels(LABELS))], threshold=threshold).data
    print(run_id, {k: d["overall"][k] for k in ("precision", "recall", "f1", "ap", "tp", "fp", "faces")},
          d["latency_ms"]["capture_to_event"])
    return d


def test_shipped_labels():
    lab = load_labels(LABELS)
    assert (lab.width, lab.height, lab.fps, lab.num_frames, lab.dense) == (480, 270, 12.5, 41, True)
    assert lab.faces == 123 and all(len(f.boxes) == 3 for f in lab.frames.values())
    assert lab.video == CLIP.name and CLIP.is_file()


@pytest.mark.skipif(not (PEERS / "libfd_scrfd_500m_bnkps.onnx").is_file(), reason="../shared peers absent")
def test_peer_detector_on_real_footage(r, keys, settings, worker):
    # 5 of the 12.5 fps: 17 frames (0, 3, 5, 8, 10, ...: PTS-sampled, mapped back by PTS)
    d = _score(r, keys, settings, worker, TeacherDetector(PEERS / "libfd_scrfd_500m_bnkps.onnx"), "peer", 0.5,
               fps=5)
    o = d["overall"]
    assert d["pipeline"]["missing"] == 0 and o["frames_scored"] == 17 and o["faces"] == 51
    assert o["recall"] >= 0.95 and o["precision"] >= 0.95 and o["ap"] >= 0.9, o


@pytest.mark.slow
def test_our_model_on_real_footage(r, keys, settings, worker):
    from models.detector import load_detector
    from models.facedet.weights import default_weights_path

    det = load_detector(runtime="onnx", weights=default_weights_path(), threshold=0.3, device="cpu", threads=1)
    d = _score(r, keys, settings, worker, det, "ours", 0.5)
    o = d["overall"]
    assert d["pipeline"]["missing"] == 0 and o["faces"] == 123
    # A floor under the shipped model, not its score: fsdet-m 1.0.0 measured P 1.00 / R 0.55 here
    # (it misses the third, smaller face; see models/MODEL_CARD.md). Raise it with each model.
    assert o["recall"] >= 0.5 and o["precision"] >= 0.9, o
