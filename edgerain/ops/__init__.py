"""The fused operations the models use, behind one dispatch point per op.

Models call :func:`mgca_window_attention` and :func:`updw` from here and never import a kernel
directly. Each call picks a backend (``backend=`` argument, ``$EDGERAIN_OPS_BACKEND``, or ``auto``:
Triton, then the CUDA extension, for CUDA tensors; the PyTorch reference otherwise); see
dispatch.py and docs/kernels.md. :func:`backend_report` lists which backends are available here and why not.
"""

from edgerain.ops.dispatch import (
    CHOICES,
    ENV_VAR,
    backend_report,
    choose,
    mgca_window_attention,
    updw,
)
from edgerain.ops.reference import (
    layer_norm_channels,
    mgca_window_attention_reference,
    updw_reference,
)

__all__ = [
    "CHOICES",
    "ENV_VAR",
    "backend_report",
    "choose",
    "layer_norm_channels",
    "mgca_window_attention",
    "mgca_window_attention_reference",
    "updw",
    "updw_reference",
]
