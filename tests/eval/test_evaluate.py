"""evaluate(): per-image rows, means, the rainy baseline, files under OUT, and the Rain100L reference."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from edgerain.data.io import load_image
from edgerain.errors import EdgerainError
from edgerain.eval.evaluate import _GAP, evaluate
from edgerain.eval.metrics import psnr, ssim
from edgerain.models.base import DerainModel


class Identity(DerainModel):
    """Returns its input: its scores must be the rainy input's own."""

    registry_name = "identity"

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward_padded(self, x, context=None):
        return x + 0 * self.anchor


class Darken(Identity):
    registry_name = "darken"

    def forward_padded(self, x, context=None):
        return x * 0.5


def test_identity_reproduces_rain100l_input_score(shared_data):
    result = evaluate(Identity(), shared_data / "rain100l", progress=False, trained=False)
    assert result.count == 45
    assert result.means["psnr_y"] == pytest.approx(26.44, abs=0.01)
    assert result.means == pytest.approx(result.input_means, abs=1e-9)


def test_rows_means_and_files(pair_folder, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(Darken(), pair_folder, out, save_images=True, progress=False, weights="w.safetensors")
    rainy, clean = load_image(pair_folder / "rain" / "002.png"), load_image(pair_folder / "norain" / "002.png")
    pred = np.floor(rainy.astype(np.float64) * 0.5 * 255 + 0.5) / 255  # 8-bit encoded, round half up
    row = result.rows[1]
    assert row.name == "002" and (row.width, row.height) == (56, 40)
    assert row.psnr_y == pytest.approx(psnr(pred, clean), abs=1e-6)
    assert row.ssim_y == pytest.approx(ssim(pred, clean), abs=1e-6)
    assert row.input_psnr_rgb == pytest.approx(psnr(rainy, clean, y_channel=False), abs=1e-9)
    assert result.means["psnr_y"] == pytest.approx(np.mean([r.psnr_y for r in result.rows]))

    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["001", "002", "003"]
    assert float(rows[1]["psnr_y"]) == pytest.approx(row.psnr_y, abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 3 and summary["model"] == "darken" and summary["weights"] == "w.safetensors"
    assert summary["psnr_y"] == pytest.approx(result.means["psnr_y"])
    assert summary["input"]["ssim_y"] == pytest.approx(result.input_means["ssim_y"])
    assert summary["trained"] is True and summary["data"] == str(pair_folder)
    assert summary["images"] == "images"
    side = load_image(out / "images" / "002.png")
    assert side.shape == (40, 3 * 56 + 2 * _GAP, 3)
    np.testing.assert_array_equal(side[:, :56], rainy)
    np.testing.assert_allclose(side[:, 56 + _GAP : 112 + _GAP], pred, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "pairs"]  # no staging folder left


def test_without_out_nothing_is_written(pair_folder):
    before = sorted(p.relative_to(pair_folder) for p in pair_folder.rglob("*"))
    evaluate(Identity(), pair_folder, progress=False)
    assert sorted(p.relative_to(pair_folder) for p in pair_folder.rglob("*")) == before
    assert sorted(p.name for p in pair_folder.parent.iterdir()) == ["pairs"]


def test_failure_midway_leaves_no_output(pair_folder, tmp_path):
    # 003's clean image has a valid header but is cut short: found only when decoding, after 001 and 002.
    path = pair_folder / "norain" / "003.png"
    path.write_bytes(path.read_bytes()[:-60])
    with pytest.raises(EdgerainError, match=r"003\.png"):
        evaluate(Identity(), pair_folder, tmp_path / "eval", save_images=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]


def test_too_small_for_ssim(tmp_path):
    from PIL import Image

    for sub in ("rain", "norain"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / sub / "001.png")
    with pytest.raises(EdgerainError, match="at least 11x11"):
        evaluate(Identity(), tmp_path, progress=False)
