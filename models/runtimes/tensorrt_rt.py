"""TensorRT runtime: an engine built on the target GPU from our ONNX, cached on disk.

Engine cache file = magic + JSON header + serialized engine:

    b"FSTRTENG" | uint32 little-endian header length | header JSON (utf-8) | engine bytes

The header records what the engine is only valid for: TensorRT version, GPU compute capability, the
ONNX file's sha256, the optimisation profile (min/opt/max input shapes) and precision. Any mismatch (or a
damaged file) triggers a rebuild. Builds happen under a `filelock` next to the cache file, so N workers
on one host build once and the others wait and then load the fresh engine.

`tensorrt` is imported lazily: this module imports without it (and without CUDA); everything except the
actual build/run is unit-tested without the library (tests/test_tensorrt_cache.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .base import Outputs, Runtime, RuntimeUnavailable

log = logging.getLogger(__name__)

MAGIC = b"FSTRTENG"
HEADER_FIELDS = ("trt_version", "compute_capability", "onnx_sha256", "profile", "precision")
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "boxes", "landmarks")


# -- cache file --------------------------------------------------------------------------------------


def make_profile(max_batch: int = 32, opt_batch: int = 8, max_side: int = 640, min_side: int = 32,
                 opt_hw: tuple[int, int] | None = None) -> dict:
    """Optimisation profile for input `images` (N, 3, H, W): dynamic batch and H/W (multiples of 32)."""
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    oh, ow = opt_hw or (max_side * 3 // 4 // 32 * 32, max_side)  # 640 -> 480x640 (a 4:3 frame)
    return {
        "input": INPUT_NAME,
        "min": [1, 3, min_side, min_side],
        "opt": [opt_batch, 3, oh, ow],
        "max": [max_batch, 3, max_side, max_side],
    }


def expected_header(trt_version: str, compute_capability: str, onnx_sha256: str, profile: dict,
                    precision: str) -> dict:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {
        "trt_version": str(trt_version),
        "compute_capability": str(compute_capability),
        "onnx_sha256": onnx_sha256,
        "profile": json.loads(json.dumps(profile)),  # lists, not tuples: compares equal after a JSON trip
        "precision": precision,
    }


def engine_path(cache_dir: str | os.PathLike, header: dict) -> Path:
    """One file per (onnx, precision, profile, TRT, GPU) so different configs do not evict each other."""
    key = json.dumps({k: header[k] for k in HEADER_FIELDS}, sort_keys=True).encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return Path(cache_dir) / f"fsdet-{header['onnx_sha256'][:12]}-{header['precision']}-{digest}.engine"


def write_engine(path: str | os.PathLike, header: dict, engine: bytes) -> None:
    """Atomic: temp file + rename, so a reader never sees half an engine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(header, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), engine_bytes=len(engine),
                engine_sha256=hashlib.sha256(engine).hexdigest())
    raw = json.dumps(meta, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(raw)) + raw)
            f.write(engine)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_engine(path: str | os.PathLike, header_only: bool = False) -> tuple[dict, bytes | None] | None:
    """(header, engine bytes) or None when missing or damaged (wrong magic, bad JSON, truncated)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 4)
            if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
                return None
            (n,) = struct.unpack("<I", head[len(MAGIC):])
            header = json.loads(f.read(n))
            if not isinstance(header, dict):
                return None
            if header_only:
                return header, None
            engine = f.read()
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if len(engine) != header.get("engine_bytes", -1) or not engine:
        return None
    if hashlib.sha256(engine).hexdigest() != header.get("engine_sha256"):
        return None  # damaged or altered after it was built: rebuilt, never deserialized
    return header, engine


def header_mismatches(header: dict | None, expected: dict) -> list[str]:
    """Why a cached engine cannot be used (empty list: it can)."""
    if header is None:
        return ["no valid cached engine"]
    return [
        f"{k}: cached {header.get(k)!r} != wanted {expected[k]!r}"
        for k in HEADER_FIELDS
        if header.get(k) != expected[k]
    ]


def load_or_build(path: str | os.PathLike, expected: dict, build: Callable[[], bytes],
                  lock_timeout_s: float = 3600.0) -> tuple[bytes, bool]:
    """(engine bytes, built_now). Uses the cache when its header matches `expected`, else builds once
    under a file lock (other processes wait for it, then re-check and load)."""
    from filelock import FileLock

    from models.cache import check_private

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_private(path.parent)
    if path.exists():
        check_private(path)  # an engine another user could write is never deserialized
    got = read_engine(path)
    if got is not None and not header_mismatches(got[0], expected):
        return got[1], False  # type: ignore[return-value]
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=lock_timeout_s):
        got = read_engine(path)  # someone may have built it while we waited
        reasons = header_mismatches(None if got is None else got[0], expected)
        if not reasons:
            return got[1], False  # type: ignore[index,return-value]
        log.info("building TensorRT engine %s (%s)", path, "; ".join(reasons))
        t0 = time.perf_counter()
        engine = build()
        if not engine:
            raise RuntimeError("TensorRT engine build returned nothing")
        write_engine(path, expected, engine)
        log.info("built TensorRT engine %s in %.1f s", path, time.perf_counter() - t0)
        return engine, True


# -- the library-dependent parts ---------------------------------------------------------------------


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeUnavailable(
            "TensorRT is not installed (pip package `tensorrt`, from NVIDIA's index or a TensorRT base "
            f"image); use runtime='onnx' or 'torch' ({exc})"
        ) from None
    return trt


def build_engine(onnx_path: str | os.PathLike, precision: str, profile: dict, workspace_gb: float = 2.0,
                 calibration_batches: Iterable[np.ndarray] | None = None,
                 calibration_cache: str | os.PathLike | None = None) -> bytes:
    """Serialized engine from an ONNX file (TensorRT >= 8.6 Python API)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    prof = builder.create_optimization_profile()
    prof.set_shape(profile["input"], tuple(profile["min"]), tuple(profile["opt"]), tuple(profile["max"]))
    config.add_optimization_profile(prof)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        cached = calibration_cache is not None and Path(calibration_cache).is_file()
        if calibration_batches is None and not cached:
            raise ValueError("int8 needs calibration frames (`facestream compress quantize --target tensorrt`) "
                             "or the calibration cache they leave beside the engine")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(trt, list(calibration_batches or []), calibration_cache)
        config.set_calibration_profile(prof)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(engine)


def make_calibrator(trt, batches: list[np.ndarray], cache_path: str | os.PathLike | None = None):
    """TensorRT's entropy calibrator over the calibration set (training/compress/calibration.py's square,
    letterboxed frames). The ranges it finds are written to `cache_path` (beside the engine), and read back
    from there when present, so rebuilding the engine (a new TensorRT, another GPU) needs no frames."""
    import torch

    cache = Path(cache_path) if cache_path is not None else None

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches = batches
            self.i = 0
            self.buf = None

        def get_batch_size(self):
            return int(self.batches[0].shape[0]) if self.batches else 1

        def get_batch(self, names):
            if self.i >= len(self.batches):
                return None
            self.buf = torch.from_numpy(np.ascontiguousarray(self.batches[self.i], np.float32)).cuda()
            self.i += 1
            return [int(self.buf.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data):
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(cache.name + ".tmp")
                tmp.write_bytes(bytes(data))
                os.replace(tmp, cache)

    return Calibrator()


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None, precision: str = "fp16", max_batch: int = 32,
                 opt_batch: int = 8, max_side: int = 640, workspace_gb: float = 2.0,
                 calibration_batches: Iterable[np.ndarray] | None = None):
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailable("TensorRT runtime needs a CUDA GPU; none is available")
        if device in (None, "auto"):
            device = "cuda"
        if not str(device).startswith("cuda"):
            raise RuntimeUnavailable(f"TensorRT runs on CUDA devices only, not {device!r}")
        from models.facedet.weights import file_sha256

        self._torch = torch
        self.dev = torch.device(device)
        torch.cuda.set_device(self.dev)
        self.device = str(self.dev)
        self.precision = precision
        self.max_batch = max_batch
        self.max_side = max_side
        cc = "{}.{}".format(*torch.cuda.get_device_capability(self.dev))
        profile = make_profile(max_batch, min(opt_batch, max_batch), max_side)
        expected = expected_header(trt.__version__, cc, file_sha256(onnx_path), profile, precision)
        if cache_dir is None:
            cache_dir = Path(onnx_path).parent
        self.engine_path = engine_path(cache_dir, expected)
        blob, self.built = load_or_build(
            self.engine_path, expected,
            lambda: build_engine(onnx_path, precision, profile, workspace_gb, calibration_batches,
                                 self.engine_path.with_suffix(".calib")),
        )
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._trt_logger).deserialize_cuda_engine(blob)
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load {self.engine_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.dev)

    def infer(self, batch: np.ndarray) -> Outputs:
        torch = self._torch
        n, _, h, w = batch.shape
        if n > self.max_batch or max(h, w) > self.max_side:
            raise ValueError(f"batch {batch.shape} exceeds the engine profile (batch <= {self.max_batch}, "
                             f"side <= {self.max_side})")
        with torch.cuda.device(self.dev), torch.cuda.stream(self.stream):
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.dev, non_blocking=True)
            self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
            self.context.set_tensor_address(INPUT_NAME, int(x.data_ptr()))
            outs = []
            for name in OUTPUT_NAMES:
                shape = tuple(self.context.get_tensor_shape(name))
                o = torch.empty(shape, dtype=torch.float32, device=self.dev)
                self.context.set_tensor_address(name, int(o.data_ptr()))
                outs.append(o)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            res = tuple(o.cpu().numpy() for o in outs)
        self.stream.synchronize()
        return res  # type: ignore[return-value]

    def close(self) -> None:
        self.context = None
        self.engine = None
