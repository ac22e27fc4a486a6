"""Triton kernel for the UpDWBlock (forward only): bilinear x2 -> depthwise 3x3 -> LayerNorm -> 1x1 -> GELU.

One program takes ``block_m`` low-resolution pixels of one image and produces the 2x2 output pixels
(the four phases) of each. The upsampled map is never stored: output phase (a, b) of low-resolution
pixel (i, j) is a 3x3 stencil on x's clamped neighbourhood (clamped loads = bilinear's edge
clamping) with combined weights W_ab = A_a^T K A_b, built per channel in the kernel. The depthwise
convolution zero-pads the *upsampled* map, so the tap reading upsampled row -1 (phase 0, first row)
or row 2h (phase 1, last row), and likewise for columns, must not count: the outer ring of output
pixels gets its own weights, applied as a correction on the ring pixels.

Channels are processed in chunks of ``block_k`` so that registers do not grow with Cin: per phase a
statistics pass computes the LayerNorm mean and variance (chunk results merged as in Chan et al.),
then a GEMM pass recomputes each chunk's depthwise result, normalises it (the GEMM's prologue) and
accumulates the 1x1 projection with ``tl.dot``; bias and exact-erf GELU are the epilogue. x is read
from device memory once (the re-reads hit the caches) and y is written once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from edgerain.triton_kernels.config import (
    TileConfig,
    dot_f32acc,
    dot_precision,
    upcast_bf16_dot,
    updw_config,
)

LN_EPS = 1e-6


@triton.jit
def _tap_coef(P: tl.constexpr, T: tl.constexpr, O: tl.constexpr):
    """Weight of low-resolution offset O-1 (O in 0..2) in the upsampled sample that depthwise tap T-1
    (T in 0..2) of output phase P reads along one axis, i.e. upsampled position 2i + P + T - 1:
    2i-1 = 0.75 x[i-1] + 0.25 x[i], 2i = 0.25 x[i-1] + 0.75 x[i], 2i+1 = 0.75 x[i] + 0.25 x[i+1],
    2i+2 = 0.25 x[i] + 0.75 x[i+1]."""
    return (
        (0.75 if O == 0 else (0.25 if O == 1 else 0.0))
        if P + T - 1 == -1
        else (
            (0.25 if O == 0 else (0.75 if O == 1 else 0.0))
            if P + T - 1 == 0
            else (
                (0.0 if O == 0 else (0.75 if O == 1 else 0.25))
                if P + T - 1 == 1
                else (0.0 if O == 0 else (0.25 if O == 1 else 0.75))
            )
        )
    )


@triton.jit
def _pick(a, b, c, O: tl.constexpr):
    if O == 0:
        r = a
    elif O == 1:
        r = b
    else:
        r = c
    return r


@triton.jit
def _tap(k00, k01, k02, k10, k11, k12, k20, k21, k22, TY: tl.constexpr, TX: tl.constexpr):
    """Depthwise tap (TY, TX) of the chunk's 3x3 kernels (a compile-time choice)."""
    return _pick(_pick(k00, k01, k02, TX), _pick(k10, k11, k12, TX), _pick(k20, k21, k22, TX), TY)


@triton.jit
def _program_pixels(h, w, BLOCK_M: tl.constexpr):
    """This program's image and its ``BLOCK_M`` low-resolution pixels: (image, in-range mask, row, column)."""
    pix = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    return tl.program_id(1), pix < h * w, pix // w, pix % w


@triton.jit
def _neighbour_offsets(i, j, h, w, xs_y, xs_x):
    """Element offsets (as column vectors) of the rows and columns of each pixel's clamped 3x3
    neighbourhood: replicate padding, which is bilinear upsampling's edge clamping."""
    rows_m = tl.maximum(i - 1, 0)[:, None] * xs_y
    rows_0 = i[:, None] * xs_y
    rows_p = tl.minimum(i + 1, h - 1)[:, None] * xs_y
    cols_m = tl.maximum(j - 1, 0)[:, None] * xs_x
    cols_0 = j[:, None] * xs_x
    cols_p = tl.minimum(j + 1, w - 1)[:, None] * xs_x
    return rows_m, rows_0, rows_p, cols_m, cols_0, cols_p


@triton.jit
def _bias_gelu_store(acc, bias, y_ptr, b, n, nmask, oy, ox, valid, ys_b, ys_c, ys_y, ys_x):
    """Epilogue of both kernels: projection bias, exact-erf GELU, store at output pixels (oy, ox)."""
    y = acc + bias[None, :]
    y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
    dst = y_ptr + b * ys_b + n[None, :] * ys_c + oy[:, None] * ys_y + ox[:, None] * ys_x
    tl.store(dst, y.to(y_ptr.dtype.element_ty), mask=valid[:, None] & nmask[None, :])


@triton.jit
def _dw_chunk(
    base,
    rows_m,
    rows_0,
    rows_p,
    cols_m,
    cols_0,
    cols_p,
    ld,
    dww_ptr,
    dwb_ptr,
    ck,
    kmask,
    drop_row,
    drop_col,
    PA: tl.constexpr,
    PB: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Depthwise 3x3 (+ bias) on the virtual upsampled map for phase (PA, PB) and one channel chunk.

    Padded channels come out exactly 0 (their loads and weights are 0)."""
    acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    acc += tl.load(dwb_ptr + ck, mask=kmask, other=0.0).to(tl.float32)[None, :]
    taps = dww_ptr + ck * 9
    k00 = tl.load(taps + 0, mask=kmask, other=0.0).to(tl.float32)
    k01 = tl.load(taps + 1, mask=kmask, other=0.0).to(tl.float32)
    k02 = tl.load(taps + 2, mask=kmask, other=0.0).to(tl.float32)
    k10 = tl.load(taps + 3, mask=kmask, other=0.0).to(tl.float32)
    k11 = tl.load(taps + 4, mask=kmask, other=0.0).to(tl.float32)
    k12 = tl.load(taps + 5, mask=kmask, other=0.0).to(tl.float32)
    k20 = tl.load(taps + 6, mask=kmask, other=0.0).to(tl.float32)
    k21 = tl.load(taps + 7, mask=kmask, other=0.0).to(tl.float32)
    k22 = tl.load(taps + 8, mask=kmask, other=0.0).to(tl.float32)
    for oy in tl.static_range(3):
        for ox in tl.static_range(3):
            wv = tl.zeros((BLOCK_K,), dtype=tl.float32)
            for ty in tl.static_range(3):
                for tx in tl.static_range(3):
                    coef = _tap_coef(PA, ty, oy) * _tap_coef(PB, tx, ox)
                    if coef != 0.0:
                        wv += coef * _tap(k00, k01, k02, k10, k11, k12, k20, k21, k22, ty, tx)
            off = _pick(rows_m, rows_0, rows_p, oy) + _pick(cols_m, cols_0, cols_p, ox)
            acc += tl.load(base + off, mask=ld, other=0.0).to(tl.float32) * wv[None, :]
    # Ring: at the pixels that drop tap t* (row) / s* (column), the clamped loads make the dropped
    # upsampled row equal to x's row i (column j), so
    # dw = interior - dr * RowSum - dc * ColSum + dr * dc * K[t*][s*] x[i][j].
    T_DROP = 0 if PA == 0 else 2
    S_DROP = 0 if PB == 0 else 2
    row_sum = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    col_sum = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for o in tl.static_range(3):
        w_row = tl.zeros((BLOCK_K,), dtype=tl.float32)
        w_col = tl.zeros((BLOCK_K,), dtype=tl.float32)
        for t in tl.static_range(3):
            w_row += _tap_coef(PB, t, o) * _tap(k00, k01, k02, k10, k11, k12, k20, k21, k22, T_DROP, t)
            w_col += _tap_coef(PA, t, o) * _tap(k00, k01, k02, k10, k11, k12, k20, k21, k22, t, S_DROP)
        x_row = tl.load(base + rows_0 + _pick(cols_m, cols_0, cols_p, o), mask=ld, other=0.0).to(tl.float32)
        x_col = tl.load(base + _pick(rows_m, rows_0, rows_p, o) + cols_0, mask=ld, other=0.0).to(tl.float32)
        row_sum += x_row * w_row[None, :]
        col_sum += x_col * w_col[None, :]
    k_corner = _tap(k00, k01, k02, k10, k11, k12, k20, k21, k22, T_DROP, S_DROP)
    x_center = tl.load(base + rows_0 + cols_0, mask=ld, other=0.0).to(tl.float32)
    return acc + drop_row * drop_col * x_center * k_corner[None, :] - drop_row * row_sum - drop_col * col_sum


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
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    b, valid, i, j = _program_pixels(h, w, BLOCK_M)
    kk = tl.arange(0, BLOCK_K)
    in_dtype = x_ptr.dtype.element_ty

    rows_m, rows_0, rows_p, cols_m, cols_0, cols_p = _neighbour_offsets(i, j, h, w, xs_y, xs_x)

    for phase in tl.static_range(4):
        pa = phase // 2  # constexpr: static_range unrolls the phases
        pb = phase % 2
        if pa == 0:
            drop_row = (i == 0).to(tl.float32)[:, None]
        else:
            drop_row = (i == h - 1).to(tl.float32)[:, None]
        if pb == 0:
            drop_col = (j == 0).to(tl.float32)[:, None]
        else:
            drop_col = (j == w - 1).to(tl.float32)[:, None]

        # Pass 1: LayerNorm statistics over all channels, chunk by chunk (fp32, two-level variance).
        mean = tl.zeros((BLOCK_M,), dtype=tl.float32)
        m2 = tl.zeros((BLOCK_M,), dtype=tl.float32)
        count = 0.0
        for k0 in range(0, CIN, BLOCK_K):
            ck = k0 + kk
            kmask = ck < CIN
            base = x_ptr + b * xs_b + ck[None, :] * xs_c
            ld = valid[:, None] & kmask[None, :]
            d = _dw_chunk(
                base, rows_m, rows_0, rows_p, cols_m, cols_0, cols_p, ld, dww_ptr, dwb_ptr, ck, kmask,
                drop_row, drop_col, pa, pb, BLOCK_M, BLOCK_K,
            )  # fmt: skip
            n_chunk = tl.minimum(CIN - k0, BLOCK_K).to(tl.float32)
            chunk_mean = tl.sum(d, axis=1) / n_chunk
            dev = tl.where(kmask[None, :], d - chunk_mean[:, None], 0.0)
            chunk_m2 = tl.sum(dev * dev, axis=1)
            total = count + n_chunk
            delta = chunk_mean - mean
            mean += delta * (n_chunk / total)
            m2 += chunk_m2 + delta * delta * (count * n_chunk / total)
            count = total
        rstd = 1.0 / tl.sqrt(m2 / CIN + eps)

        # Pass 2: normalise each recomputed chunk and accumulate the 1x1 projection, then GELU.
        oy = 2 * i + pa
        ox = 2 * j + pb
        for n0 in range(0, COUT, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            nmask = n < COUT
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, CIN, BLOCK_K):
                ck = k0 + kk
                kmask = ck < CIN
                base = x_ptr + b * xs_b + ck[None, :] * xs_c
                ld = valid[:, None] & kmask[None, :]
                d = _dw_chunk(
                    base, rows_m, rows_0, rows_p, cols_m, cols_0, cols_p, ld, dww_ptr, dwb_ptr, ck, kmask,
                    drop_row, drop_col, pa, pb, BLOCK_M, BLOCK_K,
                )  # fmt: skip
                ln_w = tl.load(lnw_ptr + ck, mask=kmask, other=0.0).to(tl.float32)
                ln_b = tl.load(lnb_ptr + ck, mask=kmask, other=0.0).to(tl.float32)
                xn = (d - mean[:, None]) * rstd[:, None] * ln_w[None, :] + ln_b[None, :]  # padded: 0
                wt = tl.load(pww_ptr + n[None, :] * CIN + ck[:, None], mask=kmask[:, None] & nmask[None, :], other=0.0)
                acc += dot_f32acc(xn.to(in_dtype), wt.to(in_dtype), PRECISION, UPCAST)
            bias = tl.load(pwb_ptr + n, mask=nmask, other=0.0).to(tl.float32)
            _bias_gelu_store(acc, bias, y_ptr, b, n, nmask, oy, ox, valid, ys_b, ys_c, ys_y, ys_x)


# --- single pass: a tile's whole channel row in registers (Cin <= UPDW_SINGLE_PASS_MAX_CIN) -----
#
# Measured on an H100 (ncu, 1280x720 decoder, fp16): the chunked kernel above spends 1.78 ms on the
# 64->32 level at 12.5 % occupancy (218 registers a thread) with 1 % DRAM throughput: it recomputes
# each depthwise chunk for the statistics and again for every GEMM step, and gathers x's 3x3
# neighbourhood once per phase. When a tile's whole channel row fits in registers, each of the nine
# neighbour tiles is loaded once and feeds all four phases, the LayerNorm statistics come from the
# row in registers, and nothing is recomputed.

# Weight of low-resolution offset O (0..2) in the upsampled sample that tap T (0..2) of phase P reads:
# the same table as ``_tap_coef``, for the host-side folding below.
_BILINEAR = {-1: (0.75, 0.25, 0.0), 0: (0.25, 0.75, 0.0), 1: (0.0, 0.75, 0.25), 2: (0.0, 0.25, 0.75)}
_FOLD_CACHE: dict[torch.device, torch.Tensor] = {}


def _fold_coefficients() -> torch.Tensor:
    """(4 kinds, 4 phases, 9 offsets, 9 taps): how the 3x3 taps combine into the weight of each
    low-resolution neighbour, per output phase. Kinds: 0 interior; 1 the dropped tap row on the
    first/last output row (centre-row offsets); 2 the dropped tap column (centre-column offsets);
    3 the corner both remove (centre offset)."""
    c = torch.zeros(4, 4, 9, 9, dtype=torch.float64)
    for pa in range(2):
        for pb in range(2):
            p, t_drop, s_drop = 2 * pa + pb, 0 if pa == 0 else 2, 0 if pb == 0 else 2
            for oy in range(3):
                for ox in range(3):
                    o = 3 * oy + ox
                    for ty in range(3):
                        for tx in range(3):
                            t = 3 * ty + tx
                            c[0, p, o, t] = _BILINEAR[pa + ty - 1][oy] * _BILINEAR[pb + tx - 1][ox]
                            if oy == 1 and ty == t_drop:
                                c[1, p, o, t] = _BILINEAR[pb + tx - 1][ox]
                            if ox == 1 and tx == s_drop:
                                c[2, p, o, t] = _BILINEAR[pa + ty - 1][oy]
                            if o == 4 and (ty, tx) == (t_drop, s_drop):
                                c[3, p, o, t] = 1.0
    return c


def fold_taps(dw_weight: torch.Tensor) -> torch.Tensor:
    """(4, 4, 9, Cin) fp32: the depthwise taps folded with the bilinear weights (one small GEMM)."""
    device = dw_weight.device
    if device not in _FOLD_CACHE:
        _FOLD_CACHE[device] = _fold_coefficients().to(device=device, dtype=torch.float32).reshape(144, 9)
    taps = dw_weight.reshape(dw_weight.shape[0], 9).to(torch.float32)
    return (_FOLD_CACHE[device] @ taps.t()).reshape(4, 4, 9, -1).contiguous()


@triton.jit
def _phase_tap(
    acc, xt, fold_ptr, ck, kmask, CIN, drop_row, drop_col,
    PA: tl.constexpr, PB: tl.constexpr, OY: tl.constexpr, OX: tl.constexpr,
):  # fmt: skip
    """Add neighbour tile ``xt`` (low-resolution offset (OY-1, OX-1)) to phase (PA, PB)'s depthwise sum.

    The folded weights (``fold_taps``) are loaded where they are used (cache hits) rather than
    kept in registers. On the ring, the dropped tap row (column) reads x's own row (column)
    through the clamped loads, so its share is taken back on the centre-row (centre-column)
    offsets, and the corner both took back is restored at the centre offset."""
    P: tl.constexpr = 2 * PA + PB
    O: tl.constexpr = 3 * OY + OX
    w = tl.load(fold_ptr + ((0 * 4 + P) * 9 + O) * CIN + ck, mask=kmask, other=0.0)
    acc += xt * w[None, :]
    if OY == 1:
        w_row = tl.load(fold_ptr + ((1 * 4 + P) * 9 + O) * CIN + ck, mask=kmask, other=0.0)
        acc -= drop_row * xt * w_row[None, :]
    if OX == 1:
        w_col = tl.load(fold_ptr + ((2 * 4 + P) * 9 + O) * CIN + ck, mask=kmask, other=0.0)
        acc -= drop_col * xt * w_col[None, :]
    if OY == 1 and OX == 1:
        w_corner = tl.load(fold_ptr + ((3 * 4 + P) * 9 + O) * CIN + ck, mask=kmask, other=0.0)
        acc += drop_row * drop_col * xt * w_corner[None, :]
    return acc


@triton.jit
def _layer_norm_rows(d, kmask, ln_w, ln_b, CIN, eps):
    """LayerNorm over the channel axis of a (BLOCK_M, BLOCK_K) tile whose padded channels are 0."""
    mean = tl.sum(d, axis=1) / CIN
    dev = tl.where(kmask[None, :], d - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(dev * dev, axis=1) / CIN + eps)
    return dev * rstd[:, None] * ln_w[None, :] + ln_b[None, :]


@triton.jit
def _project_store(
    xn, wt, bias, y_ptr, b, n, nmask, oy, ox, valid, ys_b, ys_c, ys_y, ys_x,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """1x1 projection (tensor cores), then the shared epilogue for one phase's output pixels."""
    acc = dot_f32acc(xn, wt, PRECISION, UPCAST)
    _bias_gelu_store(acc, bias, y_ptr, b, n, nmask, oy, ox, valid, ys_b, ys_c, ys_y, ys_x)


@triton.jit
def _updw_fwd_single_pass_kernel(
    x_ptr, fold_ptr, dwb_ptr, lnw_ptr, lnb_ptr, pww_ptr, pwb_ptr, y_ptr,
    CIN, COUT, h, w, xs_b, xs_c, xs_y, xs_x, ys_b, ys_c, ys_y, ys_x, eps,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    b, valid, i, j = _program_pixels(h, w, BLOCK_M)
    ck = tl.arange(0, BLOCK_K)  # BLOCK_K >= CIN: the whole channel row
    kmask = ck < CIN
    in_dtype = x_ptr.dtype.element_ty
    base = x_ptr + b * xs_b + ck[None, :] * xs_c
    ld = valid[:, None] & kmask[None, :]

    top = (i == 0).to(tl.float32)[:, None]
    bottom = (i == h - 1).to(tl.float32)[:, None]
    left = (j == 0).to(tl.float32)[:, None]
    right = (j == w - 1).to(tl.float32)[:, None]

    # Depthwise sums of the four output phases (a, b), each (BLOCK_M, BLOCK_K) in fp32.
    dwb = tl.load(dwb_ptr + ck, mask=kmask, other=0.0).to(tl.float32)
    d00 = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32) + dwb[None, :]
    d01 = d00
    d10 = d00
    d11 = d00
    rows_m, rows_0, rows_p, cols_m, cols_0, cols_p = _neighbour_offsets(i, j, h, w, xs_y, xs_x)
    for oy in tl.static_range(3):
        for ox in tl.static_range(3):
            off = _pick(rows_m, rows_0, rows_p, oy) + _pick(cols_m, cols_0, cols_p, ox)
            xt = tl.load(base + off, mask=ld, other=0.0).to(tl.float32)
            d00 = _phase_tap(d00, xt, fold_ptr, ck, kmask, CIN, top, left, 0, 0, oy, ox)
            d01 = _phase_tap(d01, xt, fold_ptr, ck, kmask, CIN, top, right, 0, 1, oy, ox)
            d10 = _phase_tap(d10, xt, fold_ptr, ck, kmask, CIN, bottom, left, 1, 0, oy, ox)
            d11 = _phase_tap(d11, xt, fold_ptr, ck, kmask, CIN, bottom, right, 1, 1, oy, ox)

    ln_w = tl.load(lnw_ptr + ck, mask=kmask, other=0.0).to(tl.float32)
    ln_b = tl.load(lnb_ptr + ck, mask=kmask, other=0.0).to(tl.float32)
    x00 = _layer_norm_rows(d00, kmask, ln_w, ln_b, CIN, eps).to(in_dtype)
    x01 = _layer_norm_rows(d01, kmask, ln_w, ln_b, CIN, eps).to(in_dtype)
    x10 = _layer_norm_rows(d10, kmask, ln_w, ln_b, CIN, eps).to(in_dtype)
    x11 = _layer_norm_rows(d11, kmask, ln_w, ln_b, CIN, eps).to(in_dtype)

    for n0 in range(0, COUT, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        nmask = n < COUT
        wt = tl.load(pww_ptr + n[None, :] * CIN + ck[:, None], mask=kmask[:, None] & nmask[None, :], other=0.0)
        wt = wt.to(in_dtype)
        bias = tl.load(pwb_ptr + n, mask=nmask, other=0.0).to(tl.float32)
        _project_store(
            x00, wt, bias, y_ptr, b, n, nmask, 2 * i, 2 * j, valid, ys_b, ys_c, ys_y, ys_x, PRECISION, UPCAST
        )
        _project_store(
            x01, wt, bias, y_ptr, b, n, nmask, 2 * i, 2 * j + 1, valid, ys_b, ys_c, ys_y, ys_x, PRECISION, UPCAST
        )
        _project_store(
            x10, wt, bias, y_ptr, b, n, nmask, 2 * i + 1, 2 * j, valid, ys_b, ys_c, ys_y, ys_x, PRECISION, UPCAST
        )
        _project_store(
            x11, wt, bias, y_ptr, b, n, nmask, 2 * i + 1, 2 * j + 1, valid, ys_b, ys_c, ys_y, ys_x, PRECISION, UPCAST
        )


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
    if cfg.single_pass and cfg.block_k < cin:
        raise ValueError(f"single-pass updw needs block_k >= Cin ({cfg.block_k} < {cin})")
    grid = (triton.cdiv(h * w, cfg.block_m), B)
    kernel = _updw_fwd_single_pass_kernel if cfg.single_pass else _updw_fwd_kernel
    kernel[grid](
        x,
        fold_taps(dw_weight) if cfg.single_pass else dw_weight.contiguous(),
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
        BLOCK_K=cfg.block_k,
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
