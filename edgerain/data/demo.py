"""Demo pairs that need nothing but the installed dependencies.

Clean images are crops of public-domain / CC0 photographs that scikit-image ships in its wheel
(``skimage.data``; no download); rain comes from :mod:`edgerain.data.synth`. The output has the
same layout as the benchmark folders (``rain/NNN.png`` + ``norain/NNN.png``) plus ``labels.csv``
with each pair's source photo, crop, rain pattern and parameters.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable

import numpy as np

from edgerain.data.io import save_image, staged_folder
from edgerain.data.pairs import CLEAN_DIR, RAIN_DIR
from edgerain.data.synth import PATTERNS, add_rain
from edgerain.errors import EdgerainError

# Photos bundled inside scikit-image's package (no network), all free of copyright restrictions:
# astronaut (NASA, public domain), coffee and chelsea (CC0 by their photographers), rocket (SpaceX,
# released into the public domain).
DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
DEMO_SIZE = (320, 240)  # width, height
MAX_COUNT = 10_000


@dataclasses.dataclass
class DemoPair:
    name: str
    photo: str
    crop_x: int  # top-left corner of the crop in the photo
    crop_y: int
    flipped: bool
    pattern: str


def _photo(name: str) -> np.ndarray:
    import skimage.data

    loader: Callable[[], np.ndarray] = getattr(skimage.data, name)
    return loader().astype(np.float32) / np.float32(255.0)


def make_demo_pairs(
    out: str | os.PathLike[str], count: int = 6, seed: int = 0, size: tuple[int, int] = DEMO_SIZE
) -> list[DemoPair]:
    """Write ``count`` rain/norain pairs of ``size`` (width, height) under ``out``; deterministic by ``seed``.

    Photos and rain patterns cycle so that every photo and every pattern appears; crops and flips
    are random. Existing ``rain/``, ``norain/`` and ``labels.csv`` under ``out`` are replaced as a whole.
    """
    if not 1 <= count <= MAX_COUNT:
        raise EdgerainError(f"--count must be between 1 and {MAX_COUNT}, got {count}")
    if seed < 0:
        raise EdgerainError(f"--seed must be non-negative, got {seed}")
    width, height = size
    photos = {name: _photo(name) for name in DEMO_PHOTOS}
    for name, img in photos.items():
        if img.shape[0] < height or img.shape[1] < width:
            raise EdgerainError(
                f"demo size {width}x{height} is larger than the photo '{name}' {img.shape[1]}x{img.shape[0]}"
            )
    rng = np.random.default_rng(seed)
    made: list[DemoPair] = []
    rows: list[dict[str, object]] = []
    with staged_folder(out) as stage:
        for i in range(count):
            photo_name = DEMO_PHOTOS[i % len(DEMO_PHOTOS)]
            pattern = PATTERNS[i % len(PATTERNS)]
            photo = photos[photo_name]
            y0 = int(rng.integers(0, photo.shape[0] - height + 1))
            x0 = int(rng.integers(0, photo.shape[1] - width + 1))
            flipped = bool(rng.integers(2))
            clean = photo[y0 : y0 + height, x0 : x0 + width]
            if flipped:
                clean = clean[:, ::-1]
            sample = add_rain(np.ascontiguousarray(clean), seed=int(rng.integers(2**31)), pattern=pattern)
            name = f"{i + 1:03d}"
            save_image(stage / RAIN_DIR / f"{name}.png", sample.rainy)
            save_image(stage / CLEAN_DIR / f"{name}.png", clean)
            made.append(DemoPair(name, photo_name, x0, y0, flipped, pattern))
            rows.append({**dataclasses.asdict(made[-1]), **dataclasses.asdict(sample.params)})
        with open(stage / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return made
