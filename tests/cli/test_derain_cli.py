"""`edgerain derain` on files and folders."""

from __future__ import annotations

import numpy as np
import pytest
from testutil import write_png

from edgerain.cli import main
from edgerain.data.io import load_image, load_image_tensor, quantize_8bit
from edgerain.models.checkpoint import load_checkpoint, save_checkpoint
from edgerain.models.inference import derain_tensor


@pytest.fixture
def checkpoint(tmp_path, tiny_model_factory):
    return save_checkpoint(tiny_model_factory("rdmc-tiny", 3), tmp_path / "w.safetensors", {"trained": True})


@pytest.fixture
def images(tmp_path, rng):
    folder = tmp_path / "in"
    write_png(folder / "b.png", rng.integers(0, 256, (37, 45, 3), dtype=np.uint8))
    write_png(folder / "a.png", rng.integers(0, 256, (20, 17, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("skipped: not an image")
    return folder


def test_derain_folder_and_file(images, checkpoint, tmp_path, rng, capsys):
    extra = write_png(tmp_path / "c.jpg", rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))
    out = tmp_path / "out"
    rc = main(["derain", str(images), str(extra), "-o", str(out), "--weights", str(checkpoint), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "wrote 3 images" in captured.out and "UNTRAINED" not in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    model = load_checkpoint(checkpoint)
    for name, src in (("a.png", images / "a.png"), ("b.png", images / "b.png"), ("c.png", extra)):
        expected = quantize_8bit(derain_tensor(model, load_image_tensor(src)))
        got = load_image(out / name)
        assert got.shape == load_image(src).shape
        np.testing.assert_array_equal(got, expected)


def test_derain_tiled_matches_api(images, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["derain", str(images / "b.png"), "-o", str(out), "--weights", str(checkpoint), "--no-progress"]
    assert main([*args, "--tile", "32", "--overlap", "8"]) == 0
    model = load_checkpoint(checkpoint)
    x = load_image_tensor(images / "b.png")
    np.testing.assert_array_equal(load_image(out / "b.png"), quantize_8bit(derain_tensor(model, x, tile=32, overlap=8)))


@pytest.mark.parametrize("tta", ["x2", "x4"])
def test_derain_self_ensemble_matches_api(images, checkpoint, tmp_path, capsys, tta):
    out = tmp_path / "out"
    args = ["derain", str(images / "b.png"), "-o", str(out), "--weights", str(checkpoint), "--no-progress"]
    assert main([*args, "--tta", tta]) == 0
    model = load_checkpoint(checkpoint)
    x = load_image_tensor(images / "b.png")
    expected = quantize_8bit(derain_tensor(model, x, tta=tta))
    np.testing.assert_array_equal(load_image(out / "b.png"), expected)
    assert not np.array_equal(expected, quantize_8bit(derain_tensor(model, x)))


def test_derain_progress_bar(images, tmp_path, capsys):
    assert main(["derain", str(images / "a.png"), "-o", str(tmp_path / "out"), "--model", "rdmc-tiny"]) == 0
    captured = capsys.readouterr()
    assert "derain" in captured.err and "1/1" in captured.err  # the progress bar
    assert (tmp_path / "out" / "a.png").is_file()


def test_derain_refuses_to_overwrite_inputs(images, checkpoint, capsys):
    # Inputs already are PNGs in the output folder: writing there would replace them.
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    rc = main(["derain", str(images), "-o", str(images), "--weights", str(checkpoint), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to overwrite" in err
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_derain_name_collision(images, tmp_path, rng, capsys):
    other = write_png(tmp_path / "elsewhere" / "a.jpg", rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    rc = main(["derain", str(images), str(other), "-o", str(tmp_path / "out"), "--model", "rdmc-tiny"])
    assert rc == 2 and "would both be written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
