"""The CI script runs exactly the test command that README.md documents."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    test_cmd = cmds[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(test_cmd)}\b", ci, flags=re.M), (test_cmd, ci)
    assert "scripts/setup.sh" in cmds[0] and "bash scripts/setup.sh" in ci


def test_scripts_are_executable_bash():
    for path in (ROOT / ".ci" / "run", ROOT / "scripts" / "setup.sh"):
        assert os.access(path, os.X_OK), path
        subprocess.run(["bash", "-n", str(path)], check=True)
