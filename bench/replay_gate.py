"""The replay regression gate of a candidate model against the one in service, on real footage.

    .venv/bin/python bench/replay_gate.py --old OLD.safetensors --new NEW.safetensors \\
        [--clip facestream/assets/face-demographics-walking-and-pause.mp4 --clip ...] [--out docs/eval/gate]

What it runs is training/evaluate/replay_gate.py (teacher labels, a worker per model, replay, `eval replay`,
`eval gate`). Exit 1 when the gate fails on any clip.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.evaluate.replay_gate import DEFAULT_CLIPS, ROOT, run_gate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--clip", type=Path, action="append", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/eval/gate")
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--max-faces", type=int, default=0,
                    help="per clip, pass a ratio drop of at most this many more missed + false faces (0: off)")
    a = ap.parse_args()
    table, failed = run_gate(a.old, a.new, a.clip or DEFAULT_CLIPS, a.out, a.max_drop, a.max_faces)
    print(table)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
