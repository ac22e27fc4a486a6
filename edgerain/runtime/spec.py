"""What the runtime needs to know about a bundle, read through :mod:`edgerain.bundle`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from edgerain import bundle as bundle_format

CPU_PROVIDER = "CPUExecutionProvider"


@dataclasses.dataclass(frozen=True)
class RuntimeSpec:
    root: Path
    model_name: str
    precision: str
    pad_multiple: int
    min_side: int  # the smallest image side the context graph accepts
    context_file: Path | None
    context_kind: str | None  # "router" | "prior"
    routing_rule: str | None  # "hard-top1" | "soft" (routers only)
    main_files: tuple[Path, ...]
    tile: int | None
    overlap: int
    providers: tuple[str, ...]
    tolerance: float
    manifest: dict[str, Any]


def load_spec(bundle: str | os.PathLike[str], verify_hashes: bool = True) -> RuntimeSpec:
    """Read and validate the manifest; with ``verify_hashes``, refuse missing, altered or extra files."""
    root = Path(bundle)
    manifest = bundle_format.read_manifest(root)
    if verify_hashes:
        bundle_format.check_files(root, manifest)
    graphs = manifest["graphs"]
    ctx = graphs.get("context")
    # The execution-provider order the export chose for its target (top level; else the target's own).
    providers = manifest.get("providers") or manifest["target"].get("providers") or [CPU_PROVIDER]
    return RuntimeSpec(
        root=root,
        model_name=manifest["model"]["name"],
        precision=manifest["precision"],
        pad_multiple=int(manifest["input"]["pad_multiple"]),
        min_side=bundle_format.min_side(manifest),
        context_file=root / ctx["file"] if ctx else None,
        context_kind=ctx["kind"] if ctx else None,
        routing_rule=ctx.get("rule") if ctx else None,
        main_files=tuple(root / g["file"] for g in graphs["main"]),
        tile=manifest["tiling"]["tile"],
        overlap=int(manifest["tiling"]["overlap"]),
        providers=tuple(providers),
        tolerance=float(manifest["parity"]["atol"]),
        manifest=manifest,
    )
