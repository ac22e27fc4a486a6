"""Fixtures of the training room: a tiny stand-in for ../shared/data/train, so tests need no shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_train_root(root: Path, seed: int = 0) -> Path:
    """Three clean photos (smooth gradients + texture) and four streak layers (bright lines on black)."""
    rng = np.random.default_rng(seed)
    for set_name, n in (("BSDS500_clean", 2), ("Kodak24_clean", 1)):
        for i in range(n):
            yy, xx = np.mgrid[0:72, 0:96]
            base = np.stack([xx / 96, yy / 72, 0.5 + 0.3 * np.sin(xx / 7.0)], -1)
            img = np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)
            write_png(root / set_name / "clean" / f"{i + 1:03d}.png", (img * 255).astype(np.uint8))
    for i in range(4):
        layer = np.zeros((64, 112), np.uint8)
        for _ in range(40):
            x, y = int(rng.integers(112)), int(rng.integers(50))
            layer[y : y + 14, x] = rng.integers(120, 240)
        write_png(root / "streaks_Garg06" / "layers" / f"{i + 1}-4.png", np.stack([layer] * 3, -1))
    return root


@pytest.fixture(scope="session")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_train_root(tmp_path_factory.mktemp("train_root"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The CI and dev machines are shared: one thread avoids OpenMP spin-waits on a busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
