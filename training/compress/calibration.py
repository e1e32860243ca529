"""The calibration set for INT8: real frames and images, letterboxed exactly as serving does.

Sources are image folders (searched recursively), single images or videos (decoded with PyAV, frames
spread over the clip). Without a source, the training images of a training config are used (its train
split, never the dev split on which variants are compared). ONNX Runtime's static quantization and
TensorRT's INT8 calibrator read the same list.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from models.facedet.preprocess import letterbox

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts", ".m4v"}


class CalibrationError(ValueError):
    """No usable calibration frames (empty folder, unreadable files, unknown file type)."""


def _video_frames(path: Path, n: int) -> list[np.ndarray]:
    from core.video import iter_video_frames

    info, frames = iter_video_frames(path)
    total = info.get("frames") or 0
    every = max(1, total // n) if total else 15
    out = []
    for f in frames:
        if f.index % every == 0:
            out.append(f.bgr)
            if len(out) >= n:
                break
    return out


def _image_paths(src: Path) -> list[Path]:
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [src]


def calibration_frames(sources: Iterable[str | Path], n: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Up to `n` BGR frames drawn evenly from the sources (a seeded sample of each folder's images)."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise CalibrationError("no calibration source given")
    quota = -(-n // len(sources))
    rng = random.Random(seed)
    frames: list[np.ndarray] = []
    for src in sources:
        if not src.exists():
            raise CalibrationError(f"calibration source {src}: no such file or folder")
        if src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES:
            got = _video_frames(src, quota)
        else:
            paths = _image_paths(src)
            if src.is_file() and src.suffix.lower() not in IMAGE_SUFFIXES:
                raise CalibrationError(f"calibration source {src}: neither an image nor a video")
            rng.shuffle(paths)
            got = []
            for p in paths:
                im = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if im is not None:
                    got.append(im)
                if len(got) >= quota:
                    break
        if not got:
            raise CalibrationError(f"calibration source {src}: no readable frames")
        frames += got
    return frames[:n]


def config_frames(config: str | Path, n: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Frames from a training config's train split: every source contributes its share."""
    from training.config import load_config
    from training.data.dataset import source_splits

    splits = source_splits(load_config(config))
    paths: list[Path] = []
    for _, train, _ in splits:
        rng = random.Random(seed)
        share = [r.path for r in train]
        rng.shuffle(share)
        paths += share[: -(-n // len(splits))]
    frames = [im for im in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if im is not None]
    if not frames:
        raise CalibrationError(f"{config}: no readable training images for calibration")
    return frames[:n]


def calibration_batches(frames: list[np.ndarray], input_size: int = 640, multiple: int = 32) -> list[np.ndarray]:
    """One float32 (1, 3, S, S) BGR 0..255 tensor per frame, S = input_size: the serving letterbox, then zero
    pad to a square (the pad value serving uses), since histogram calibration and TensorRT's calibrator
    want one shape."""
    out = []
    for im in frames:
        boxed, _ = letterbox(im, input_size, multiple)
        sq = np.zeros((1, 3, input_size, input_size), np.float32)
        sq[0, :, : boxed.shape[0], : boxed.shape[1]] = boxed.transpose(2, 0, 1)
        out.append(sq)
    return out
