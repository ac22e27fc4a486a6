"""Versions and machine facts recorded with every quantization report and benchmark."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from edgerain.machine import cpu_name
from edgerain.ort_cpu import describe as ort_int8_path

_PACKAGES = ("torch", "nvidia-modelopt", "onnx", "onnxruntime", "numpy", "open_clip_torch")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def machine() -> dict[str, Any]:
    """CPU, cores, OS, and which INT8 path ONNX Runtime's CPU provider takes here (see ort_cpu)."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "system": platform.platform(), "ort_int8": ort_int8_path()}
