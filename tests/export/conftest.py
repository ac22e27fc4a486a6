"""Bundles shared by the export tests: each tiny network exported once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# fp32 bundles for parity and verify. x86-cpu keeps them cheap (no DLA report, no profile-sized
# sample); the Jetson path (fp16, DLA report, build script) is covered by the CLI test.
FP32_TARGETS = {
    "clip-rpn-tiny": "x86-cpu",
    "clip-weather-tiny": "x86-cpu",
    "fclip-unet-tiny": "x86-cpu",
    "rdmc-tiny": "x86-cpu",
}


@pytest.fixture(scope="session")
def fp32_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgerain.export import export_bundle

    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, target in FP32_TARGETS.items():
        out[name] = export_bundle(root / name, target, model=name, precision="fp32").bundle
    return out


@pytest.fixture
def bundle_copy(tmp_path: Path, fp32_bundles: dict[str, Path]):
    """A private copy of a session bundle, for tests that damage it."""

    count = iter(range(1000))

    def make(name: str) -> Path:
        dest = tmp_path / f"copy-{next(count)}-{name}"
        shutil.copytree(fp32_bundles[name], dest)
        return dest

    return make
