"""The C++ runtime (csrc/runtime, edgerain-infer) against the Python runtime, and its bad-input errors.

The binary comes from $EDGERAIN_INFER (ctest sets it) or is built with scripts/build_cpp_runtime.sh,
which fetches its header dependencies; the tests skip, saying why, only when those cannot be fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgerain.runtime import Derainer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def infer() -> Path:
    given = os.environ.get("EDGERAIN_INFER")
    if given:
        return Path(given)
    fetch = subprocess.run(["bash", str(REPO / "scripts" / "fetch_cpp_deps.sh")], capture_output=True, text=True)
    if fetch.returncode != 0:
        pytest.skip(f"C++ runtime prerequisites could not be fetched: {fetch.stderr.strip().splitlines()[-1:]}")
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("cmake and a C++17 compiler are needed to build the C++ runtime")
    build = subprocess.run(["bash", str(REPO / "scripts" / "build_cpp_runtime.sh")], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    return REPO / "csrc" / "runtime" / "build" / "edgerain-infer"


def _png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 80 * np.sin(yy[..., None] / 6.0 + xx[..., None] / 9.0 + np.arange(3))
    return np.clip(base + g.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def _run(infer: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(infer), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("name", "image"),
    [("rpn-hard", "rgb"), ("rpn-soft-tiled", "rgb"), ("weather", "gray"), ("rdmc", "rgb")],
)
def test_cpp_matches_python_runtime(infer: Path, case, tmp_path: Path, name: str, image: str) -> None:
    from PIL import Image

    _, bundle = case(name)
    arr = _rgb(70, 53, seed=7)  # larger than the soft case's 32-pixel tiles: tiling in both runtimes
    src = _png(tmp_path / "in.png", arr[..., 0] if image == "gray" else arr)
    py_out = Derainer(bundle).derain_file(src, tmp_path / "py.png")
    res = _run(infer, bundle, src, tmp_path / "cpp.png")
    assert res.returncode == 0, res.stderr
    a = np.asarray(Image.open(py_out)).astype(int)
    b = np.asarray(Image.open(tmp_path / "cpp.png")).astype(int)
    assert a.shape == b.shape == (70, 53, 3)
    assert np.abs(a - b).max() <= 1  # within one 8-bit level on every pixel


def test_cpp_tile_option_matches_python(infer: Path, case, tmp_path: Path) -> None:
    from PIL import Image

    _, bundle = case("rdmc")
    src = _png(tmp_path / "in.png", _rgb(50, 61, seed=2))
    py_out = Derainer(bundle, tile=32, overlap=8).derain_file(src, tmp_path / "py.png")
    res = _run(infer, bundle, src, tmp_path / "cpp.png", "--tile", 32, "--overlap", 8)
    assert res.returncode == 0, res.stderr
    a = np.asarray(Image.open(py_out)).astype(int)
    b = np.asarray(Image.open(tmp_path / "cpp.png")).astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize(("name", "tta"), [("rpn-hard", "x2"), ("rpn-soft-tiled", "x4"), ("weather", "x4")])
def test_cpp_self_ensemble_matches_python(infer: Path, case, tmp_path: Path, name: str, tta: str) -> None:
    from PIL import Image

    _, bundle = case(name)
    src = _png(tmp_path / "in.png", _rgb(45, 58, seed=5))
    plain = np.asarray(Image.open(Derainer(bundle).derain_file(src, tmp_path / "plain.png"))).astype(int)
    py_out = Derainer(bundle, tta=tta).derain_file(src, tmp_path / "py.png")
    res = _run(infer, bundle, src, tmp_path / "cpp.png", "--tta", tta)
    assert res.returncode == 0, res.stderr
    a = np.asarray(Image.open(py_out)).astype(int)
    b = np.asarray(Image.open(tmp_path / "cpp.png")).astype(int)
    assert np.abs(a - b).max() <= 1
    assert np.abs(a - plain).max() > 1  # the mirrored views changed the result: the option was applied


def _assert_one_line_error(res: subprocess.CompletedProcess[str], needle: str, out: Path) -> None:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert not out.exists()
    assert not list(out.parent.glob(out.name + ".tmp*"))


def test_cpp_bad_inputs(infer: Path, case, tmp_path: Path) -> None:
    _, bundle = case("rdmc")
    good = _png(tmp_path / "good.png", _rgb(20, 24, seed=1))
    out = tmp_path / "out.png"
    rgba = np.dstack([_rgb(20, 24, seed=1), np.full((20, 24), 255, np.uint8)])
    _assert_one_line_error(_run(infer, bundle, _png(tmp_path / "rgba.png", rgba), out), "alpha channel", out)
    (tmp_path / "junk.png").write_text("this is not a PNG")
    _assert_one_line_error(_run(infer, bundle, tmp_path / "junk.png", out), "cannot decode", out)
    _assert_one_line_error(_run(infer, bundle, tmp_path / "nope.png", out), "no such image", out)
    _assert_one_line_error(_run(infer, tmp_path, good, out), "manifest.json is missing", out)
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    with (broken / "main_0.onnx").open("ab") as f:
        f.write(b"\0")
    _assert_one_line_error(_run(infer, broken, good, out), "does not match its sha256", out)
    (broken / "main_0.onnx").unlink()
    _assert_one_line_error(_run(infer, broken, good, out), "main_0.onnx is missing", out)
    _assert_one_line_error(_run(infer, bundle, good, out, "--tile", "x"), "--tile", out)
    _assert_one_line_error(_run(infer, bundle, good, out, "--tta", "x3"), "unknown --tta 'x3'", out)
    _assert_one_line_error(_run(infer, bundle, good, out, "--ort-lib", tmp_path / "libnothing.so"), "ONNX Runtime", out)
    assert _run(infer, bundle, good, out).returncode == 0 and out.exists()


def test_cpp_refuses_images_below_the_routers_minimum(infer: Path, case, tmp_path: Path) -> None:
    _, bundle = case("rpn-stats")
    out = tmp_path / "out.png"
    small = _png(tmp_path / "small.png", _rgb(12, 40, seed=3))
    _assert_one_line_error(_run(infer, bundle, small, out), "at least 16x16 pixels; got 40x12", out)
    assert _run(infer, bundle, _png(tmp_path / "ok.png", _rgb(16, 16, seed=3)), out).returncode == 0 and out.exists()


def test_cpp_runs_an_exported_bundle_like_python(infer: Path, exported, tmp_path: Path) -> None:
    """``edgerain export`` -> Python runtime and edgerain-infer: identical 8-bit outputs (within one level)."""
    from PIL import Image

    _, bundle = exported
    src = _png(tmp_path / "in.png", _rgb(61, 90, seed=4))  # tiled: the bundle's tiles are 48 pixels
    py_out = Derainer(bundle).derain_file(src, tmp_path / "py.png")
    res = _run(infer, bundle, src, tmp_path / "cpp.png")
    assert res.returncode == 0, res.stderr
    a = np.asarray(Image.open(py_out)).astype(int)
    b = np.asarray(Image.open(tmp_path / "cpp.png")).astype(int)
    assert np.abs(a - b).max() <= 1
