"""``facestream detect PATH...``: run the detector on image files, folders (recursive) and videos.

Outputs under --out, mirroring the input layout (a folder argument's files keep their relative path):
  --format json   annotated image / H.264 video (boxes, scores, landmarks) + ``<name>.json`` per input
  --format wider  WIDER FACE prediction files ``<out>/<event>/<name>.txt`` (name, count, ``x y w h score``)

Unreadable inputs are reported and skipped; exit code 1 if any failed, 2 for usage errors.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from core.logging import error_words
from core.schema import RUNTIMES

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts", ".m4v", ".mpg", ".mpeg", ".flv", ".h264", ".264"}
EXIT_FAILED = 1


@dataclass
class Item:
    path: Path
    rel: Path  # output path (relative to --out) without a new suffix
    kind: str  # image | video | missing | unknown


def collect(paths: list[str]) -> list[Item]:
    items: list[Item] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                ext = f.suffix.lower()
                if ext in IMAGE_EXTS or ext in VIDEO_EXTS:
                    items.append(Item(f, f.relative_to(p), "image" if ext in IMAGE_EXTS else "video"))
        elif p.is_file():
            ext = p.suffix.lower()
            kind = "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else "unknown"
            items.append(Item(p, Path(p.name), kind))
        else:
            items.append(Item(p, Path(p.name), "missing"))
    return items


# -- drawing and writing ------------------------------------------------------------------------------

LANDMARK_COLOURS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]


def draw(image: np.ndarray, det) -> np.ndarray:
    import cv2

    out = image.copy()
    t = max(1, round(max(image.shape[:2]) / 500))
    for i in range(len(det)):
        x1, y1, x2, y2 = (round(float(v)) for v in det.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), t)
        cv2.putText(out, f"{det.scores[i]:.2f}", (x1, max(0, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * t, (0, 255, 0), max(1, t // 2), cv2.LINE_AA)
        if det.landmarks is not None:
            for j in range(5):
                x, y = det.landmarks[i, 2 * j: 2 * j + 2]
                cv2.circle(out, (round(float(x)), round(float(y))), t + 1, LANDMARK_COLOURS[j], -1)
    return out


def det_to_json(det) -> dict:
    faces = []
    for i in range(len(det)):
        f = {"box": [round(float(v), 2) for v in det.boxes[i]], "score": round(float(det.scores[i]), 5)}
        if det.landmarks is not None:
            f["landmarks"] = [[round(float(det.landmarks[i, 2 * j]), 2), round(float(det.landmarks[i, 2 * j + 1]), 2)]
                              for j in range(5)]
        faces.append(f)
    return {"faces": faces, "count": len(faces), "truncated": int(det.truncated)}


def wider_text(name: str, det) -> str:
    """WIDER FACE prediction file (training.widerio's format), rows sorted by score (descending)."""
    from training.widerio import prediction_text

    order = np.argsort(-det.scores, kind="stable")
    b = np.asarray(det.boxes, np.float64).reshape(-1, 4)[order]
    return prediction_text(name, np.c_[b[:, :2], b[:, 2:] - b[:, :2], np.asarray(det.scores, np.float64)[order]])


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


# -- per input ----------------------------------------------------------------------------------------


def run_images(items: list[Item], det, out: Path, fmt: str, batch: int, annotate: bool, bar) -> list[str]:
    import cv2

    failed: list[str] = []
    model = det.info.model_dump()
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        images, ok = [], []
        for it in chunk:
            im = cv2.imread(str(it.path), cv2.IMREAD_COLOR)
            if im is None:
                failed.append(f"{it.path}: not a readable image")
                bar.update(1)
                continue
            images.append(im)
            ok.append(it)
        for it, im, d in zip(ok, images, det.detect(images) if images else [], strict=True):
            if fmt == "wider":
                p = (out / it.rel).with_suffix(".txt")
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(wider_text(it.path.stem, d))
            else:
                _write_json((out / it.rel).with_suffix(".json"), {
                    "input": str(it.path), "width": im.shape[1], "height": im.shape[0], "model": model,
                    **det_to_json(d),
                })
            if annotate:
                p = out / it.rel
                p.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(p), draw(im, d)):
                    cv2.imwrite(str(p.with_suffix(".jpg")), draw(im, d))
            bar.update(1)
    return failed


def run_video(it: Item, det, out: Path, fmt: str, batch: int, every: int, annotate: bool, quiet: bool) -> None:
    from fractions import Fraction

    import av
    from tqdm import tqdm

    from core.video import iter_video_frames

    info, frames = iter_video_frames(it.path, every)
    nframes = info["frames"] or 0
    rate = Fraction(info["fps"] or 25).limit_denominator(1001) / every
    writer = stream = None
    enc_path = (out / it.rel).with_suffix(".mp4")
    frames_json: list[dict] = []
    width = height = 0

    def flush(pending):
        nonlocal writer, stream
        dets = det.detect([p.bgr for p in pending])
        for vf, d in zip(pending, dets, strict=True):
            idx, img = vf.index, vf.bgr
            rec = {"index": idx, "pts": vf.pts, "time": None if vf.t is None else round(vf.t, 4), **det_to_json(d)}
            frames_json.append(rec)
            if fmt == "wider":
                p = out / it.rel.with_suffix("") / f"{it.path.stem}_{idx:06d}.txt"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(wider_text(f"{it.path.stem}_{idx:06d}", d))
            if annotate:
                if writer is None:
                    enc_path.parent.mkdir(parents=True, exist_ok=True)
                    writer = av.open(str(enc_path), "w")
                    stream = writer.add_stream("libx264", rate=rate)
                    stream.width, stream.height = img.shape[1] // 2 * 2, img.shape[0] // 2 * 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "23", "preset": "veryfast"}
                vf = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(draw(img, d)[: stream.height, : stream.width]), format="bgr24")
                for pkt in stream.encode(vf):
                    writer.mux(pkt)

    bar = tqdm(total=(nframes // every) if nframes else None, desc=it.path.name, unit="frame",
               disable=quiet, leave=False)
    pending: list = []
    try:
        for rec in frames:
            width, height = rec.bgr.shape[1], rec.bgr.shape[0]
            pending.append(rec)
            if len(pending) >= batch:
                flush(pending)
                bar.update(len(pending))
                pending = []
        if pending:
            flush(pending)
            bar.update(len(pending))
    finally:
        bar.close()
        if writer is not None:
            for pkt in stream.encode():
                writer.mux(pkt)
            writer.close()
    if not frames_json:
        raise ValueError("no decodable video frames")
    if fmt == "json":
        _write_json((out / it.rel).with_suffix(".json"), {
            "input": str(it.path), "width": width, "height": height, "every": every,
            "model": det.info.model_dump(), "frames": frames_json,
        })


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("detections"),
              show_default=True, help="Output folder (mirrors the input layout).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto",
              show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A .safetensors or .onnx file (default: models/weights/fsdet-m.safetensors).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score threshold (default: the weights' shipped threshold; use 0.02 for WIDER evaluation).")
@click.option("--nms-iou", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.4, show_default=True)
@click.option("--max-detections", type=click.IntRange(1), default=750, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "wider"]), default="json", show_default=True)
@click.option("--batch", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Videos: every Nth frame.")
@click.option("--input-size", type=click.IntRange(32), default=None, help="Letterbox long side (multiple of 32).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: auto).")
@click.option("--annotate/--no-annotate", default=None,
              help="Write annotated images/videos (default: on for json, off for wider).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def detect(paths, out_dir, runtime, weights, threshold, nms_iou, max_detections, fmt, batch, every, input_size,
           device, annotate, quiet):
    """Detect faces in images, folders of images (recursive) and videos."""
    from tqdm import tqdm

    from models.detector import load_detector
    from models.facedet.weights import MissingWeightsError, ModelFileError
    from models.runtimes.base import RuntimeUnavailable

    if input_size is not None and input_size % 32:
        raise click.BadParameter("must be a multiple of 32", param_hint="--input-size")
    try:
        det = load_detector(runtime=runtime, weights=weights, threshold=threshold, nms_iou=nms_iou,
                            max_detections=max_detections, device=device, input_size=input_size)
    except MissingWeightsError as exc:
        click.echo(f"facestream detect: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except (ModelFileError, RuntimeUnavailable, ValueError) as exc:
        click.echo(f"facestream detect: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if annotate is None:
        annotate = fmt == "json"
    items = collect(list(paths))
    failed: list[str] = [f"{it.path}: no such file or folder" for it in items if it.kind == "missing"]
    failed += [f"{it.path}: not an image or video (by extension)" for it in items if it.kind == "unknown"]
    n_bad_args = len(failed)
    images = [it for it in items if it.kind == "image"]
    videos = [it for it in items if it.kind == "video"]
    if not images and not videos and not failed:
        click.echo("facestream detect: no images or videos found under the given paths", err=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = det.info
    if not quiet:
        click.echo(f"model {info.name} {info.version} ({info.runtime}, {info.precision}, "
                   f"input {info.input_size}, threshold {det.threshold}); {len(images)} images, "
                   f"{len(videos)} videos -> {out_dir}", err=True)
    if images:
        with tqdm(total=len(images), desc="images", unit="img", disable=quiet) as bar:
            failed += run_images(images, det, out_dir, fmt, batch, annotate, bar)
    for it in videos:
        try:
            run_video(it, det, out_dir, fmt, batch, every, annotate, quiet)
        except Exception as exc:  # av.error.*, decode errors: report, continue
            failed.append(f"{it.path}: {error_words(exc) or exc} ({type(exc).__name__})")
    for msg in failed:
        click.echo(f"failed: {msg}", err=True)
    done = len(images) + len(videos) - (len(failed) - n_bad_args)
    if not quiet:
        click.echo(f"{done} inputs done, {len(failed)} failed", err=True)
    sys.exit(EXIT_FAILED if failed else 0)
