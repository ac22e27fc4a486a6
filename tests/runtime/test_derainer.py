"""edgerain.runtime.Derainer: every backend available here agrees with the PyTorch model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgerain.errors import EdgerainError, MissingCapabilityError
from edgerain.models.inference import derain_tensor
from edgerain.runtime import Derainer, derain_paths_with_bundle, imageio


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture, float32 (H, W, 3) in [0, 1]."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(yy[..., None] / 7.0 + xx[..., None] / 11.0 + np.arange(3) * 0.8)
    return np.clip(base + 0.1 * g.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def _reference(model, img: np.ndarray, tile: int | None = None, overlap: int = 32, tta: str = "none") -> np.ndarray:
    x = torch.from_numpy(img.transpose(2, 0, 1))[None]
    return derain_tensor(model, x, tile=tile, overlap=overlap, tta=tta)[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("name", ["rpn-hard", "rpn-soft-tiled", "weather", "fclip", "rdmc"])
def test_ort_bundle_matches_pytorch(case, name: str) -> None:
    model, bundle = case(name)
    d = Derainer(bundle, backend="ort")
    img = _image(29, 45)  # not a multiple of any pad multiple: exercises reflect padding
    got = d(img)
    ref = _reference(model, img, tile=d.tile, overlap=d.overlap)
    assert got.shape == img.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() <= d.spec.tolerance
    assert d.describe()["providers"] == ["CPUExecutionProvider"]


def test_tiled_bundle_matches_tiled_pytorch(case) -> None:
    """Tiles (with a remainder tile and reflect-padded tile edges) blend as derain_tensor's do."""
    model, bundle = case("rpn-soft-tiled")
    img = _image(70, 53, seed=3)
    d = Derainer(bundle)
    assert d.tile == 32 and d.overlap == 8
    ref = _reference(model, img, tile=32, overlap=8)
    assert np.abs(d(img) - ref).max() <= d.spec.tolerance
    whole = Derainer(bundle, tile=0)(img)
    assert np.abs(whole - ref).max() > 1e-4  # tiling really happened (the outputs differ at seams)


@pytest.mark.parametrize(("name", "tta"), [("rpn-hard", "x2"), ("rpn-soft-tiled", "x4"), ("weather", "x2")])
def test_self_ensemble_matches_pytorch(case, name: str, tta: str) -> None:
    model, bundle = case(name)
    img = _image(37, 50, seed=4)
    d = Derainer(bundle, tta=tta)
    got = d(img)
    ref = _reference(model, img, tile=d.tile, overlap=d.overlap, tta=tta)
    assert np.abs(got - ref).max() <= d.spec.tolerance
    assert np.abs(got - Derainer(bundle)(img)).max() > 1e-4  # the views changed the result
    assert d.describe()["tta"] == tta
    with pytest.raises(EdgerainError, match="unknown --tta"):
        Derainer(bundle, tta="mirror")


def test_routing_follows_the_router(case) -> None:
    model, bundle = case("rpn-hard")
    img = _image(33, 40, seed=5)
    d = Derainer(bundle)
    d(img)
    with torch.no_grad():
        scores = model.router(torch.from_numpy(img.transpose(2, 0, 1))[None]).numpy()
    assert d.last_scores is not None
    np.testing.assert_allclose(d.last_scores, scores, atol=1e-5)


def test_torch_backend_matches_model() -> None:
    from runtime_bundles import tiny_model

    model = tiny_model("clip-weather-tiny")
    img = _image(40, 50, seed=1)
    d = Derainer(model=model, backend="torch", tile=24, overlap=6)
    np.testing.assert_allclose(d(img), _reference(model, img, tile=24, overlap=6), atol=1e-6)


def test_input_types_round_trip(case, tmp_path: Path) -> None:
    from PIL import Image

    _, bundle = case("rdmc")
    d = Derainer(bundle)
    img = _image(24, 30, seed=2)
    u8 = (img * 255).round().astype(np.uint8)
    out_u8 = d(u8)
    assert out_u8.dtype == np.uint8 and out_u8.shape == u8.shape
    # uint8 in -> the float result encoded with the bundle's rounding rule
    from edgerain.bundle import to_uint8

    np.testing.assert_array_equal(out_u8, to_uint8(d(u8.astype(np.float32) / 255)))
    batch = d(np.stack([img, img[::-1].copy()]))
    assert batch.shape == (2, 24, 30, 3)
    np.testing.assert_allclose(batch[0], d(img), atol=1e-7)
    pil = d(Image.fromarray(u8))
    np.testing.assert_array_equal(np.asarray(pil), out_u8)
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())
    out_t = d(t)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == t.shape
    np.testing.assert_allclose(out_t.numpy().transpose(1, 2, 0), d(img), atol=1e-7)
    Image.fromarray(u8).save(tmp_path / "a.png")
    np.testing.assert_allclose(d(tmp_path / "a.png"), d(u8.astype(np.float32) / 255), atol=1e-7)
    written = derain_paths_with_bundle([tmp_path / "a.png"], tmp_path / "out", bundle, progress=False)
    assert written == [tmp_path / "out" / "a.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(written[0])), out_u8)
    with pytest.raises(EdgerainError, match="overwrite the input"):
        derain_paths_with_bundle([tmp_path / "a.png"], tmp_path, bundle, progress=False)


def test_bad_images_are_refused(case, tmp_path: Path) -> None:
    from PIL import Image

    _, bundle = case("rdmc")
    d = Derainer(bundle)
    with pytest.raises(EdgerainError, match="RGB array"):
        d(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(EdgerainError, match="uint8 or float"):
        d(np.zeros((8, 8, 3), np.int32))
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(tmp_path / "rgba.png")
    with pytest.raises(EdgerainError, match="alpha"):
        d.derain_file(tmp_path / "rgba.png", tmp_path / "o.png")
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(EdgerainError, match="cannot decode"):
        d.derain_file(tmp_path / "junk.png", tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_images_below_the_routers_minimum_are_refused(case) -> None:
    """A feature-stats router pools its taps four times: its bundle records min_side 16, and every
    backend refuses smaller images with the same message (ONNX Runtime alone would return scores)."""
    model, bundle = case("rpn-stats")
    d = Derainer(bundle)
    assert d.spec.min_side == model.min_side == 16
    for backend in (d, Derainer(model=model, backend="torch")):
        with pytest.raises(EdgerainError, match="at least 16x16 pixels; got 40x12"):
            backend(_image(12, 40))
        assert backend(_image(16, 16)).shape == (16, 16, 3)
    assert Derainer(case("rpn-hard")[1]).spec.min_side == 1
    assert Derainer(case("rpn-hard")[1])(_image(12, 9)).shape == (12, 9, 3)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def test_bad_bundles_are_refused(case, tmp_path: Path) -> None:
    _, bundle = case("rdmc")
    with pytest.raises(EdgerainError, match="not a bundle"):
        Derainer(tmp_path)
    b = _copy(bundle, tmp_path)
    with (b / "main_0.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgerainError, match="sha256"):
        Derainer(b)
    (b / "main_0.onnx").unlink()
    with pytest.raises(EdgerainError, match=r"main_0\.onnx is missing"):
        Derainer(b)
    shutil.copy(bundle / "main_0.onnx", b / "main_0.onnx")
    (b / "stray.bin").write_bytes(b"x")
    with pytest.raises(EdgerainError, match="does not list"):
        Derainer(b)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["input"]["min_side"] = 0
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgerainError, match="min_side must be at least 1"):
        Derainer(b)
    manifest["input"]["min_side"] = 1
    manifest["format_version"] = 99
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgerainError, match="version 99"):
        Derainer(b)


def test_backend_arguments_are_checked(case) -> None:
    model, bundle = case("rdmc")
    with pytest.raises(EdgerainError, match="unknown backend"):
        Derainer(bundle, backend="tensorflow")
    with pytest.raises(EdgerainError, match="torch backend runs a PyTorch model"):
        Derainer(bundle, backend="torch")
    with pytest.raises(EdgerainError, match="runs a bundle"):
        Derainer(model=model, backend="ort")


def test_trt_backend_says_what_it_needs(case) -> None:
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; this checks the message where it is not")
    except ImportError:
        pass
    _, bundle = case("rdmc")
    with pytest.raises(MissingCapabilityError, match="TensorRT"):
        Derainer(bundle, backend="trt")


def test_missing_providers_fall_back_with_a_log_line(case, caplog: pytest.LogCaptureFixture) -> None:
    _, bundle = case("rdmc")
    with caplog.at_level(logging.WARNING, logger="edgerain.runtime"):
        d = Derainer(bundle, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert "TensorrtExecutionProvider is not available" in caplog.text
    assert "CUDAExecutionProvider is not available" in caplog.text
    assert d.describe()["providers"] == ["CPUExecutionProvider"]


def test_exported_bundle_matches_pytorch_and_its_samples(exported) -> None:
    """A bundle from ``edgerain export``: the runtime reproduces the PyTorch model and the stored references."""
    model, bundle = exported
    d = Derainer(bundle)
    img = _image(61, 70, seed=11)  # larger than the 48-pixel tiles
    ref = _reference(model, img, tile=48, overlap=8)
    assert np.abs(d(img) - ref).max() <= d.spec.tolerance
    whole = Derainer(bundle, tile=0)  # the stored references are whole-image runs
    samples = d.spec.manifest["parity"]["samples"]
    assert samples
    for sample in samples:
        x = imageio.read_rgb(bundle / sample["input"])
        expected = np.load(bundle / sample["reference"])[0].transpose(1, 2, 0)
        assert np.abs(whole(x) - expected).max() <= d.spec.tolerance
