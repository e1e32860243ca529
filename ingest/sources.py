"""Video sources through PyAV: RTSP/RTSPS cameras, HTTP(S) streams and files.

``VideoSource`` opens a URL with open/read timeouts and yields decoded frames. Every failure is an
:class:`IngestError` carrying an :class:`~core.schema.ErrorReason` (``classify_error``), so the reader's
state machine never has to look at FFmpeg exceptions itself. A live stream that simply *ends*
(what PyAV does when an RTSP server dies) raises ``IngestError(ended)``: for a camera, end of stream
is a failure to reconnect from.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import unquote, urlsplit

import av
import av.error

from core.logging import URL_IN_TEXT_RE, error_words, redact_text, redact_url
from core.schema import ErrorReason

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")
SUPPORTED_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
# FFmpeg "decodes" any text file as ANSI art through the tty demuxer: that is not a camera.
TEXT_FORMATS = {"tty"}
TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}


class IngestError(Exception):
    """A source failure with a reason code; ``str()`` is already redacted."""

    def __init__(self, reason: ErrorReason, detail: str = ""):
        super().__init__(redact_text(detail) or reason.value)
        self.reason = reason
        self.detail = redact_text(detail)


# -- URLs ------------------------------------------------------------------------------------------


def url_scheme(url: str) -> str:
    """'rtsp', 'rtsps', 'http', 'https', or 'file' (a plain path or file:// URL)."""
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].lower()


def is_live_url(url: str) -> bool:
    return url_scheme(url) in LIVE_SCHEMES


def file_path(url: str) -> str:
    """The local path of a file camera: a plain path, or a file:// URL (``file:///abs``,
    ``file://localhost/abs``; percent-escapes decoded)."""
    if not url.lower().startswith("file://"):
        return url
    parts = urlsplit(url)
    return unquote(parts.path)


# "host:554/stream", "ht!tp:/x": a colon before the first slash is a URL gone wrong, not a file path
_NO_SCHEME_RE = re.compile(r"^[^/\\]+:")


def validate_url(url: str) -> str:
    """Check a camera URL; returns it unchanged or raises ValueError with a redacted message.

    Accepted: rtsp://, rtsps://, http(s):// streams, and file paths (absolute or relative, or file://).
    Files are not required to exist at registration (they may live on the ingest host).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("camera URL is empty")
    if url != url.strip() or any(c in url for c in "\r\n\t\0"):
        raise ValueError(f"camera URL has whitespace or control characters: {redact_url(url)!r}")
    if len(url) > 2048:
        raise ValueError("camera URL is longer than 2048 characters")
    scheme = url_scheme(url)
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {scheme!r} in {redact_url(url)!r}: "
            "use rtsp://, rtsps://, http(s):// or a file path"
        )
    if scheme == "file":
        if "://" in url:
            parts = urlsplit(url)
            if parts.username is not None or parts.password is not None:
                raise ValueError(f"file URLs take no user or password: {redact_url(url)!r}")
            if (parts.hostname or "localhost") != "localhost":
                raise ValueError(f"file URL host must be empty or localhost: {redact_url(url)!r}")
        elif _NO_SCHEME_RE.match(url):
            raise ValueError(f"{redact_url(url)!r} looks like a URL without a scheme or '//': "
                             "write rtsp://HOST[:PORT]/PATH (or give a file path)")
        if not file_path(url):
            raise ValueError("file URL has no path")
        return url
    parts = urlsplit(url)
    try:
        host = parts.hostname
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"malformed URL {redact_url(url)!r}: {exc}") from None
    if not host:
        raise ValueError(f"URL has no host: {redact_url(url)!r}")
    if port is not None and not (0 < port < 65536):
        raise ValueError(f"URL port out of range: {redact_url(url)!r}")
    return url


# -- errors ----------------------------------------------------------------------------------------

_AUTH_TEXT = ("401", "unauthorized", "403", "forbidden", "authorization", "authentication")
_NOT_FOUND_TEXT = ("404", "not found", "no such file", "454 session not found")
_TIMEOUT_TEXT = ("timed out", "timeout", "etimedout")


def classify_error(exc: BaseException) -> ErrorReason:
    """Map an exception from PyAV/FFmpeg (or the OS) to an ErrorReason: by type and error code first;
    the words only for FFmpeg replies that come as text (never the URL: core.logging.error_words)."""
    if isinstance(exc, IngestError):
        return exc.reason
    text = URL_IN_TEXT_RE.sub("", error_words(exc)).lower()  # a URL's path or port is no status code
    if isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError, PermissionError)):
        return ErrorReason.auth
    if isinstance(exc, (av.error.HTTPNotFoundError, FileNotFoundError, IsADirectoryError,
                        av.error.ProtocolNotFoundError)):
        return ErrorReason.not_found
    if isinstance(exc, TimeoutError) or getattr(exc, "errno", None) == errno.ETIMEDOUT:
        return ErrorReason.timeout
    # FFmpeg's RTSP demuxer reports server replies as text ("method DESCRIBE failed: 401 Unauthorized")
    if any(t in text for t in _AUTH_TEXT):
        return ErrorReason.auth
    if any(t in text for t in _NOT_FOUND_TEXT):
        return ErrorReason.not_found
    if any(t in text for t in _TIMEOUT_TEXT):
        return ErrorReason.timeout
    if isinstance(exc, (av.error.InvalidDataError, av.error.DecoderNotFoundError,
                        av.error.DemuxerNotFoundError, av.error.PatchWelcomeError)):
        return ErrorReason.codec
    if isinstance(exc, (ConnectionError, av.error.ExitError, av.error.EOFError, OSError, EOFError)):
        return ErrorReason.connection
    if isinstance(exc, av.error.FFmpegError):
        return ErrorReason.connection
    return ErrorReason.invalid


# What an FFmpeg/OS error code means for a camera, in words (status and logs show these).
_WORDS = {
    errno.EIO: "input/output error: the host does not answer (unknown or unreachable host?)",
    errno.ECONNREFUSED: "connection refused: nothing listens on that port",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "the camera closed the connection",
    errno.ETIMEDOUT: "timed out connecting",
}


def describe_error(exc: BaseException) -> str:
    """Short redacted text for status/logs: what happened in words, then the exception type."""
    if isinstance(exc, IngestError):
        return exc.detail or exc.reason.value
    if isinstance(exc, av.error.ExitError):  # our interrupt callback ended a blocking read
        return "stalled: no data from the source within the read timeout (ExitError)"
    words = _WORDS.get(getattr(exc, "errno", None) or -1) or error_words(exc) or str(exc)
    return redact_text(f"{words} ({type(exc).__name__})")[:300]


# -- decoded frames --------------------------------------------------------------------------------


@dataclass
class DecodedFrame:
    frame: av.VideoFrame
    pts: int | None
    time_base: Fraction | None
    t: float | None  # pts in seconds (None when the stream has no timestamps)
    capture_ns: int  # wall clock when decoded
    decode_ms: float  # demux + decode time of this frame (amortised over packets)

    @property
    def width(self) -> int:
        return self.frame.width

    @property
    def height(self) -> int:
        return self.frame.height


@dataclass
class SourceOptions:
    transport: str = "tcp"  # rtsp only
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    analyzeduration_us: int = 200_000
    thread_type: str = "SLICE"  # "SLICE" keeps latency at one frame; "AUTO" adds frame threads
    threads: int = 0  # 0: FFmpeg's choice
    buffer_size: int = 4 * 1024 * 1024  # UDP receive buffer


def av_options(url: str, opts: SourceOptions) -> dict[str, str]:
    scheme = url_scheme(url)
    o: dict[str, str] = {}
    if scheme in ("rtsp", "rtsps"):
        o["rtsp_transport"] = opts.transport
        o["analyzeduration"] = str(opts.analyzeduration_us)
        o["probesize"] = "500000"
        if opts.transport == "udp":
            o["buffer_size"] = str(opts.buffer_size)
            o["fifo_size"] = "1000000"
        # FFmpeg's own socket timeout (microseconds) as a second line of defence
        o["timeout"] = str(int(opts.read_timeout_s * 1_000_000))
    elif scheme in ("http", "https"):
        o["analyzeduration"] = str(opts.analyzeduration_us)
        o["rw_timeout"] = str(int(opts.read_timeout_s * 1_000_000))
        o["reconnect"] = "0"
    return o


class VideoSource:
    """One open container and its first video stream. Use as a context manager.

    ``frames()`` yields :class:`DecodedFrame`; raises :class:`IngestError` on any failure, and at the
    end of a live stream (``live=True``) raises ``IngestError(ended)`` instead of returning.
    """

    def __init__(self, url: str, options: SourceOptions | None = None, live: bool | None = None):
        self.url = url
        self.options = options or SourceOptions()
        self.live = is_live_url(url) if live is None else live
        self.container: av.container.InputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.packets = 0
        self.decode_errors = 0
        self.decoded = 0

    # -- open/close ---------------------------------------------------------------------------------
    def open(self) -> VideoSource:
        scheme = url_scheme(self.url)
        target = file_path(self.url) if scheme == "file" else self.url
        if scheme == "file":
            if not os.path.exists(target):
                raise IngestError(ErrorReason.not_found, f"no such file: {target}")
            if os.path.isdir(target):
                raise IngestError(ErrorReason.not_found, f"is a directory: {target}")
            if os.path.getsize(target) == 0:
                raise IngestError(ErrorReason.codec, f"empty file: {target}")
        t0 = time.monotonic()
        try:
            self.container = av.open(
                target,
                options=av_options(self.url, self.options),
                timeout=(self.options.open_timeout_s, self.options.read_timeout_s),
            )
        except Exception as exc:
            reason = self._timed_out(exc, time.monotonic() - t0)
            raise IngestError(reason, describe_error(exc)) from None
        videos = [s for s in self.container.streams if s.type == "video"]
        if not videos:
            self.close()
            raise IngestError(ErrorReason.codec, f"no video stream in {redact_url(self.url)}")
        self.stream = videos[0]
        fmt = getattr(self.container.format, "name", "") or ""
        if fmt in TEXT_FORMATS or (self.stream.codec_context.name or "") in TEXT_CODECS:
            self.close()
            raise IngestError(ErrorReason.codec, f"not a video: {redact_url(self.url)} reads as {fmt!r} text")
        if self.stream.codec_context is None or not self.stream.codec_context.name:
            self.close()
            raise IngestError(ErrorReason.codec, "video stream has no decoder")
        try:
            self.stream.thread_type = self.options.thread_type
            if self.options.threads:
                self.stream.codec_context.thread_count = self.options.threads
        except Exception:  # pragma: no cover - depends on the codec
            pass
        return self

    def close(self) -> None:
        c, self.container, self.stream = self.container, None, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.close()

    def __enter__(self) -> VideoSource:
        if self.container is None:
            self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _timed_out(self, exc: BaseException, waited_s: float) -> ErrorReason:
        """classify_error, except that a failure after waiting out a timeout IS a timeout: FFmpeg's
        interrupt callback often surfaces as InvalidDataError or ExitError rather than ETIMEDOUT."""
        reason = classify_error(exc)
        limit = min(self.options.open_timeout_s, self.options.read_timeout_s)
        if reason in (ErrorReason.codec, ErrorReason.connection, ErrorReason.invalid) and \
                self.live and waited_s >= 0.9 * limit:
            return ErrorReason.timeout
        return reason

    # -- info ---------------------------------------------------------------------------------------
    @property
    def codec_name(self) -> str:
        return self.stream.codec_context.name if self.stream is not None else ""

    @property
    def average_fps(self) -> float | None:
        if self.stream is None:
            return None
        r = self.stream.average_rate or self.stream.guessed_rate
        return float(r) if r else None

    @property
    def frame_count(self) -> int:
        return int(self.stream.frames or 0) if self.stream is not None else 0

    # -- decoding -----------------------------------------------------------------------------------
    def frames(self, max_decode_errors: int = 50) -> Iterator[DecodedFrame]:
        if self.container is None:
            self.open()
        assert self.container is not None and self.stream is not None
        stream = self.stream
        tb = stream.time_base  # decoded frames carry the stream's time base: no Fraction math per frame
        tbf = float(tb) if tb else 0.0
        last_frame = time.monotonic()
        consecutive_errors = 0
        t0 = time.perf_counter()
        last_packet = time.monotonic()
        try:
            demux = self.container.demux(stream)
            while True:
                try:
                    packet = next(demux)
                except StopIteration:
                    break
                last_packet = time.monotonic()
                self.packets += 1
                try:
                    decoded = packet.decode()
                except (av.error.InvalidDataError, av.error.PatchWelcomeError) as exc:
                    # a damaged packet: skip it, but a stream of nothing but damage is a codec failure
                    self.decode_errors += 1
                    consecutive_errors += 1
                    if consecutive_errors >= max_decode_errors:
                        raise IngestError(ErrorReason.codec, f"{consecutive_errors} undecodable packets: "
                                          f"{describe_error(exc)}") from None
                    continue
                if not decoded:
                    if self.live and time.monotonic() - last_frame > self.options.read_timeout_s:
                        raise IngestError(ErrorReason.timeout, "packets but no decoded frame within the "
                                          f"read timeout ({self.options.read_timeout_s:g}s)")
                    continue
                consecutive_errors = 0
                t1 = time.perf_counter()
                per = (t1 - t0) * 1000.0 / len(decoded)
                t0 = t1
                for frame in decoded:
                    last_frame = time.monotonic()
                    self.decoded += 1
                    pts = frame.pts if frame.pts is not None else frame.dts
                    t = pts * tbf if pts is not None and tbf else None
                    yield DecodedFrame(frame, pts, tb, t, time.time_ns(), per)
                t0 = time.perf_counter()
        except IngestError:
            raise
        except GeneratorExit:
            raise
        except Exception as exc:
            reason = self._timed_out(exc, time.monotonic() - last_packet)
            raise IngestError(reason, describe_error(exc)) from None
        # flush the decoder (files): frames buffered by frame threads
        try:
            for frame in stream.codec_context.decode(None):
                pts = frame.pts
                t = pts * tbf if pts is not None and tbf else None
                self.decoded += 1
                yield DecodedFrame(frame, pts, tb, t, time.time_ns(), 0.0)
        except Exception:
            pass
        if self.live:
            raise IngestError(ErrorReason.ended, "stream ended")
        if self.packets == 0:
            raise IngestError(ErrorReason.codec, "no video packets in the input")
        if self.decoded == 0:
            raise IngestError(ErrorReason.codec, f"no decodable frame in {self.packets} packets "
                              f"({self.decode_errors} damaged)")
