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
