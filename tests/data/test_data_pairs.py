"""find_pairs: the rain/norain layout, and one-line errors that name what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgerain.data.pairs import find_pairs
from edgerain.errors import EdgerainError


def _img(path, h=8, w=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_pairs_in_natural_order_with_sizes(tmp_path):
    for n in ("2", "10", "1"):
        _img(tmp_path / "rain" / f"{n}.png")
        _img(tmp_path / "norain" / f"{n}.png")
    (tmp_path / "rain" / "readme.txt").write_text("ignored: not an image suffix")
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["1", "2", "10"]
    assert pairs[0].rain == tmp_path / "rain" / "1.png" and pairs[0].norain == tmp_path / "norain" / "1.png"
    assert pairs[0].size == (10, 8)


def test_pairs_match_by_stem_across_formats(tmp_path):
    _img(tmp_path / "rain" / "001.jpg")
    _img(tmp_path / "norain" / "001.png")
    assert find_pairs(tmp_path)[0].rain.suffix == ".jpg"


def test_missing_folder_and_subfolders(tmp_path):
    with pytest.raises(EdgerainError, match="does not exist"):
        find_pairs(tmp_path / "nope")
    _img(tmp_path / "rain" / "001.png")
    with pytest.raises(EdgerainError, match="no 'norain' subfolder") as info:
        find_pairs(tmp_path)
    assert "rain/NNN.png" in _one_line(info)


def test_unpaired_files_are_named(tmp_path):
    for n in range(1, 9):
        _img(tmp_path / "rain" / f"{n:03d}.png")
    _img(tmp_path / "norain" / "001.png")
    _img(tmp_path / "norain" / "099.png")
    with pytest.raises(EdgerainError) as info:
        find_pairs(tmp_path)
    msg = _one_line(info)
    assert "002.png" in msg and "099.png" in msg and "and 2 more" in msg


def test_mismatched_sizes_name_the_pair(tmp_path):
    _img(tmp_path / "rain" / "007.png", 8, 10)
    _img(tmp_path / "norain" / "007.png", 10, 8)
    with pytest.raises(EdgerainError, match=r"pair '007'.*10x8.*8x10"):
        find_pairs(tmp_path)


def test_non_image_and_ambiguous_names(tmp_path):
    _img(tmp_path / "rain" / "001.png")
    (tmp_path / "norain").mkdir()
    (tmp_path / "norain" / "001.png").write_text("oops")
    with pytest.raises(EdgerainError, match="not an image file"):
        find_pairs(tmp_path)
    _img(tmp_path / "norain" / "001.png")
    _img(tmp_path / "norain" / "001.jpg")
    with pytest.raises(EdgerainError, match="two images named '001'"):
        find_pairs(tmp_path)
