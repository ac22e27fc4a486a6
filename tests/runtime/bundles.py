"""Tiny bundles for the runtime tests, written the way docs/bundle-format.md describes.

Temporary stand-in until ``edgerain export`` lands: it exports a tiny model's graphs with the
legacy exporter (opset 17, dynamic H/W) and writes a manifest.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgerain.utils import sha256_file


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
    files = [g["file"] for g in graphs["main"]] + ([graphs["context"]["file"]] if "context" in graphs else [])
    manifest = {
        "format_version": 1,
        "model": {"name": model.registry_name},
        "input": {"pad_multiple": model.pad_multiple, "pad_mode": "reflect-else-replicate"},
        "graphs": graphs,
        "tiling": {"tile": tile, "overlap": overlap},
        "providers": ["CPUExecutionProvider"],
        "parity": {"atol": 1e-4},
        "files": {f: {"sha256": sha256_file(root / f)} for f in files},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
