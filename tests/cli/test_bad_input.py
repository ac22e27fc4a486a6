"""Every bad input of issue 2 through the CLI: exit code 2, one `error:` line, no traceback, no output.

And the inputs that look unusual but must work: 16-bit, grayscale, RGBA, palette and 1x1 images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from testutil import write_png

from edgerain.cli import main


def _assert_clean_failure(capsys, argv: list[str], out: Path, expect: str) -> None:
    rc = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, (rc, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert expect in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.fixture
def good_png(tmp_path, rng) -> Path:
    return write_png(tmp_path / "good.png", rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))


def _bad_files(tmp_path: Path, good_png: Path) -> dict[str, tuple[Path, str]]:
    folder = tmp_path / "bad"
    folder.mkdir()
    trunc = folder / "truncated.png"
    trunc.write_bytes(good_png.read_bytes()[:-50])
    notimg = folder / "notes.png"
    notimg.write_text("this is text, not a picture\n")
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    return {
        "truncated": (trunc, "cannot read image"),
        "non-image": (notimg, "not an image file"),
        "empty file": (empty, "not an image file"),
        "missing": (folder / "missing.png", "does not exist"),
    }


@pytest.mark.parametrize("case", ["truncated", "non-image", "empty file", "missing"])
def test_derain_bad_image(case, tmp_path, good_png, capsys):
    path, expect = _bad_files(tmp_path, good_png)[case]
    out = tmp_path / "out"
    argv = ["derain", str(path), "-o", str(out), "--model", "rdmc-tiny", "--no-progress"]
    _assert_clean_failure(capsys, argv, out, expect)


def test_derain_bad_image_among_good_ones_writes_nothing(tmp_path, good_png, capsys):
    # The non-image sorts after the good image: inputs are all checked before any output is written.
    folder = tmp_path / "mixed"
    write_png(folder / "a.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "b.png").write_text("not an image")
    out = tmp_path / "out"
    _assert_clean_failure(capsys, ["derain", str(folder), "-o", str(out), "--model", "rdmc-tiny"], out, "b.png")


@pytest.mark.parametrize("bundle", [False, True])
def test_derain_unknown_self_ensemble_mode(bundle, tmp_path, good_png, capsys):
    out = tmp_path / "out"
    source = ["--bundle", str(tmp_path / "no_bundle")] if bundle else ["--model", "rdmc-tiny"]
    argv = ["derain", str(good_png), "-o", str(out), *source, "--tta", "flip", "--no-progress"]
    _assert_clean_failure(capsys, argv, out, "unknown --tta 'flip'; choose one of none, x2, x4")


def test_unreadable_file(tmp_path, good_png, capsys, monkeypatch):
    good_png.chmod(0)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root reads files whatever their permissions: make the access check see what a user would.
        import edgerain.data.io as dio

        real_access = os.access
        monkeypatch.setattr(dio.os, "access", lambda p, mode: Path(p) != good_png and real_access(p, mode))
    out = tmp_path / "out"
    _assert_clean_failure(
        capsys, ["derain", str(good_png), "-o", str(out), "--model", "rdmc-tiny"], out, "not readable"
    )


def test_empty_input_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    _assert_clean_failure(capsys, ["derain", str(tmp_path / "empty"), "-o", str(out)], out, "holds no images")


def _corrupt_weights(tmp_path: Path, tiny_model_factory) -> dict[str, tuple[Path, str]]:
    from edgerain.models.checkpoint import save_checkpoint

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(256))
    good = save_checkpoint(tiny_model_factory("rdmc-tiny"), tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {
        "missing weights": (tmp_path / "nope.safetensors", "does not exist"),
        "garbage weights": (garbage, "not a readable safetensors checkpoint"),
        "truncated weights": (cut, "safetensors"),
    }


@pytest.mark.parametrize("case", ["missing weights", "garbage weights", "truncated weights"])
def test_bad_weights(case, tmp_path, good_png, capsys, tiny_model_factory):
    weights, expect = _corrupt_weights(tmp_path, tiny_model_factory)[case]
    out = tmp_path / "out"
    _assert_clean_failure(capsys, ["derain", str(good_png), "-o", str(out), "--weights", str(weights)], out, expect)


def test_unknown_model(tmp_path, good_png, pair_folder, capsys):
    out = tmp_path / "out"
    _assert_clean_failure(
        capsys, ["derain", str(good_png), "-o", str(out), "--model", "clip-rpm"], out, "unknown model"
    )
    argv = ["eval", "--model", "nope", "--data", str(pair_folder), "--out", str(out)]
    _assert_clean_failure(capsys, argv, out, "unknown model")


def _broken_data(pair_folder: Path, case: str) -> str:
    if case == "unpaired":
        (pair_folder / "norain" / "002.png").unlink()
        return "rain/ without a clean partner: 002.png"
    if case == "mismatched size":
        write_png(pair_folder / "norain" / "003.png", np.zeros((41, 56, 3), np.uint8))
        return "pair '003' in"
    if case == "missing subfolder":
        for f in (pair_folder / "norain").iterdir():
            f.unlink()
        (pair_folder / "norain").rmdir()
        return "no 'norain' subfolder"
    if case == "truncated pair image":
        path = pair_folder / "rain" / "003.png"
        path.write_bytes(path.read_bytes()[:-60])
        return "003.png"
    if case == "non-image in data":
        (pair_folder / "rain" / "002.png").write_text("nope")
        return "not an image file"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["unpaired", "mismatched size", "missing subfolder", "truncated pair image", "non-image in data"]
)
def test_eval_bad_data(case, pair_folder, tmp_path, capsys):
    expect = _broken_data(pair_folder, case)
    out = tmp_path / "eval"
    argv = ["eval", "--model", "rdmc-tiny", "--data", str(pair_folder), "--out", str(out), "--save-images"]
    _assert_clean_failure(capsys, [*argv, "--no-progress"], out, expect)


def test_eval_bad_options(pair_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    base = ["eval", "--model", "rdmc-tiny", "--data", str(pair_folder)]
    _assert_clean_failure(capsys, [*base, "--save-images"], out, "--save-images needs --out")
    _assert_clean_failure(capsys, [*base, "--tile", "8"], out, "--tile must be at least")
    _assert_clean_failure(capsys, [*base, "--tile", "64", "--overlap", "32"], out, "less than half")
    _assert_clean_failure(capsys, [*base, "--tta", "x3"], out, "unknown --tta 'x3'")
    _assert_clean_failure(capsys, ["eval", "--data", str(tmp_path / "nowhere")], out, "does not exist")
    (tmp_path / "file").write_text("x")
    _assert_clean_failure(capsys, [*base, "--out", str(tmp_path / "file")], out, "not a folder")
    _assert_clean_failure(capsys, ["demo-data", str(out), "--count", "0"], out, "--count")


def _unusual_images(folder: Path, rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    import tifffile

    folder.mkdir(parents=True)
    write_png(folder / "gray.png", rng.integers(0, 256, (12, 10), dtype=np.uint8))
    write_png(folder / "rgba.png", rng.integers(0, 256, (12, 10, 4), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).quantize(8).save(folder / "palette.png")
    Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16)).save(folder / "gray16.png")
    tifffile.imwrite(folder / "rgb16.tif", rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16), photometric="rgb")
    write_png(folder / "one.png", np.array([[[200, 100, 50]]], np.uint8))
    return {
        "gray": (10, 12),
        "rgba": (10, 12),
        "palette": (10, 12),
        "gray16": (10, 12),
        "rgb16": (10, 12),
        "one": (1, 1),
    }


def test_unusual_images_are_accepted(tmp_path, rng, capsys):
    sizes = _unusual_images(tmp_path / "in", rng)
    out = tmp_path / "out"
    rc = main(
        ["derain", str(tmp_path / "in"), "-o", str(out), "--model", "rdmc-tiny", "--device", "cpu", "--no-progress"]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for stem, size in sizes.items():
        with Image.open(out / f"{stem}.png") as img:
            assert img.mode == "RGB" and img.size == size


def test_bad_device(tmp_path, good_png, capsys):
    out = tmp_path / "out"
    base = ["derain", str(good_png), "-o", str(out), "--model", "rdmc-tiny", "--device"]
    _assert_clean_failure(capsys, [*base, "tpu"], out, "unknown device 'tpu'")
    _assert_clean_failure(capsys, [*base, "mps"], out, "unsupported device 'mps'")
    if not torch.cuda.is_available():
        _assert_clean_failure(capsys, [*base, "cuda"], out, "needs a CUDA GPU")
