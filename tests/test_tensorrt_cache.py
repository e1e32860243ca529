"""TensorRT engine cache: header, mismatch -> rebuild, damaged file, one build under a lock.

Runs without TensorRT (the build function is a stand-in); the real build/run is in tests/gpu/."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from models.runtimes import tensorrt_rt as T

pytestmark = pytest.mark.timeout(120)


def _expected(**over):
    h = dict(trt_version="10.3.0", compute_capability="9.0", onnx_sha256="ab" * 32,
             profile=T.make_profile(32, 8, 640), precision="fp16")
    h.update(over)
    return T.expected_header(**h)


def test_module_imports_without_tensorrt():
    from models.runtimes.base import tensorrt_importable

    assert "tensorrt" not in T.__dict__  # imported lazily
    if not tensorrt_importable():
        with pytest.raises(T.RuntimeUnavailable, match="TensorRT is not installed"):
            T.import_tensorrt()


def test_profile():
    p = T.make_profile(max_batch=64, opt_batch=16, max_side=640)
    assert p == {"input": "images", "min": [1, 3, 32, 32], "opt": [16, 3, 480, 640], "max": [64, 3, 640, 640]}
    with pytest.raises(ValueError):
        T.make_profile(max_batch=4, opt_batch=8)


def test_header_roundtrip(tmp_path):
    exp = _expected()
    p = T.engine_path(tmp_path, exp)
    T.write_engine(p, exp, b"ENGINE" * 10)
    header, blob = T.read_engine(p)
    assert blob == b"ENGINE" * 10
    assert T.header_mismatches(header, exp) == []
    assert header["engine_bytes"] == 60 and "created" in header
    assert T.read_engine(p, header_only=True)[1] is None


@pytest.mark.parametrize("field,value", [
    ("trt_version", "10.4.0"), ("compute_capability", "8.6"), ("onnx_sha256", "cd" * 32),
    ("profile", T.make_profile(64, 8, 640)), ("precision", "int8"),
])
def test_any_mismatch_rebuilds(tmp_path, field, value):
    old = _expected()
    p = tmp_path / "e.engine"
    T.write_engine(p, old, b"old")
    new = _expected(**{field: value})
    reasons = T.header_mismatches(T.read_engine(p)[0], new)
    assert len(reasons) == 1 and reasons[0].startswith(field)
    blob, built = T.load_or_build(p, new, lambda: b"new")
    assert (blob, built) == (b"new", True)
    assert T.header_mismatches(T.read_engine(p)[0], new) == []
    blob, built = T.load_or_build(p, new, lambda: pytest.fail("must not rebuild"))
    assert (blob, built) == (b"new", False)


def test_engine_path_differs_per_config(tmp_path):
    a = T.engine_path(tmp_path, _expected())
    assert a == T.engine_path(tmp_path, _expected())
    assert a != T.engine_path(tmp_path, _expected(precision="fp32"))
    assert a != T.engine_path(tmp_path, _expected(profile=T.make_profile(8, 8, 640)))


@pytest.mark.parametrize("damage", ["truncate", "magic", "json", "empty"])
def test_damaged_file_rebuilds(tmp_path, damage):
    exp = _expected()
    p = tmp_path / "e.engine"
    T.write_engine(p, exp, b"x" * 100)
    data = p.read_bytes()
    p.write_bytes({"truncate": data[:-10], "magic": b"NOTMAGIC" + data[8:],
                   "json": data[:12] + b"{{{" + data[15:], "empty": b""}[damage])
    assert T.read_engine(p) is None
    assert T.load_or_build(p, exp, lambda: b"rebuilt") == (b"rebuilt", True)


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        _expected(precision="fp8")


def _worker(path: str, counter: str, start: float) -> None:
    while time.time() < start:
        time.sleep(0.001)

    def build():
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(0.3)  # a slow build: everyone else must wait for it
        return b"ENGINE"

    blob, _ = T.load_or_build(path, _expected(), build)
    assert blob == b"ENGINE"


def test_n_processes_build_once(tmp_path):
    path = str(tmp_path / "e.engine")
    counter = tmp_path / "builds.txt"
    ctx = mp.get_context("fork")
    start = time.time() + 0.3
    procs = [ctx.Process(target=_worker, args=(path, str(counter), start)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert Path(counter).read_text().count("built") == 1
    assert T.read_engine(path)[1] == b"ENGINE"


def test_runtime_without_tensorrt_is_a_clear_error(tmp_path):
    from models.runtimes.base import cuda_available, tensorrt_importable

    if tensorrt_importable() and cuda_available():
        pytest.skip("TensorRT and CUDA present: the real runtime is tested in tests/gpu/")
    with pytest.raises(T.RuntimeUnavailable):
        T.TensorRTRuntime(tmp_path / "x.onnx")


def test_an_altered_engine_is_never_loaded(tmp_path):
    from models.runtimes.tensorrt_rt import read_engine, write_engine

    p = tmp_path / "e.engine"
    write_engine(p, {"a": 1}, b"engine-bytes")
    assert read_engine(p)[1] == b"engine-bytes"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF  # same length, other bytes: an engine swapped after the build
    p.write_bytes(bytes(raw))
    assert read_engine(p) is None


def test_cache_files_others_can_write_are_refused(tmp_path):
    import os

    import pytest

    from models.cache import check_private
    from models.facedet.weights import ModelFileError

    f = tmp_path / "x.onnx"
    f.write_bytes(b"x")
    os.chmod(f, 0o644)
    check_private(f)
    os.chmod(f, 0o666)
    with pytest.raises(ModelFileError, match="writable by other users"):
        check_private(f)


def test_int8_calibration_cache_is_written_beside_the_engine_and_read_back(tmp_path):
    """TensorRT calls write_calibration_cache after calibrating; a rebuild reads the ranges back, no frames."""

    class FakeTrt:  # only the calibrator base class is needed; the real build is in tests/gpu/
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

    cache = tmp_path / "engines" / "fsdet-x-int8.calib"
    first = T.make_calibrator(FakeTrt, [], cache)
    assert first.read_calibration_cache() is None and first.get_batch(["images"]) is None
    first.write_calibration_cache(b"TRT-8600-EntropyCalibration2\nimages: 3c010a14\n")
    again = T.make_calibrator(FakeTrt, [], cache)
    assert again.read_calibration_cache() == b"TRT-8600-EntropyCalibration2\nimages: 3c010a14\n"
    assert not list(cache.parent.glob("*.tmp"))
