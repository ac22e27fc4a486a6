"""Tiny bundles for the runtime tests, written the way docs/bundle-format.md describes.

Temporary stand-in until ``edgerain export`` lands: it exports a tiny model's graphs with the
legacy exporter (opset 17, dynamic H/W) and writes a manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgerain import bundle as bundle_format


class _Main(nn.Module):
    def __init__(self, model: Any, index: int | None) -> None:
        super().__init__()
        self.model, self.index = model, index

    def forward(self, image: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.index is not None:
            return self.model.run_expert(self.index, image)
        return self.model.forward_padded(image, context)


class _Context(nn.Module):
    def __init__(self, model: Any, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.router(image) if self.kind == "router" else self.model.global_context(image)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], output: str) -> None:
    axes = (
        {"image": {2: "height", 3: "width"}, output: {2: "height", 3: "width"}}
        if output == "output"
        else {"image": {2: "height", 3: "width"}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def tiny_model(name: str, seed: int = 0, **config_changes: Any) -> Any:
    """A seeded tiny network; ``config_changes`` replace fields of its registered config."""
    import dataclasses

    from edgerain.models import build_model
    from edgerain.models.registry import get_entry

    config = dataclasses.replace(get_entry(name).config, **config_changes) if config_changes else None
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(name, config=config, quiet_clip=True)


def make_bundle(model: Any, root: Path, tile: int | None = None, overlap: int = 16) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    m = model.pad_multiple
    x = torch.rand(1, 3, 2 * m, 3 * m)
    graphs: dict[str, Any] = {"main": []}
    is_router = hasattr(model, "router") and hasattr(model, "experts")
    kind = "router" if is_router else ("prior" if model.global_context(x) is not None else None)
    with torch.no_grad():
        if kind is not None:
            _export(_Context(model, kind), (x,), root / "context.onnx", ["image"], "scores" if is_router else "tokens")
            graphs["context"] = {"file": "context.onnx", "kind": kind}
            if is_router:
                graphs["context"]["rule"] = "hard-top1" if model.config.routing == "hard" else "soft"
        if is_router:
            for i in range(len(model.experts)):
                _export(_Main(model, i), (x,), root / f"main_{i}.onnx", ["image"], "output")
                graphs["main"].append({"file": f"main_{i}.onnx"})
        elif kind == "prior":
            _export(
                _Main(model, None), (x, model.global_context(x)), root / "main_0.onnx", ["image", "context"], "output"
            )
            graphs["main"].append({"file": "main_0.onnx"})
        else:
            _export(_Main(model, None), (x,), root / "main_0.onnx", ["image"], "output")
            graphs["main"].append({"file": "main_0.onnx"})
    for g in [*graphs["main"], *([graphs["context"]] if "context" in graphs else [])]:
        g["precision"] = "fp32"
        g["inputs"] = [{"name": "image", "shape": [1, 3, "height", "width"], "dtype": "float32"}]
        g["outputs"] = [{"name": "output", "shape": [1, 3, "height", "width"], "dtype": "float32"}]
    manifest = {
        "format": bundle_format.FORMAT_NAME,
        "format_version": bundle_format.FORMAT_VERSION,
        "model": {"name": model.registry_name, "family": model.registry_name.removesuffix("-tiny"), "config": {}},
        "precision": "fp32",
        "target": {"name": "x86-cpu", "providers": ["CPUExecutionProvider"]},
        "input": {"pad_multiple": model.pad_multiple, **bundle_format.INPUT_CONVENTION},
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
