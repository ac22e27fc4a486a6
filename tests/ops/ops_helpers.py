"""Shared helpers of the kernel tests: random inputs, the float64 ground truth, error measures."""

from __future__ import annotations

import torch

from edgerain.ops.reference import mgca_window_attention_reference, updw_reference

# Relative-error bounds of docs/kernels.md, per input dtype.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64 = out.to(torch.float64)
    assert torch.isfinite(out64).all(), "non-finite output (an element was never written?)"
    return float((out64 - ref).norm() / ref.norm().clamp_min(1e-300))


def poisoned(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype)


def mgca_inputs(B: int, heads: int, d: int, H: int, W: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, ...]:
    """q, k, v, mask in ``dtype``; the mask spans (0, 1) including values near 1 (strong bias)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, heads, d, H, W, generator=g, dtype=torch.float64).to(dtype) for _ in range(3))
    mask = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v, mask


def mgca_truth(q, k, v, mask, window: int, shift: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The reference in float64 on exactly the (rounded) inputs the kernel saw."""
    return mgca_window_attention_reference(*(t.to(torch.float64) for t in (q, k, v, mask)), window, shift)


def updw_inputs(B: int, cin: int, cout: int, h: int, w: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    return (
        rnd(B, cin, h, w),
        rnd(cin, 1, 3, 3, scale=0.5),
        rnd(cin, scale=0.1),
        1.0 + rnd(cin, scale=0.1),
        rnd(cin, scale=0.1),
        rnd(cout, cin, scale=cin**-0.5),
        rnd(cout, scale=0.1),
    )


def updw_truth(*args: torch.Tensor) -> torch.Tensor:
    return updw_reference(*(t.to(torch.float64) for t in args))
