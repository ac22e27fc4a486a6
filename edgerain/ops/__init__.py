"""The fused operations the models use, behind one dispatch point per op.

Models call :func:`mgca_window_attention` and :func:`updw` from here and never import a kernel
directly. Until the fused backends are registered these are the PyTorch references.
"""

from edgerain.ops.reference import (
    layer_norm_channels,
    mgca_window_attention_reference,
    updw_reference,
)

mgca_window_attention = mgca_window_attention_reference
updw = updw_reference

__all__ = [
    "layer_norm_channels",
    "mgca_window_attention",
    "mgca_window_attention_reference",
    "updw",
    "updw_reference",
]
