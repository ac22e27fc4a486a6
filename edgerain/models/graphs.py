"""The deployable graphs of each network, as modules an exporter can trace.

One definition used by both the float exporter (``edgerain.export``) and the INT8 exporter
(``edgerain.quant``), so the two can never disagree on what a bundle's graphs compute.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgerain.models.base import DerainModel
from edgerain.models.clip_rpn import ClipRPN


class _DeployedGraph(nn.Module):
    """Base of the wrappers: built in eval mode.

    Exporters restore a wrapper's training flag afterwards; a wrapper left in nn.Module's default
    train mode would switch the whole network to training behaviour (no output clamp, LDFPS noise).
    """

    def __init__(self, model: DerainModel) -> None:
        super().__init__()
        self.model = model
        self.eval()


class RouterGraph(_DeployedGraph):
    """Whole (unpadded) image -> routing scores (1, K); resizes to the CLIP input size itself."""

    model: ClipRPN

    def forward(self, image: Tensor) -> Tensor:
        return self.model.router(image)


class PriorGraph(_DeployedGraph):
    """Whole (unpadded) image -> CLIP weather-prior tokens (1, K+1, D)."""

    def forward(self, image: Tensor) -> Tensor:
        return self.model.global_context(image)


class ExpertGraph(_DeployedGraph):
    """One CLIP-RPN expert on a padded image: input + residual."""

    model: ClipRPN

    def __init__(self, model: ClipRPN, index: int) -> None:
        super().__init__(model)
        self.index = index

    def forward(self, image: Tensor) -> Tensor:
        return self.model.run_expert(self.index, image)


class MainGraph(_DeployedGraph):
    """A single-path network (optionally fed a context tensor) on a padded image."""

    def forward(self, image: Tensor, context: Tensor | None = None) -> Tensor:
        return self.model.forward_padded(image, context)
