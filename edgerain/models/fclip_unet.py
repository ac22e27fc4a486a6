"""FCLIP-UNet: frozen CLIP-RN50 encoder, ConvNeXt + UpDWBlock decoder, LDFPS skips (MODELS.md 2)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from edgerain.models.base import DerainModel
from edgerain.models.blocks import ConvNeXtBlock, UpDWBlock
from edgerain.models.clip import FrozenCLIPImage, clip_image_size, create_clip, resnet_widths


@dataclasses.dataclass
class FClipUNetConfig:
    clip_model: str = "RN50"
    decoder_dims: tuple[int, int, int, int] = (32, 64, 128, 256)  # at H/2, H/4, H/8, H/16
    head_dim: int = 32
    convnext_blocks: int = 3
    # LDFPS strength per skip, stem (shallow) .. layer3 (deep); training only.
    ldfps_sigma: tuple[float, float, float, float] = (0.01, 0.03, 0.06, 0.1)


class FClipUNet(DerainModel):
    pad_multiple = 16

    def __init__(self, cfg: FClipUNetConfig, pretrained: str | None = None, quiet_clip: bool = False) -> None:
        super().__init__()
        self.config = cfg
        clip = create_clip(cfg.clip_model, pretrained, quiet=quiet_clip)
        widths = resnet_widths(clip)
        self.encoder = FrozenCLIPImage(clip.visual, clip_image_size(clip))
        # layer4 and the attention pool are never used: drop them from the deployed model.
        del self.encoder.visual.layer4
        del self.encoder.visual.attnpool
        del clip
        d = cfg.decoder_dims
        self.bottleneck_in = nn.Conv2d(widths[3], d[3], 1)
        self.fuse = nn.ModuleList(nn.Conv2d(d[i] + widths[i], d[i], 1) for i in range(3))
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(d[i]) for _ in range(cfg.convnext_blocks)]) for i in range(4)
        )
        outs = [cfg.head_dim, d[0], d[1], d[2]]
        self.ups = nn.ModuleList(UpDWBlock(d[i], outs[i]) for i in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(cfg.head_dim + 3, cfg.head_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(cfg.head_dim, 3, 3, padding=1),
        )

    def _perturb(self, f: Tensor, level: int) -> Tensor:
        """LDFPS: f * (1 + sigma * N(0, 1)), deeper skips perturbed more; training only."""
        sigma = self.config.ldfps_sigma[level]
        if not self.training or sigma == 0:
            return f
        return f * (1.0 + sigma * torch.randn_like(f))

    def forward_padded(self, x: Tensor, context: Any = None) -> Tensor:
        with torch.no_grad():
            taps = self.encoder.resnet_taps(x, upto=3)
        f = self.bottleneck_in(self._perturb(taps[3], 3))
        f = self.ups[3](self.stages[3](f))
        for i in (2, 1, 0):
            f = self.fuse[i](torch.cat([f, self._perturb(taps[i], i)], dim=1))
            f = self.ups[i](self.stages[i](f))
        return x + self.head(torch.cat([f, x], dim=1))
