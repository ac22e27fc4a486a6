"""Tiled inference: exact for local operators, one whole-image context shared by all tiles and
all mirrored views of a self-ensemble."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.inference import derain_tensor


class LocalModel(DerainModel):
    """A 3x3-conv network: its receptive field (radius 2) is far inside the tile overlap."""

    pad_multiple = 4

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))
        self.contexts: list[object] = []

    def global_context(self, x):
        ctx = ("whole", tuple(x.shape))
        self.contexts.append(ctx)
        return ctx

    def forward_padded(self, x, context=None):
        assert context == ("whole", context[1])
        return x + 0.1 * self.body(x)


def test_tiled_equals_untiled_for_a_local_network():
    torch.manual_seed(0)
    model = LocalModel().eval()
    # Sides are multiples of pad_multiple, so only the tiling (not the padding) can differ.
    x = torch.rand(1, 3, 72, 96)
    full = derain_tensor(model, x)
    tiled = derain_tensor(model, x, tile=32, overlap=8)
    # Border effects reach 2 px into a tile; the blend gives the outer overlap/4 = 2 px weight 0.
    assert (full - tiled).abs().max() < 1e-5


def test_context_is_decided_once_on_the_whole_image():
    model = LocalModel().eval()
    x = torch.rand(1, 3, 70, 95)
    derain_tensor(model, x, tile=32, overlap=8)
    assert model.contexts == [("whole", (1, 3, 70, 95))]


def test_clip_rpn_tiles_share_the_routing(tiny_model_factory, monkeypatch):
    model = tiny_model_factory("clip-rpn-tiny")
    calls = []
    original = model.route
    monkeypatch.setattr(model, "route", lambda x: calls.append(x.shape) or original(x))
    derain_tensor(model, torch.rand(1, 3, 60, 50), tile=32, overlap=8)
    assert calls == [torch.Size([1, 3, 60, 50])]


@pytest.mark.parametrize("tile", [None, 32])
def test_self_ensemble_is_the_mean_of_unflipped_views(tile):
    torch.manual_seed(1)
    model = LocalModel().eval()
    x = torch.rand(2, 3, 40, 52)

    def one(view):
        return derain_tensor(model, view, tile=tile, overlap=8)

    assert torch.equal(derain_tensor(model, x, tile=tile, overlap=8, tta="none"), one(x))
    mirrored = one(x.flip(-1)).flip(-1)
    assert (mirrored - one(x)).abs().max() > 1e-3  # the views really differ: the test can fail
    x2 = derain_tensor(model, x, tile=tile, overlap=8, tta="x2")
    torch.testing.assert_close(x2, (one(x) + mirrored) / 2, rtol=0, atol=1e-6)
    views = [one(x), mirrored, one(x.flip(-2)).flip(-2), one(x.flip(-1, -2)).flip(-1, -2)]
    x4 = derain_tensor(model, x, tile=tile, overlap=8, tta="x4")
    torch.testing.assert_close(x4, sum(views) / 4, rtol=0, atol=1e-6)


def test_self_ensemble_routes_once_on_the_unflipped_image(tiny_model_factory, monkeypatch):
    model = tiny_model_factory("clip-rpn-tiny")
    x = torch.rand(1, 3, 36, 44)
    seen = []
    original = model.route
    monkeypatch.setattr(model, "route", lambda v: seen.append(v.clone()) or original(v))
    derain_tensor(model, x, tta="x4")
    assert len(seen) == 1 and torch.equal(seen[0], x)


def test_unknown_self_ensemble_mode_is_refused():
    with pytest.raises(EdgerainError, match="unknown --tta 'x8'; choose one of none, x2, x4"):
        derain_tensor(LocalModel().eval(), torch.rand(1, 3, 16, 16), tta="x8")
