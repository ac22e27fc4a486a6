"""Session-wide tiny networks and their bundles for the runtime tests (each exported once, on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runtime_bundles import make_bundle, tiny_model

# name -> (registry name, config changes, manifest tiling)
CASES: dict[str, tuple[str, dict[str, Any], int | None]] = {
    "rpn-hard": ("clip-rpn-tiny", {}, None),
    "rpn-soft-tiled": ("clip-rpn-tiny", {"routing": "soft"}, 32),
    "rpn-stats": ("clip-rpn-tiny", {"router_head": "feature-stats"}, None),
    "weather": ("clip-weather-tiny", {}, None),
    "fclip": ("fclip-unet-tiny", {}, None),
    "rdmc": ("rdmc-tiny", {}, None),
}


@pytest.fixture(scope="session")
def runtime_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return {"_root": tmp_path_factory.mktemp("bundles")}


@pytest.fixture
def case(runtime_cases: dict[str, Any]):
    """``case(name) -> (model, bundle folder)`` for a name in CASES."""

    def get(name: str) -> tuple[Any, Path]:
        if name not in runtime_cases:
            registry_name, changes, tile = CASES[name]
            model = tiny_model(registry_name, **changes)
            runtime_cases[name] = (model, make_bundle(model, runtime_cases["_root"] / name, tile=tile, overlap=8))
        return runtime_cases[name]

    return get


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A bundle written by the real ``edgerain export`` path (clip-rpn-tiny, tiled), and its network."""
    from edgerain.export.exporter import export_bundle, load_network

    root = tmp_path_factory.mktemp("exported") / "rpn"
    res = export_bundle(root, "x86-cpu", model="clip-rpn-tiny", tile=48, overlap=8, build_engines=False)
    return load_network("clip-rpn-tiny", None, None), res.bundle
