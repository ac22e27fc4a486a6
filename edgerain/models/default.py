"""The bundled default network: what ``make demo``, ``edgerain derain`` and ``eval`` use by default.

When ``edgerain/weights/default.safetensors`` ships with the package it is loaded. Until a trained
checkpoint exists, a seeded, untrained ``clip-rpn-tiny`` stands in, and every user of it is told so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from edgerain.models.base import DerainModel

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "default.safetensors"
FALLBACK_MODEL = "clip-rpn-tiny"


class UntrainedDefaultWarning(UserWarning):
    """The default network has no trained weights: its output is not a deraining result."""


def load_default_model() -> DerainModel:
    from edgerain.models.checkpoint import load_checkpoint
    from edgerain.models.registry import build_model

    if DEFAULT_WEIGHTS.is_file():
        return load_checkpoint(DEFAULT_WEIGHTS)
    warnings.warn(
        f"no trained default checkpoint is bundled ({DEFAULT_WEIGHTS.name} absent): using an UNTRAINED "
        f"{FALLBACK_MODEL} with seeded random weights; its output is not a deraining result",
        UntrainedDefaultWarning,
        stacklevel=2,
    )
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = build_model(FALLBACK_MODEL, quiet_clip=True)
    model.provenance = {"trained": False}  # type: ignore[assignment]
    return model


def is_trained(model: DerainModel) -> bool:
    prov = getattr(model, "provenance", None) or {}
    return bool(prov.get("trained", True))
