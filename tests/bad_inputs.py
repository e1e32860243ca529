"""The catalogue of bad inputs: each CLI call, the exit code it must give and a phrase of its one-line
message. `tests/test_bad_input_table.py` runs every row; `python -m tests.bad_inputs` prints the table of
docs/bad-input.md from the same rows (with the message each really gets)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    what: str
    args: tuple[str, ...]
    code: int
    needle: str
    env: dict = field(default_factory=dict)


# {corrupt}: random bytes named .mp4; {trunc}: the shipped weights cut to 5 kB; {trunc_onnx}: the ONNX cut;
# {badtoml}: not TOML; {dir}: an empty folder. FACESTREAM_REDIS__PREFIX is private to the run.
CASES = [
    Case("detect: missing file", ("detect", "/nonexistent.jpg"), 1, "no such file"),
    Case("detect: corrupt video", ("detect", "{corrupt}"), 1, "Invalid data"),
    Case("detect: truncated weights", ("detect", "{dir}", "--weights", "{trunc}"), 1, "not a safetensors file"),
    Case("detect: missing weights", ("detect", "{dir}", "--weights", "/nonexistent.safetensors"), 1, "no such file"),
    Case("detect: input size not a multiple of 32", ("detect", "{dir}", "--input-size", "33"), 2, "multiple of 32"),
    Case("detect: threshold out of range", ("detect", "{dir}", "--threshold", "2"), 2, "threshold"),
    Case("eval wider: folder without WIDER data", ("eval", "wider", "--model", "{trunc}", "--data", "{dir}"), 2,
         "need --data"),
    Case("train: file that is not TOML", ("train", "{badtoml}"), 1, "Expected"),
    Case("export: missing weights", ("export", "/nonexistent.safetensors"), 2, "does not exist"),
    Case("export: truncated weights", ("export", "{trunc}"), 1, "not a safetensors file"),
    Case("replay: missing file", ("replay", "/nonexistent.mp4", "--camera", "c"), 1, "no such file"),
    Case("replay: corrupt video", ("replay", "{corrupt}", "--camera", "c"), 1, "Invalid data"),
    Case("replay: live URL without a limit", ("replay", "rtsp://127.0.0.1:1/x", "--camera", "c"), 2, "--duration"),
    Case("replay: bad camera id", ("replay", "x.mp4", "--camera", "bad id"), 2, "invalid camera id"),
    Case("camera add: path traversal in the id", ("camera", "add", "../etc", "x.mp4"), 2, "invalid camera id"),
    Case("camera add: shell metacharacters in the id", ("camera", "add", "c;rm", "x.mp4"), 2, "invalid camera id"),
    Case("camera add: unicode id", ("camera", "add", "caméra", "x.mp4"), 2, "invalid camera id"),
    Case("camera add: 65-character id", ("camera", "add", "c" * 65, "x.mp4"), 2, "invalid camera id"),
    Case("camera add: unsupported scheme", ("camera", "add", "c", "ftp://h/x"), 2, "scheme"),
    Case("camera add: URL without host", ("camera", "add", "c", "rtsp://"), 2, "host"),
    Case("camera add: port 0", ("camera", "add", "c", "rtsp://h:0/x"), 2, "port"),
    Case("camera add: mangled scheme", ("camera", "add", "c", "ht!tp:/x"), 2, "without a scheme"),
    Case("camera add: host:port without scheme", ("camera", "add", "c", "127.0.0.1:554/stream"), 2,
         "without a scheme"),
    Case("camera add: credentials in a file:// URL", ("camera", "add", "c", "file://u:S3cret@localhost/x.mp4"), 2,
         "no user or password"),
    Case("camera add: remote file:// host", ("camera", "add", "c", "file://nas/x.mp4"), 2, "empty or localhost"),
    Case("camera add: control character in the URL", ("camera", "add", "c", "rtsp://h/x\n"), 2,
         "whitespace or control"),
    Case("camera add: URL over 2048 characters", ("camera", "add", "c", "rtsp://h/" + "a" * 2100), 2,
         "longer than 2048"),
    Case("camera add: fps out of range", ("camera", "add", "c", "x.mp4", "--fps", "500"), 2, "fps"),
    Case("camera add: detect size out of range", ("camera", "add", "c", "x.mp4", "--detect-size", "8"), 2,
         "detect_size"),
    Case("camera add: no URL at all", ("camera", "add", "c"), 2, "give the URL once"),
    Case("camera add: --url-env names an unset variable", ("camera", "add", "c", "--url-env", "NOPE_UNSET"), 2,
         "not set"),
    Case("camera remove: unknown camera", ("camera", "remove", "nope"), 1, "no camera"),
    Case("camera status: unknown camera", ("camera", "status", "nope"), 1, "no camera"),
    Case("events tail: bad camera id", ("events", "tail", "--camera", "bad id", "--timeout", "0.2"), 2,
         "invalid camera id"),
    Case("worker: unknown device", ("worker", "--device", "tpu"), 2, "FACESTREAM_WORKER__DEVICE"),
    Case("worker: truncated weights", ("worker", "--weights", "{trunc}", "--http-port", "0"), 3,
         "not a safetensors file"),
    Case("eval gate: missing report", ("eval", "gate", "/nonexistent.json", "--baseline", "{badtoml}"), 2,
         "does not exist"),
    Case("eval replay: a video given as labels", ("eval", "replay", "--run-id", "r", "--labels", "{corrupt}"), 2,
         "not a labels file"),
    Case("eval replay: missing labels", ("eval", "replay", "--run-id", "r", "--labels", "/nonexistent.jsonl"), 2,
         "cannot read it"),
    Case("label: missing teacher", ("label", "--teacher", "/nonexistent.onnx", "--images", "{dir}", "--out",
                                    "{dir}/o.txt"), 1, "no such file"),
    Case("label: truncated teacher", ("label", "--teacher", "{trunc_onnx}", "--images", "{dir}", "--out",
                                      "{dir}/o.txt"), 1, "cannot load it"),
    Case("label: missing image folder", ("label", "--teacher", "haar", "--images", "/nonexistent", "--out", "o"),
         2, "does not exist"),
    Case("label: corrupt video", ("label", "--teacher", "haar", "--video", "{corrupt}", "--out", "{dir}/o.txt"), 1,
         "cannot read video"),
    Case("label: --frames-dir with images", ("label", "--teacher", "haar", "--images", "{dir}", "--frames-dir",
                                             "{dir}/f", "--out", "{dir}/o.txt"), 2, "--frames-dir works with"),
    Case("demo: corrupt clip", ("demo", "--source", "{corrupt}", "--out", "{dir}/demo", "--quiet"), 1,
         "Invalid data"),
    Case("env: one underscore (FACESTREAM_WORKER_MAX_BATCH)", ("config", "show"), 2, "did you mean",
         {"FACESTREAM_WORKER_MAX_BATCH": "4"}),
    Case("env: replay window beyond frames_maxlen / 2", ("config", "show"), 2, "REPLAY_WINDOW",
         {"FACESTREAM_INGEST__REPLAY_WINDOW": "900000"}),
    Case("env: max batch 0", ("config", "show"), 2, "FACESTREAM_WORKER__MAX_BATCH",
         {"FACESTREAM_WORKER__MAX_BATCH": "0"}),
    Case("env: Redis URL of another scheme", ("config", "show"), 2, "redis://",
         {"FACESTREAM_REDIS__URL": "http://x"}),
    Case("env: unknown log level", ("config", "show"), 2, "FACESTREAM_LOG__LEVEL", {"FACESTREAM_LOG__LEVEL": "LOUD"}),
    Case("env: device typo", ("config", "show"), 2, "FACESTREAM_WORKER__DEVICE", {"FACESTREAM_WORKER__DEVICE": "gpu"}),
]


def make_files(tmp: Path) -> dict[str, str]:
    (tmp / "empty").mkdir(exist_ok=True)
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 80)
    trunc = tmp / "trunc.safetensors"
    trunc.write_bytes((ROOT / "models/weights/fsdet-m.safetensors").read_bytes()[:5000])
    trunc_onnx = tmp / "truncated.onnx"
    trunc_onnx.write_bytes((ROOT / "models/weights/fsdet-m.onnx").read_bytes()[:3000])
    bad = tmp / "bad.toml"
    bad.write_text("not toml [[[\n")
    return {"corrupt": str(corrupt), "trunc": str(trunc), "trunc_onnx": str(trunc_onnx), "badtoml": str(bad),
            "dir": str(tmp / "empty")}


def run(case: Case, files: dict[str, str], prefix: str):
    from click.testing import CliRunner

    from facestream.cli import main

    args = [a.format(**files) for a in case.args]
    env = {"FACESTREAM_REDIS__PREFIX": prefix, **case.env}
    return CliRunner().invoke(main, args, env=env)


def markdown(tmp: Path) -> str:
    files = make_files(tmp)
    rows = ["| # | bad input | exit | message (first line) |", "| --- | --- | --- | --- |"]
    for i, c in enumerate(CASES, 1):
        res = run(c, files, "badinput-doc")
        line = next((x for x in res.output.splitlines() if c.needle in x), res.output.strip().splitlines()[-1])
        line = line.replace(str(tmp), "/tmp/…").replace("|", "\\|")[:160]
        rows.append(f"| {i} | {c.what} | {res.exit_code} | `{line.strip()}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        sys.stdout.write(markdown(Path(d)) + "\n")
