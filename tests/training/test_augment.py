"""Augmentation keeps boxes and pixels consistent; cut and tiny faces become ignore regions."""

import numpy as np

from training.data.augment import AugmentConfig, augment, transform_targets


def test_boxes_follow_the_pixels():
    img = np.zeros((480, 640, 3), np.uint8)
    box = np.array([[200, 150, 280, 250]], np.float32)
    img[150:250, 200:280] = 255
    cfg = AugmentConfig(canvas=640, window=320, photometric_prob=0, gray_prob=0, degrade=False, face_window_prob=1)
    checked = 0
    for seed in range(20):
        s = augment(img, box, np.zeros(1, bool), np.full((1, 10), np.nan, np.float32), cfg,
                    np.random.default_rng(seed))
        assert s.image.shape == (320, 320, 3)
        if len(s.boxes) and not s.ignore[0]:
            x1, y1, x2, y2 = s.boxes[0]
            inner = s.image[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
            if inner.size:
                assert inner.mean() > 200  # inside the box: the white square
            mask = s.image[..., 0] > 128
            ys, xs = np.nonzero(mask)
            assert xs.min() >= x1 - 2 and xs.max() <= x2 + 2 and ys.min() >= y1 - 2 and ys.max() <= y2 + 2
            checked += 1
    assert checked >= 10


def test_pixels_sit_exactly_on_their_boxes_under_zoom_and_flip():
    """The square's centroid (pixel i's centre at i + 0.5, the boxes' convention) is the box centre to a
    tenth of a pixel, flipped or not, zoomed in or out (an affine handed to cv2.warpAffine as is puts it
    0.5 * (1 - scale) px off, and `scale` px more under a flip: up to ~4 px here)."""
    img = np.zeros((480, 640, 3), np.uint8)
    img[150:200, 200:240, 0] = 255  # the square in blue
    img[150:200, 220:240, 1] = 255  # its right half in green too: tells a flipped window
    box = np.array([[200, 150, 240, 200]], np.float32)
    cfg = AugmentConfig(canvas=640, window=320, photometric_prob=0, gray_prob=0, degrade=False, face_window_prob=1)
    offsets = {False: [], True: []}
    ys, xs = np.mgrid[:320, :320] + 0.5
    for seed in range(60):
        s = augment(img, box, np.zeros(1, bool), np.full((1, 10), np.nan, np.float32), cfg,
                    np.random.default_rng(seed))
        if not len(s.boxes) or s.ignore[0] or (s.boxes[0, :2] <= 1).any() or (s.boxes[0, 2:] >= 319).any():
            continue  # cut by the window: its centroid is not the box centre
        b, g = s.image[..., 0].astype(np.float64), s.image[..., 1].astype(np.float64)
        cx, cy = (b * xs).sum() / b.sum(), (b * ys).sum() / b.sum()
        flipped = (g * xs).sum() / g.sum() < cx
        offsets[flipped].append((cx - (s.boxes[0, 0] + s.boxes[0, 2]) / 2, cy - (s.boxes[0, 1] + s.boxes[0, 3]) / 2))
    for flipped, off in offsets.items():
        assert len(off) >= 8, f"too few whole squares (flipped={flipped})"
        off = np.array(off)
        assert np.abs(off.mean(0)).max() < 0.1, (flipped, off.mean(0))
        assert np.abs(off).max() < 0.35, (flipped, np.abs(off).max())


def test_flip_mirrors_boxes_and_swaps_landmarks():
    cfg = AugmentConfig(canvas=100, window=100)
    m = np.array([[-1.0, 0, 100], [0, 1.0, 0]])  # pure horizontal flip of a 100 px canvas
    lm = np.array([[30, 40, 60, 40, 45, 55, 35, 70, 55, 70]], np.float32)  # left eye first
    b, _ign, out = transform_targets(np.array([[20, 30, 70, 80]], np.float32), np.zeros(1, bool), lm, m, True, cfg)
    np.testing.assert_allclose(b[0], [30, 30, 80, 80])
    # after the flip the first landmark (left eye) is the mirrored right eye: x = 100 - 60
    assert out[0, 0] == 40 and out[0, 2] == 70


def test_rotation_turns_pixels_boxes_and_landmarks_together():
    """rotate_prob: the window rotates about its centre; an elliptic face (white, 80x100) keeps its centre on
    the pixels' centroid and its box is the rotated ellipse's box; landmarks turn with it; off by default."""
    import cv2

    img = np.zeros((480, 640, 3), np.uint8)
    cv2.ellipse(img, (240, 200), (40, 50), 0, 0, 360, (255, 255, 255), -1)
    box = np.array([[200, 150, 280, 250]], np.float32)
    lm = np.array([[225, 185, 255, 185, 240, 200, 228, 225, 252, 225]], np.float32)
    base = dict(canvas=640, window=320, photometric_prob=0, gray_prob=0, degrade=False, face_window_prob=1,
                flip_prob=0)
    plain = augment(img, box, np.zeros(1, bool), lm, AugmentConfig(**base), np.random.default_rng(0))
    cfg = AugmentConfig(**base, rotate_prob=1.0, rotate_deg=40)
    turned = 0
    for seed in range(12):
        s = augment(img, box, np.zeros(1, bool), lm, cfg, np.random.default_rng(seed))
        if not len(s.boxes) or s.ignore[0] or (s.boxes[0] <= 0).any() or (s.boxes[0] >= 320).any():
            continue
        ys, xs = np.nonzero(s.image[..., 0] > 128)
        cx, cy = (s.boxes[0, 0] + s.boxes[0, 2]) / 2, (s.boxes[0, 1] + s.boxes[0, 3]) / 2
        assert abs(xs.mean() - cx) < 1.5 and abs(ys.mean() - cy) < 1.5
        # the ellipse's own extent is its box (a rotated rectangle's corners would overshoot it)
        assert abs(xs.min() - s.boxes[0, 0]) < 2.5 and abs(xs.max() + 1 - s.boxes[0, 2]) < 2.5
        assert abs(ys.min() - s.boxes[0, 1]) < 2.5 and abs(ys.max() + 1 - s.boxes[0, 3]) < 2.5
        nose = s.landmarks[0, 4:6]  # the ellipse's centre
        assert abs(nose[0] - xs.mean()) < 1.5 and abs(nose[1] - ys.mean()) < 1.5
        eyes = s.landmarks[0, [0, 1, 2, 3]].reshape(2, 2)
        turned += abs(np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))) > 1  # the eye line tilts
    assert turned >= 5
    # off by default: the same window as a config without the rotation fields
    again = augment(img, box, np.zeros(1, bool), lm, AugmentConfig(**base, rotate_deg=40), np.random.default_rng(0))
    assert np.array_equal(plain.image, again.image) and np.array_equal(plain.boxes, again.boxes)


def test_cut_and_tiny_faces_are_ignored():
    cfg = AugmentConfig(canvas=100, window=100, min_face=3)
    m = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    boxes = np.array([[90, 10, 130, 50], [10, 10, 12, 12], [20, 20, 60, 60], [200, 200, 220, 220]], np.float32)
    b, ign, _ = transform_targets(boxes, np.zeros(4, bool), np.full((4, 10), np.nan, np.float32), m, False, cfg)
    assert len(b) == 3  # the face fully outside is dropped
    assert ign.tolist() == [True, True, False]


def test_degradations_change_pixels_not_geometry():
    from training.data.augment import degrade

    rng = np.random.default_rng(0)
    img = np.zeros((320, 320, 3), np.uint8)
    img[100:200, 120:220] = 220
    every = AugmentConfig(motion_blur_prob=1, defocus_prob=1, resample_prob=1, jpeg_prob=1, noise_prob=1,
                          light_prob=1)
    out = degrade(img.copy(), every, rng)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 2  # it did something
    # the square is still where it was: the bright mass stays centred on it
    ys, xs = np.nonzero(out[..., 0] > out[..., 0].mean())
    assert abs(xs.mean() - 169.5) < 6 and abs(ys.mean() - 149.5) < 6
    none = AugmentConfig(motion_blur_prob=0, defocus_prob=0, resample_prob=0, jpeg_prob=0, noise_prob=0,
                         light_prob=0)
    assert np.array_equal(degrade(img.copy(), none, rng), img)


def test_hard_negative_windows_centre_on_the_false_box_and_keep_the_faces_targets():
    from training.data.augment import random_crop_affine

    # a 1280x640 image: a face at the left edge, a false box at the right edge, never in one 320 window
    face = np.array([[60, 300, 120, 360]], np.float32)
    neg = np.array([[1160, 300, 1220, 360]], np.float32)
    cfg = AugmentConfig(canvas=640, window=320, face_window_prob=1.0, hard_negative_prob=1.0)
    hits = 0
    for seed in range(30):
        m, _ = random_crop_affine(1280, 640, face, np.zeros(1, bool), cfg, np.random.default_rng(seed), neg)
        cx, fx = (m[0, 0] * (b[0] + b[2]) / 2 + m[0, 2] for b in (neg[0], face[0]))  # window x of each centre
        hits += 0 <= cx <= 320 and not 0 <= fx <= 320
    assert hits == 30  # every window holds the false box and none the face
    plain = AugmentConfig(canvas=640, window=320, face_window_prob=1.0, hard_negative_prob=0.0)
    for seed in range(5):  # without negatives (or with the probability 0) nothing changes
        a = random_crop_affine(1280, 640, face, np.zeros(1, bool), plain, np.random.default_rng(seed))
        b = random_crop_affine(1280, 640, face, np.zeros(1, bool), plain, np.random.default_rng(seed), neg)
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_false_boxes_keep_confident_boxes_off_every_face():
    from training.data.hard_negatives import false_boxes

    faces = np.array([[0, 0, 50, 50], [100, 100, 200, 200]], np.float32)
    dets = np.array([[5, 5, 45, 45],       # on a face
                     [300, 300, 340, 340],  # background, confident -> kept
                     [300, 0, 340, 40],     # background, low score
                     [190, 190, 240, 240],  # 4% inside a face: kept
                     [120, 120, 160, 160]], np.float32)  # inside a (crowd / ignore) region
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.7], np.float32)
    fb = false_boxes(dets, scores, faces, min_score=0.3, max_ioa=0.2)
    assert fb[:, :4].tolist() == [[300, 300, 340, 340], [190, 190, 240, 240]] and np.allclose(fb[:, 4], [0.8, 0.5])
    assert len(false_boxes(dets, scores, np.zeros((0, 4), np.float32))) == 4  # no faces: every confident box
