"""CLIP weather-prior network: SAR encoder, CLIP-SRD, CWP cross-attention (MODELS.md section 3)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain.models.base import DerainModel
from edgerain.models.blocks import TokenCrossAttention
from edgerain.models.clip import FrozenCLIPImage, clip_image_size, create_clip, resnet_widths
from edgerain.models.unet import RestormerLiteUNet, UNetConfig


@dataclasses.dataclass
class ClipWeatherConfig:
    clip_model: str = "RN50"
    backbone: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    prior_tokens: int = 8  # K learned distribution-specific tokens
    token_dim: int = 128
    prior_heads: int = 1


class SAREncoder(nn.Module):
    """Spatially-adaptive residual encoder: three stride-2 conv stages (2C, 4C, 8C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        chans = [3, 2 * dim, 4 * dim, 8 * dim]
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(chans[i + 1], chans[i + 1], 3, padding=1),
                nn.GELU(),
            )
            for i in range(3)
        )
        self.gates = nn.ModuleList(nn.Conv2d(c, c, 1) for c in chans[1:])

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ClipWeather(DerainModel):
    pad_multiple = 8

    def __init__(self, cfg: ClipWeatherConfig, pretrained: str | None = None, quiet_clip: bool = False) -> None:
        super().__init__()
        self.config = cfg
        clip = create_clip(cfg.clip_model, pretrained, quiet=quiet_clip)
        self.clip = FrozenCLIPImage(clip.visual, clip_image_size(clip))
        embed_dim = int(clip.visual.output_dim)
        clip_widths = resnet_widths(clip)
        del clip
        self.backbone = RestormerLiteUNet(cfg.backbone)
        dims = self.backbone.dims
        self.sar = SAREncoder(cfg.backbone.dim)
        # CLIP-SRD students: 1x1 projections of SAR features onto CLIP stem/layer1/layer2 widths.
        self.srd_proj = nn.ModuleList(nn.Conv2d(dims[i + 1], clip_widths[i], 1) for i in range(3))
        self.prior_mlp = nn.Sequential(
            nn.Linear(embed_dim, cfg.token_dim), nn.GELU(), nn.Linear(cfg.token_dim, cfg.token_dim)
        )
        self.prior_tokens = nn.Parameter(torch.randn(cfg.prior_tokens, cfg.token_dim) * 0.02)
        self.prior_attn = nn.ModuleList(TokenCrossAttention(d, cfg.token_dim, cfg.prior_heads) for d in dims)
        self.last_sar: list[Tensor] = []

    def global_context(self, x: Tensor) -> Tensor:
        """The CWP tokens (B, K+1, D): the whole image's CLIP embedding plus the learned tokens."""
        with torch.no_grad():
            e = self.clip(x)
        own = self.prior_mlp(e).unsqueeze(1)
        return torch.cat([own, self.prior_tokens.expand(x.shape[0], -1, -1)], dim=1)

    def forward_padded(self, x: Tensor, context: Any = None) -> Tensor:
        tokens = context if context is not None else self.global_context(x)
        sar = self.sar(x)
        self.last_sar = sar

        def encoder_hook(level: int, f: Tensor) -> Tensor:
            s = sar[level - 1]
            return f + torch.sigmoid(self.sar.gates[level - 1](s)) * s

        def decoder_hook(level: int, f: Tensor) -> Tensor:
            return self.prior_attn[level](f, tokens)

        return x + self.backbone(x, encoder_hook, decoder_hook)

    def forward_train(self, x: Tensor) -> dict[str, Any]:
        out = self(x)
        return {"out": out, "sar_proj": [p(s) for p, s in zip(self.srd_proj, self.last_sar, strict=True)]}

    @torch.no_grad()
    def srd_teacher(self, rainy: Tensor, clean: Tensor) -> list[Tensor]:
        """CLIP-SRD teacher: LN(clip_s(rainy)) - LN(clip_s(clean)) at stem, layer1, layer2."""
        tr = self.clip.resnet_taps(rainy, upto=2)
        tc = self.clip.resnet_taps(clean, upto=2)
        return [_ln(a) - _ln(b) for a, b in zip(tr, tc, strict=True)]


def _ln(f: Tensor) -> Tensor:
    return F.layer_norm(f.permute(0, 2, 3, 1), f.shape[1:2]).permute(0, 3, 1, 2)
