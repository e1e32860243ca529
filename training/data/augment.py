"""Augmentation for small-face training, in uint8 and one affine warp per sample.

A random square crop of 0.3-2x the short side is scaled to the `canvas` (640: the serving input),
then a `window` (e.g. 320) is cut from it: the face-scale distribution of 640 training at a quarter
of the pixels. Faces cut by the window or too small to learn become ignore regions, not negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SCALES = np.array([0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
FLIP_LANDMARKS = [1, 0, 2, 4, 3]  # left/right eye and mouth corners swap under a horizontal flip


@dataclass(frozen=True)
class AugmentConfig:
    canvas: int = 640
    window: int = 320
    min_face: float = 3.0  # px after scaling; smaller faces are ignored
    min_visible: float = 0.5  # fraction of a face inside the window; less is ignored
    face_window_prob: float = 0.85  # centre the window near a face this often
    hard_negative_prob: float = 0.0  # ... or near one of the image's hard negatives (see hard_negatives.py)
    flip_prob: float = 0.5
    # In-plane rotation (head tilt, tilted cameras) about the window's centre, uniform in +-rotate_deg; a
    # face's box becomes the box of its inscribed ellipse rotated (a rotated rectangle's corners would
    # inflate it past WIDER's convention). Off by default: drawn only when on, so other streams keep theirs.
    rotate_prob: float = 0.0
    rotate_deg: float = 15.0
    photometric_prob: float = 0.8
    gray_prob: float = 0.08
    # Degradations toward camera footage (see `degrade`); each is drawn independently.
    degrade: bool = True
    motion_blur_prob: float = 0.1
    defocus_prob: float = 0.15
    resample_prob: float = 0.25  # down then up: soft, low-resolution sensors and upscaled streams
    jpeg_prob: float = 0.25
    noise_prob: float = 0.15
    light_prob: float = 0.15  # low light or back-light through a gamma curve


@dataclass
class Sample:
    image: np.ndarray  # HxWx3 BGR uint8
    boxes: np.ndarray  # (M, 4) xyxy float32
    ignore: np.ndarray  # (M,) bool
    landmarks: np.ndarray  # (M, 10) float32, NaN where absent


def random_crop_affine(
    w: int, h: int, boxes: np.ndarray, ignore: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
    negatives: np.ndarray | None = None,
) -> tuple[np.ndarray, bool]:
    """2x3 affine (original -> window pixels) and whether it flips (the affine may also rotate)."""
    side = float(min(w, h)) * float(rng.choice(CROP_SCALES))
    # drawn only for an image with hard negatives (and a probability): the rest keep the random stream they had
    neg = None
    if negatives is not None and len(negatives) and cfg.hard_negative_prob and rng.random() < cfg.hard_negative_prob:
        neg = negatives[rng.integers(len(negatives))]
    x0 = rng.uniform(0, w - side) if side < w else rng.uniform(w - side, 0)
    y0 = rng.uniform(0, h - side) if side < h else rng.uniform(h - side, 0)
    if neg is not None:  # the crop must hold the false box's centre for the window to find it
        x0 = float(np.clip(x0, (neg[0] + neg[2]) / 2 - side, (neg[0] + neg[2]) / 2))
        y0 = float(np.clip(y0, (neg[1] + neg[3]) / 2 - side, (neg[1] + neg[3]) / 2))
    s = cfg.canvas / side
    win = cfg.window
    wx = wy = 0.0
    if win < cfg.canvas:
        room = cfg.canvas - win
        keep = np.nonzero(~ignore)[0]
        if neg is not None or (keep.size and rng.random() < cfg.face_window_prob):
            b = neg if neg is not None else boxes[rng.choice(keep)]
            cx, cy = ((b[0] + b[2]) / 2 - x0) * s, ((b[1] + b[3]) / 2 - y0) * s
            wx = float(np.clip(cx - win * rng.uniform(0.2, 0.8), 0, room))
            wy = float(np.clip(cy - win * rng.uniform(0.2, 0.8), 0, room))
        else:
            wx, wy = rng.uniform(0, room), rng.uniform(0, room)
    flip = rng.random() < cfg.flip_prob
    m = np.array([[s, 0, -x0 * s - wx], [0, s, -y0 * s - wy]], dtype=np.float64)
    if flip:
        m[0] = -m[0]
        m[0, 2] += win
    if cfg.rotate_prob and rng.random() < cfg.rotate_prob:
        r = cv2.getRotationMatrix2D((win / 2, win / 2), float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)), 1.0)
        m = r[:, :2] @ m + np.concatenate([np.zeros((2, 2)), r[:, 2:]], 1)
    return m, flip


def transform_targets(
    boxes: np.ndarray, ignore: np.ndarray, landmarks: np.ndarray, m: np.ndarray, flip: bool, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(boxes) == 0:
        return boxes.reshape(0, 4), ignore.reshape(0), landmarks.reshape(0, 10)
    lin, t = m[:, :2], m[:, 2]
    if lin[0, 1] == 0 and lin[1, 0] == 0:  # scale, shift, flip
        xs = boxes[:, [0, 2]] * lin[0, 0] + t[0]
        ys = boxes[:, [1, 3]] * lin[1, 1] + t[1]
        b = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1).astype(np.float32)
    else:  # rotated: the box of the face's inscribed ellipse under the affine
        ctr = (boxes[:, :2] + boxes[:, 2:]) / 2 @ lin.T + t
        half = (boxes[:, 2:] - boxes[:, :2]) / 2
        ext = np.sqrt(((half[:, None, :] * lin[None]) ** 2).sum(-1))  # per output axis: |row of L| scaled
        b = np.concatenate([ctr - ext, ctr + ext], 1).astype(np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    win = cfg.window
    c = b.copy()
    c[:, 0::2] = c[:, 0::2].clip(0, win)
    c[:, 1::2] = c[:, 1::2].clip(0, win)
    vis = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
    keep = vis > 0
    frac = vis / np.maximum(area, 1e-6)
    small = np.minimum(c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]) < cfg.min_face
    ign = ignore | (frac < cfg.min_visible) | small
    lm = landmarks.reshape(-1, 5, 2) @ lin.T + t
    if flip:
        lm = lm[:, FLIP_LANDMARKS]
    return c[keep], ign[keep], lm.reshape(-1, 10)[keep].astype(np.float32)


def photometric(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness/contrast through a uint8 lookup table, saturation/hue in HSV, rare gray and blur."""
    if rng.random() < cfg.photometric_prob:
        contrast = rng.uniform(0.6, 1.4)
        bright = rng.uniform(-32, 32)
        lut = np.clip(np.arange(256, dtype=np.float32) * contrast + bright + 128 * (1 - contrast), 0, 255)
        img = cv2.LUT(img, lut.astype(np.uint8))
        if rng.random() < 0.5:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(rng.integers(-9, 10))) % 180).astype(np.uint8)
            sat = np.clip(np.arange(256) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
            hsv[..., 1] = sat[hsv[..., 1]]
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if rng.random() < cfg.gray_prob:  # IR / night cameras and black-and-white photos
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return img


def degrade(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """What cameras do to faces that web photos do not: motion and defocus blur, soft resampling,
    compression, sensor noise, low light and back-light. uint8 in, uint8 out; ~1 ms at 320x320."""
    if rng.random() < cfg.light_prob:
        gamma = rng.uniform(1.5, 3.0) if rng.random() < 0.6 else rng.uniform(0.35, 0.7)  # dark / back-lit
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
        img = cv2.LUT(img, lut)
    if rng.random() < cfg.motion_blur_prob:
        k = int(rng.integers(3, 10))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6))
    if rng.random() < cfg.defocus_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 2.0))
    if rng.random() < cfg.resample_prob:
        h, w = img.shape[:2]
        f = rng.uniform(0.3, 0.75)
        small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.noise_prob:
        sigma = rng.uniform(2, 12)
        noise = rng.normal(0, sigma, (*img.shape[:2], 1)).astype(np.float32)  # luma noise
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 70))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def warp_matrix(m: np.ndarray) -> np.ndarray:
    """`m` (box coordinates: pixel i spans [i, i+1]) in cv2.warpAffine's convention (pixel i's centre is at i).

    Passed as is, warpAffine moves the content 0.5 * (1 - scale) px off the boxes, and `scale` px more in x
    under a flip: a label offset of 0-4 px that changes from window to window, large for a 10 px face.
    """
    p = np.array(m, dtype=np.float64, copy=True)
    p[:, 2] += 0.5 * p[:, :2].sum(1) - 0.5
    return p


def augment(
    img: np.ndarray,
    boxes: np.ndarray,
    ignore: np.ndarray,
    landmarks: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    negatives: np.ndarray | None = None,
) -> Sample:
    h, w = img.shape[:2]
    m, flip = random_crop_affine(w, h, boxes, ignore, cfg, rng, negatives)
    out = cv2.warpAffine(img, warp_matrix(m), (cfg.window, cfg.window), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    b, ign, lm = transform_targets(boxes, ignore, landmarks, m, flip, cfg)
    out = photometric(out, cfg, rng)
    if cfg.degrade:
        out = degrade(out, cfg, rng)
    return Sample(out, b, ign, lm)
