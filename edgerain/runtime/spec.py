"""What the runtime needs to know about a bundle, read from its manifest (docs/bundle-format.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgerain.errors import EdgerainError


@dataclasses.dataclass(frozen=True)
class RuntimeSpec:
    root: Path
    model_name: str
    pad_multiple: int
    context_file: Path | None
    context_kind: str | None  # "router" | "prior"
    routing_rule: str | None  # "hard-top1" | "soft" (routers only)
    main_files: tuple[Path, ...]
    tile: int | None
    overlap: int
    providers: tuple[str, ...]
    tolerance: float
    manifest: dict[str, Any]


def load_spec(bundle: str | Path, verify_hashes: bool = True) -> RuntimeSpec:
    root = Path(bundle)
    path = root / "manifest.json"
    if not path.is_file():
        raise EdgerainError(f"{root} is not a bundle: {path.name} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgerainError(f"cannot read {path}: {exc}") from None
    graphs = manifest.get("graphs", {})
    ctx = graphs.get("context")
    mains = graphs.get("main", [])
    inp = manifest.get("input", {})
    tiling = manifest.get("tiling", {}) or {}
    files = manifest.get("files", {})
    for name in [*(m["file"] for m in mains), *([ctx["file"]] if ctx else [])]:
        f = root / name
        if not f.is_file():
            raise EdgerainError(f"bundle {root} is incomplete: {name} is missing")
        if verify_hashes and name in files:
            from edgerain.utils import sha256_file

            if sha256_file(f) != files[name]["sha256"]:
                raise EdgerainError(f"bundle {root}: {name} does not match its sha256 in the manifest")
    return RuntimeSpec(
        root=root,
        model_name=manifest.get("model", {}).get("name", "?"),
        pad_multiple=int(inp.get("pad_multiple", 8)),
        context_file=root / ctx["file"] if ctx else None,
        context_kind=ctx.get("kind") if ctx else None,
        routing_rule=ctx.get("rule") if ctx else None,
        main_files=tuple(root / m["file"] for m in mains),
        tile=tiling.get("tile"),
        overlap=int(tiling.get("overlap", 32)),
        providers=tuple(manifest.get("providers", ["CPUExecutionProvider"])),
        tolerance=float(manifest.get("parity", {}).get("atol", 1e-3)),
        manifest=manifest,
    )
