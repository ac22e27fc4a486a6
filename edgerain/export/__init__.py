"""Export networks to deployable bundles, verify bundles, build TensorRT engines (docs/export.md).

Python API::

    from edgerain.export import export_bundle, verify_bundle
    result = export_bundle("out/bundle", "jetson-orin", model="clip-rpn-tiny", precision="fp16")
    report = verify_bundle("out/bundle")
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportResult", "VerifyReport", "export_bundle", "verify_bundle"]


def __getattr__(name: str) -> Any:
    # Lazy: importing edgerain.export must not pull in torch/onnx (the CLI lists commands cheaply).
    if name in ("export_bundle", "ExportResult"):
        from edgerain.export import exporter

        return getattr(exporter, name)
    if name in ("verify_bundle", "VerifyReport"):
        from edgerain.export import verify

        return getattr(verify, name)
    raise AttributeError(f"module 'edgerain.export' has no attribute {name!r}")
