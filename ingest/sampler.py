"""Sample decoded frames down to the camera's detect fps by presentation time (PTS).

Not by wall clock (a file decodes faster than real time; network jitter bunches frames) and not by
frame count (variable frame rate, dropped packets). The sampler keeps the first frame at or after each
tick of a ``1/fps`` grid anchored on the first frame's PTS; when the source skips more than a period
(packet loss) the grid re-anchors instead of emitting a burst to "catch up". A PTS that jumps backwards
or forwards by more than ``reset_gap_s`` (reconnect, looping file, camera clock reset) restarts the grid;
a PTS a little behind the last one (B-frames in decode order, RTP jitter: up to ``BACKWARD_JITTER_S``) is
an out-of-order frame on the same grid, not a reset (resetting there kept ~every frame).
"""

from __future__ import annotations

import time


class PtsSampler:
    EPS = 1e-3  # seconds: rounding of PTS * time_base (RTP clock is 1/90000)
    NO_PTS_GRACE = 3  # frames without PTS skipped before falling back to the wall clock
    BACKWARD_JITTER_S = 1.0  # PTS this far behind the newest one is reordering, not a discontinuity

    def __init__(self, fps: float, reset_gap_s: float = 5.0):
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self.reset_gap_s = max(reset_gap_s, 2 * self.period)
        self.next_t: float | None = None
        self.last_t: float | None = None
        self.seen = 0
        self.kept = 0
        self.resets = 0
        self.pts_seen = False
        self._no_pts = 0

    def reset(self) -> None:
        self.next_t = None
        self.last_t = None
        self.pts_seen = False
        self._no_pts = 0

    def accept(self, t: float | None, wall: float | None = None) -> bool:
        """True if the frame with presentation time ``t`` (seconds) should be kept.

        ``t=None``: skipped while the stream has PTS; a stream without any falls back to the monotonic
        wall clock (``wall``, default time.monotonic()).
        """
        self.seen += 1
        if t is None:
            # RTSP's first frames often lack a PTS: wait for timestamped ones; a stream that never has
            # any (e.g. MJPEG over HTTP) falls back to the wall clock after a few frames.
            self._no_pts += 1
            if self.pts_seen or self._no_pts <= self.NO_PTS_GRACE:
                return False
            t = time.monotonic() if wall is None else wall
        else:
            self.pts_seen = True
            self._no_pts = 0
        if self.last_t is not None and (t < self.last_t - max(self.BACKWARD_JITTER_S, 2 * self.period)
                                        or t - self.last_t > self.reset_gap_s):
            self.resets += 1
            self.next_t = None
            self.last_t = t
        elif self.last_t is not None and t < self.last_t - self.EPS:
            return False  # out of order, behind a frame already judged: its tick has been served
        self.last_t = t
        if self.next_t is not None and t < self.next_t - self.EPS:
            return False
        if self.next_t is None or t - self.next_t >= self.period:
            self.next_t = t + self.period  # (re)anchor: first frame or a gap of more than a period
        else:
            self.next_t += self.period
        self.kept += 1
        return True
