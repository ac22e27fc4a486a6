"""Fold BatchNorm into the preceding convolution before quantization.

In an INT8 Q/DQ graph a BatchNorm after a quantized conv cannot be folded by ONNX Runtime (the conv
weight is the output of a DequantizeLinear, not a constant), so it runs as a separate float op and
the conv cannot become a QLinearConv. Folding first (conv weight * gamma / sigma, bias adjusted),
as TensorRT does for float graphs, also lets the per-channel weight scales see the weights that are
actually used. Only frozen, eval-mode BatchNorm is folded (the CLIP towers).
"""

from __future__ import annotations

import itertools
import re

import torch
from torch import nn

_CONV_NAME = re.compile(r"conv(\d*)$")


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) child names: ``convN``/``bnN`` siblings (open_clip's ModifiedResNet) and adjacent
    Conv2d -> BatchNorm2d children of a Sequential (its downsample branches)."""
    children = dict(module.named_children())
    found = []
    for name, child in children.items():
        m = _CONV_NAME.match(name)
        bn = children.get(f"bn{m.group(1)}") if m else None
        if isinstance(child, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            found.append((name, f"bn{m.group(1)}"))  # type: ignore[union-attr]
    if isinstance(module, nn.Sequential):
        names = list(children)
        for a, b in itertools.pairwise(names):
            if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d):
                found.append((a, b))
    return found


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    new_bias = (bias - bn.running_mean) * scale + shift
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=False)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> list[str]:
    """Fold every eval-mode (conv, BatchNorm) pair of ``model`` in place; returns the folded BN names.

    The BatchNorm is replaced by ``nn.Identity`` so the forward code that calls it is unchanged.
    """
    folded = []
    for parent_name, parent in list(model.named_modules()):
        for conv_name, bn_name in _pairs(parent):
            bn = getattr(parent, bn_name)
            if bn.training or not bn.track_running_stats:
                continue
            _fold(getattr(parent, conv_name), bn)
            setattr(parent, bn_name, nn.Identity())
            folded.append(f"{parent_name}.{bn_name}" if parent_name else bn_name)
    return folded
