"""Deployment target profiles: one JSON file per device (``targets/``), plus the user's own.

A target names a device and states what an export for it needs: GPU architecture, memory and
bandwidth, peak rates, DLA cores, the JetPack/CUDA/TensorRT versions the build script expects,
the default precision, the TensorRT workspace cap and the input shape profiles to build engines
for. Standard library only: a Jetson reads these next to a bundle without the export stack.

Where profiles come from, in order: a path to a ``.json`` file, the folders in
``EDGERAIN_TARGETS_DIR`` (``os.pathsep``-separated; a user profile there overrides a built-in one
of the same name), and the built-in ``targets/`` folder. ``NAME:MODE`` selects a power mode
(e.g. ``jetson-orin-nano:super``), whose fields override the base profile's.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import Any

from edgerain.errors import EdgerainError


def _builtin_dir() -> Path:
    """The built-in profiles: the installed ``edgerain.builtin_targets`` package (``targets/`` of the
    checkout in an editable install)."""
    from importlib.util import find_spec

    spec = find_spec("edgerain.builtin_targets")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "targets"  # a source tree on sys.path, not installed


BUILTIN_DIR = _builtin_dir()
ENV_DIRS = "EDGERAIN_TARGETS_DIR"
KINDS = ("jetson", "gpu", "cpu")
PRECISIONS = ("fp32", "fp16", "int8")


class TargetError(EdgerainError):
    """A target profile is unknown or malformed."""


@dataclasses.dataclass(frozen=True)
class ShapeProfile:
    """Image sizes (height, width) one engine serves: the range [min, max], tuned for opt."""

    name: str
    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def padded(self, multiple: int) -> ShapeProfile:
        """The same profile for a graph that takes inputs padded to ``multiple``."""

        def up(hw: tuple[int, int]) -> tuple[int, int]:
            return (-(-hw[0] // multiple) * multiple, -(-hw[1] // multiple) * multiple)

        return ShapeProfile(self.name, up(self.min), up(self.opt), up(self.max))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str  # NAME or NAME:MODE
    data: dict[str, Any]  # the resolved profile (mode overrides applied)
    source: str  # where it came from (file path)

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def description(self) -> str:
        return str(self.data["description"])

    @property
    def sm(self) -> str | None:
        gpu = self.data.get("gpu")
        return str(gpu["sm"]) if gpu else None

    @property
    def dla_cores(self) -> int:
        return int(self.data["dla_cores"])

    @property
    def tensorrt(self) -> str | None:
        v = self.data["software"].get("tensorrt")
        return str(v) if v is not None else None

    @property
    def jetpack(self) -> str | None:
        v = self.data["software"].get("jetpack")
        return str(v) if v is not None else None

    @property
    def workspace_mib(self) -> int | None:
        v = self.data.get("tensorrt_workspace_mib")
        return int(v) if v is not None else None

    @property
    def default_precision(self) -> str:
        return str(self.data["default_precision"])

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.data["precisions"])

    @property
    def providers(self) -> list[str]:
        return list(self.data["providers"])

    @property
    def shape_profiles(self) -> list[ShapeProfile]:
        return [
            ShapeProfile(p["name"], tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))  # type: ignore[arg-type]
            for p in self.data["shape_profiles"]
        ]

    def manifest_entry(self) -> dict[str, Any]:
        """What a bundle records about its target (the whole resolved profile, minus provenance)."""
        out = {k: copy.deepcopy(v) for k, v in self.data.items() if k not in ("modes", "sources", "aliases")}
        out["name"] = self.name
        return out


# --------------------------------------------------------------------------------------------
# Schema: required keys and their types. Numbers may be null where a device has no such thing.

_NUM = (int, float)


def _fail(where: str, msg: str) -> TargetError:
    return TargetError(f"target profile {where}: {msg}")


def _check_type(value: Any, kinds: tuple[type, ...], where: str, key: str, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(where, f"'{key}' must be {'/'.join(k.__name__ for k in kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise _fail(where, f"'{key}' must be {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}")


def _check_hw(value: Any, where: str, key: str) -> None:
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in value)
    ):
        raise _fail(where, f"'{key}' must be [height, width], each 1..16384")


def validate_profile(data: Any, where: str) -> None:
    """Check a resolved profile; raise :class:`TargetError` (one line) at the first problem."""
    if not isinstance(data, dict):
        raise _fail(where, "must be a JSON object")
    top_keys: tuple[tuple[str, tuple[type, ...]], ...] = (
        ("name", (str,)),
        ("description", (str,)),
        ("kind", (str,)),
        ("dla_cores", (int,)),
        ("memory", (dict,)),
        ("software", (dict,)),
        ("default_precision", (str,)),
        ("precisions", (list,)),
        ("providers", (list,)),
        ("shape_profiles", (list,)),
    )
    for key, kinds in top_keys:
        if key not in data:
            raise _fail(where, f"missing '{key}'")
        _check_type(data[key], kinds, where, key)
    if data["kind"] not in KINDS:
        raise _fail(where, f"'kind' is {data['kind']!r}; expected one of {', '.join(KINDS)}")
    gpu = data.get("gpu", "missing")
    if gpu == "missing":
        raise _fail(where, "missing 'gpu' (null for a CPU target)")
    if data["kind"] == "cpu":
        if gpu is not None:
            raise _fail(where, "a 'cpu' target has 'gpu': null")
    else:
        _check_type(gpu, (dict,), where, "gpu")
        gpu_keys: tuple[tuple[str, tuple[type, ...]], ...] = (
            ("name", (str,)),
            ("sm", (str,)),
            ("sm_count", (int,)),
            ("peak_dense_fp16_tflops", _NUM),
            ("peak_dense_int8_tops", _NUM),
        )
        for key, kinds in gpu_keys:
            if key not in gpu:
                raise _fail(where, f"missing 'gpu.{key}'")
            _check_type(gpu[key], kinds, where, f"gpu.{key}")
        parts = gpu["sm"].split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise _fail(where, f"'gpu.sm' is {gpu['sm']!r}; write the compute capability as MAJOR.MINOR, e.g. '8.7'")
    if data["dla_cores"] < 0 or (data["dla_cores"] > 0 and data["kind"] != "jetson"):
        raise _fail(where, "'dla_cores' must be 0, or positive on a Jetson")
    mem = data["memory"]
    for key in ("size_gb", "bandwidth_gbs"):
        if key not in mem:
            raise _fail(where, f"missing 'memory.{key}'")
        _check_type(mem[key], _NUM, where, f"memory.{key}", nullable=True)
    sw = data["software"]
    for key in ("jetpack", "cuda", "tensorrt"):
        if key not in sw:
            raise _fail(where, f"missing 'software.{key}' (null where it does not apply)")
        _check_type(sw[key], (str,), where, f"software.{key}", nullable=True)
    if data["kind"] != "cpu" and not sw["tensorrt"]:
        raise _fail(where, "a GPU target states 'software.tensorrt' (the version its engines are built with)")
    if data["kind"] == "jetson" and not sw["jetpack"]:
        raise _fail(where, "a Jetson target states 'software.jetpack'")
    if sw["tensorrt"] is not None:
        parts = sw["tensorrt"].split(".")
        if len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise _fail(where, f"'software.tensorrt' is {sw['tensorrt']!r}; write MAJOR.MINOR[.PATCH]")
    bad = [p for p in data["precisions"] if p not in PRECISIONS]
    if bad or not data["precisions"]:
        raise _fail(where, f"'precisions' must list some of {', '.join(PRECISIONS)}")
    if data["default_precision"] not in data["precisions"]:
        raise _fail(where, f"'default_precision' {data['default_precision']!r} is not in 'precisions'")
    ws = data.get("tensorrt_workspace_mib")
    _check_type(ws, (int,), where, "tensorrt_workspace_mib", nullable=True)
    if data["kind"] != "cpu":
        if ws is None or ws < 64:
            raise _fail(where, "'tensorrt_workspace_mib' must be at least 64 on a GPU target")
        size_gb = mem.get("size_gb")
        if size_gb is not None and ws > size_gb * 1024 / 2:
            raise _fail(where, f"'tensorrt_workspace_mib' {ws} exceeds half the device memory ({size_gb} GB)")
    if not data["providers"] or not all(isinstance(p, str) for p in data["providers"]):
        raise _fail(where, "'providers' must list ONNX Runtime execution providers")
    if not data["shape_profiles"]:
        raise _fail(where, "'shape_profiles' must list at least one profile")
    names = set()
    for i, p in enumerate(data["shape_profiles"]):
        w = f"shape_profiles[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise _fail(where, f"'{w}' needs a 'name'")
        if p["name"] in names:
            raise _fail(where, f"shape profile '{p['name']}' appears twice")
        if not all(c.isalnum() or c in "-_" for c in p["name"]):
            raise _fail(where, f"shape profile name '{p['name']}' may hold only letters, digits, '-' and '_'")
        names.add(p["name"])
        for key in ("min", "opt", "max"):
            _check_hw(p.get(key), where, f"{w}.{key}")
        if not all(p["min"][i] <= p["opt"][i] <= p["max"][i] for i in (0, 1)):
            raise _fail(where, f"shape profile '{p['name']}' needs min <= opt <= max in each dimension")


# --------------------------------------------------------------------------------------------
# Discovery and resolution.


def search_dirs() -> list[Path]:
    dirs = [Path(d).expanduser() for d in os.environ.get(ENV_DIRS, "").split(os.pathsep) if d]
    return [*dirs, BUILTIN_DIR]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetError(f"cannot read target profile {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise TargetError(f"target profile {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TargetError(f"target profile {path} must be a JSON object")
    return data


def _profiles() -> dict[str, tuple[dict[str, Any], Path]]:
    """name or alias -> (raw profile, file); earlier search folders win."""
    found: dict[str, tuple[dict[str, Any], Path]] = {}
    for folder in reversed(search_dirs()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            data = _read(path)
            name = data.get("name")
            if not isinstance(name, str) or name != path.stem:
                raise TargetError(f"target profile {path}: 'name' must equal the file name ({path.stem!r})")
            found[name] = (data, path)
            for alias in data.get("aliases", []) or []:
                found[str(alias)] = (data, path)
    return found


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _resolve(raw: dict[str, Any], path: Path, mode: str | None, shown: str) -> Target:
    data = copy.deepcopy(raw)
    modes = data.get("modes") or {}
    if not isinstance(modes, dict):
        raise _fail(str(path), "'modes' must be an object of overrides")
    name = str(data.get("name", path.stem))
    if mode is not None:
        if mode not in modes:
            known = ", ".join(modes) or "none"
            raise TargetError(f"target '{name}' has no mode '{mode}' (modes: {known})")
        data = _merge(data, modes[mode])
        name = f"{name}:{mode}"
    validate_profile(data, str(path))
    data["name"] = name
    return Target(name=name, data=data, source=str(path))


def get_target(spec: str) -> Target:
    """Resolve ``NAME``, ``NAME:MODE``, an alias, or a path to a profile file."""
    path = Path(spec).expanduser()
    if spec.endswith(".json") or path.is_file():
        if not path.is_file():
            raise TargetError(f"target profile file {path} does not exist")
        return _resolve(_read(path), path, None, spec)
    name, _, mode = spec.partition(":")
    profiles = _profiles()
    if name not in profiles:
        close = difflib.get_close_matches(name, profiles, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TargetError(f"unknown target '{name}'{hint}; known: {', '.join(sorted(profiles))}")
    raw, file = profiles[name]
    return _resolve(raw, file, mode or None, spec)


def list_targets() -> list[Target]:
    """Every profile and mode, once each (aliases folded into their profile)."""
    seen: set[str] = set()
    out = []
    for raw, path in _profiles().values():
        name = raw["name"]
        if name in seen:
            continue
        seen.add(name)
        out.append(_resolve(raw, path, None, name))
        for mode in raw.get("modes") or {}:
            out.append(_resolve(raw, path, mode, f"{name}:{mode}"))
    return sorted(out, key=lambda t: t.name)


def aliases_of(name: str) -> list[str]:
    base = name.partition(":")[0]
    return sorted(a for a, (raw, _) in _profiles().items() if raw["name"] == base and a != base)
