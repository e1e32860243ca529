"""The model cache (exported ONNX files, TensorRT engines): a per-user folder, and a refusal to load any
file there that another user could have written (a shared /tmp must never feed us a model)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from models.facedet.weights import ModelFileError


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME`` (or ~/.cache)/facestream/models; else a private (0700) folder of this user's
    under the temp dir. Never a folder shared with other users."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    bases = [Path(xdg)] if xdg else []
    bases.append(Path.home() / ".cache")
    for base in bases:
        d = base / "facestream" / "models"
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                check_private(d)
                return d
        except (OSError, ModelFileError):
            continue
    d = Path(tempfile.gettempdir()) / f"facestream-{os.getuid()}" / "models"
    try:
        d.parent.mkdir(mode=0o700, exist_ok=True)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"no writable cache directory for exported models: {exc}") from None
    check_private(d.parent)
    check_private(d)
    return d


def check_private(path: str | os.PathLike) -> None:
    """Raise ModelFileError unless ``path`` is owned by this user (or root) and not writable by group or
    others: a cached model someone else could replace is not loaded."""
    st = os.stat(path)
    if st.st_uid not in (os.getuid(), 0):
        raise ModelFileError(f"{path} belongs to another user (uid {st.st_uid}): not loading a model from it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ModelFileError(f"{path} is writable by other users (mode {stat.filemode(st.st_mode)}): "
                             "not loading a model from it; fix its permissions or use another cache_dir")
