"""Accuracy of our detector and the public peers on the same images with the same evaluator.

    .venv/bin/python bench/accuracy.py                       # peers (+ ours if weights exist)
    .venv/bin/python bench/accuracy.py --only scrfd-2.5g,yunet-n --ours models/weights/fsdet-m.safetensors

Writes a markdown table (AP easy/medium/hard by the official WIDER protocol, P/R/F1 at each model's
default threshold on the hard setting's faces, ms/image) to docs/accuracy.md and the full results
(per-attribute recall, face counts, curves) to docs/accuracy.json, PR curves to docs/accuracy_pr.png.

Data: ../shared/data/eval/widerface-val-mini (98 WIDER val images, re-encoded soft: report as
"WIDER val mini", never as WIDER val). Protocol: official (see training/evaluate/wider.py), detections
with score >= 0.02, NMS IoU 0.4 (BlazeFace 0.3), no top-k cap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("FACESTREAM_SHARED", REPO.parent / "shared"))

# name, file (in peers dir, or "haar"), runner kwargs, resolution note
PEERS = [
    ("SCRFD-2.5G", "scrfd_pypi_0.3.0.onnx", {}, "640x640 letterbox (fixed input)"),
    ("SCRFD-0.5G", "libfd_scrfd_500m_bnkps.onnx", {}, "original size"),
    ("SCRFD-0.5G@640", "libfd_scrfd_500m_bnkps.onnx", {"max_size": 640}, "long side 640"),
    ("RetinaFace-mnet0.25", "libfd_retinaface_mbnet0.25.onnx", {}, "original size"),
    ("YuNet-s", "libfd_yunet_s_dynamic.onnx", {}, "original size"),
    ("YuNet-n", "libfd_yunet_n_dynamic.onnx", {}, "original size"),
    ("CenterFace", "centerface.onnx", {}, "original size"),
    ("ULFD-RFB-640", "ulfg_version-RFB-640.onnx", {}, "640x480 resize (fixed input)"),
    ("YOLO5Face-n0.5-320", "libfd_yolo5face_500m_320x320.onnx", {}, "320x320 letterbox (fixed input)"),
    ("BlazeFace-full", "face_detection_full_range_sparse.tflite", {}, "192x192 letterbox (fixed input)"),
    ("BlazeFace-short", "face_detection_short_range.tflite", {}, "128x128 letterbox (fixed input)"),
    ("Haar (OpenCV)", "haar", {}, "original size, scaleFactor 1.1, minNeighbors 3"),
]
# the teacher ensemble used for our distillation labels (training/distill): WBF of two peers
ENSEMBLES = [
    ("Teachers: SCRFD-2.5G + YuNet-n (WBF)", ("scrfd_pypi_0.3.0.onnx", "libfd_yunet_n_dynamic.onnx"), {},
     "as the members"),
]


class _Ensemble:
    def __init__(self, files, peers_dir: Path, threads: int):
        from training.distill.label import TeacherEnsemble

        self.ens = TeacherEnsemble([_load(f, peers_dir, {}, threads) for f in files], skip_box_thr=0.02)
        self.default_threshold = 0.5

    def __call__(self, bgr):
        return self.ens.label_image(bgr).dets


def _load(file: str, peers_dir: Path, kw: dict, threads: int):
    from training.distill.teachers import load_teacher

    spec = file if file == "haar" else str(peers_dir / file)
    if file != "haar" and not Path(spec).exists():
        raise FileNotFoundError(f"{spec} absent")
    if file.endswith(".tflite"):
        return load_teacher(spec, score_threshold=0.02, threads=threads)
    return load_teacher(spec, score_threshold=0.02, threads=threads, **kw)


def cpu_ms_per_image(make_det, images: list, repeat: int = 1) -> float:
    """CPU time of the calling thread per detector call, 1 inference thread: robust to a busy machine
    (wall time is not, when other jobs share the cores)."""
    import cv2

    n_cv = cv2.getNumThreads()
    cv2.setNumThreads(1)  # OpenCV (resize, Haar) would otherwise use its own pool, unseen by thread_time
    try:
        det = make_det()
        det(images[0])  # warm-up
        t0 = time.thread_time()
        for _ in range(repeat):
            for im in images:
                det(im)
        return 1000 * (time.thread_time() - t0) / (repeat * len(images))
    finally:
        cv2.setNumThreads(n_cv)


def run(args) -> list[dict]:
    import cv2

    from training.evaluate.wider import evaluate_detector, list_images

    data = Path(args.data)
    speed_imgs = [cv2.imread(str(p)) for p in list(list_images(data / "images").values())[: args.speed_images]]
    rows = []
    only = {s.strip().lower() for s in args.only.split(",")} if args.only else None
    entries = []
    if args.ours:
        entries.append(("FSDet (ours)", args.ours, {}, "ours"))
    entries += PEERS + ENSEMBLES
    for name, file, kw, note in entries:
        if only and name.lower() not in only:
            continue
        row = {"name": name, "file": file, "resolution": note}
        try:
            if note == "ours":
                from training.evaluate.adapters import load_eval_model

                m = load_eval_model(file, min_score=0.02, threads=args.threads)
                det, thr = m.detect_fn, m.default_threshold

                def make1(file=file):
                    return load_eval_model(file, min_score=0.02, threads=1).detect_fn
                row["resolution"] = "our letterbox input size"
            elif isinstance(file, tuple):
                det = _Ensemble(file, Path(args.peers), args.threads)
                thr = det.default_threshold

                def make1(file=file):
                    return _Ensemble(file, Path(args.peers), 1)
            else:
                det = _load(file, Path(args.peers), kw, args.threads)
                thr = det.default_threshold

                def make1(file=file, kw=kw):
                    return _load(file, Path(args.peers), kw, 1)
        except ImportError as e:
            row["not_run"] = f"{e} (optional: `pip install ai-edge-litert`, not a project dependency)"
            print(f"{name}: not run ({row['not_run']})", flush=True)
            rows.append(row)
            continue
        except (FileNotFoundError, OSError, ValueError) as e:
            row["not_run"] = f"{type(e).__name__}: {e}"
            print(f"{name}: not run ({row['not_run']})", flush=True)
            rows.append(row)
            continue
        t0 = time.time()
        res = evaluate_detector(det, data / "images", data / "ground_truth", threshold=thr, min_score=0.02,
                                name=name, progress=not args.quiet)
        row.update(res.to_dict())
        row["wall_s"] = round(time.time() - t0, 1)
        row["cpu_ms_1thread"] = cpu_ms_per_image(make1, speed_imgs) if speed_imgs else None
        row["_curves"] = res.curves
        a, h = res.ap, res.at_threshold["hard"]
        print(f"{name}: AP {a['easy']:.3f}/{a['medium']:.3f}/{a['hard']:.3f}  "
              f"P/R/F1@{thr:g} {h['precision']:.3f}/{h['recall']:.3f}/{h['f1']:.3f}  "
              f"{res.ms_per_image:.0f} ms/img wall, {row['cpu_ms_1thread']:.0f} CPU-ms/img", flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        "# Accuracy: ours vs public face detectors (WIDER val mini)",
        "",
        f"Images: {meta['images']} (98 WIDER FACE **val** images, re-encoded soft; report as \"WIDER val "
        "mini\", never as WIDER val AP). Official WIDER protocol (`training/evaluate/wider.py`): easy / medium "
        "/ hard AP from the official .mat settings; detections with score >= 0.02, NMS IoU 0.4, no top-k.",
        "P/R/F1: at each model's default (shipped) score threshold, raw scores, on the hard setting's faces "
        "(IoU >= 0.5; faces outside the setting ignored).",
        f"CPU ms/image: CPU time of one detector call (pre+infer+post, 1 inference thread, thread CPU "
        f"clock) averaged over {meta['speed_images']} WIDER val mini images at the input size shown "
        f"({meta['cpu']}, {meta['cores']} cores). The machine was shared by a training run (load average "
        f"~{meta['load']}), so wall-clock times were inflated several-fold; CPU time is robust to that, "
        "close to single-thread latency on an idle core.",
        f"Command: `{meta['command']}`",
        "",
        "| model | input | AP easy | AP medium | AP hard | threshold | P | R | F1 | CPU ms/image |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "not_run" in r:
            out.append(f"| {r['name']} | {r['resolution']} | not run here: {r['not_run']} | | | | | | | |")
            continue
        a, h = r["ap"], r["at_threshold"]["hard"]
        out.append(f"| {r['name']} | {r['resolution']} | {a['easy']:.3f} | {a['medium']:.3f} | {a['hard']:.3f} | "
                   f"{r['threshold']:g} | {h['precision']:.3f} | {h['recall']:.3f} | {h['f1']:.3f} | "
                   f"{r['cpu_ms_1thread']:.0f} |")
    out += ["", "Notes:",
            "- Resolution dominates hard AP: SCRFD-0.5G moves ~0.1 hard AP between 640 and original size.",
            "- Haar returns only its final detections (score = the cascade's level weight); its AP is a "
            "lower bound of what a cascade can do and its threshold column is 'all returned'.",
            "- BlazeFace models are MediaPipe's selfie/short-range and full-range (sparse) detectors at their "
            "fixed 128/192 inputs: not designed for crowds of small faces. They run through `ai-edge-litert` "
            "(pip, optional; e.g. `pip install --no-deps --target work-data/litert ai-edge-litert` and "
            "`PYTHONPATH=work-data/litert`).",
            "- YuNet's default threshold is OpenCV's FaceDetectorYN default (0.9): very high precision, low "
            "recall; its AP shows the model is far better at a lower threshold.",
            "- The teacher row is the ensemble that made our distillation labels (training/distill, "
            "`facestream label`): fused score = mean over teachers of each teacher's best score.",
            "- CPU ms includes decode + NMS of every detection >= 0.02 (hundreds per image for some models).",
            ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "data" / "eval" / "widerface-val-mini"))
    ap.add_argument("--peers", default=str(SHARED / "models" / "peers"))
    ap.add_argument("--ours", default=None, help="Our weights (.safetensors/.onnx); default: none.")
    ap.add_argument("--only", default=None, help="Comma-separated model names (as in the table).")
    ap.add_argument("--threads", type=int, default=2, help="Inference threads for the accuracy pass.")
    ap.add_argument("--speed-images", type=int, default=10, help="Images for the CPU-time pass.")
    ap.add_argument("--out", default=str(REPO / "docs" / "accuracy.md"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--append", action="store_true",
                    help="Keep the other rows of an existing --out JSON (replace rows of the same name); "
                         "e.g. add ours later: --only 'FSDet (ours)' --ours W --append")
    args = ap.parse_args()
    if not (Path(args.data) / "ground_truth" / "wider_face_val.mat").exists():
        sys.exit(f"no WIDER data at {args.data} (set FACESTREAM_SHARED or --data)")

    rows = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "images": next((r["num_images"] for r in rows if "num_images" in r), 0),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "speed_images": args.speed_images,
        "cores": os.cpu_count(),
        "load": f"{os.getloadavg()[0]:.0f}",
        "command": "python bench/accuracy.py " + " ".join(sys.argv[1:]),
    }
    curves = [r.pop("_curves") for r in rows if "_curves" in r]
    if args.append and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        new_names = {r["name"] for r in rows}
        rows = [r for r in old["results"] if r["name"] not in new_names] + rows
        cmds = old["meta"]["command"].split(" ; ")  # a re-run that replaces rows is recorded once
        meta["command"] = " ; ".join([c for c in cmds if c != meta["command"]] + [meta["command"]])
        meta["load"] = old["meta"]["load"]
    out.write_text(markdown(rows, meta))
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    if curves and not args.append:
        from training.evaluate.plots import plot_pr_curves
        from training.evaluate.wider import WiderEvalResult

        res = [WiderEvalResult(r["name"], r["ap"], r["threshold"], {}, {}, {}, 0, {}, 0, curves=c)
               for r, c in zip([r for r in rows if "ap" in r], curves, strict=True)]
        plot_pr_curves(res, out.with_name(out.stem + "_pr.png"))
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
