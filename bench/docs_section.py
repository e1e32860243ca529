"""Replace (or append) one marked section of a docs page: every bench script that writes docs/ uses it."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, begin: str, end: str, body: str) -> None:
    """`body` between the `begin` and `end` markers of `path` (appended with them when absent)."""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def write_benchmark(script: str, marker: str, title: str, text: str, table: str) -> None:
    """The `marker` section of docs/benchmarks.md: title, the command that made it (this process's arguments
    without --write-docs), `text` and `table`."""
    import sys

    cmd = f"python bench/{script} " + " ".join(sys.argv[1:]).replace(" --write-docs", "")
    body = f"## {title}\n\nCommand: `{cmd}`\n\n{text}\n\n{table}"
    write_section(Path(__file__).resolve().parent.parent / "docs/benchmarks.md", f"<!-- {marker}:begin -->",
                  f"<!-- {marker}:end -->", body)
