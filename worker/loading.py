"""Load the detector the worker settings describe, and say loudly when a GPU host ends up on the CPU."""

from __future__ import annotations

from typing import Any

from core.settings import Settings


class DetectorLoadError(RuntimeError):
    """No usable detector (missing weights, bad file, runtime unavailable); message says what to do."""


def _runtime_options(ws) -> dict:
    """The settings that only one runtime takes."""
    from models.detector import pick_runtime

    rt = pick_runtime(ws.runtime, None if ws.device == "auto" else ws.device)
    if rt == "torch":
        return {"cuda_graphs": ws.cuda_graphs, "max_batch": ws.max_batch}
    return {"pin_shapes": ws.pin_shapes} if rt in ("onnx", "openvino") else {}  # auto may move an INT8 file to openvino


def load_worker_detector(settings: Settings):
    """The detector the worker settings describe; DetectorLoadError with a clear message otherwise."""
    ws = settings.worker
    try:
        from models.detector import load_detector

        return load_detector(
            runtime=ws.runtime,
            weights=ws.weights or None,
            threshold=ws.threshold,
            nms_iou=ws.nms_iou,
            max_detections=ws.max_detections,
            input_size=ws.input_size,
            device=None if ws.device == "auto" else ws.device,
            threads=ws.threads or None,
            **_runtime_options(ws),
        )
    except Exception as exc:
        raise DetectorLoadError(f"cannot load the face detector: {exc}") from exc


def device_warning(detector: Any) -> str:
    """A loud line when a GPU host ends up inferring on the CPU ('' otherwise)."""
    from models.detector import gpu_present

    device = str(getattr(getattr(detector, "runtime", None), "device", "cpu"))  # test detectors have none
    evidence = gpu_present()
    if device.startswith("cpu") and evidence:
        return (f"WORKER ON CPU although this host has an NVIDIA GPU ({evidence}): runtime "
                f"{detector.info.runtime} on {device}. Install the CUDA build of torch (or onnxruntime-gpu / "
                "TensorRT) or set FACESTREAM_WORKER__DEVICE=cuda to fail instead of running slowly.")
    return ""
