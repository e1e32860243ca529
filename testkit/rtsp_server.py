#!/usr/bin/python3
"""A real RTSP server for tests: GStreamer's gst-rtsp-server through GObject introspection.

Run with Debian's Python (it has ``gi``), not the project venv::

    /usr/bin/python3 testkit/rtsp_server.py --clip clip.mp4 --port 8554 --path /cam \
        [--user u --password p] [--no-loop] [--shared] [--encode auto|copy|x264] [--max-frames N]

The clip is read once into memory as H.264 access units (copied when it is H.264, else re-encoded
with x264 at start), then fed to an ``appsrc`` with rewritten timestamps: paced at real time by the
clock (``identity sync=true``) and looped forever like a live camera (``--no-loop``: EOS at the end).

Protocol with the parent (stdout, one line each): ``READY <port>`` once listening, ``CLIENT`` for
each client connection, ``ERROR <text>`` before exiting non-zero. The server exits on SIGTERM/SIGINT
and when its stdin closes (the parent died).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

H264_AU = "video/x-h264,stream-format=byte-stream,alignment=au"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def load_access_units(clip: str, encode: str, fps_hint: float, max_frames: int = 0
                      ) -> tuple[Gst.Caps, list, int]:
    """Return (caps, [(pts_ns, dts_ns, delta_unit, bytes)], loop_duration_ns)."""
    loc = clip.replace("\\", "\\\\").replace('"', '\\"')
    copy = (
        f'filesrc location="{loc}" ! parsebin ! h264parse config-interval=-1 ! {H264_AU} '
        "! appsink name=sink sync=false"
    )
    x264 = (
        f'filesrc location="{loc}" ! decodebin ! videoconvert ! video/x-raw,format=I420 '
        "! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max=30 threads=1 sliced-threads=false "
        f"! h264parse config-interval=-1 ! {H264_AU} ! appsink name=sink sync=false"
    )
    attempts = {"copy": [copy], "x264": [x264], "auto": [copy, x264]}[encode]
    last_err = "no attempt"
    for desc in attempts:
        pipeline = Gst.parse_launch(desc)
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(Gst.State.PLAYING)
        units, caps = [], None
        bus = pipeline.get_bus()
        error = None
        while True:
            sample = sink.emit("try-pull-sample", Gst.SECOND // 2)
            if sample is None:
                msg = bus.pop_filtered(Gst.MessageType.ERROR)
                if msg is not None:
                    err, dbg = msg.parse_error()
                    error = f"{err.message} ({dbg})"
                    break
                if sink.get_property("eos"):
                    break
                continue
            buf = sample.get_buffer()
            caps = caps or sample.get_caps()
            ok, info = buf.map(Gst.MapFlags.READ)
            data = GLib.Bytes.new(bytes(info.data))
            buf.unmap(info)
            units.append((buf.pts, buf.dts, bool(buf.get_flags() & Gst.BufferFlags.DELTA_UNIT), data))
            if max_frames and len(units) >= max_frames:
                break
        pipeline.set_state(Gst.State.NULL)
        if error is not None:
            last_err = error
            continue
        if units and desc is copy and encode == "auto" and max_slices(units) > 1:
            last_err = "multi-slice frames"  # RTP clients mis-decode them here: re-encode single-slice
            continue
        if units:
            break
    else:
        raise RuntimeError(f"cannot read H.264 from {clip}: {last_err}")

    st = caps.get_structure(0)
    ok, num, den = st.get_fraction("framerate")
    fps = num / den if ok and num > 0 and den > 0 else fps_hint
    frame_ns = round(1e9 / fps)
    # Normalise timestamps: PTS from 0; missing ones are synthesised at the nominal frame rate.
    none = Gst.CLOCK_TIME_NONE
    have_pts = all(u[0] != none for u in units)
    first = min(u[0] for u in units) if have_pts else 0
    out = []
    for i, (pts, dts, delta, data) in enumerate(units):
        p = pts - first if have_pts else i * frame_ns
        d = (dts - first) if (have_pts and dts != none and dts >= first) else p
        out.append((p, min(d, p), delta, data))
    duration = max(u[0] for u in out) + frame_ns
    return caps, out, duration


def max_slices(units: list, sample: int = 30) -> int:
    """Largest number of coded-slice NAL units (types 1 and 5) in one access unit (first frames)."""
    most = 0
    for u in units[:sample]:
        data = u[3].get_data()
        n = sum(1 for part in data.split(b"\x00\x00\x01")[1:] if part and (part[0] & 0x1F) in (1, 5))
        most = max(most, n)
    return most


class Feeder:
    """Pushes the clip's access units into one appsrc, looping with increasing timestamps."""

    def __init__(self, appsrc: Gst.Element, units: list, duration: int, loop: bool):
        self.appsrc, self.units, self.duration, self.loop = appsrc, units, duration, loop
        self.i = 0
        self.offset = 0
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, src: Gst.Element, _length: int) -> None:
        for _ in range(8):
            if self.i >= len(self.units):
                if not self.loop:
                    src.emit("end-of-stream")
                    return
                self.i = 0
                self.offset += self.duration
            pts, dts, delta, data = self.units[self.i]
            self.i += 1
            buf = Gst.Buffer.new_wrapped_bytes(data)
            buf.pts = pts + self.offset
            buf.dts = dts + self.offset
            if delta:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return


class Factory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, caps: Gst.Caps, units: list, duration: int, loop: bool):
        super().__init__()
        self.caps, self.units, self.duration, self.loop = caps, units, duration, loop
        self.feeders: list[Feeder] = []
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=false max-bytes=2000000 "
            "! identity sync=true ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.connect("media-configure", self.on_configure)

    def on_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name("src")
        src.set_property("caps", self.caps)
        feeder = Feeder(src, self.units, self.duration, self.loop)
        self.feeders.append(feeder)
        media.connect("unprepared", lambda *_: self.feeders.remove(feeder) if feeder in self.feeders else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--no-loop", action="store_true")
    ap.add_argument("--shared", action="store_true", help="one pipeline for all clients (live camera)")
    ap.add_argument("--encode", choices=["auto", "copy", "x264"], default="auto")
    ap.add_argument("--fps", type=float, default=25.0, help="frame rate when the clip has none")
    ap.add_argument("--max-frames", type=int, default=0, help="serve only the first N frames (0: all)")
    args = ap.parse_args()

    Gst.init(None)
    try:
        caps, units, duration = load_access_units(args.clip, args.encode, args.fps, args.max_frames)
    except Exception as exc:
        say(f"ERROR {exc}")
        return 2

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = Factory(caps, units, duration, loop=not args.no_loop)
    factory.set_shared(args.shared)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions.new()
        perms.add_role_from_structure(
            Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
        factory.set_permissions(perms)

    server.get_mount_points().add_factory(args.path, factory)
    server.connect("client-connected", lambda *_: say("CLIENT"))
    if server.attach(None) == 0:
        say(f"ERROR cannot listen on {args.host}:{args.port} (port busy?)")
        return 3

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        GLib.idle_add(loop.quit)

    threading.Thread(target=watch_stdin, daemon=True).start()
    say(f"READY {args.port}")
    loop.run()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    os._exit(rc)  # the stdin watcher thread may still block in read()
