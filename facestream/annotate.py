"""The demo's annotated video: each event's boxes drawn on the frame the worker saw, written with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.schema import DetectionEvent


class Annotator:
    """Draw each event's boxes on the payload the worker decoded; write an H.264 MP4 (PyAV)."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.fps = fps
        self.container = None
        self.stream = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def add(self, image: np.ndarray, ev: DetectionEvent) -> None:
        import av
        import cv2

        h, w = image.shape[:2]
        if self.container is None:
            self.size = (w - w % 2, h - h % 2)
            self.container = av.open(str(self.path), "w")
            self.stream = self.container.add_stream("libx264", rate=max(1, round(self.fps)))
            self.stream.width, self.stream.height = self.size
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"preset": "veryfast", "crf": "23"}
        img = np.ascontiguousarray(image).copy()
        sx, sy = w / ev.frame.width, h / ev.frame.height
        for d in ev.detections:
            x1, y1, x2, y2 = (round(v) for v in (d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy))
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 220, 0), 2)
            cv2.putText(img, f"{d.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 220, 0), 1, cv2.LINE_AA)
            for px, py in d.landmarks or []:
                cv2.circle(img, (int(px * sx), int(py * sy)), 2, (0, 0, 255), -1)
        label = f"{ev.camera_id} #{ev.frame.seq}  {len(ev.detections)} faces  {ev.timings_ms.total:.0f} ms"
        cv2.putText(img, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(img, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        if (w, h) != self.size:
            img = cv2.resize(img, self.size)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Path | None:
        if self.container is None:
            return None
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        return self.path
