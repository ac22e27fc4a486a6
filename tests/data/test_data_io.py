"""load_image / save_image / expand_inputs: conversions users expect, and one-line errors for the rest."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from edgerain.data import io as dio
from edgerain.data.io import expand_inputs, load_image, load_image_tensor, quantize_8bit, save_image, to_uint8
from edgerain.errors import EdgerainError


def _save(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, **kw)
    return path


@pytest.fixture(autouse=True)
def _reset_alpha_warning(monkeypatch):
    monkeypatch.setattr(dio, "_alpha_warned", False)


def test_rgb_8bit_exact(tmp_path, rng):
    arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = load_image(_save(tmp_path / "a.png", arr))
    assert img.dtype == np.float32 and img.shape == (5, 7, 3)
    np.testing.assert_array_equal(img, arr.astype(np.float32) / 255)


def test_grayscale_replicated(tmp_path, rng):
    arr = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    img = load_image(_save(tmp_path / "g.png", arr))
    assert img.shape == (4, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], arr / np.float32(255))


def test_16bit_grayscale_keeps_precision(tmp_path, rng):
    arr = rng.integers(0, 65536, (4, 6), dtype=np.uint16)
    img = load_image(_save(tmp_path / "g16.png", arr))  # Pillow writes mode I;16 as a 16-bit PNG
    np.testing.assert_allclose(img[..., 2], arr / 65535.0, atol=1e-7)


def test_16bit_rgb_tiff_keeps_precision(tmp_path, rng):
    import tifffile

    arr = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", arr, photometric="rgb")
    np.testing.assert_allclose(load_image(tmp_path / "c16.tif"), arr / 65535.0, atol=1e-7)


def test_rgba_drops_alpha_and_warns_once(tmp_path, rng):
    arr = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    first, second = _save(tmp_path / "a.png", arr), _save(tmp_path / "b.png", arr)
    with pytest.warns(dio.AlphaDroppedWarning, match="alpha"):
        img = load_image(first)
    np.testing.assert_array_equal(img, arr[..., :3] / np.float32(255))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(second)


def test_gray_alpha(tmp_path, rng):
    arr = rng.integers(0, 256, (3, 4, 2), dtype=np.uint8)
    with pytest.warns(dio.AlphaDroppedWarning):
        img = load_image(_save(tmp_path / "la.png", arr, mode="LA"))
    np.testing.assert_array_equal(img[..., 1], arr[..., 0] / np.float32(255))


def test_palette(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB")) / np.float32(255)
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), expected)


def test_one_by_one_and_jpeg(tmp_path):
    img = load_image(_save(tmp_path / "one.png", np.array([[[10, 20, 30]]], dtype=np.uint8)))
    np.testing.assert_array_equal(img, np.array([[[10, 20, 30]]], np.float32) / 255)
    jpg = load_image(_save(tmp_path / "x.jpg", np.full((8, 8, 3), 128, np.uint8)))
    assert np.abs(jpg - 128 / 255).max() < 2 / 255
    t = load_image_tensor(tmp_path / "one.png")
    assert t.shape == (1, 3, 1, 1) and t.dtype == torch.float32


def test_errors_are_one_line_edgerain_errors(tmp_path, rng):
    png = _save(tmp_path / "ok.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "trunc.png").write_bytes(png.read_bytes()[:200])
    (tmp_path / "notes.png").write_text("not an image at all\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    cases = {
        "missing.png": "does not exist",
        "trunc.png": "cannot read image",
        "notes.png": "not an image file",
        "empty.png": "not an image file",
        "folder.png": "is a folder",
    }
    for name, message in cases.items():
        with pytest.raises(EdgerainError, match=message) as info:
            load_image(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)


def test_truncation_detected_even_if_pillow_is_told_to_tolerate_it(tmp_path, rng, monkeypatch):
    png = _save(tmp_path / "ok.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "trunc.png").write_bytes(png.read_bytes()[:-40])
    jpg = _save(tmp_path / "ok.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "trunc.jpg").write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for name in ("trunc.png", "trunc.jpg"):
        with pytest.raises(EdgerainError, match="cannot read image"):
            load_image(tmp_path / name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_save_rounds_half_up_and_reads_back(tmp_path):
    values = np.array([0.0, 0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0, 1.2, -0.1], dtype=np.float64)
    arr = np.repeat(values[None, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_uint8(arr)[0, :, 0], [0, 1, 2, 255, 255, 255, 0])
    out = save_image(tmp_path / "sub" / "x.png", torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0))
    np.testing.assert_array_equal(load_image(out), quantize_8bit(arr))
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # no temporary left behind


def test_save_refuses_unknown_suffix(tmp_path):
    with pytest.raises(EdgerainError, match="unknown image suffix"):
        save_image(tmp_path / "x.exr", np.zeros((2, 2, 3), np.float32))
    assert not list(tmp_path.iterdir())


def test_save_format_follows_suffix(tmp_path):
    arr = np.full((4, 4, 3), 0.5, np.float32)
    for suffix, fmt in [(".png", "PNG"), (".jpg", "JPEG"), (".tif", "TIFF"), (".bmp", "BMP")]:
        with Image.open(save_image(tmp_path / f"x{suffix}", arr)) as img:
            assert img.format == fmt


def test_expand_inputs(tmp_path, rng):
    arr = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    for name in ("b.png", "a.jpg", ".hidden.png"):
        _save(tmp_path / "dir" / name, arr)
    (tmp_path / "dir" / "c.txt").write_text("not an image")
    single = _save(tmp_path / "z.png", arr)
    got = expand_inputs([single, tmp_path / "dir", tmp_path / "dir" / "b.png"])
    assert [p.name for p in got] == ["z.png", "a.jpg", "b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgerainError, match="holds no images"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(EdgerainError, match="does not exist"):
        expand_inputs([tmp_path / "nope"])
    with pytest.raises(EdgerainError, match="no input"):
        expand_inputs([])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, rng, orientation):
    from PIL import ImageOps

    from edgerain.data.io import image_size

    arr = rng.integers(0, 256, (5, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(arr).save(path, exif=exif)
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img)) / np.float32(255)
    got = load_image(path)
    np.testing.assert_array_equal(got, expected)
    assert image_size(path) == (got.shape[1], got.shape[0])
