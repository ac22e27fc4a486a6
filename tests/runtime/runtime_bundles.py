"""Bundles for the runtime tests.

``make_bundle`` writes a bundle of any in-memory network quickly: the exporter's own graph split
and trace (``edgerain.export.graphs``: plan, legacy trace with its floor-division fix), without
the exporter's simplification, parity samples and build scripts, and a manifest validated by
``edgerain.bundle``. The end-to-end tests also use a bundle from the real ``export_bundle``.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import torch

from edgerain import bundle as bundle_format


def tiny_model(name: str, seed: int = 0, **config_changes: Any) -> Any:
    """A seeded tiny network; ``config_changes`` replace fields of its registered config."""
    from edgerain.models import build_model
    from edgerain.models.registry import get_entry

    config = dataclasses.replace(get_entry(name).config, **config_changes) if config_changes else None
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(name, config=config, quiet_clip=True)


def make_bundle(model: Any, root: Path, tile: int | None = None, overlap: int = 16) -> Path:
    from edgerain.export import graphs as G

    root.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    m = model.pad_multiple
    graphs: dict[str, Any] = {"context": None, "main": []}
    for plan in G.plan_graphs(model):
        proto = G.torch_to_onnx(plan, plan.example_inputs(model, 4 * m, 6 * m))
        (root / plan.file).write_bytes(G.serialize(proto))
        inputs, outputs = G.io_spec(proto)
        entry: dict[str, Any] = {"file": plan.file, "precision": "fp32", "inputs": inputs, "outputs": outputs}
        if plan.role == "context":
            entry["kind"] = plan.kind
            if plan.kind == "router":
                entry["rule"] = "hard-top1" if model.config.routing == "hard" else "soft"
            graphs["context"] = entry
        else:
            graphs["main"].append(entry)
    manifest = {
        "format": bundle_format.FORMAT_NAME,
        "format_version": bundle_format.FORMAT_VERSION,
        "model": {"name": model.registry_name, "family": model.registry_name.removesuffix("-tiny"), "config": {}},
        "precision": "fp32",
        "target": {"name": "x86-cpu", "providers": ["CPUExecutionProvider"]},
        "input": {"pad_multiple": m, "min_side": model.min_side, **bundle_format.INPUT_CONVENTION},
        "graphs": graphs,
        "tiling": {"tile": tile, "overlap": overlap},
        "shape_profiles": [],
        "parity": {"atol": 1e-4, "min_psnr_db": 60.0, "samples": []},
        "versions": {},
        "files": bundle_format.hash_tree(root),
    }
    bundle_format.validate_manifest(manifest)
    (root / bundle_format.MANIFEST_NAME).write_text(bundle_format.dumps_manifest(manifest))
    return root
