"""The torch runtime's device-side path: uint8 frames in, kept detections out, nothing else crosses the bus.

    frames (numpy HxWx3 uint8 BGR, or uint8 tensors already on the device, e.g. from GPU JPEG decode)
      -> one reused pinned uint8 staging buffer -> device (non_blocking)
      -> letterbox on the device (the geometry of models.facedet.preprocess.padded_size, bilinear, rounded
         to uint8 like cv2.resize) into a batch per padded shape, padded up to a batch-size bucket
      -> network (fp16 + channels_last + a CUDA graph per (bucket, shape) on CUDA)
      -> score threshold, per-image top-k and torchvision.ops.batched_nms on the device
      -> only the kept boxes / scores / landmarks copied to the host

Shapes: frames are batched per padded shape, never padded further to share a shape (the extra zero pad
changes features near the right/bottom edge; see models/detector.py). Camera fleets send one or a few
resolutions, so full batches form per resolution. Batch sizes are rounded up to a bucket (1, 2, 4, ...,
max) with blank frames, so a CUDA graph is captured once per (bucket, shape) and then replayed.

Device-agnostic: on the CPU it runs the same code (fp32, eager), which is how tests check it against the
cv2/numpy serving path on machines without a GPU.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from models.facedet.postprocess import Detections, PostprocessConfig
from models.facedet.preprocess import PAD_VALUE, Letterbox, padded_size

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def bucket(n: int, cap: int) -> int:
    """The smallest bucket >= n (at most `cap`)."""
    for b in BUCKETS:
        if b >= n:
            return min(b, cap)
    return cap


class PinnedStaging:
    """One page-locked uint8 buffer, grown on demand and reused, so uploads never allocate pinned memory."""

    def __init__(self, torch, pin: bool):
        self.torch = torch
        self.pin = pin
        self.buf = None

    def upload(self, frames: list[np.ndarray], device):
        torch = self.torch
        sizes = [f.size for f in frames]
        total = int(sum(sizes))
        if self.buf is None or self.buf.numel() < total:
            self.buf = torch.empty(max(total, 1 << 20), dtype=torch.uint8, pin_memory=self.pin)
        host = self.buf.numpy()
        out, off = [], 0
        for f, n in zip(frames, sizes, strict=True):
            host[off:off + n] = np.ascontiguousarray(f, np.uint8).reshape(-1)
            out.append((off, n, f.shape))
            off += n
        dev = self.buf[:total].to(device, non_blocking=self.pin)
        return [dev[o:o + n].view(*shape) for o, n, shape in out]


def letterbox_tensor(frame, input_size: int, multiple: int):
    """HxWx3 uint8 device tensor -> (3, ph, pw) float32 in 0..255 (uint8-rounded resize), Letterbox."""
    import torch.nn.functional as F

    h, w = int(frame.shape[0]), int(frame.shape[1])
    _, rw, rh, pw, ph = padded_size(w, h, input_size or max(h, w), multiple)
    x = frame.permute(2, 0, 1).float()
    if (rw, rh) != (w, h):
        x = F.interpolate(x[None], size=(rh, rw), mode="bilinear", align_corners=False)[0].round_().clamp_(0, 255)
    out = x.new_full((3, ph, pw), float(PAD_VALUE))
    out[:, :rh, :rw] = x
    return out, Letterbox(scale=(rw / w + rh / h) / 2, width=w, height=h)


def postprocess_device(scores, boxes, landmarks, post: PostprocessConfig, n_real: int) -> list[Detections]:
    """Threshold, per-image top-k and one batched NMS over the whole batch on the device; only the kept
    detections reach the host. Same contract as models.facedet.postprocess.postprocess."""
    import torch
    from torchvision.ops import batched_nms

    scores, boxes = scores[:n_real].float(), boxes[:n_real].float()
    k = min(post.pre_nms_topk, scores.shape[1])
    top, idx = scores.topk(k, dim=1)  # (B, k), descending
    keep_mask = top >= post.score_threshold
    img = torch.arange(n_real, device=scores.device)[:, None].expand_as(idx)[keep_mask]
    sel = idx[keep_mask]
    cand_boxes = boxes[img, sel]
    cand_scores = top[keep_mask]
    kept = batched_nms(cand_boxes, cand_scores, img, post.nms_iou)  # sorted by score, descending
    kept_img = img[kept]
    # per image: the first max_detections of its kept boxes (kept is in descending score order)
    order = torch.argsort(kept_img, stable=True)
    kept, kept_img = kept[order], kept_img[order]
    counts = torch.bincount(kept_img, minlength=n_real)
    rank = torch.arange(len(kept), device=kept.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    final = kept[rank < post.max_detections]
    final_img = img[final]
    b = cand_boxes[final].cpu().numpy()
    s = cand_scores[final].cpu().numpy()
    lm = None if landmarks is None else landmarks[:n_real].float()[final_img, sel[final]].cpu().numpy()
    counts_h = counts.cpu().numpy()
    final_img_h = final_img.cpu().numpy()
    out = []
    for i in range(n_real):
        m = final_img_h == i
        out.append(Detections(b[m], s[m], None if lm is None else lm[m],
                              truncated=int(max(0, counts_h[i] - post.max_detections))))
    return out


class DeviceBatchPath:
    """detect(frames) for a TorchRuntime: see the module docstring."""

    def __init__(self, runtime, max_batch: int = 64):
        self.rt = runtime
        self.torch = runtime._torch
        self.max_batch = max_batch
        self.staging = PinnedStaging(self.torch, pin=runtime.dev.type == "cuda")

    def detect(self, frames: list, input_size: int, multiple: int, post: PostprocessConfig,
               landmarks: bool = True) -> list[Detections]:
        torch = self.torch
        rt = self.rt
        host = [i for i, f in enumerate(frames) if isinstance(f, np.ndarray)]
        dev_frames = list(frames)
        if host:
            for i, t in zip(host, self.staging.upload([frames[i] for i in host], rt.dev), strict=True):
                dev_frames[i] = t
        groups: dict[tuple[int, int], list[tuple[int, object, Letterbox]]] = defaultdict(list)
        with torch.inference_mode():
            for i, f in enumerate(dev_frames):
                x, lb = letterbox_tensor(f, input_size, multiple)
                groups[tuple(x.shape[1:])].append((i, x, lb))
            results: list[Detections | None] = [None] * len(frames)
            for (h, w), items in groups.items():
                for start in range(0, len(items), self.max_batch):
                    chunk = items[start:start + self.max_batch]
                    n = len(chunk)
                    batch = torch.zeros((bucket(n, self.max_batch), 3, h, w), dtype=torch.float32, device=rt.dev)
                    for j, (_, x, _) in enumerate(chunk):
                        batch[j] = x
                    s, b, k = rt.infer_tensor(batch)
                    dets = postprocess_device(s, b, k if landmarks else None, post, n)
                    for (i, _, lb), d in zip(chunk, dets, strict=True):
                        d.boxes, d.landmarks = lb.to_original(d.boxes, d.landmarks)
                        results[i] = d
        return results  # type: ignore[return-value]
