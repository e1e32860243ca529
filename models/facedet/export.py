"""ONNX export of FSDet: one self-contained file, dynamic batch/height/width, metadata inside.

Graph contract:
  input   images     float32 (N, 3, H, W), BGR, 0..255 (the letterbox output; H, W multiples of 32)
  outputs scores     float32 (N, A)        sigmoid face score per anchor point
          boxes      float32 (N, A, 4)     xyxy in input pixels
          landmarks  float32 (N, A, 10)    5 (x, y) points in input pixels
BatchNorm is folded into the convolutions (eval-mode export). metadata_props carry the preprocessing
contract and provenance (see `onnx_metadata`).

Exporter: the TorchScript exporter (`dynamo=False`) writes one self-contained file with BN folded and
fully dynamic shapes; it is also the faster of the two to run here (~2 s). The dynamo exporter is kept as
a fallback (`exporter="dynamo"`) and is told to inline its weights (it writes a side `.onnx.data`
file otherwise).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .weights import ModelFileError, WeightsMeta, file_sha256, load_model

INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "boxes", "landmarks")
DEFAULT_OPSET = 17
EXPORT_KEYS = frozenset({
    "input_name", "input_size", "input_layout", "input_range", "mean", "std", "channel_order", "strides",
    "pad_multiple", "outputs", "box_format", "weights_sha256", "model_name", "model_version",
})


def onnx_metadata(meta: WeightsMeta) -> dict[str, str]:
    cfg = meta.config
    md = meta.to_metadata()
    md.update(
        input_name=INPUT_NAME,
        input_size=str(cfg.input_size),
        input_layout="NCHW",
        input_range="0..255",
        mean=json.dumps([cfg.mean] * 3),
        std=json.dumps([cfg.std] * 3),
        channel_order=cfg.channel_order,
        strides=json.dumps(list(cfg.strides)),
        pad_multiple=str(cfg.pad_multiple),
        outputs=json.dumps(list(OUTPUT_NAMES)),
        box_format="xyxy input pixels",
        weights_sha256=meta.sha256,
        model_name=meta.name,
        model_version=meta.version,
    )
    return md


def export_onnx(
    model_or_weights,
    out_path: str | os.PathLike,
    meta: WeightsMeta | None = None,
    opset: int = DEFAULT_OPSET,
    sample_hw: tuple[int, int] = (480, 640),
    exporter: str = "torchscript",
    check: bool = True,
) -> Path:
    """Export a FaceDetNet (or a .safetensors path) to `out_path`; returns the path.

    `meta` (from `load_model`) supplies the provenance metadata; a bare model gets name/version from its
    config and an empty weights sha. The write is atomic (temp file + rename), so concurrent readers never
    see half a file. With `check`, runs onnx.checker and compares ONNX Runtime against PyTorch.
    """
    import onnx
    import torch

    if isinstance(model_or_weights, (str, os.PathLike)):
        model, meta = load_model(model_or_weights, device="cpu")
    else:
        model = model_or_weights
        if meta is None:
            meta = WeightsMeta(config=model.cfg, name=model.cfg.name, trained_on="")
    model = model.float().cpu().eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    h, w = sample_hw
    x = torch.rand(2, 3, h, w) * 255
    dyn = {0: "batch", 1: "anchors"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(
                    model, (x,), str(tmp), dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                    dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                  **{k: dyn for k in OUTPUT_NAMES}},
                    do_constant_folding=True,
                )
            elif exporter == "dynamo":
                batch = torch.export.Dim("batch", max=4096)
                hh, ww = torch.export.Dim("h"), torch.export.Dim("w")
                prog = torch.onnx.export(
                    model, (x,), dynamo=True, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                    dynamic_shapes=({0: batch, 2: 32 * hh, 3: 32 * ww},),
                )
                prog.save(str(tmp), external_data=False)
            else:
                raise ValueError(f"unknown exporter {exporter!r} (torchscript or dynamo)")
        m = onnx.load(str(tmp))
        del m.metadata_props[:]
        for k, v in sorted(onnx_metadata(meta).items()):
            m.metadata_props.add(key=k, value=v)
        m.producer_name = "facestream"
        m.doc_string = f"FSDet face detector {meta.name} {meta.version}"
        onnx.save(m, str(tmp), save_as_external_data=False)
        if check:
            check_onnx(tmp, model)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
        side = tmp.with_name(tmp.name + ".data")
        side.unlink(missing_ok=True)
    return out_path


def check_onnx(path: str | os.PathLike, model=None, atol: float = 1e-3) -> None:
    """onnx.checker (full) + an ONNX Runtime run; with `model`, outputs must match PyTorch."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if names != list(OUTPUT_NAMES) or sess.get_inputs()[0].name != INPUT_NAME:
        raise ModelFileError(f"{path}: graph io {sess.get_inputs()[0].name} -> {names}, expected "
                             f"{INPUT_NAME} -> {list(OUTPUT_NAMES)}")
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 96, 128), (2, 3, 64, 64)):
        x = rng.uniform(0, 255, shape).astype(np.float32)
        outs = sess.run(None, {INPUT_NAME: x})
        if model is None:
            continue
        import torch

        with torch.no_grad():
            ref = model(torch.from_numpy(x))
        for name, o, r in zip(OUTPUT_NAMES, outs, ref, strict=True):
            err = float(np.abs(o - r.numpy()).max())
            if not np.isfinite(err) or err > atol * max(1.0, float(np.abs(r.numpy()).max())):
                raise ModelFileError(f"{path}: ONNX Runtime differs from PyTorch on {name} by {err:.3g}")


def read_onnx_meta(path: str | os.PathLike) -> tuple[WeightsMeta, dict[str, str]]:
    """(WeightsMeta with sha256 = the source weights' sha, raw metadata_props) of an exported model."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(
            f"{p}: no such ONNX file (expected an FSDet model exported by models.facedet.export)"
        )
    try:
        m = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / various on garbage
        raise ModelFileError(f"{p}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    md = {prop.key: prop.value for prop in m.metadata_props}
    meta = WeightsMeta.from_metadata(md, p, md.get("weights_sha256", ""))
    meta.extra = {k: v for k, v in meta.extra.items() if k not in EXPORT_KEYS}
    if not meta.sha256:
        meta.sha256 = file_sha256(p)
    return meta, md


def read_model_meta(path: str | os.PathLike, with_sha: bool = True) -> WeightsMeta:
    """WeightsMeta of any model file: an exported / compressed .onnx or a .safetensors."""
    from .weights import read_meta

    p = Path(path)
    return read_onnx_meta(p)[0] if p.suffix.lower() == ".onnx" else read_meta(p, with_sha=with_sha)


def export_weights_file(weights: str | os.PathLike, out_path: str | os.PathLike | None = None, **kw) -> Path:
    """models/weights/x.safetensors -> models/weights/x.onnx (or out_path)."""
    w = Path(weights)
    return export_onnx(w, out_path or w.with_suffix(".onnx"), **kw)
