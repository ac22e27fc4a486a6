"""Triton kernel for the UpDWBlock (forward only): bilinear x2 -> depthwise 3x3 -> LayerNorm -> 1x1 -> GELU.

One program takes ``block_m`` low-resolution pixels of one image with all their input channels and
produces the 2x2 output pixels (the four phases) of each. The upsampled map is never stored: for
output phase (a, b) of low-resolution pixel (i, j), the nine depthwise taps read upsampled samples
at rows 2i+a-1 .. 2i+a+1, each a 0.75/0.25 blend of two rows of x's 3x3 neighbourhood (clamped
loads = bilinear's edge clamping). The depthwise convolution pads the *upsampled* map with zeros,
so the tap reading row -1 (phase 0, first row) or row 2h (phase 1, last row) is dropped there, and
likewise for columns: the outer ring gets its own weights. LayerNorm over channels is the GEMM's
prologue, bias + exact-erf GELU its epilogue; the 1x1 projection is ``tl.dot`` over channels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from edgerain.triton_kernels.config import (
    TileConfig,
    dot_f32acc,
    dot_precision,
    pad_block,
    upcast_bf16_dot,
    updw_config,
)

LN_EPS = 1e-6


@triton.jit
def _up_sample(prev, cur, nxt, K: tl.constexpr):
    """Upsampled sample at position 2*i + K (K in -1..2) along one axis, from samples i-1, i, i+1."""
    if K == -1:
        r = 0.75 * prev + 0.25 * cur
    elif K == 0:
        r = 0.25 * prev + 0.75 * cur
    elif K == 1:
        r = 0.75 * cur + 0.25 * nxt
    else:
        r = 0.25 * cur + 0.75 * nxt
    return r


@triton.jit
def _updw_fwd_kernel(
    x_ptr,
    dww_ptr,
    dwb_ptr,
    lnw_ptr,
    lnb_ptr,
    pww_ptr,
    pwb_ptr,
    y_ptr,
    CIN,
    COUT,
    h,
    w,
    xs_b,
    xs_c,
    xs_y,
    xs_x,
    ys_b,
    ys_c,
    ys_y,
    ys_x,
    eps,
    BLOCK_M: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    tile = tl.program_id(0)
    b = tl.program_id(1)
    pix = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    valid = pix < h * w
    i = pix // w
    j = pix % w
    c = tl.arange(0, BLOCK_C)
    cmask = c < CIN
    ld = valid[:, None] & cmask[None, :]

    # The clamped 3x3 neighbourhood of each low-resolution pixel (replicate padding).
    im = tl.maximum(i - 1, 0)
    ip = tl.minimum(i + 1, h - 1)
    jm = tl.maximum(j - 1, 0)
    jp = tl.minimum(j + 1, w - 1)
    base = x_ptr + b * xs_b + c[None, :] * xs_c
    x_mm = tl.load(base + im[:, None] * xs_y + jm[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_m0 = tl.load(base + im[:, None] * xs_y + j[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_mp = tl.load(base + im[:, None] * xs_y + jp[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_0m = tl.load(base + i[:, None] * xs_y + jm[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_00 = tl.load(base + i[:, None] * xs_y + j[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_0p = tl.load(base + i[:, None] * xs_y + jp[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_pm = tl.load(base + ip[:, None] * xs_y + jm[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_p0 = tl.load(base + ip[:, None] * xs_y + j[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)
    x_pp = tl.load(base + ip[:, None] * xs_y + jp[:, None] * xs_x, mask=ld, other=0.0).to(tl.float32)

    # Zero padding of the upsampled map: 0 where the tap falls outside it.
    keep_row_before = (i > 0).to(tl.float32)[:, None]
    keep_row_after = (i < h - 1).to(tl.float32)[:, None]
    keep_col_before = (j > 0).to(tl.float32)[:, None]
    keep_col_after = (j < w - 1).to(tl.float32)[:, None]

    dw_bias = tl.load(dwb_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    ln_w = tl.load(lnw_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    ln_b = tl.load(lnb_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    in_dtype = x_ptr.dtype.element_ty

    for phase in tl.static_range(4):
        pa = phase // 2  # constexpr: static_range unrolls the phases
        pb = phase % 2
        acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32) + dw_bias[None, :]
        for ty in tl.static_range(3):
            for tx in tl.static_range(3):
                kk = tl.load(dww_ptr + c * 9 + (ty * 3 + tx), mask=cmask, other=0.0).to(tl.float32)
                col_m = _up_sample(x_mm, x_m0, x_mp, pb + tx - 1)
                col_0 = _up_sample(x_0m, x_00, x_0p, pb + tx - 1)
                col_p = _up_sample(x_pm, x_p0, x_pp, pb + tx - 1)
                u = _up_sample(col_m, col_0, col_p, pa + ty - 1)
                if pa + ty - 1 == -1:
                    u = u * keep_row_before
                if pa + ty - 1 == 2:
                    u = u * keep_row_after
                if pb + tx - 1 == -1:
                    u = u * keep_col_before
                if pb + tx - 1 == 2:
                    u = u * keep_col_after
                acc += kk[None, :] * u

        # LayerNorm over channels (biased variance); padded channels are exactly 0 and stay out.
        mean = tl.sum(acc, axis=1) / CIN
        diff = tl.where(cmask[None, :], acc - mean[:, None], 0.0)
        var = tl.sum(diff * diff, axis=1) / CIN
        rstd = 1.0 / tl.sqrt(var + eps)
        xn = (diff * rstd[:, None] * ln_w[None, :] + ln_b[None, :]).to(in_dtype)

        oy = 2 * i + pa
        ox = 2 * j + pb
        for n0 in range(0, COUT, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            nmask = n < COUT
            wt = tl.load(pww_ptr + n[None, :] * CIN + c[:, None], mask=cmask[:, None] & nmask[None, :], other=0.0)
            y = dot_f32acc(xn, wt.to(in_dtype), PRECISION, UPCAST)
            y += tl.load(pwb_ptr + n, mask=nmask, other=0.0).to(tl.float32)[None, :]
            y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
            dst = y_ptr + b * ys_b + n[None, :] * ys_c + oy[:, None] * ys_y + ox[:, None] * ys_x
            tl.store(dst, y.to(y_ptr.dtype.element_ty), mask=valid[:, None] & nmask[None, :])


def updw(
    x: torch.Tensor,
    dw_weight: torch.Tensor,
    dw_bias: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    pw_weight: torch.Tensor,
    pw_bias: torch.Tensor,
    out: torch.Tensor | None = None,
    allow_tf32: bool = False,
    config: TileConfig | None = None,
    eps: float = LN_EPS,
) -> torch.Tensor:
    """Launch the fused kernel: ``x`` (B, Cin, h, w) -> (B, Cout, 2h, 2w). Weights must be contiguous."""
    B, cin, h, w = x.shape
    cout = pw_weight.shape[0]
    if out is None:
        out = torch.empty((B, cout, 2 * h, 2 * w), device=x.device, dtype=x.dtype)
    cfg = config or updw_config(x.device, cin, cout)
    grid = (triton.cdiv(h * w, cfg.block_m), B)
    _updw_fwd_kernel[grid](
        x,
        dw_weight.contiguous(),
        dw_bias.contiguous(),
        ln_weight.contiguous(),
        ln_bias.contiguous(),
        pw_weight.contiguous(),
        pw_bias.contiguous(),
        out,
        cin,
        cout,
        h,
        w,
        *x.stride(),
        *out.stride(),
        eps,
        BLOCK_M=cfg.block_m,
        BLOCK_C=pad_block(cin),
        BLOCK_N=cfg.block_n,
        PRECISION="ieee" if upcast_bf16_dot(x.dtype) else dot_precision(x.dtype, allow_tf32),
        UPCAST=upcast_bf16_dot(x.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out


def program_count(x_shape: tuple[int, ...], block_m: int = 32) -> int:
    B, _, h, w = x_shape
    return triton.cdiv(h * w, block_m) * B
