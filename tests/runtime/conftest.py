"""Session-wide tiny networks and their bundles for the runtime tests (exported once)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from runtime_bundles import make_bundle, tiny_model

from edgerain.models.registry import get_entry

# The MGCA window attention does not yet trace to a shape-generic ONNX graph (its window
# arithmetic is baked in at the trace size), so the runtime tests use the plain-transformer
# decoder variant of the tiny U-Nets: routing, priors, tiling and backends are what they test.
_RPN_EXPERT = dataclasses.replace(get_entry("clip-rpn-tiny").config.expert, mgca_decoder=False)
_WEATHER_BACKBONE = dataclasses.replace(get_entry("clip-weather-tiny").config.backbone, mgca_decoder=False)

# name -> (registry name, config changes, manifest tiling)
CASES: dict[str, tuple[str, dict[str, Any], int | None]] = {
    "rpn-hard": ("clip-rpn-tiny", {"expert": _RPN_EXPERT}, None),
    "rpn-soft-tiled": ("clip-rpn-tiny", {"expert": _RPN_EXPERT, "routing": "soft"}, 32),
    "weather": ("clip-weather-tiny", {"backbone": _WEATHER_BACKBONE}, None),
    "fclip": ("fclip-unet-tiny", {}, None),
    "rdmc": ("rdmc-tiny", {}, None),
}


@pytest.fixture(scope="session")
def runtime_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """Every case's model and bundle folder, built lazily by :func:`case`."""
    return {"_root": tmp_path_factory.mktemp("bundles")}  # type: ignore[dict-item]


@pytest.fixture
def case(runtime_cases: dict[str, Any]):
    def get(name: str) -> tuple[Any, Path]:
        if name not in runtime_cases:
            registry_name, changes, tile = CASES[name]
            model = tiny_model(registry_name, **changes)
            runtime_cases[name] = (model, make_bundle(model, runtime_cases["_root"] / name, tile=tile, overlap=8))
        return runtime_cases[name]

    return get
