"""WIDER-format sources mixed with weights, with ignore regions and optional teacher fills."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from training.widerio import read_wider_labels

from .augment import AugmentConfig, augment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """One labelled set. `fill` is an optional second label file (teacher boxes the annotators
    skipped) used as `fill_as` = "ignore" or "label"."""

    images: str
    labels: str
    weight: float = 1.0
    fill: str | None = None
    fill_as: str = "ignore"
    min_score: float = 0.5  # teacher rows below it become ignore regions


@dataclass
class Record:
    path: Path
    boxes: np.ndarray  # (M, 4) xyxy
    ignore: np.ndarray  # (M,) bool
    landmarks: np.ndarray  # (M, 10) NaN where absent
    weight: float


def _records_from(images_dir: Path, labels_path: Path, weight: float, min_score: float,
                  as_ignore: bool = False) -> dict[str, Record]:
    out = {}
    for item in read_wider_labels(labels_path):
        n = len(item)
        boxes = item.xyxy.reshape(n, 4)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        ignore = item.attrs[:, 3].astype(bool) if n else np.zeros(0, bool)  # WIDER "invalid"
        if item.scores is not None:
            ignore = ignore | (np.nan_to_num(item.scores, nan=1.0) < min_score)
        if as_ignore:
            ignore = np.ones(n, bool)
        lm = (item.landmarks.reshape(n, 10) if item.landmarks is not None
              else np.full((n, 10), np.nan, np.float32))
        out[item.path] = Record(images_dir / item.path, boxes[keep], ignore[keep], lm[keep].astype(np.float32),
                                weight)
    return out


def load_source(spec: SourceSpec, root: Path = Path(".")) -> list[Record]:
    images = (root / spec.images).resolve()
    recs = _records_from(images, (root / spec.labels).resolve(), spec.weight, spec.min_score)
    if spec.fill:
        fills = _records_from(images, (root / spec.fill).resolve(), spec.weight, spec.min_score,
                              as_ignore=spec.fill_as == "ignore")
        for key, f in fills.items():
            r = recs.get(key)
            if r is None:
                continue
            r.boxes = np.concatenate([r.boxes, f.boxes])
            r.ignore = np.concatenate([r.ignore, f.ignore])
            r.landmarks = np.concatenate([r.landmarks, f.landmarks])
    return list(recs.values())


def split_dev(records: list[Record], fraction: float) -> tuple[list[Record], list[Record]]:
    """Deterministic by path hash, so the dev split never changes between runs or resumes."""
    train, dev = [], []
    for r in records:
        h = int(hashlib.sha1(str(r.path.name).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (dev if h < fraction else train).append(r)
    return train, dev


def source_splits(cfg) -> list[tuple[str, list[Record], list[Record]]]:
    """(source name, train records, dev records) for each source of a TrainConfig: the one definition of the
    dev split that dev AP, calibration frames and the benchmarks share."""
    out = []
    for s in cfg.sources:
        train, dev = split_dev(load_source(SourceSpec(**s.model_dump())), cfg.dev_fraction)
        out.append((Path(s.images).name, train, dev))
    return out


class ImageCache:
    """Decoded training images kept as raw .npy files and memory-mapped: decoding a WebP/JPEG was
    ~10 ms of the ~11 ms a training sample cost, a mapped read is a fraction of one. Keyed by path,
    size and mtime, so an edited image is decoded again. `root=None` decodes every time."""

    def __init__(self, root: Path | None):
        self.root = root

    def read(self, path: Path) -> np.ndarray | None:
        if self.root is None:
            return cv2.imread(str(path), cv2.IMREAD_COLOR)
        try:
            st = path.stat()
        except OSError:
            return None
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        f = self.root / key[:2] / f"{key}.npy"
        try:
            return np.load(f, mmap_mode="r")
        except (OSError, ValueError):
            pass
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f"{f.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, img)
            tmp.replace(f)  # atomic: a concurrent reader sees the whole file or none
        return img


class FaceDataset(Dataset):
    def __init__(self, records: list[Record], cfg: AugmentConfig, seed: int = 0, cache: ImageCache | None = None,
                 negatives: dict[str, np.ndarray] | None = None):
        self.records = records
        self.negatives = negatives or {}  # image path -> (K,4) hard negatives (hard_negatives.read)
        self.cfg = cfg
        self.seed = seed
        self.epoch = 0
        self.cache = cache or ImageCache(None)
        cv2.setNumThreads(1)  # the loader's OpenCV threads would fight the training step for the cores

    def __len__(self) -> int:
        return len(self.records)

    def weights(self) -> torch.Tensor:
        return torch.tensor([r.weight for r in self.records], dtype=torch.double)

    def __getitem__(self, i: int):
        r = self.records[i]
        img = self.cache.read(r.path)
        if img is None:
            log.warning("unreadable training image %s", r.path)
            img = np.zeros((self.cfg.window, self.cfg.window, 3), np.uint8)
            r = Record(r.path, np.zeros((0, 4), np.float32), np.zeros(0, bool), np.zeros((0, 10), np.float32), 0)
        rng = np.random.default_rng([self.seed, self.epoch, i])  # deterministic: exact resume
        s = augment(img, r.boxes, r.ignore, r.landmarks, self.cfg, rng, self.negatives.get(str(r.path)))
        return s.image, s.boxes, s.ignore, s.landmarks


def collate(batch):
    """Images (B,3,H,W) float BGR 0..255; targets padded to the batch's max face count."""
    imgs = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2).float()
    m = max(1, max(len(b[1]) for b in batch))
    n = len(batch)
    boxes = torch.zeros(n, m, 4)
    valid = torch.zeros(n, m, dtype=torch.bool)
    ignore = torch.zeros(n, m, dtype=torch.bool)
    lms = torch.full((n, m, 10), float("nan"))
    for i, (_, b, ig, lm) in enumerate(batch):
        k = len(b)
        if k:
            boxes[i, :k] = torch.from_numpy(b)
            valid[i, :k] = True
            ignore[i, :k] = torch.from_numpy(ig)
            lms[i, :k] = torch.from_numpy(lm)
    return imgs, {"boxes": boxes, "valid": valid, "ignore": ignore, "landmarks": lms}
