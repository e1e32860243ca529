"""Guards the v1 message contract (core/schema.py) against breaking changes.

The committed snapshot tests/data/schema_v1.json holds every model's JSON schema and a flat map
``Model.field.sub`` -> type. The test fails when a field is removed or renamed, changes type, loses
enum values, or when a new field is required (old messages would no longer validate). Adding
optional fields or enum values is allowed: refresh the snapshot so the new fields are guarded too::

    .venv/bin/python -m tests.test_schema_snapshot --update
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core import schema

SNAPSHOT = Path(__file__).parent / "data" / "schema_v1.json"
MODELS = ["Camera", "FrameRef", "Detection", "DetectionEvent", "CameraStatus", "ModelInfo", "Source",
          "FrameInfo", "Timings"]


def _type_of(node: dict, defs: dict) -> str:
    """A compact, comparable type signature of a JSON-schema node (refs resolved by name)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name, {})
        if "enum" in target:
            return f"enum:{name}"
        return f"object:{name}"
    if "enum" in node:
        return "enum"
    if "const" in node:
        return f"const:{json.dumps(node['const'])}"
    for key in ("anyOf", "oneOf"):
        if key in node:
            return "|".join(sorted(_type_of(n, defs) for n in node[key]))
    t = node.get("type", "any")
    if t == "array":
        if "prefixItems" in node:
            return "tuple[" + ",".join(_type_of(n, defs) for n in node["prefixItems"]) + "]"
        return "array[" + _type_of(node.get("items", {}), defs) + "]"
    return t


def flatten(model_name: str, js: dict) -> tuple[dict[str, str], list[str], dict[str, list]]:
    """(field path -> type, required field paths, enum name -> values) for one model's JSON schema."""
    defs = js.get("$defs", {})
    fields: dict[str, str] = {}
    required: list[str] = []
    enums = {name: d["enum"] for name, d in defs.items() if "enum" in d}

    def walk(prefix: str, node: dict, seen: tuple[str, ...]) -> None:
        for name, prop in node.get("properties", {}).items():
            path = f"{prefix}.{name}"
            fields[path] = _type_of(prop, defs)
            if "enum" in prop:  # inline enum (Literal)
                enums[path] = prop["enum"]
            if name in node.get("required", []):
                required.append(path)
            refs = [prop] + prop.get("anyOf", []) + ([prop["items"]] if isinstance(prop.get("items"), dict) else [])
            for r in refs:
                ref = r.get("$ref", "").rsplit("/", 1)[-1]
                if ref and ref not in seen and "properties" in defs.get(ref, {}):
                    walk(path, defs[ref], (*seen, ref))

    walk(model_name, js, (model_name,))
    return fields, required, enums


def current() -> dict:
    out: dict = {"schema_version": schema.SCHEMA_VERSION, "fields": {}, "required": [], "enums": {},
                 "json_schema": {}}
    for name in MODELS:
        js = getattr(schema, name).model_json_schema()
        fields, required, enums = flatten(name, js)
        out["fields"].update(fields)
        out["required"] += required
        out["enums"].update(enums)
        out["json_schema"][name] = js
    out["required"] = sorted(set(out["required"]))
    return out


@pytest.fixture(scope="module")
def snap() -> dict:
    return json.loads(SNAPSHOT.read_text())


@pytest.fixture(scope="module")
def now() -> dict:
    return current()


def test_schema_version_is_1(snap, now):
    assert now["schema_version"] == snap["schema_version"] == 1


def breaking_changes(snap: dict, now: dict) -> list[str]:
    out = [f"removed or renamed: {p}" for p in sorted(set(snap["fields"]) - set(now["fields"]))]
    out += [f"type of {p}: {t} -> {now['fields'][p]}" for p, t in snap["fields"].items()
            if p in now["fields"] and now["fields"][p] != t]
    return out


def test_no_field_removed_renamed_or_retyped(snap, now):
    problems = breaking_changes(snap, now)
    assert not problems, "breaking changes within schema v1:\n" + "\n".join(problems)


def test_guard_detects_rename_and_retype(snap):
    import copy

    now = copy.deepcopy(snap)
    now["fields"]["DetectionEvent.cam"] = now["fields"].pop("DetectionEvent.camera_id")
    now["fields"]["DetectionEvent.frame.seq"] = "string"
    problems = breaking_changes(snap, now)
    assert any("DetectionEvent.camera_id" in p for p in problems)
    assert any("DetectionEvent.frame.seq" in p for p in problems)


def test_no_enum_value_removed(snap, now):
    for name, values in snap["enums"].items():
        assert name in now["enums"], f"enum {name} removed"
        lost = set(values) - set(now["enums"][name])
        assert not lost, f"enum {name} lost values {lost}"


def test_new_fields_are_optional(snap, now):
    new_required = sorted(set(now["required"]) - set(snap["required"]))
    assert not new_required, f"new required fields break old messages (give them defaults): {new_required}"


def test_snapshot_is_current_for_additions(snap, now):
    """Additive changes pass the tests above; refresh the snapshot so they are guarded as well."""
    added = sorted(set(now["fields"]) - set(snap["fields"]))
    if added:
        pytest.skip(f"new fields not yet in the snapshot (run python -m tests.test_schema_snapshot --update): "
                    f"{added}")


def test_old_event_still_parses(snap):
    """A minimal v1 event as the snapshot's producers wrote it still validates."""
    ev = schema.DetectionEvent.model_validate({
        "event_id": "cam1:7", "camera_id": "cam1", "worker_id": "w1",
        "frame": {"seq": 7, "capture_ns": 1, "width": 640, "height": 480},
        "model": {"name": "fsdet", "version": "1", "sha256": "0" * 64, "runtime": "torch"},
        "detections": [{"box": [1, 2, 3, 4], "score": 0.9, "landmarks": [[1, 1]] * 5}],
    })
    assert ev.schema_version == 1 and ev.event_id == schema.event_id_for("cam1", 7)
    assert schema.DetectionEvent.model_validate_json(ev.model_dump_json()) == ev


@pytest.mark.parametrize("cam", ["cam1", "Front-Door_2", "a", "0", "x.y-z_1", "A" * 64])
def test_valid_camera_ids(cam):
    assert schema.validate_camera_id(cam) == cam
    assert schema.Camera(id=cam, url="rtsp://x/y").id == cam


@pytest.mark.parametrize("cam", ["", "-cam", "_cam", ".cam", "cam 1", "cam:1", "cam/1", "cam*", "A" * 65,
                                 "kamera-é", "cam\n", "{cam}", None, 5])
def test_invalid_camera_ids(cam):
    with pytest.raises((ValueError, TypeError)):
        schema.validate_camera_id(cam)
    with pytest.raises(ValidationError):
        schema.Camera(id=cam, url="rtsp://x/y")


if __name__ == "__main__":
    if "--update" in sys.argv:
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {SNAPSHOT}")
    else:
        print(__doc__)
