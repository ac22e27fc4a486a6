"""The eager MGCA reference equals KERNELS.md's definition, computed pixel by pixel."""

from __future__ import annotations

import math

import pytest
import torch

from edgerain.ops.reference import mgca_window_attention_reference


def mgca_by_definition(q, k, v, mask, window, shift):
    B, h, d, H, W = q.shape
    out = torch.zeros_like(q)
    win = [[((y + shift) // window, (x + shift) // window) for x in range(W)] for y in range(H)]
    for b in range(B):
        for y in range(H):
            for x in range(W):
                keys = [(yy, xx) for yy in range(H) for xx in range(W) if win[yy][xx] == win[y][x]]
                for head in range(h):
                    qi = q[b, head, :, y, x]
                    logits = torch.stack(
                        [
                            qi @ k[b, head, :, yy, xx] / math.sqrt(d) + math.log(1 - mask[b, 0, yy, xx] + 1e-4)
                            for yy, xx in keys
                        ]
                    )
                    p = torch.softmax(logits, 0)
                    o = sum(p[j] * v[b, head, :, yy, xx] for j, (yy, xx) in enumerate(keys))
                    out[b, head, :, y, x] = mask[b, 0, y, x] * o
    return out


@pytest.mark.parametrize(
    ("shape", "window", "shift"),
    [((1, 1, 3, 5, 7), 3, 0), ((2, 2, 5, 5, 7), 3, 1), ((1, 1, 2, 1, 1), 4, 2), ((1, 2, 3, 6, 4), 2, 1)],
)
def test_reference_matches_the_definition(shape, window, shift):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    B, _, _, H, W = shape
    mask = torch.rand((B, 1, H, W), generator=g, dtype=torch.float64)
    mask[..., 0, 0] = 1.0  # a fully rainy key must get (almost) no weight
    got = mgca_window_attention_reference(q, k, v, mask, window, shift)
    torch.testing.assert_close(got, mgca_by_definition(q, k, v, mask, window, shift), rtol=1e-10, atol=1e-12)
