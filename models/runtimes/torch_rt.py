"""PyTorch runtime: CPU fp32, or CUDA with fp16, channels_last and optional CUDA graphs.

CUDA graphs: one graph per input shape (N, 3, H, W), captured on first use after a warm-up; fixed-shape
traffic (one camera resolution, a fixed batch) then replays with almost no launch overhead. Shapes beyond
`max_graphs` run eagerly.
"""

from __future__ import annotations

import numpy as np

from .base import Outputs, Runtime, RuntimeUnavailable


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, model, device=None, fp16: bool | None = None, channels_last: bool | None = None,
                 cuda_graphs: bool = False, max_graphs: int = 16, threads: int | None = None,
                 device_preprocess: bool | None = None, max_batch: int | None = None):
        import torch

        if threads:
            # process-wide; on a shared CPU, more OpenMP threads than free cores is very slow (spin-waits)
            torch.set_num_threads(int(threads))
        if device is None or device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailable(f"torch runtime: device {device!r} requested but CUDA is not available")
        on_gpu = dev.type == "cuda"
        self.fp16 = on_gpu if fp16 is None else bool(fp16)
        if self.fp16 and not on_gpu:
            raise RuntimeUnavailable("torch runtime: fp16 needs a CUDA device")
        self.channels_last = on_gpu if channels_last is None else bool(channels_last)
        self.cuda_graphs = bool(cuda_graphs) and on_gpu
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, tuple] = {}
        self._torch = torch
        self.dev = dev
        self.device = str(dev)
        self.precision = "fp16" if self.fp16 else "fp32"
        m = model.eval().to(dev)
        if self.fp16:
            m = m.half()
        if self.channels_last:
            m = m.to(memory_format=torch.channels_last)
        self.model = m
        self.dtype = torch.float16 if self.fp16 else torch.float32
        # letterbox + NMS on the device, uint8 uploads (torch_batch.py); the default on CUDA
        self.device_preprocess = on_gpu if device_preprocess is None else bool(device_preprocess)
        self.max_batch = max_batch
        self._batch_path = None

    def detect_frames(self, frames: list, input_size: int, multiple: int, post, landmarks: bool = True):
        """uint8 frames (numpy or device tensors) -> Detections in original pixels, all on the device."""
        if self._batch_path is None:
            from .torch_batch import DeviceBatchPath

            self._batch_path = DeviceBatchPath(self, max_batch=self.max_batch or 64)
        return self._batch_path.detect(frames, input_size, multiple, post, landmarks)

    def _prep(self, x):
        x = x.to(self.dev, non_blocking=True).to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=self._torch.channels_last)
        return x

    def _eager(self, x):
        with self._torch.inference_mode():
            return self.model(self._prep(x))

    def _graphed(self, x):
        torch = self._torch
        key = tuple(x.shape)
        g = self._graphs.get(key)
        if g is None:
            if len(self._graphs) >= self.max_graphs:
                return self._eager(x)
            static_in = self._prep(x).clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s), torch.inference_mode():
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.model(static_in)
            g = self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = g
        static_in.copy_(self._prep(x))
        graph.replay()
        return static_out

    def infer_tensor(self, x):
        """Device tensors in, device tensors out (fp16 on GPU); for benchmarks and GPU pipelines."""
        return self._graphed(x) if self.cuda_graphs else self._eager(x)

    def infer(self, batch: np.ndarray) -> Outputs:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.dev.type == "cuda":
            x = x.pin_memory()
        outs = self.infer_tensor(x)
        return tuple(o.float().cpu().numpy() for o in outs)  # type: ignore[return-value]

    def close(self) -> None:
        self._graphs.clear()
