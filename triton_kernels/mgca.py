"""Triton kernel for MGCA window attention (forward only).

One program computes one (window, batch*head) pair: it reads the window's q, k, v and mask once
(straight from the ``(B, heads, d, H, W)`` feature map, no partition copies), keeps the logits in
registers, and writes the gated output once. Softmax statistics are fp32 whatever the input dtype.

Window grid (docs/kernels.md): pixel (y, x) is in window ((y + shift) // w, (x + shift) // w); nothing
wraps, windows at the borders are partial, and pixels outside the image take part neither as keys
(logit -inf) nor as queries (not stored).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from edgerain.triton_kernels.config import (
    TileConfig,
    dot_f32acc,
    dot_precision,
    mgca_config,
    pad_block,
    upcast_bf16_dot,
)

MASK_EPS = tl.constexpr(1e-4)  # jit code may only read constexpr globals


@triton.jit
def _mgca_fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    m_ptr,
    o_ptr,
    H,
    W,
    HEADS,
    D,
    n_win_x,
    shift,
    qs_b,
    qs_h,
    qs_c,
    qs_y,
    qs_x,
    ks_b,
    ks_h,
    ks_c,
    ks_y,
    ks_x,
    vs_b,
    vs_h,
    vs_c,
    vs_y,
    vs_x,
    ms_b,
    ms_y,
    ms_x,
    os_b,
    os_h,
    os_c,
    os_y,
    os_x,
    scale,
    WINDOW: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    win = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HEADS
    h = bh % HEADS
    y0 = (win // n_win_x) * WINDOW - shift
    x0 = (win % n_win_x) * WINDOW - shift

    p = tl.arange(0, BLOCK_P)  # pixel index inside the window (padded to a power of two >= 16)
    c = tl.arange(0, BLOCK_D)
    y = y0 + p // WINDOW
    x = x0 + p % WINDOW
    inside = (p < WINDOW * WINDOW) & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    cmask = c < D
    ld = inside[:, None] & cmask[None, :]

    q_off = b * qs_b + h * qs_h + c[None, :] * qs_c + y[:, None] * qs_y + x[:, None] * qs_x
    k_off = b * ks_b + h * ks_h + c[None, :] * ks_c + y[:, None] * ks_y + x[:, None] * ks_x
    v_off = b * vs_b + h * vs_h + c[None, :] * vs_c + y[:, None] * vs_y + x[:, None] * vs_x
    q = tl.load(q_ptr + q_off, mask=ld, other=0.0)
    k = tl.load(k_ptr + k_off, mask=ld, other=0.0)
    v = tl.load(v_ptr + v_off, mask=ld, other=0.0)
    m = tl.load(m_ptr + b * ms_b + y * ms_y + x * ms_x, mask=inside, other=0.0).to(tl.float32)

    # Logits (BLOCK_P queries x BLOCK_P keys) in fp32; the key bias favours clean (low-mask) pixels.
    logits = dot_f32acc(q, tl.trans(k), PRECISION, UPCAST) * scale
    bias = tl.log(1.0 - m + MASK_EPS)
    logits = logits + bias[None, :]
    logits = tl.where(inside[None, :], logits, float("-inf"))
    row_max = tl.max(logits, axis=1)
    # Padded query rows still see the window's valid keys, so row_max is finite for every row.
    prob = tl.exp(logits - row_max[:, None])
    denom = tl.sum(prob, axis=1)
    prob = prob / denom[:, None]
    out = dot_f32acc(prob.to(v.dtype), v, PRECISION, UPCAST)
    out = out * m[:, None]  # query gate

    o_off = b * os_b + h * os_h + c[None, :] * os_c + y[:, None] * os_y + x[:, None] * os_x
    tl.store(o_ptr + o_off, out.to(o_ptr.dtype.element_ty), mask=ld)


def mgca_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    window: int,
    shift: int,
    out: torch.Tensor | None = None,
    allow_tf32: bool = False,
    config: TileConfig | None = None,
) -> torch.Tensor:
    """Launch the fused kernel. ``q, k, v``: (B, heads, d, H, W) with any strides; ``mask``: (B, 1, H, W).

    fp32 inputs use IEEE fp32 products unless ``allow_tf32`` (about 1e-3 relative error on a GPU).
    """
    B, heads, d, H, W = q.shape
    if out is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    n_win_y = -(-(H + shift) // window)
    n_win_x = -(-(W + shift) // window)
    cfg = config or mgca_config(q.device, window, d, q.dtype)
    block_p = pad_block(window * window)
    block_d = pad_block(d)
    grid = (n_win_y * n_win_x, B * heads)
    _mgca_fwd_kernel[grid](
        q,
        k,
        v,
        mask,
        out,
        H,
        W,
        heads,
        d,
        n_win_x,
        shift,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        mask.stride(0),
        mask.stride(2),
        mask.stride(3),
        *out.stride(),
        1.0 / math.sqrt(d),
        WINDOW=window,
        BLOCK_P=block_p,
        BLOCK_D=block_d,
        PRECISION="ieee" if upcast_bf16_dot(q.dtype) else dot_precision(q.dtype, allow_tf32),
        UPCAST=upcast_bf16_dot(q.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out


def program_count(q_shape: tuple[int, ...], window: int, shift: int) -> int:
    """Number of programs one launch runs (the interpreter's cost driver in tests)."""
    B, heads, _, H, W = q_shape
    return (-(-(H + shift) // window)) * (-(-(W + shift) // window)) * B * heads
