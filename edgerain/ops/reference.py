"""PyTorch reference implementations of the fused ops: the ground truth every kernel must match.

They are written for clarity and for ONNX export (plain ops only), not for speed. Layouts:

* ``mgca_window_attention``: ``q, k, v`` are ``(B, heads, d, H, W)``, i.e. an NCHW feature map whose
  channels are grouped by head (``C = heads * d``). A model gets this layout from its 1x1 projections
  with a free ``view``, so no permute copy precedes the kernel. ``mask`` is ``(B, 1, H, W)`` in
  [0, 1]; the output has the layout of ``q``.
* ``updw``: ``x`` is ``(B, Cin, h, w)``; ``dw_weight`` ``(Cin, 1, 3, 3)``; ``pw_weight``
  ``(Cout, Cin)``; the output is ``(B, Cout, 2h, 2w)``.

See docs/kernels.md for the maths (window grid, shift, the mask bias and the phase decomposition).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MASK_EPS = 1e-4
LN_EPS = 1e-6


def _compute_dtype(t: Tensor) -> torch.dtype:
    # Half-precision inputs are computed in fp32 (as the kernels keep fp32 statistics).
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def mgca_window_attention_reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int, shift: int) -> Tensor:
    """Masked, gated window attention (MODELS.md, MGCA steps 3-4).

    Pixel (y, x) belongs to window ((y + shift) // window, (x + shift) // window); windows do not
    wrap around and may be partial at the borders. For a query i and the keys j of its window:
    ``out_i = M_i * sum_j softmax_j(q_i.k_j / sqrt(d) + log(1 - M_j + 1e-4)) v_j``.
    """
    if q.dim() != 5:
        raise ValueError(f"q must be (B, heads, d, H, W), got shape {tuple(q.shape)}")
    if not 0 <= shift < window:
        raise ValueError(f"shift must be in [0, window), got shift={shift}, window={window}")
    out_dtype = q.dtype
    cdt = _compute_dtype(q)
    q, k, v, mask = (t.to(cdt) for t in (q, k, v, mask))
    B, h, d, H, W = q.shape
    w, s = window, shift
    # Ceil division written with non-negative operands only: the TorchScript ONNX exporter records
    # `//` on traced sizes as a truncating Div, which breaks the -(-a // b) idiom for dynamic H, W.
    nh = (H + s + w - 1) // w
    nw = (W + s + w - 1) // w
    pad = (s, nw * w - W - s, s, nh * w - H - s)  # left, right, top, bottom

    def part(t: Tensor) -> Tensor:  # (B, h, c, H, W) -> (B, h, nh, nw, w*w, c)
        c = t.shape[2]
        t = F.pad(t.reshape(B, h * c, H, W), pad).reshape(B, h, c, nh, w, nw, w)
        return t.permute(0, 1, 3, 5, 4, 6, 2).reshape(B, h, nh, nw, w * w, c)

    qw, kw, vw = part(q), part(k), part(v)
    bias = torch.log(1.0 - mask + MASK_EPS)
    # Keys outside the image get -inf so that they receive exactly zero weight.
    bias = F.pad(bias, pad, value=float("-inf"))
    bias = bias.reshape(B, 1, nh, w, nw, w).permute(0, 1, 2, 4, 3, 5).reshape(B, 1, nh, nw, 1, w * w)
    logits = torch.matmul(qw, kw.transpose(-1, -2)) / math.sqrt(d) + bias
    ow = torch.matmul(torch.softmax(logits, dim=-1), vw)  # (B, h, nh, nw, w*w, d)
    o = ow.reshape(B, h, nh, nw, w, w, d).permute(0, 1, 6, 2, 4, 3, 5).reshape(B, h, d, nh * w, nw * w)
    o = o[..., s : s + H, s : s + W]
    return (o * mask.unsqueeze(1)).to(out_dtype)


def layer_norm_channels(x: Tensor, weight: Tensor, bias: Tensor, eps: float = LN_EPS) -> Tensor:
    """LayerNorm over the channel axis of an NCHW tensor (biased variance, as nn.LayerNorm)."""
    mu = x.mean(dim=1, keepdim=True)
    var = (x - mu).pow(2).mean(dim=1, keepdim=True)
    x = (x - mu) * torch.rsqrt(var + eps)
    return x * weight[:, None, None] + bias[:, None, None]


def updw_reference(
    x: Tensor,
    dw_weight: Tensor,
    dw_bias: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    pw_weight: Tensor,
    pw_bias: Tensor,
) -> Tensor:
    """UpDWBlock: GELU(pw(LN_c(dwconv3x3(upsample_bilinear2x(x))))) (MODELS.md section 5)."""
    out_dtype = x.dtype
    cdt = _compute_dtype(x)
    x = x.to(cdt)
    cin = x.shape[1]
    u = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    u = F.conv2d(u, dw_weight.to(cdt), dw_bias.to(cdt), padding=1, groups=cin)
    u = layer_norm_channels(u, ln_weight.to(cdt), ln_bias.to(cdt))
    y = F.conv2d(u, pw_weight.to(cdt)[:, :, None, None], pw_bias.to(cdt))
    return F.gelu(y).to(out_dtype)
