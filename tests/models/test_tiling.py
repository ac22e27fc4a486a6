"""Tiled inference: exact for local operators, one whole-image context shared by all tiles."""

from __future__ import annotations

import torch
from torch import nn

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
