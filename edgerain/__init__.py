"""edgerain: deploy CLIP-driven single-image deraining networks on Jetson Orin and desktop GPUs.

The public Python API (each CLI command is one call into it)::

    import edgerain
    model = edgerain.load_model("clip-rpn-tiny")          # or weights="ckpt.safetensors"
    edgerain.build_model("fclip-unet", pretrained="path/to/RN50.safetensors")
    derain = edgerain.Derainer("out/demo/bundle")           # an exported bundle, ONNX Runtime
    clean = derain(rainy_uint8_hwc)

Heavy submodules are imported lazily so ``import edgerain`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "edgerain.api",
    "route_images": "edgerain.api",
    "build_model": "edgerain.models",
    "list_models": "edgerain.models",
    "EdgerainError": "edgerain.errors",
    "Derainer": "edgerain.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgerain' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
