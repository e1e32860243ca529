"""Weights files: safetensors with the network config and provenance in the metadata.

A weights file fully describes the model that reads it (``config`` is ``DetectorConfig.to_json()``).
Loading never unpickles anything: safetensors holds raw tensors and a JSON header only.

Metadata keys (all strings, as safetensors requires):
  format      "fsdet-v1"
  config      DetectorConfig JSON
  name        model name, e.g. "fsdet-m"
  version     model version, e.g. "2024.1" ("0" when unset)
  trained_on  data the weights saw ("" when unknown, "random-init" for untrained test models)
  threshold   the shipped score threshold ("" when unset)
  ...         any other string the trainer wants to keep (recipe, epochs, metrics)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_VARIANT, DetectorConfig

FORMAT = "fsdet-v1"
RESERVED = ("format", "config", "name", "version", "trained_on", "threshold")

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

HOW_TO_GET_WEIGHTS = (
    "Trained weights are produced by this repository's training (nothing is downloaded: the machines "
    "running facestream have no route to a model registry). Train them with "
    "`facestream train configs/fsdet-m.toml` (writes models/weights/fsdet-m.safetensors and .onnx), "
    "or pass --weights PATH / weights=PATH pointing at a .safetensors or .onnx file you trained."
)


class ModelFileError(RuntimeError):
    """A weights/ONNX/engine file is missing, damaged or does not match what the code expects."""


class MissingWeightsError(ModelFileError, FileNotFoundError):
    """No trained weights where they were expected."""


@dataclass
class WeightsMeta:
    config: DetectorConfig
    name: str
    version: str = "0"
    trained_on: str = ""
    threshold: float | None = None
    sha256: str = ""
    path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """Flat string metadata (safetensors header / ONNX metadata_props)."""
        md = {k: str(v) for k, v in self.extra.items()}
        md.update(
            format=FORMAT,
            config=self.config.to_json(),
            name=self.name,
            version=self.version,
            trained_on=self.trained_on,
            threshold="" if self.threshold is None else repr(float(self.threshold)),
        )
        return md

    @classmethod
    def from_metadata(
        cls, md: dict[str, str], path: Path | str | None = None, sha256: str = ""
    ) -> WeightsMeta:
        where = f"{path}: " if path else ""
        if md.get("format") != FORMAT:
            raise ModelFileError(
                f"{where}not an FSDet weights file "
                f"(metadata format={md.get('format')!r}, expected {FORMAT!r})"
            )
        try:
            cfg = DetectorConfig.from_json(md["config"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{where}bad or missing detector config in metadata: {exc}") from None
        thr = md.get("threshold", "")
        try:
            threshold = float(thr) if thr not in ("", "None") else None
        except ValueError:
            raise ModelFileError(f"{where}metadata threshold {thr!r} is not a number") from None
        extra = {k: v for k, v in md.items() if k not in RESERVED}
        return cls(
            config=cfg,
            name=md.get("name") or cfg.name,
            version=md.get("version") or "0",
            trained_on=md.get("trained_on", ""),
            threshold=threshold,
            sha256=sha256,
            path=Path(path) if path else None,
            extra=extra,
        )


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_weights_path(variant: str = DEFAULT_VARIANT) -> Path:
    """Where the shipped weights live: models/weights/<variant>.safetensors (may not exist yet)."""
    return WEIGHTS_DIR / f"{variant}.safetensors"


def require_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights path to use (default: the shipped one); MissingWeightsError saying how to get them."""
    p = Path(path) if path is not None else default_weights_path()
    if not p.is_file():
        if path is None:
            raise MissingWeightsError(f"the shipped weights {p} do not exist. {HOW_TO_GET_WEIGHTS}")
        why = "is a directory" if p.is_dir() else "no such file"
        raise MissingWeightsError(f"weights file {p}: {why}")  # a mistyped path: no lecture on training
    return p


def save_weights(model, path: str | os.PathLike, **meta) -> Path:
    """Write `model`'s state dict as safetensors with FSDet metadata; atomic (temp file + rename).

    Keyword metadata: name, version, trained_on, threshold, plus any extra key (stored as str).
    """
    from safetensors.torch import save

    path = Path(path)
    cfg: DetectorConfig = model.cfg
    threshold = meta.pop("threshold", None)
    wm = WeightsMeta(
        config=cfg,
        name=str(meta.pop("name", cfg.name)),
        version=str(meta.pop("version", "0")),
        trained_on=str(meta.pop("trained_on", "")),
        threshold=None if threshold is None else float(threshold),
        extra={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()},
    )
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(_canonical(save(state, metadata=wm.to_metadata())))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _canonical(blob: bytes) -> bytes:
    """Re-serialise the safetensors header with sorted keys: safetensors writes its metadata map in hash
    order, so identical weights would otherwise get different file hashes (and model sha256s)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n:]


def read_header(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """(tensor table, metadata) of a safetensors file, validated against the file size.

    Reads only the JSON header; raises ModelFileError for anything that is not a complete safetensors file.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such weights file (expected an FSDet .safetensors file)")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{p}: not a safetensors file ({size} bytes, too short for a header)")
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > min(size - 8, 100 << 20):
            raise ModelFileError(
                f"{p}: not a safetensors file (header length {n} does not fit a {size}-byte file)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{p}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{p}: not a safetensors file (header is not a JSON object)")
    md = header.pop("__metadata__", None) or {}
    end = 0
    for name, info in header.items():
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ModelFileError(f"{p}: damaged safetensors header (tensor {name!r})") from None
    if 8 + n + end != size:
        raise ModelFileError(
            f"{p}: truncated or damaged safetensors file: "
            f"header describes {8 + n + end} bytes, file has {size}"
        )
    return header, md


def read_meta(path: str | os.PathLike, with_sha: bool = True) -> WeightsMeta:
    """Metadata of a weights file without loading tensors."""
    _, md = read_header(path)
    return WeightsMeta.from_metadata(md, path, file_sha256(path) if with_sha else "")


def load_model(path: str | os.PathLike | None = None, device="cpu"):
    """(FaceDetNet in eval mode on `device`, WeightsMeta). Default path: the shipped weights.

    Never unpickles. Raises ModelFileError when the file is missing, not safetensors, truncated, or its
    tensors do not match the network its config describes.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .network import build_model

    p = require_weights(path)
    header, md = read_header(p)
    meta = WeightsMeta.from_metadata(md, p, file_sha256(p))
    model = build_model(meta.config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v["shape"]) for k, v in header.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(
                "shape mismatches: "
                + ", ".join(f"{k} file {got[k]} vs expected {expected[k]}" for k in wrong[:3])
            )
        raise ModelFileError(
            f"{p}: tensors do not match the {meta.config.name} network described by its config: "
            + "; ".join(parts)
        )
    try:
        state = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{p}: could not read tensors: {exc}") from None
    model.load_state_dict(state, strict=True)
    model.eval()
    if device is not None and str(device) != "cpu":
        model.to(torch.device(device))
    return model, meta


def random_model(variant: str | DetectorConfig = "fsdet-s", seed: int = 0, spread: bool = True):
    """An untrained FaceDetNet in eval mode for tests and speed benchmarks (speed does not depend on weights).

    With `spread`, BatchNorm statistics are calibrated on a few smooth random images and the score/box
    layers are randomised, so that scores depend on image content and spread over 0..1 (a fresh model
    scores every anchor ~0.01, which makes parity and NMS tests meaningless).
    """
    import torch

    from .config import get_config
    from .network import build_model

    cfg = get_config(variant) if isinstance(variant, str) else variant
    torch.manual_seed(seed)
    model = build_model(cfg)
    if spread:
        g = torch.Generator().manual_seed(seed)
        cal = torch.rand(4, 3, 8, 10, generator=g) * 255
        cal = torch.nn.functional.interpolate(cal, size=(128, 160), mode="bicubic").clamp(0, 255)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        model.train()
        with torch.no_grad():
            model(cal)
            for bn in bns:
                bn.momentum = 0.1
            model.head.cls.weight.normal_(0.0, 0.3, generator=g)
            model.head.cls.bias.zero_()
            model.head.box.weight.normal_(0.0, 0.05, generator=g)
    return model.eval()
