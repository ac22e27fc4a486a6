"""Parameter and FLOP counts of the registered networks (``edgerain models``)."""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgerain.models.base import DerainModel
from edgerain.models.clip_rpn import ClipRPN
from edgerain.models.registry import REGISTRY, build_model


@dataclasses.dataclass
class ModelRow:
    name: str
    family: str
    params: int
    flops: int
    description: str


def count_flops(model: DerainModel, height: int, width: int) -> int:
    """FLOPs (2 per multiply-add) of the deployed path on one image, counted on meta tensors.

    For CLIP-RPN that is the router plus one expert (hard routing runs one).
    """
    model = model.to("meta").eval()
    x = torch.zeros((1, 3, height, width), device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        if isinstance(model, ClipRPN):
            model.router(x)
            model.run_expert(0, x)
        else:
            model.forward_padded(x)
    return int(counter.get_total_flops())


def describe_models(size: int = 512, only_tiny: bool = False) -> list[ModelRow]:
    rows = []
    for name, entry in REGISTRY.items():
        if only_tiny and not name.endswith("-tiny"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(name, quiet_clip=True)
        params = sum(p.numel() for p in model.parameters())
        side = -(-size // model.pad_multiple) * model.pad_multiple
        rows.append(ModelRow(name, entry.family, params, count_flops(model, side, side), entry.description))
    return rows
