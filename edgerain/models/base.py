"""What every edgerain network is: padding convention, global context, residual output."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn


def pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Bottom and right padding that bring (h, w) to multiples of ``multiple``."""
    return (-h) % multiple, (-w) % multiple


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom/right to a multiple: reflect, or replicate where the image is too small to reflect.

    This is the one padding convention; the bundle manifest states it and both runtimes follow it.
    """
    ph, pw = pad_amounts(x.shape[-2], x.shape[-1], multiple)
    if ph == 0 and pw == 0:
        return x
    if ph < x.shape[-2] and pw < x.shape[-1]:
        return F.pad(x, (0, pw, 0, ph), mode="reflect")
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class DerainModel(nn.Module):
    """A deraining network: RGB in [0, 1], NCHW, any size; output = input + predicted residual.

    Subclasses implement :meth:`forward_padded` on inputs whose sides are multiples of
    ``pad_multiple``. Whole-image decisions (CLIP routing, the CLIP weather prior) live in
    :meth:`global_context`, computed once per image so that tiled inference stays consistent.
    """

    registry_name: str = ""
    config: Any
    pad_multiple: ClassVar[int] = 8

    def global_context(self, x: Tensor) -> Any:
        """Per-image state decided on the whole (unpadded) image; ``None`` if the network has none."""
        return None

    @property
    def min_side(self) -> int:
        """The smallest image side :meth:`global_context` accepts (1: any); exports record it."""
        return 1

    def forward_padded(self, x: Tensor, context: Any = None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, context: Any = None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an RGB batch (B, 3, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if context is None:
            context = self.global_context(x)
        y = self.forward_padded(pad_to_multiple(x, self.pad_multiple), context)[..., :h, :w]
        return y if self.training else y.clamp(0.0, 1.0)

    def forward_train(self, x: Tensor) -> dict[str, Any]:
        """Output plus whatever the network's training losses need (masks, features, stages)."""
        return {"out": self(x)}

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
