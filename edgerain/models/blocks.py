"""Building blocks shared by the networks (MODELS.md).

The MGCA attention core and the UpDWBlock go through :mod:`edgerain.ops` so that the fused kernels
replace them without touching the models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain import ops


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return ops.layer_norm_channels(x, self.weight, self.bias, self.eps)


class UpDWBlock(nn.Module):
    """Bilinear x2 -> depthwise 3x3 -> LayerNorm(C) -> 1x1 -> GELU, as one fused op."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.norm = LayerNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        cout, cin = self.pw.weight.shape[:2]
        dw_bias, pw_bias = self.dw.bias, self.pw.bias
        assert dw_bias is not None and pw_bias is not None
        return ops.updw(
            x, self.dw.weight, dw_bias, self.norm.weight, self.norm.bias, self.pw.weight.view(cout, cin), pw_bias
        )


class GatedFFN(nn.Module):
    """Restormer's gated-dconv feed-forward network (pre-norm, residual outside)."""

    def __init__(self, dim: int, expansion: float = 2.0) -> None:
        super().__init__()
        hidden = max(4, int(dim * expansion))
        self.norm = LayerNorm2d(dim)
        self.inp = nn.Conv2d(dim, hidden * 2, 1)
        self.dw = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.dw(self.inp(self.norm(x))).chunk(2, dim=1)
        return self.out(F.gelu(a) * b)


class ChannelAttention(nn.Module):
    """Restormer's transposed (channel) self-attention: cost linear in the pixel count."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = LayerNorm2d(dim)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.qkv_dw = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv_dw(self.qkv(self.norm(x))).chunk(3, dim=1)
        q = F.normalize(q.reshape(B, self.heads, C // self.heads, H * W), dim=-1)
        k = F.normalize(k.reshape(B, self.heads, C // self.heads, H * W), dim=-1)
        v = v.reshape(B, self.heads, C // self.heads, H * W)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.temperature, dim=-1)
        return self.proj((attn @ v).reshape(B, C, H, W))


class TransformerBlock(nn.Module):
    """Encoder block of the Restormer-lite U-Net: channel attention + gated FFN."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float = 2.0) -> None:
        super().__init__()
        self.attn = ChannelAttention(dim, heads)
        self.ffn = GatedFFN(dim, ffn_expansion)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


class MGCABlock(nn.Module):
    """Mask-guided cross-attention block (MODELS.md, CLIP-RPN, MGCA steps 1-5).

    Returns the updated features and the predicted rain mask, which training supervises.
    """

    def __init__(
        self, dim: int, heads: int, window: int = 8, shifted: bool = False, ffn_expansion: float = 2.0
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"MGCA dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.window = window
        self.shift = window // 2 if shifted else 0
        mid = max(1, dim // 2)
        self.mask_head = nn.Sequential(nn.Conv2d(dim, mid, 3, padding=1), nn.GELU(), nn.Conv2d(mid, 1, 1))
        self.norm = LayerNorm2d(dim)
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.ffn = GatedFFN(dim, ffn_expansion)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, C, H, W = x.shape
        mask = torch.sigmoid(self.mask_head(x))
        q, k, v = self.qkv(self.norm(x)).view(B, 3, self.heads, C // self.heads, H, W).unbind(1)
        o = ops.mgca_window_attention(q, k, v, mask, self.window, self.shift)
        x = x + self.proj(o.reshape(B, C, H, W))
        return x + self.ffn(x), mask


class Downsample(nn.Module):
    """conv3x3 (C -> C/2) then PixelUnshuffle(2): C -> 2C at half resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: dw 7x7, LayerNorm, 4x MLP with GELU, layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pw1 = nn.Conv2d(dim, dim * 4, 1)
        self.pw2 = nn.Conv2d(dim * 4, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.gamma * self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))


class TokenCrossAttention(nn.Module):
    """Pixels attend to a short list of tokens (the CLIP weather prior); output starts at zero."""

    def __init__(self, dim: int, token_dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm = LayerNorm2d(dim)
        self.q = nn.Conv2d(dim, dim, 1)
        self.kv = nn.Linear(token_dim, dim * 2)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)  # type: ignore[arg-type]

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        B, C, H, W = x.shape
        d = C // self.heads
        q = self.q(self.norm(x)).reshape(B, self.heads, d, H * W).transpose(-1, -2)
        k, v = self.kv(tokens).reshape(B, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        o = (attn @ v).transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(o)
