"""``edgerain derain --bundle DIR``: the command runs an exported bundle through the runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgerain.cli import main
from edgerain.runtime import Derainer


def test_derain_with_bundle(case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, bundle = case("rdmc")
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out"
    assert main(["derain", str(src), "--out", str(out), "--bundle", str(bundle), "--no-progress"]) == 0
    expected = Derainer(bundle).derain_file(src, tmp_path / "expected.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(expected)))
    capsys.readouterr()
    code = main(["derain", str(src), "--out", str(tmp_path / "o2"), "--bundle", str(bundle), "--model", "rdmc-tiny"])
    assert code == 2 and "--bundle" in capsys.readouterr().err
    assert main(["derain", str(src), "--out", str(tmp_path / "o3"), "--bundle", str(tmp_path)]) == 2
    assert not (tmp_path / "o3").exists()
