"""ONNX Runtime CPU sessions that keep INT8 (Q/DQ) graphs accurate on every x86 CPU.

ONNX Runtime's CPU provider rewrites signed INT8 Q/DQ pairs to unsigned ones
(``QDQS8ToU8Transformer``) and then fuses ``DequantizeLinear -> Conv -> QuantizeLinear`` into a
u8 x s8 ``QLinearConv``. On x86 CPUs without VNNI those kernels multiply with ``vpmaddubsw``, whose
16-bit intermediate sums saturate. Measured on an AVX2-only AMD EPYC (clip-rpn-tiny's INT8 expert
graph against its fake-quant PyTorch module): 39.2 dB PSNR with the rewrite, 51.3 dB without it,
51.3 dB for the graph run unoptimised. Without the rewrite ORT does not fuse those convolutions:
they run in float on dequantized inputs and weights (exact Q/DQ semantics; the INT8 speed-up of
the fused kernels is given up on such CPUs). CPUs with VNNI (and non-x86 CPUs, where the rewrite
does not exist) keep ORT's defaults.

Every ONNX Runtime session edgerain opens comes from :func:`inference_session` (leaf module: the
runtime, the exporter and ``quant`` all import it).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The graph transformer that turns signed INT8 Q/DQ into unsigned before kernel selection.
S8_TO_U8_TRANSFORMER = "QDQS8ToU8Transformer"
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU feature flags of the first core in ``cpuinfo`` (Linux); ``None`` where unreadable."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return None


def x86_without_vnni(machine: str | None = None, flags: frozenset[str] | None = None) -> bool:
    """True on an x86 CPU whose INT8 dot products lack VNNI (AVX512-VNNI or AVX-VNNI).

    An x86 CPU whose flags cannot be read counts as lacking VNNI: the path that cannot saturate
    is the safe choice.
    """
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in _X86:
        return False
    if flags is None:
        return True
    return not ({"avx512_vnni", "avx_vnni"} & flags)


@functools.cache
def _this_cpu_lacks_vnni() -> bool:
    return x86_without_vnni(flags=cpu_flags())


def disabled_optimizers() -> list[str]:
    """Graph optimizers to pass to ``onnxruntime.InferenceSession(..., disabled_optimizers=...)``."""
    return [S8_TO_U8_TRANSFORMER] if _this_cpu_lacks_vnni() else []


def inference_session(path: str | Path, options: Any, providers: Sequence[str]) -> Any:
    """``onnxruntime.InferenceSession`` for ``path`` with :func:`disabled_optimizers` applied."""
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path), options, providers=list(providers), disabled_optimizers=disabled_optimizers()
    )


def describe() -> str:
    """One line for ``edgerain doctor``: which INT8 path ONNX Runtime takes on this CPU."""
    if disabled_optimizers():
        return f"x86 without VNNI: INT8 convolutions run unfused (the {S8_TO_U8_TRANSFORMER} rewrite would saturate)"
    return "INT8 graphs run with ONNX Runtime's default kernels"
