"""The documented public API resolves, and stays cheap to import."""

import subprocess
import sys

import facestream


def test_every_public_name_resolves():
    for name in facestream.__all__:
        assert getattr(facestream, name) is not None, name


def test_import_does_not_load_torch_or_redis():
    code = "import sys, facestream; print(any(m in sys.modules for m in ('torch', 'redis', 'av')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
