"""RDMC: recursive dynamic multi-scale network with a contrastive prior (MODELS.md section 4)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain.models.base import DerainModel


@dataclasses.dataclass
class RDMCConfig:
    widths: tuple[int, ...] = (32, 64, 128, 256, 256)
    recursions: int = 3
    dilations: tuple[int, ...] = (1, 2, 3)


class MultiDilationLevel(nn.Module):
    """Parallel 3x3 branches with dilations 1, 2, 3, concatenated and fused by a 1x1."""

    def __init__(self, cin: int, cout: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=d, dilation=d), nn.ReLU(inplace=True)) for d in dilations
        )
        self.fuse = nn.Sequential(nn.Conv2d(cout * len(dilations), cout, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(torch.cat([b(x) for b in self.branches], dim=1))


class MixedUpsample(nn.Module):
    """x2 upsampling as a learned softmax mix of bilinear and bicubic, then a 3x3 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.mix = nn.Parameter(torch.zeros(2))
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        a = torch.softmax(self.mix, dim=0)
        up = a[0] * F.interpolate(x, size=size, mode="bilinear", align_corners=False) + a[1] * F.interpolate(
            x, size=size, mode="bicubic", align_corners=False
        )
        return self.conv(up)


class RDMC(DerainModel):
    pad_multiple = 16

    def __init__(self, cfg: RDMCConfig, pretrained: str | None = None, quiet_clip: bool = False) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.widths
        n = len(w)
        self.enc = nn.ModuleList(MultiDilationLevel(6 if i == 0 else w[i - 1], w[i], cfg.dilations) for i in range(n))
        # Dynamic cross-level recruitment: each decoder level draws on the finer encoder level
        # (stride-2 conv) and the coarser one (upsample + conv), each scaled by a learned scalar.
        self.from_finer = nn.ModuleList(
            nn.Conv2d(w[i - 1], w[i], 3, stride=2, padding=1) if i > 0 else nn.Identity() for i in range(n - 1)
        )
        self.from_coarser = nn.ModuleList(nn.Conv2d(w[i + 1], w[i], 3, padding=1) for i in range(n - 1))
        self.alpha = nn.Parameter(torch.zeros(n - 1))
        self.beta = nn.Parameter(torch.zeros(n - 1))
        self.up = nn.ModuleList(MixedUpsample(w[i + 1], w[i]) for i in range(n - 1))
        self.dec = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(2 * w[i], w[i], 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(w[i], w[i], 3, padding=1),
                nn.ReLU(inplace=True),
            )
            for i in range(n - 1)
        )
        self.out = nn.Conv2d(w[0], 3, 3, padding=1)
        self.last_stages: list[Tensor] = []

    def _step(self, rainy: Tensor, estimate: Tensor) -> Tensor:
        f = torch.cat([rainy, estimate], dim=1)
        feats = []
        for i, level in enumerate(self.enc):
            f = level(f if i == 0 else F.max_pool2d(f, 2))
            feats.append(f)
        d = feats[-1]
        for i in range(len(feats) - 2, -1, -1):
            skip = feats[i] + self.beta[i] * F.interpolate(
                self.from_coarser[i](feats[i + 1]), size=feats[i].shape[-2:], mode="bilinear", align_corners=False
            )
            if i > 0:
                skip = skip + self.alpha[i] * self.from_finer[i](feats[i - 1])
            d = self.dec[i](torch.cat([self.up[i](d, feats[i].shape[-2:]), skip], dim=1))
        return self.out(d) + rainy

    def forward_padded(self, x: Tensor, context: Any = None) -> Tensor:
        estimate = x
        self.last_stages = []
        for _ in range(self.config.recursions):
            estimate = self._step(x, estimate)
            self.last_stages.append(estimate)
        return estimate

    def forward_train(self, x: Tensor) -> dict[str, Any]:
        out = self(x)
        return {"out": out, "stages": list(self.last_stages)}
