"""INT8 (CPU, ONNX Runtime static QDQ) and FP16 (GPU runtimes) variants of an exported FSDet ONNX.

INT8: activations uint8 and weights int8 per output channel (U8S8, what ONNX Runtime's x86 kernels are
fastest at), ranges from a calibration set of real frames. Only the convolutions and residual adds are
quantized: the decode after the head (sigmoid, softplus, grid points, box arithmetic in input pixels)
stays float, since 8 bits cannot hold pixel coordinates. `keep_float="head"` also keeps the three
output convolutions (score, box, landmarks) in float; `"stem"` keeps the first convolution (3 input
channels, where ONNX Runtime's int8 kernel was slower than float: 22% of the int8 graph's time);
`"stem+head"` both.

FP16: every weight and activation in half precision except the decode, float32 in and out, so the
graph contract (float32 BGR 0..255 in, float32 outputs) is the same for every variant.

Both write the source's metadata plus `precision`, `compressed_from` (the source's weights sha256) and
`compression` (how), so runtimes, `facestream detect` and worker events report what they serve.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

HEAD_OUTPUT_WEIGHTS = ("head.cls.weight", "head.box.weight", "head.kps.weight")
INT8_OPS = ["Conv", "Relu", "Add"]  # Relu folds into the quantized Conv; Add keeps residuals in int8
METHODS = ("minmax", "percentile", "entropy")
KEEP_FLOAT = ("none", "head", "stem", "stem+head")


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            out.setdefault(i, []).append(node)
    return out


def head_output_convs(graph) -> list[str]:
    """Names of the Conv nodes that produce the score, box and landmark maps (one per level)."""
    return [n.name for n in graph.node if n.op_type == "Conv" and any(i in HEAD_OUTPUT_WEIGHTS for i in n.input)]


def stem_convs(graph) -> list[str]:
    """The Conv node(s) fed by the image: directly, or through the in-graph (x - mean) * inv_std."""
    image = {i.name for i in graph.input}
    for n in graph.node:  # topological order: the normalisation's outputs stand for the image
        if n.op_type in ("Sub", "Mul") and n.input[0] in image:
            image.add(n.output[0])
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in image]


def float_nodes(graph, keep_float: str) -> list[str]:
    """The nodes an INT8 variant leaves in float: the decode always, plus what keep_float names."""
    parts = set(keep_float.split("+")) - {"none"}
    return (decode_nodes(graph) + (head_output_convs(graph) if "head" in parts else [])
            + (stem_convs(graph) if "stem" in parts else []))


def decode_nodes(graph) -> list[str]:
    """Every node downstream of the head's output convolutions: the float-only decode."""
    heads = set(head_output_convs(graph))
    if not heads:
        raise ValueError("not an FSDet graph: no head output convolutions (head.cls/box/kps) found")
    cons = _consumers(graph)
    seen: set[str] = set()
    todo = [o for n in graph.node if n.name in heads for o in n.output]
    while todo:
        t = todo.pop()
        for n in cons.get(t, []):
            if n.name not in seen:
                seen.add(n.name)
                todo.extend(n.output)
    return sorted(seen)


def _write_meta(model, source_md: dict[str, str], precision: str, how: dict) -> None:
    del model.metadata_props[:]
    md = dict(source_md)
    md.update(precision=precision, compressed_from=source_md.get("weights_sha256", ""),
              compression=json.dumps(how, sort_keys=True))
    for k, v in sorted(md.items()):
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "facestream"


def _source_metadata(path: Path) -> dict[str, str]:
    from models.facedet.export import read_onnx_meta

    _meta, md = read_onnx_meta(path)
    if md.get("precision", "fp32") != "fp32":
        raise ValueError(f"{path} is already a {md['precision']} variant: compress the float model")
    return md


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of (1, 3, H, W) float32 inputs."""

    def __init__(self, batches: list[np.ndarray], input_name: str):
        self.it = iter(batches)
        self.name = input_name

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {self.name: b}


def quantize_int8(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, batches: list[np.ndarray], *,
                  method: str = "percentile", keep_float: str = "none", per_channel: bool = True) -> Path:
    """Static INT8 QDQ quantization calibrated on `batches` (see calibration.calibration_batches)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from models.facedet.export import INPUT_NAME

    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: choose one of {METHODS}")
    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"keep_float {keep_float!r}: choose one of {KEEP_FLOAT}")
    if not batches:
        raise ValueError("INT8 needs calibration frames; none were given")
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    md = _source_metadata(onnx_in)
    calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory(prefix="fs-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(onnx_in), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph  # node names after pre-processing: the ones quantize_static sees
        exclude = float_nodes(graph, keep_float)
        q = Path(tmp) / "q.onnx"
        quantize_static(
            str(pre), str(q), _Reader(batches, INPUT_NAME), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
            op_types_to_quantize=INT8_OPS, nodes_to_exclude=exclude, calibrate_method=calib,
            extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False,
                           **({"CalibPercentile": 99.999} if method == "percentile" else {})},
        )
        m = onnx.load(str(q))
        _write_meta(m, md, "int8", {"kind": "int8-static-qdq", "method": method, "per_channel": per_channel,
                                    "keep_float": keep_float, "calibration_frames": len(batches),
                                    "ops": INT8_OPS})
        _save_atomic(m, onnx_out)
    return onnx_out


def convert_fp16(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike) -> Path:
    """FP16 weights and activations, float32 graph inputs/outputs, decode kept in float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    md = _source_metadata(onnx_in)
    m = onnx.load(str(onnx_in))
    m16 = convert_float_to_float16(m, keep_io_types=True, node_block_list=decode_nodes(m.graph))
    _write_meta(m16, md, "fp16", {"kind": "fp16", "decode": "fp32"})
    _save_atomic(m16, onnx_out)
    return onnx_out


def _save_atomic(model, out: Path) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
