"""Tiling and blending for the bundle's processing convention (docs/bundle-format.md, step 4).

Padding, cropping and encoding come from :mod:`edgerain.bundle`. Tiling and blending follow
:func:`edgerain.models.inference.derain_tensor` exactly (tests compare them), so a bundle run here
matches the PyTorch model; ``csrc/runtime`` repeats the same arithmetic in C++. Each tile's output is cropped and clamped to [0, 1] before blending,
as the PyTorch model does when it runs a tile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgerain.bundle import crop_clamp, pad_image
from edgerain.errors import EdgerainError


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``size`` with at least ``overlap`` overlap."""
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def blend_ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """Blend weights along one side of a tile (the ramp of ``edgerain.models.inference``).

    Inside an overlap the outermost quarter gets weight 0 (those pixels saw the tile's artificial
    border) and the rest ramps linearly up to 1; sides on the image border keep weight 1.
    """
    w = np.ones(n, dtype=np.float32)
    if overlap > 0:
        margin = overlap // 4
        r = np.zeros(overlap, dtype=np.float32)
        r[margin:] = (np.arange(overlap - margin, dtype=np.float32) + 1) / np.float32(overlap - margin + 1)
        if not at_start:
            w[:overlap] = np.minimum(w[:overlap], r)
        if not at_end:
            w[n - overlap :] = np.minimum(w[n - overlap :], r[::-1])
    return w


def run_padded(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, multiple: int) -> np.ndarray:
    """Pad, run ``fn`` (padded NCHW -> padded NCHW), crop back and clamp to [0, 1]."""
    h, w = x.shape[-2:]
    return crop_clamp(fn(np.ascontiguousarray(pad_image(x, multiple), dtype=np.float32)), h, w)


def run_tiled(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, multiple: int, tile: int | None, overlap: int
) -> np.ndarray:
    """Run ``fn`` on the whole image, or on overlapping square tiles blended with linear ramps."""
    H, W = x.shape[-2:]
    if tile is None or (tile >= H and tile >= W):
        return run_padded(fn, x, multiple)
    if overlap * 2 >= tile:
        raise EdgerainError(f"tiling overlap {overlap} must be less than half the tile size {tile}")
    out = np.zeros(x.shape, dtype=np.float32)
    weight = np.zeros((1, 1, H, W), dtype=np.float32)
    th, tw = min(tile, H), min(tile, W)
    for y0 in tile_starts(H, tile, overlap):
        wy = blend_ramp(th, overlap, y0 == 0, y0 + th >= H)
        for x0 in tile_starts(W, tile, overlap):
            wx = blend_ramp(tw, overlap, x0 == 0, x0 + tw >= W)
            w2 = wy[:, None] * wx[None, :]
            piece = run_padded(fn, x[..., y0 : y0 + th, x0 : x0 + tw], multiple)
            out[..., y0 : y0 + th, x0 : x0 + tw] += piece * w2
            weight[..., y0 : y0 + th, x0 : x0 + tw] += w2
    return out / weight
