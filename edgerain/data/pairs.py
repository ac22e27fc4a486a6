"""Paired benchmark folders: ``ROOT/rain/NNN.png`` with ``ROOT/norain/NNN.png`` (same file stem).

Validation is done up front and cheaply (file names and image headers, no decoding), so a bad data
folder fails in a fraction of a second with a message that names the offending files.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from edgerain.data.io import IMAGE_SUFFIXES, image_size, list_images
from edgerain.errors import EdgerainError

RAIN_DIR = "rain"
CLEAN_DIR = "norain"
_SHOWN = 5  # how many names an error message lists before "and N more"


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str  # the shared file stem, e.g. "001"
    rain: Path
    norain: Path
    size: tuple[int, int]  # (width, height), read from the headers


def _natural_key(name: str) -> list[object]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} and {len(items) - _SHOWN} more"


def _by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in found:
            raise EdgerainError(f"{folder} holds two images named '{path.stem}': {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


def find_pairs(root: str | os.PathLike[str]) -> list[Pair]:
    """All rain/norain pairs under ``root``, in natural name order; EdgerainError for any problem."""
    root = Path(root)
    layout = f"expected {root}/{RAIN_DIR}/NNN.png and {root}/{CLEAN_DIR}/NNN.png"
    if not root.exists():
        raise EdgerainError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise EdgerainError(f"data folder {root} is not a folder ({layout})")
    missing = [d for d in (RAIN_DIR, CLEAN_DIR) if not (root / d).is_dir()]
    if missing:
        raise EdgerainError(f"data folder {root} has no {' or '.join(repr(m) for m in missing)} subfolder ({layout})")
    rain, clean = _by_stem(root / RAIN_DIR), _by_stem(root / CLEAN_DIR)
    if not rain and not clean:
        raise EdgerainError(f"data folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}; {layout})")
    only_rain = sorted(set(rain) - set(clean), key=_natural_key)
    only_clean = sorted(set(clean) - set(rain), key=_natural_key)
    if only_rain or only_clean:
        parts = []
        if only_rain:
            parts.append(f"{RAIN_DIR}/ without a clean partner: {_names([rain[s].name for s in only_rain])}")
        if only_clean:
            parts.append(f"{CLEAN_DIR}/ without a rainy partner: {_names([clean[s].name for s in only_clean])}")
        raise EdgerainError(f"unpaired images in {root}: {'; '.join(parts)}")
    pairs = []
    for stem in sorted(rain, key=_natural_key):
        rain_size, clean_size = image_size(rain[stem]), image_size(clean[stem])
        if rain_size != clean_size:
            raise EdgerainError(
                f"pair '{stem}' in {root} has mismatched sizes: {RAIN_DIR}/{rain[stem].name} is "
                f"{rain_size[0]}x{rain_size[1]}, {CLEAN_DIR}/{clean[stem].name} is {clean_size[0]}x{clean_size[1]}"
            )
        pairs.append(Pair(stem, rain[stem], clean[stem], rain_size))
    return pairs
