"""The replay regression gate of a candidate model against the one in service, on real footage.

    .venv/bin/python bench/replay_gate.py --old OLD.safetensors --new NEW.safetensors \
        [--clip facestream/assets/face-demographics-walking-and-pause.mp4 --clip ...] [--out docs/eval/gate]

(`facestream compress` gates every variant with `run_gate` too.)

For each clip: teacher labels (`facestream label --video`, SCRFD-2.5G + YuNet-n fused; cached under
work-data/gate/), then for each model a `facestream worker` process serving that model at its own
calibrated threshold, `facestream replay` of the clip and `facestream eval replay` (report per model);
the candidate's report is gated against the old one with `facestream eval gate --max-drop`. The same
commands a user runs (docs/replay-eval.md); nothing here scores on its own. Needs Redis on
FACESTREAM_REDIS__URL (default 127.0.0.1:6379; keys under a private prefix, deleted afterwards).
Exit 1 when the gate fails on any clip.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
PEERS = SHARED / "models" / "peers"
TEACHERS = [PEERS / "scrfd_pypi_0.3.0.onnx", PEERS / "libfd_yunet_n_dynamic.onnx"]
# the bundled clip and the footage held out of training (configs/fsdet-m.toml's video frames skip them)
DEFAULT_CLIPS = [
    ROOT / "facestream/assets/face-demographics-walking-and-pause.mp4",
    SHARED / "data/videos/talking-head-360p.mp4",
    SHARED / "data/videos/cc-by/head-pose-face-detection-female.mp4",
    SHARED / "data/videos/cc-by/classroom.mp4",
]


def fs(*args: str, env: dict, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "facestream.cli", *args], env=env, cwd=ROOT, text=True,
                         capture_output=capture, check=False)
    if check and out.returncode:
        raise SystemExit(f"facestream {' '.join(args[:2])} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out


def labels_for(clip: Path, env: dict) -> Path:
    out = ROOT / "work-data/gate" / f"{clip.stem}.jsonl"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        teachers = [arg for t in TEACHERS for arg in ("--teacher", str(t))]
        fs("label", *teachers, "--video", str(clip), "--out", str(out), "--no-progress", env=env)
    return out


def serve(model: Path, clips: list[tuple[Path, Path]], tag: str, env: dict, out_dir: Path) -> dict[str, Path]:
    """One worker with `model`; replay and score every clip; returns {clip: report.json}."""
    from models.detector import cpu_runtime

    wid = f"gate-{tag}"
    wenv = {**env, "FACESTREAM_WORKER__WEIGHTS": str(model), "FACESTREAM_WORKER__RUNTIME": cpu_runtime(model),
            "FACESTREAM_WORKER__HTTP_PORT": "0", "FACESTREAM_WORKER__THRESHOLD": "0.02",
            "FACESTREAM_WORKER__WORKER_ID": wid}
    thr = model_threshold(model)
    worker = subprocess.Popen([sys.executable, "-m", "facestream.cli", "worker"], env=wenv, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reports = {}
    try:
        r = _redis(env)
        deadline = time.monotonic() + 120
        while not r.exists(f"{env['FACESTREAM_REDIS__PREFIX']}:worker:{wid}"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"worker for {model} did not start")
            time.sleep(0.2)
        for clip, labels in clips:
            run_id = f"{tag}-{clip.stem}"[:64]
            fs("replay", str(clip), "--camera", clip.stem[:64], "--run-id", run_id, "--fps", "5",
               "--detect-size", "640", env=env)
            rep = out_dir / tag / clip.stem
            fs("eval", "replay", "--run-id", run_id, "--labels", str(labels), "--threshold", f"{thr:.3f}",
               "--out", str(rep), "--no-plots", env=env)
            reports[clip.stem] = rep / "report.json"
    finally:
        worker.terminate()
        worker.wait(30)
    return reports


def _redis(env: dict):
    """The client every role uses (TLS, ACL and password from the environment), at the gate's URL."""
    from core.bus import connect
    from core.settings import Settings, with_overrides

    return connect(with_overrides(Settings(), redis={"url": env["FACESTREAM_REDIS__URL"]}).redis)


def model_threshold(model: Path) -> float:
    """The calibrated threshold a weights file or an exported/compressed ONNX carries (0.5 if none)."""
    from models.facedet.export import read_model_meta

    return read_model_meta(model, with_sha=False).threshold or 0.5


def run_gate(old: Path, new: Path, clips: list[Path], out: Path, max_drop: float = 0.01,
             max_faces: int = 0) -> tuple[str, list[str]]:
    """Serve each model on every clip, gate new against old; (markdown table, clips that failed)."""
    prefix = f"gate-{secrets.token_hex(3)}"
    env = {**os.environ, "FACESTREAM_REDIS__PREFIX": prefix, "FACESTREAM_LOG__LEVEL": "WARNING",
           "FACESTREAM_REDIS__URL": os.environ.get("FACESTREAM_REDIS__URL", "redis://127.0.0.1:6379/0")}
    labelled = [(c, labels_for(c, env)) for c in clips]
    try:
        old_r = serve(old, labelled, "old", env, out)
        new_r = serve(new, labelled, "new", env, out)
    finally:
        r = _redis(env)
        for k in r.scan_iter(f"{prefix}:*"):
            r.delete(k)
    rows, failed = [], []
    for clip, _ in labelled:
        o = json.loads(old_r[clip.stem].read_text())["overall"]
        n = json.loads(new_r[clip.stem].read_text())["overall"]
        # each model at its own calibrated threshold: the reports' settings differ by design
        g = fs("eval", "gate", str(new_r[clip.stem]), "--baseline", str(old_r[clip.stem]), "--max-drop",
               str(max_drop), "--max-faces", str(max_faces), "--allow-mismatch", env=env, check=False)
        ok = g.returncode == 0
        failed += [] if ok else [clip.stem]
        rows.append(f"| {clip.name} | {o['precision']:.2f} / {o['recall']:.2f} / {o['f1']:.2f} / {o['ap']:.2f} | "
                    f"{n['precision']:.2f} / {n['recall']:.2f} / {n['f1']:.2f} / {n['ap']:.2f} | "
                    f"{'pass' if ok else 'FAIL'} |")
    table = ("| clip | old P / R / F1 / AP | new P / R / F1 / AP | gate |\n| --- | --- | --- | --- |\n"
             + "\n".join(rows))
    out.mkdir(parents=True, exist_ok=True)
    faces = f", max {max_faces} more missed / false faces" if max_faces else ""
    (out / "gate.md").write_text(f"old: `{old}`, new: `{new}`, max drop {max_drop}{faces}\n\n{table}\n")
    return table, failed
