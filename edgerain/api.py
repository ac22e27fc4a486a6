"""The Python API behind every CLI command (the CLI only parses and prints)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel


def load_model(
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    clip_weights: str | None = None,
) -> DerainModel:
    """Resolve what the user asked for into a ready network in eval mode.

    * neither: the bundled default;
    * ``weights`` alone: the network the checkpoint names;
    * ``model`` alone: that network with random weights (CLIP from ``clip_weights`` if given);
    * both: the checkpoint, checked to be of that network.
    """
    from edgerain.models.checkpoint import load_checkpoint
    from edgerain.models.default import load_default_model
    from edgerain.models.registry import build_model, get_entry

    if weights is not None:
        return load_checkpoint(weights, expect_model=model)
    if model is None:
        return load_default_model()
    get_entry(model)
    net = build_model(model, pretrained=clip_weights)
    net.provenance = {"trained": False, "clip_weights": clip_weights}  # type: ignore[assignment]
    return net


@dataclasses.dataclass
class RouteRow:
    path: Path
    scores: list[float]
    expert: int


@dataclasses.dataclass
class RouteResults:
    prompts: list[str]
    rows: list[RouteRow]


def route_images(
    images: list[Path], model: str | None = None, weights: str | os.PathLike[str] | None = None
) -> RouteResults:
    """CLIP-RPN router scores for each image (decided on the whole image)."""
    from edgerain.data.io import expand_inputs, load_image_tensor
    from edgerain.models.clip_rpn import ClipRPN

    net = load_model(model, weights)
    if not isinstance(net, ClipRPN):
        raise EdgerainError(f"'{net.registry_name}' has no CLIP router; routing needs a clip-rpn network")
    rows = []
    with torch.no_grad():
        for path in expand_inputs(images):
            routing = net.route(load_image_tensor(path))
            rows.append(RouteRow(path, routing.scores[0].tolist(), int(routing.expert[0])))
    return RouteResults(list(net.config.prompts), rows)
