"""Whole-image and tiled inference.

Large images run in overlapping tiles blended with a linear ramp; whole-image decisions (CLIP
routing, the weather prior) are made once on the full image and shared by every tile, and by
every mirrored view of a self-ensemble (:mod:`edgerain.tta`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgerain.models.base import DerainModel
from edgerain.tta import self_ensemble, tta_views


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool, device: torch.device) -> Tensor:
    """Blend weights along one side of a tile.

    Inside an overlap the outermost quarter gets weight 0 (those pixels saw the tile's artificial
    border) and the rest ramps linearly; sides on the image border keep weight 1.
    """
    w = torch.ones(n, device=device)
    if overlap > 0:
        margin = overlap // 4
        r = torch.zeros(overlap, device=device)
        r[margin:] = (torch.arange(overlap - margin, device=device, dtype=torch.float32) + 1) / (overlap - margin + 1)
        if not at_start:
            w[:overlap] = torch.minimum(w[:overlap], r)
        if not at_end:
            w[n - overlap :] = torch.minimum(w[n - overlap :], r.flip(0))
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


@torch.no_grad()
def derain_tensor(
    model: DerainModel, x: Tensor, tile: int | None = None, overlap: int = 32, tta: str = "none"
) -> Tensor:
    """Derain a batch (B, 3, H, W) in [0, 1]. ``tile``: side of square tiles (``None``: whole image);
    ``tta``: self-ensemble mode (:data:`edgerain.tta.TTA_MODES`)."""
    model.eval()
    views = tta_views(tta)
    # The tile side when the image needs tiling at all, else None.
    side = tile if tile is not None and (x.shape[-2] > tile or x.shape[-1] > tile) else None
    if side is None and len(views) == 1:
        return model(x)
    if side is not None and overlap * 2 >= side:
        raise ValueError(f"overlap {overlap} must be less than half the tile size {side}")
    context = model.global_context(x)  # decided once, on the unflipped whole image

    def run(view: Tensor) -> Tensor:
        return model(view, context) if side is None else _tiled(model, view, context, side, overlap)

    return self_ensemble(run, x, tta, lambda t, axes: t.flip(axes))


def _tiled(model: DerainModel, x: Tensor, context: object, tile: int, overlap: int) -> Tensor:
    _B, _C, H, W = x.shape
    out = torch.zeros_like(x)
    weight = torch.zeros((1, 1, H, W), device=x.device, dtype=x.dtype)
    ys, xs = _starts(H, tile, overlap), _starts(W, tile, overlap)
    for y0 in ys:
        th = min(tile, H)
        wy = _ramp(th, overlap, y0 == 0, y0 + th >= H, x.device)
        for x0 in xs:
            tw = min(tile, W)
            wx = _ramp(tw, overlap, x0 == 0, x0 + tw >= W, x.device)
            w2 = (wy[:, None] * wx[None, :]).to(x.dtype)
            piece = model(x[..., y0 : y0 + th, x0 : x0 + tw], context)
            out[..., y0 : y0 + th, x0 : x0 + tw] += piece * w2
            weight[..., y0 : y0 + th, x0 : x0 + tw] += w2
    return out / weight
