"""Running a bundle's ONNX graphs with ONNX Runtime, following the bundle's processing convention.

This is the exporter's own check of what it wrote (parity at export, ``edgerain verify``): whole
images only, batch 1, the convention of docs/bundle-format.md taken from :mod:`edgerain.bundle`.
The deployable runtime with tiling and TensorRT is ``edgerain.runtime``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerain import bundle as fmt
from edgerain.ort_cpu import inference_session


@dataclasses.dataclass
class OrtResult:
    output: np.ndarray  # (1, 3, H, W) float32, cropped and clamped
    context: np.ndarray | None  # the context graph's output (scores or tokens)
    expert: int | None  # hard routing: the expert that ran


class OrtBundle:
    """ONNX Runtime sessions for a bundle's graphs (experts opened on first use)."""

    def __init__(
        self, root: str | Path, manifest: Mapping[str, Any], providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.providers = list(providers)
        self.multiple = int(manifest["input"]["pad_multiple"])
        graphs = manifest["graphs"]
        self.context_spec = graphs.get("context")
        self.main_specs = list(graphs["main"])
        self._sessions: dict[str, Any] = {}

    def session(self, file: str) -> Any:
        import onnxruntime as ort

        if file not in self._sessions:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._sessions[file] = inference_session(self.root / file, opts, self.providers)
        return self._sessions[file]

    def run_context(self, x: np.ndarray) -> np.ndarray | None:
        if self.context_spec is None:
            return None
        return np.asarray(self.session(self.context_spec["file"]).run(None, {"image": x})[0])

    def _run_main(self, index: int, padded: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        spec = self.main_specs[index]
        feed = {"image": padded}
        if len(spec["inputs"]) > 1:
            feed["context"] = context  # type: ignore[assignment]
        return np.asarray(self.session(spec["file"]).run(None, feed)[0])

    def run(self, x: np.ndarray) -> OrtResult:
        """Derain one NCHW float32 image in [0, 1] (steps 2-5 of the convention, no tiling)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        h, w = x.shape[-2:]
        context = self.run_context(x)
        padded = np.ascontiguousarray(fmt.pad_image(x, self.multiple), dtype=np.float32)
        expert: int | None = None
        if self.context_spec is not None and self.context_spec["kind"] == "router":
            assert context is not None
            if self.context_spec["rule"] == "hard-top1":
                expert = int(np.argmax(context[0]))
                y = self._run_main(expert, padded, None)
            else:
                y = fmt.mix_soft((self._run_main(k, padded, None) for k in range(len(self.main_specs))), context)
        else:
            y = self._run_main(0, padded, context)
        return OrtResult(output=fmt.crop_clamp(y, h, w), context=context, expert=expert)


def psnr_db(a: np.ndarray, b: np.ndarray, cap: float = 200.0) -> float:
    """PSNR of two [0, 1] arrays in dB (capped, so identical arrays give a finite JSON number)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse <= 10 ** (-cap / 10):
        return cap
    return float(10.0 * np.log10(1.0 / mse))


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
