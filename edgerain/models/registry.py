"""Networks by name, each from a small explicit config (``edgerain models`` lists them)."""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.clip_rpn import ClipRPN, ClipRPNConfig
from edgerain.models.clip_weather import ClipWeather, ClipWeatherConfig
from edgerain.models.fclip_unet import FClipUNet, FClipUNetConfig
from edgerain.models.rdmc import RDMC, RDMCConfig
from edgerain.models.unet import UNetConfig


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    cls: Callable[..., DerainModel]
    config: Any
    description: str


_TINY_UNET = UNetConfig(dim=8, blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), refinement_blocks=1, window=4)
# The compact edge configuration trained as the bundled default (a few million parameters).
_EDGE_UNET = UNetConfig(dim=16, blocks=(1, 2, 2, 2), heads=(1, 2, 4, 8), refinement_blocks=1, window=8)

_ENTRIES = [
    ModelEntry("clip-rpn", "clip-rpn", ClipRPN, ClipRPNConfig(), "CLIP-RN50 router + 3 MGCA experts (C=32)"),
    ModelEntry(
        "clip-rpn-edge",
        "clip-rpn",
        ClipRPN,
        ClipRPNConfig(clip_model="edgerain-edge-rn", expert=_EDGE_UNET),
        "compact CLIP-RPN for Jetson-class devices (small CLIP, C=16 experts)",
    ),
    ModelEntry(
        "clip-rpn-tiny",
        "clip-rpn",
        ClipRPN,
        ClipRPNConfig(clip_model="edgerain-tiny-rn", expert=_TINY_UNET),
        "test-size CLIP-RPN",
    ),
    ModelEntry("fclip-unet", "fclip-unet", FClipUNet, FClipUNetConfig(), "frozen CLIP-RN50 encoder, ConvNeXt decoder"),
    ModelEntry(
        "fclip-unet-tiny",
        "fclip-unet",
        FClipUNet,
        FClipUNetConfig(clip_model="edgerain-tiny-rn", decoder_dims=(8, 8, 16, 16), head_dim=8, convnext_blocks=1),
        "test-size FCLIP-UNet",
    ),
    ModelEntry(
        "clip-weather", "clip-weather", ClipWeather, ClipWeatherConfig(), "SAR encoder + CLIP weather prior (C=32)"
    ),
    ModelEntry(
        "clip-weather-tiny",
        "clip-weather",
        ClipWeather,
        ClipWeatherConfig(clip_model="edgerain-tiny-rn", backbone=_TINY_UNET, prior_tokens=4, token_dim=16),
        "test-size weather-prior network",
    ),
    ModelEntry("rdmc", "rdmc", RDMC, RDMCConfig(), "recursive multi-scale network, 3 recursions"),
    ModelEntry("rdmc-tiny", "rdmc", RDMC, RDMCConfig(widths=(8, 8, 16, 16, 16), recursions=2), "test-size RDMC"),
]
REGISTRY: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}


def list_models() -> list[str]:
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise EdgerainError(f"unknown model '{name}'{hint}; known: {', '.join(REGISTRY)}") from None


def config_from_dict(family: str, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from its ``dataclasses.asdict`` form (checkpoint metadata)."""
    cls = {
        "clip-rpn": ClipRPNConfig,
        "fclip-unet": FClipUNetConfig,
        "clip-weather": ClipWeatherConfig,
        "rdmc": RDMCConfig,
    }[family]
    return _from_dict(cls, data)


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            value = _from_dict(f.default_factory, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def build_model(
    name: str,
    *,
    pretrained: str | None = None,
    config: Any = None,
    quiet_clip: bool = False,
) -> DerainModel:
    """Build a registered network.

    ``pretrained`` names the CLIP weights (hub tag, file or folder; ``None``: random, with a
    warning). ``config`` overrides the registered config (as a checkpoint does).
    """
    entry = get_entry(name)
    cfg = copy.deepcopy(entry.config if config is None else config)
    model = entry.cls(cfg, pretrained=pretrained, quiet_clip=quiet_clip)
    model.registry_name = name
    return model.eval()
