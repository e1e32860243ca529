"""``facestream label``: teacher labels from peer detectors (run, fuse with WBF, write WIDER format).

Examples::

    facestream label --teacher scrfd_2.5g.onnx --teacher yunet_n.onnx --images photos/ --out labels.txt
    facestream label --teacher A.onnx --teacher B.onnx --images set/ --merge-with set/labels.txt \\
        --fill-as ignore --out set-filled.txt
    facestream label --teacher A.onnx --video street.mp4 --every 5 --out street-labels.txt

Output: WIDER-format text with a score column and 5 landmarks per face (see training/widerio.py);
``invalid`` (8th column) = 1 marks an ignore region. Video frames are keyed ``<video name>/<frame index>``.
``--video`` with ``--format footage`` (the default when ``--out`` ends in ``.jsonl``) writes footage labels
for ``facestream eval replay`` instead (training/evaluate/footage_labels.py, docs/replay-eval.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click


@contextlib.contextmanager
def _readable(video: Path):
    """A video that PyAV cannot open or decode: one clear line, exit 1."""
    import av

    from core.logging import error_words

    try:
        yield
    except (OSError, ValueError, av.error.FFmpegError) as e:
        raise click.ClickException(f"cannot read video {video}: {error_words(e)}") from e


@click.command("label")
@click.option("--teacher", "teachers", multiple=True, required=True,
              help="Peer detector ONNX (type recognised from its outputs) or 'haar'. Repeatable.")
@click.option("--weight", "weights", multiple=True, type=float,
              help="Fusion weight per --teacher, in order (default 1 each).")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of images (searched recursively); label paths are relative to it.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Label frames of a video instead of images.")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Video: every N-th frame.")
@click.option("--frames-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Video, wider format: also save the labelled frames as JPEGs under DIR/<video name>/, "
                   "with label paths relative to DIR, so that DIR and --out form a training source.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["auto", "wider", "footage"]), default="auto", show_default=True,
              help="Output format; footage (video only): JSON Lines for `facestream eval replay`. "
                   "auto: footage for --video with a .jsonl --out, else wider.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Fused score at or above which a face is a label.")
@click.option("--ignore-below", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Fused faces in [ignore-below, threshold) are written as ignore regions (invalid=1); "
                   "below it they are dropped.")
@click.option("--merge-with", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Human WIDER labels: add teacher faces overlapping no human box (IoU < --merge-iou).")
@click.option("--fill-as", type=click.Choice(["label", "ignore"]), default="label", show_default=True,
              help="Merge mode: added teacher faces become labels (by threshold) or ignore regions.")
@click.option("--fill-only", is_flag=True, help="Merge mode: write only the added faces, not the human ones.")
@click.option("--merge-iou", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--snap-iou", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Merge mode: replace each human box by the teacher label it overlaps at least this much "
                   "(one to one): puts a set whose annotators drew bigger or smaller boxes into the teachers' "
                   "(WIDER's) box convention. Faces the teachers miss keep their human box.")
@click.option("--fusion-iou", type=click.FloatRange(0, 1), default=0.55, show_default=True)
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Teacher detections below this are not fused.")
@click.option("--max-size", type=int, default=None,
              help="Long side for dynamic-input teachers (default: original size).")
@click.option("--min-size", type=int, default=640, show_default=True,
              help="Upscale smaller images to this long side for dynamic-input teachers.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--progress/--no-progress", default=True)
def label(teachers, weights, images_dir, video, every, frames_dir, out, fmt, threshold, ignore_below, merge_with,
          fill_as,
          fill_only, merge_iou, snap_iou, fusion_iou, min_score, max_size, min_size, threads, progress) -> None:
    """Run teacher detectors, fuse them (weighted box fusion) and write WIDER-format labels."""
    import cv2
    from tqdm import tqdm

    from core.video import iter_video_frames
    from training.distill.label import (
        TeacherEnsemble,
        fill_missing,
        fused_to_wider,
        iter_images,
        list_images,
        snap_to_teacher,
    )
    from training.distill.teachers import load_teacher
    from training.widerio import read_wider_labels, write_wider_labels

    if (images_dir is None) == (video is None):
        raise click.UsageError("give exactly one of --images or --video")
    if weights and len(weights) != len(teachers):
        raise click.UsageError("give one --weight per --teacher (or none)")
    if merge_with is not None and video is not None:
        raise click.UsageError("--merge-with works with --images")
    if snap_iou is not None and merge_with is None:
        raise click.UsageError("--snap-iou works with --merge-with")
    if fmt == "auto":
        fmt = "footage" if video is not None and out.suffix.lower() == ".jsonl" else "wider"
    if fmt == "footage" and video is None:
        raise click.UsageError("--format footage works with --video")
    if frames_dir is not None and (video is None or fmt != "wider"):
        raise click.UsageError("--frames-dir works with --video and the wider format")
    for t in teachers:
        if t != "haar" and not Path(t).is_file():
            raise click.ClickException(f"teacher {t}: no such file")
    models = []
    for t in teachers:
        try:
            models.append(load_teacher(t, score_threshold=min_score, max_size=max_size, min_size=min_size,
                                       threads=threads))
        except Exception as e:  # truncated or foreign ONNX: ONNX Runtime raises its own types
            raise click.ClickException(f"teacher {t}: cannot load it ({str(e).splitlines()[0][:300]})") from e
    ens = TeacherEnsemble(models, weights or None, iou_thr=fusion_iou, skip_box_thr=min_score)
    click.echo("teachers: " + ", ".join(f"{m.name} ({getattr(m, 'kind', '?')})" for m in models), err=True)

    if fmt == "footage":
        from training.evaluate.footage_labels import label_video

        bar = tqdm(desc="label", unit="frame", disable=not progress)
        with _readable(video):
            lab = label_video(video, out, ens.label_image, every=every, threshold=threshold,
                              ignore_below=ignore_below, meta={"teachers": [m.name for m in models]},
                              progress=lambda _: bar.update(1))
        bar.close()
        n_ign = sum(len(f.ignore) for f in lab.frames.values())
        click.echo(f"{out}: {len(lab.frames)} frames, {lab.faces} label faces, {n_ign} ignore regions "
                   "(footage labels)")
        return
    results = []
    skipped = snapped = 0
    if video is not None:
        with _readable(video):
            _, frames = iter_video_frames(video, every)
            for vf in tqdm(frames, desc="label", unit="frame", disable=not progress):
                key = f"{video.name}/{vf.index:06d}"
                if frames_dir is not None:
                    key = f"{video.stem}/{vf.index:06d}.jpg"
                    (frames_dir / video.stem).mkdir(parents=True, exist_ok=True)
                    if not cv2.imwrite(str(frames_dir / key), vf.bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                        raise click.ClickException(f"cannot write frames under {frames_dir}")
                results.append(fused_to_wider(key, ens.label_image(vf.bgr), threshold, ignore_below))
    else:
        human = None
        if merge_with is not None:
            human = {im.path: im for im in read_wider_labels(merge_with)}
            names = list(human)
        else:
            names = list_images(images_dir)
        for rel, img in tqdm(iter_images(images_dir, names), total=len(names), desc="label", unit="img",
                             disable=not progress):
            if img is None:
                skipped += 1
                continue
            fused = ens.label_image(img)
            if human is not None:
                him = human[rel]
                if snap_iou is not None:
                    him, n = snap_to_teacher(him, fused, threshold, snap_iou)
                    snapped += n
                results.append(fill_missing(him, fused, threshold, ignore_below, merge_iou, fill_as,
                                            keep_human=not fill_only))
            else:
                results.append(fused_to_wider(rel, fused, threshold, ignore_below))
    write_wider_labels(out, results, with_scores=True, with_landmarks=True)
    n_lab = sum(int((r.attrs[:, 3] == 0).sum()) for r in results)
    n_ign = sum(int((r.attrs[:, 3] == 1).sum()) for r in results)
    click.echo(f"{out}: {len(results)} images, {n_lab} label faces, {n_ign} ignore regions"
               + (f", {snapped} human boxes snapped to a teacher box" if snap_iou is not None else "")
               + (f", {skipped} unreadable images skipped" if skipped else ""))
