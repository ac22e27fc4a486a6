"""Fixtures shared by every test room: offline hub, ../shared data, tiny images and networks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

# Nothing may reach a model hub from the tests.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from testutil import write_png

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGERAIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (benchmark images); tests that need it skip where it is absent."""
    if not (SHARED_DATA / "rain100l").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (only on the project's own machines)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: tests are small, and results do not depend on the thread count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def png_writer():
    """``png_writer(path, uint8_array, mode=None)`` writes a PNG (creating folders)."""
    return write_png


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def make_tiny_model(name: str, seed: int = 0):
    import torch

    from edgerain.models import build_model

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(name, quiet_clip=True)


@pytest.fixture
def tiny_model_factory():
    return make_tiny_model


@pytest.fixture
def pair_folder(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A tiny rain/norain folder of three 40x56 pairs."""
    root = tmp_path / "pairs"
    for i in range(1, 4):
        clean = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        rainy = np.clip(clean.astype(int) + rng.integers(0, 60, clean.shape), 0, 255).astype(np.uint8)
        write_png(root / "norain" / f"{i:03d}.png", clean)
        write_png(root / "rain" / f"{i:03d}.png", rainy)
    return root
