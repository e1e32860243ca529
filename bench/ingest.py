"""Ingest overhead benchmark: PyAV bare decode vs the full ingest path on the same file, same run.

    .venv/bin/python bench/ingest.py [--files A.mp4 B.mp4] [--repeat 10] [--fps 5] [--detect-size 640]

Without --files it uses /work/shared/data/videos/street-1080p.mp4 (or ../shared/...) and a 720p
transcode of it made with PyAV (cached under /tmp). Each round runs, alternately:

- bare:   ``for frame in container.decode(stream)`` (nothing else);
- ingest: ``ingest.sources.VideoSource.frames()`` -> ``PtsSampler`` (detect fps, by PTS) ->
          ``Encoder`` (resize to detect size + JPEG) -> ``Publisher.publish`` (SET PX + XADD MAXLEN,
          pipelined, real Redis under a private prefix that is deleted afterwards).

Both decode with the same threading (``--thread-type``, default SLICE, one thread: per-core numbers).
Frames/s are reported per wall second and per CPU second of this process (``time.process_time``);
the ratio ingest/bare is the ingest overhead figure (target >= 0.85). The two arms run back to back
``--repeat`` times (order alternating); the reported ratio is the median of the per-round ratios,
which cancels slow drift in a shared machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

DEFAULT_1080 = [ROOT.parent / "shared/data/videos/street-1080p.mp4", Path("/work/shared/data/videos/street-1080p.mp4")]


def transcode(src: Path, dst: Path, height: int, loops: int = 3) -> Path:
    """H.264 copy of ``src`` scaled to ``height`` (medium-ish x264 settings), looped ``loops`` times."""
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        s_in = inp.streams.video[0]
        rate = s_in.average_rate or Fraction(25)
        w = round(s_in.width * height / s_in.height / 2) * 2
        s_out = out.add_stream("libx264", rate=rate)
        s_out.width, s_out.height, s_out.pix_fmt = w, height, "yuv420p"
        s_out.options = {"preset": "veryfast", "crf": "23", "g": "50", "bf": "0"}
        frames = [f.reformat(width=w, height=height, format="yuv420p") for f in inp.decode(s_in)]
        i = 0
        for _ in range(loops):
            for f in frames:
                nf = av.VideoFrame.from_ndarray(f.to_ndarray(), format="yuv420p")
                nf.pts = i
                nf.time_base = Fraction(1, int(rate)) if rate.denominator == 1 else 1 / rate
                i += 1
                for p in s_out.encode(nf):
                    out.mux(p)
        for p in s_out.encode(None):
            out.mux(p)
    tmp.rename(dst)
    return dst


def bare_decode(path: str, thread_type: str, threads: int) -> tuple[int, float, float]:
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = thread_type
        s.codec_context.thread_count = threads
        w0, c0 = time.perf_counter(), time.process_time()
        n = 0
        for _ in c.decode(s):
            n += 1
        return n, time.perf_counter() - w0, time.process_time() - c0


def ingest_path(path: str, r, keys, fps: float, detect_size: int, thread_type: str, threads: int):
    from core.schema import Source
    from ingest.encoder import Encoder
    from ingest.publisher import OutFrame, Publisher
    from ingest.sampler import PtsSampler
    from ingest.sources import SourceOptions, VideoSource

    pub = Publisher(r, keys, maxlen=1000, payload_ttl_ms=30_000)
    enc = Encoder(detect_size, "jpeg", 90)
    sampler = PtsSampler(fps)
    opts = SourceOptions(thread_type=thread_type, threads=threads)
    n = published = 0
    w0, c0 = time.perf_counter(), time.process_time()
    with VideoSource(path, opts, live=False) as src:
        for df in src.frames():
            n += 1
            if not sampler.accept(df.t):
                continue
            e = enc.encode(df.frame)
            pub.publish([OutFrame("bench", e, df.width, df.height, df.pts, str(df.time_base), df.capture_ns,
                                  df.decode_ms, Source(kind="live"))])
            published += 1
    return n, published, time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--detect-size", type=int, default=640)
    ap.add_argument("--thread-type", default="SLICE")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from core.bus import connect, delete_prefix
    from core.keys import Keys
    from core.settings import get_settings

    if args.files:
        files = [Path(f) for f in args.files]
    else:
        src = next((p for p in DEFAULT_1080 if p.exists()), None)
        if src is None:
            print("no default clip found; pass --files", file=sys.stderr)
            return 2
        cache = Path(os.environ.get("TMPDIR", "/tmp")) / "facestream-bench"
        cache.mkdir(exist_ok=True)
        files = [transcode(src, cache / "street-720p-x3.mp4", 720), transcode(src, cache / "street-1080p-x3.mp4", 1080)]

    settings = get_settings()
    r = connect(settings.redis)
    keys = Keys(f"bench-ingest-{uuid.uuid4().hex[:8]}")
    rows = []
    try:
        for f in files:
            with av.open(str(f)) as c:
                s = c.streams.video[0]
                desc = f"{s.width}x{s.height} {s.codec_context.name} {float(s.average_rate or 0):g} fps " \
                       f"{(s.bit_rate or c.bit_rate or 0) / 1e6:.1f} Mb/s"
            ingest_path(str(f), r, keys, args.fps, args.detect_size, args.thread_type, args.threads)  # warm-up
            bares, ings, ratios = [], [], []
            for i in range(args.repeat):
                # alternate the order so drift in the machine's load hits both arms alike
                if i % 2:
                    ing = ingest_path(str(f), r, keys, args.fps, args.detect_size, args.thread_type, args.threads)
                    b = bare_decode(str(f), args.thread_type, args.threads)
                else:
                    b = bare_decode(str(f), args.thread_type, args.threads)
                    ing = ingest_path(str(f), r, keys, args.fps, args.detect_size, args.thread_type, args.threads)
                bares.append(b)
                ings.append(ing)
                ratios.append((ing[0] / ing[3]) / (b[0] / b[2]))
            nb = bares[0][0]
            npub = ings[0][1]
            row = dict(file=f.name, desc=desc, frames=nb,
                       bare_cpu=statistics.median(x[0] / x[2] for x in bares),
                       ing_cpu=statistics.median(x[0] / x[3] for x in ings),
                       bare_best=max(x[0] / x[2] for x in bares), ing_best=max(x[0] / x[3] for x in ings),
                       published=npub, ratio_cpu=statistics.median(ratios),
                       ratio_q=(sorted(ratios)[len(ratios) // 4], sorted(ratios)[(3 * len(ratios)) // 4]),
                       ratio_wall=statistics.median((i[0] / i[2]) / (b[0] / b[1])
                                                    for b, i in zip(bares, ings, strict=True)))
            rows.append(row)
            print(f"{row['file']}: {desc}: bare {row['bare_cpu']:.1f} fps/core, ingest {row['ing_cpu']:.1f} "
                  f"fps/core, ratio {row['ratio_cpu']:.3f} (IQR {row['ratio_q'][0]:.3f}-{row['ratio_q'][1]:.3f}; "
                  f"wall {row['ratio_wall']:.3f})", flush=True)
    finally:
        delete_prefix(r, keys.prefix)

    print()
    print(f"Detect fps {args.fps:g}, detect size {args.detect_size}, JPEG q90, decode thread_type="
          f"{args.thread_type} threads={args.threads}; medians of {args.repeat} paired rounds (bare, ingest "
          "back to back, order alternating); ratio = median of the per-round ratios.")
    print()
    print("| clip | frames | bare decode fps/core (best) | ingest fps/core, decoded (best) | published "
          "| ratio, CPU (IQR) | ratio, wall |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['file']} ({row['desc']}) | {row['frames']} | {row['bare_cpu']:.1f} ({row['bare_best']:.1f}) "
              f"| {row['ing_cpu']:.1f} ({row['ing_best']:.1f}) | {row['published']} | {row['ratio_cpu']:.3f} "
              f"({row['ratio_q'][0]:.3f}-{row['ratio_q'][1]:.3f}) | {row['ratio_wall']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
