"""The edgerain bundle format (docs/bundle-format.md): manifest schema, hashing, processing conventions.

This module is the one definition of the format that the exporter writes and both runtimes read.
It imports only the standard library and numpy, so it runs on a Jetson next to onnxruntime or
TensorRT without torch, onnx or the export stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgerain.errors import EdgerainError
from edgerain.utils import sha256_file

FORMAT_NAME = "edgerain-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
BUILD_SCRIPT_NAME = "build_engine.sh"
DLA_REPORT_NAME = "dla_report.json"
SAMPLES_DIR = "samples"
# Engines are built on the device after export (build_engine.sh); they are not part of the hashed
# export, and each carries a sidecar record (engine_record) that ``edgerain verify`` checks.
ENGINES_DIR = "engines"

PRECISIONS = ("fp32", "fp16", "int8")
CONTEXT_KINDS = ("router", "prior")
ROUTING_RULES = ("hard-top1", "soft")
PAD_MODE = "reflect-else-replicate"
ENCODE_RULE = "uint8-round-half-up"

# The input convention every bundle states in manifest["input"] and every runtime follows.
INPUT_CONVENTION: dict[str, Any] = {
    "layout": "NCHW",
    "color": "RGB",
    "dtype": "float32",
    "range": [0.0, 1.0],
    "batch": 1,
    "pad_mode": PAD_MODE,
    "output_range": [0.0, 1.0],
    "encode": ENCODE_RULE,
}


class BundleError(EdgerainError):
    """A bundle is malformed, incomplete or tampered with; the message says what and where."""


# --------------------------------------------------------------------------------------------
# Processing convention (steps 3 and 5 of docs/bundle-format.md) on numpy arrays.


def pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Bottom and right padding that bring (h, w) to multiples of ``multiple``."""
    return (-h) % multiple, (-w) % multiple


def padded_size(h: int, w: int, multiple: int) -> tuple[int, int]:
    ph, pw = pad_amounts(h, w, multiple)
    return h + ph, w + pw


def pad_image(x: np.ndarray, multiple: int) -> np.ndarray:
    """Pad an NCHW array bottom/right to ``multiple``: reflect, or edge where a side is too short."""
    h, w = x.shape[-2:]
    ph, pw = pad_amounts(h, w, multiple)
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)  # type: ignore[call-overload]


def crop_clamp(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """Crop a padded NCHW output back to (h, w) and clamp it to [0, 1]."""
    return np.clip(y[..., :h, :w], 0.0, 1.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 8 bits, rounding half up (the bundle's encoding rule)."""
    return np.floor(np.clip(x, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def mix_soft(outputs: Iterable[np.ndarray], scores: np.ndarray) -> np.ndarray:
    """Soft routing: the score-weighted sum of every expert's output (scores (1, K))."""
    total: np.ndarray | None = None
    for k, out in enumerate(outputs):
        term = np.float32(scores[0, k]) * out
        total = term if total is None else total + term
    if total is None:
        raise BundleError("soft routing needs at least one main graph")
    return total


# --------------------------------------------------------------------------------------------
# Manifest schema.

_STR, _INT, _NUM, _BOOL, _LIST, _DICT = str, int, (int, float), bool, list, dict


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {str: "a string", int: "an integer", bool: "true/false", list: "a list", dict: "an object"}.get(
        t, "a number" if t is float else getattr(t, "__name__", str(t))
    )


def _need(obj: Mapping[str, Any], key: str, kind: Any, where: str, nullable: bool = False) -> Any:
    if key not in obj:
        raise BundleError(f"manifest is missing {where}.{key}")
    value = obj[key]
    if value is None and nullable:
        return None
    # JSON true/false arrive as bool, which Python counts as an int: never accept them as numbers.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not _BOOL):
        raise BundleError(f"manifest {where}.{key} must be {_type_name(kind)}, got {type(value).__name__}")
    return value


def _one_of(value: Any, allowed: Iterable[Any], where: str) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise BundleError(f"manifest {where} is {value!r}; expected one of {', '.join(map(str, allowed))}")


def _safe_relpath(name: str, where: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or name != p.as_posix() or not name:
        raise BundleError(f"manifest {where} names {name!r}, which is not a plain path inside the bundle")


def _validate_io(specs: Any, where: str) -> None:
    if not isinstance(specs, list) or not specs:
        raise BundleError(f"manifest {where} must be a non-empty list")
    for i, spec in enumerate(specs):
        w = f"{where}[{i}]"
        if not isinstance(spec, dict):
            raise BundleError(f"manifest {w} must be an object")
        _need(spec, "name", _STR, w)
        shape = _need(spec, "shape", _LIST, w)
        for d in shape:
            if not (isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d > 0)):
                raise BundleError(f"manifest {w}.shape holds {d!r}; dims are positive integers or names")
        _one_of(_need(spec, "dtype", _STR, w), ("float32", "float16"), f"{w}.dtype")


def _validate_graph(g: Any, where: str) -> None:
    if not isinstance(g, dict):
        raise BundleError(f"manifest {where} must be an object")
    _safe_relpath(_need(g, "file", _STR, where), f"{where}.file")
    _one_of(_need(g, "precision", _STR, where), PRECISIONS, f"{where}.precision")
    _validate_io(_need(g, "inputs", _LIST, where), f"{where}.inputs")
    _validate_io(_need(g, "outputs", _LIST, where), f"{where}.outputs")


def _validate_hw(value: Any, where: str) -> None:
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise BundleError(f"manifest {where} must be [height, width] in pixels")


def min_side(manifest: Mapping[str, Any]) -> int:
    """The smallest image side the bundle's context graph accepts (``input.min_side``; 1 if absent)."""
    return int(manifest["input"].get("min_side", 1))


def validate_manifest(m: Any) -> None:
    """Check a manifest against the version-1 schema; raise :class:`BundleError` at the first problem."""
    if not isinstance(m, dict):
        raise BundleError("manifest must be a JSON object")
    fmt = _need(m, "format", _STR, "manifest")
    if fmt != FORMAT_NAME:
        raise BundleError(f"manifest format is {fmt!r}, not {FORMAT_NAME!r}")
    version = _need(m, "format_version", _INT, "manifest")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {version} is not supported (this edgerain reads version {FORMAT_VERSION}); "
            "re-export the bundle with this edgerain"
        )
    model = _need(m, "model", _DICT, "manifest")
    _need(model, "name", _STR, "model")
    _need(model, "family", _STR, "model")
    _need(model, "config", _DICT, "model")
    _one_of(_need(m, "precision", _STR, "manifest"), PRECISIONS, "precision")
    target = _need(m, "target", _DICT, "manifest")
    _need(target, "name", _STR, "target")

    inp = _need(m, "input", _DICT, "manifest")
    multiple = _need(inp, "pad_multiple", _INT, "input")
    if multiple < 1:
        raise BundleError("manifest input.pad_multiple must be at least 1")
    # Optional (bundles written before it existed accept any size).
    if "min_side" in inp and _need(inp, "min_side", _INT, "input") < 1:
        raise BundleError("manifest input.min_side must be at least 1")
    for key, expected in INPUT_CONVENTION.items():
        if inp.get(key) != expected:
            raise BundleError(f"manifest input.{key} is {inp.get(key)!r}; this runtime follows {expected!r}")

    graphs = _need(m, "graphs", _DICT, "manifest")
    ctx = graphs.get("context")
    if ctx is not None:
        _validate_graph(ctx, "graphs.context")
        kind = _need(ctx, "kind", _STR, "graphs.context")
        _one_of(kind, CONTEXT_KINDS, "graphs.context.kind")
        if kind == "router":
            _one_of(_need(ctx, "rule", _STR, "graphs.context"), ROUTING_RULES, "graphs.context.rule")
    mains = _need(graphs, "main", _LIST, "graphs")
    if not mains:
        raise BundleError("manifest graphs.main must list at least one graph")
    for i, g in enumerate(mains):
        _validate_graph(g, f"graphs.main[{i}]")
    if ctx is not None and ctx["kind"] == "router" and len(mains) < 2:
        raise BundleError("manifest graphs.context is a router but graphs.main has fewer than two experts")

    tiling = _need(m, "tiling", _DICT, "manifest")
    tile = _need(tiling, "tile", _INT, "tiling", nullable=True)
    overlap = _need(tiling, "overlap", _INT, "tiling")
    if tile is not None and overlap * 2 >= tile:
        raise BundleError(f"manifest tiling.overlap {overlap} must be less than half of tiling.tile {tile}")

    profiles = _need(m, "shape_profiles", _LIST, "manifest")
    for i, p in enumerate(profiles):
        w = f"shape_profiles[{i}]"
        if not isinstance(p, dict):
            raise BundleError(f"manifest {w} must be an object")
        _need(p, "name", _STR, w)
        for key in ("min", "opt", "max"):
            _validate_hw(p.get(key), f"{w}.{key}")

    parity = _need(m, "parity", _DICT, "manifest")
    _need(parity, "atol", _NUM, "parity")
    _need(parity, "min_psnr_db", _NUM, "parity")
    samples = _need(parity, "samples", _LIST, "parity")
    for i, s in enumerate(samples):
        w = f"parity.samples[{i}]"
        if not isinstance(s, dict):
            raise BundleError(f"manifest {w} must be an object")
        _safe_relpath(_need(s, "input", _STR, w), f"{w}.input")
        _safe_relpath(_need(s, "reference", _STR, w), f"{w}.reference")

    _need(m, "versions", _DICT, "manifest")
    files = _need(m, "files", _DICT, "manifest")
    for name, entry in files.items():
        _safe_relpath(name, f"files[{name!r}]")
        if name == MANIFEST_NAME or name.startswith(ENGINES_DIR + "/"):
            raise BundleError(f"manifest files lists {name!r}, which the hashed export never contains")
        if not isinstance(entry, dict):
            raise BundleError(f"manifest files[{name!r}] must be an object")
        digest = _need(entry, "sha256", _STR, f"files[{name!r}]")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BundleError(f"manifest files[{name!r}].sha256 is not a sha256 hex digest")
        _need(entry, "bytes", _INT, f"files[{name!r}]")
    referenced = [g["file"] for g in mains] + ([ctx["file"]] if ctx else [])
    referenced += [s["input"] for s in samples] + [s["reference"] for s in samples]
    for name in referenced:
        if name not in files:
            raise BundleError(f"manifest does not hash {name}, which the bundle uses")


# --------------------------------------------------------------------------------------------
# Reading, writing and hashing.


def dumps_manifest(manifest: Mapping[str, Any]) -> str:
    """Deterministic JSON (sorted keys, fixed indentation): equal manifests give equal bytes."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    return {"sha256": sha256_file(p), "bytes": p.stat().st_size}


def hash_tree(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest and device-built engines."""
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if rel == MANIFEST_NAME or rel.startswith(ENGINES_DIR + "/"):
            continue
        out[rel] = file_entry(p)
    return out


def read_manifest(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate ``BUNDLE/manifest.json``."""
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle folder")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{root} is not a bundle (or is incomplete): {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc})") from None
    validate_manifest(manifest)
    return manifest


def check_files(bundle: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Refuse a bundle whose files are missing, altered, or joined by files the export never wrote."""
    root = Path(bundle)
    files: Mapping[str, Any] = manifest["files"]
    for name, entry in files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {root} is incomplete: {name} is missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise BundleError(f"bundle {root}: {name} does not match its sha256 in the manifest (altered)")
    extra = sorted(set(hash_tree(root)) - set(files))
    if extra:
        raise BundleError(f"bundle {root} holds files its manifest does not list: {', '.join(extra[:3])}")


# --------------------------------------------------------------------------------------------
# TensorRT engines (built on the device; one JSON record beside each engine).

ENGINE_RECORD_KEYS: dict[str, type | tuple[type, ...]] = {
    "engine": str,  # engines/<graph stem>.<profile>.engine
    "graph": str,  # the ONNX file it was built from
    "graph_sha256": str,
    "profile": str,
    "precision": str,
    "dla_core": (int, type(None)),
    "tensorrt": str,  # e.g. "10.3.0"
    "gpu": str,
    "compute_capability": str,  # "8.7"
    "jetpack": (str, type(None)),  # L4T/JetPack release on Jetsons, null elsewhere
    "sha256": str,
}


def engine_record_path(engine: str | os.PathLike[str]) -> Path:
    return Path(str(engine) + ".json")


def read_engine_records(bundle: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of the engines under ``BUNDLE/engines`` (an engine without one is refused)."""
    root = Path(bundle)
    folder = root / ENGINES_DIR
    if not folder.is_dir():
        return []
    records = []
    for engine in sorted(folder.glob("*.engine")):
        rec_path = engine_record_path(engine)
        rel = engine.relative_to(root).as_posix()
        if not rec_path.is_file():
            raise BundleError(f"engine {rel} has no record {rec_path.name}; rebuild it with {BUILD_SCRIPT_NAME}")
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"engine record {rec_path.name} is not valid JSON ({exc})") from None
        if not isinstance(rec, dict):
            raise BundleError(f"engine record {rec_path.name} must be a JSON object")
        for key, kind in ENGINE_RECORD_KEYS.items():
            if key not in rec or not isinstance(rec[key], kind):
                raise BundleError(f"engine record {rec_path.name} lacks a valid '{key}'")
        if rec["engine"] != rel:
            raise BundleError(f"engine record {rec_path.name} describes {rec['engine']}, not {rel}")
        records.append(rec)
    return records
