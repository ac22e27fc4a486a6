"""The four deraining networks, their registry, checkpoints and inference helpers."""

from edgerain.models.base import DerainModel, pad_to_multiple
from edgerain.models.registry import REGISTRY, build_model, get_entry, list_models

__all__ = ["REGISTRY", "DerainModel", "build_model", "get_entry", "list_models", "pad_to_multiple"]
