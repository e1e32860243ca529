"""Ingest role: camera registry, PyAV sources, per-camera readers under a lease-holding supervisor,
PTS sampling, resize + encode, and the claim-check publisher (see docs/ingest.md)."""

from ingest.registry import CameraExistsError, CameraNotFoundError, Registry, RegistryError

__all__ = ["CameraExistsError", "CameraNotFoundError", "Registry", "RegistryError"]
