"""Restormer-lite U-Net: the CLIP-RPN experts and the weather-prior backbone (MODELS.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from edgerain.models.blocks import Downsample, MGCABlock, TransformerBlock, UpDWBlock


@dataclasses.dataclass
class UNetConfig:
    dim: int = 32
    blocks: tuple[int, int, int, int] = (2, 3, 3, 4)
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    refinement_blocks: int = 2
    window: int = 8
    ffn_expansion: float = 2.0
    mgca_decoder: bool = True  # False: plain transformer blocks in the decoder


class RestormerLiteUNet(nn.Module):
    """4 levels (C, 2C, 4C, 8C), PixelUnshuffle down, UpDWBlock up, MGCA in the 3 decoder levels.

    ``forward`` returns the residual; masks predicted by the MGCA blocks are appended to
    ``self.last_masks`` for the mask loss. ``inject`` hooks let a host network add to the encoder
    levels (the weather network's SAR gates) and to the bottleneck/decoder (its CLIP prior).
    """

    def __init__(self, cfg: UNetConfig, in_ch: int = 3, out_ch: int = 3) -> None:
        super().__init__()
        C = cfg.dim
        dims = [C, 2 * C, 4 * C, 8 * C]
        self.dims = dims
        self.embed = nn.Conv2d(in_ch, C, 3, padding=1)
        self.enc = nn.ModuleList(
            nn.Sequential(*[TransformerBlock(dims[i], cfg.heads[i], cfg.ffn_expansion) for _ in range(cfg.blocks[i])])
            for i in range(3)
        )
        self.down = nn.ModuleList(Downsample(dims[i]) for i in range(3))
        self.bottleneck = nn.Sequential(
            *[TransformerBlock(dims[3], cfg.heads[3], cfg.ffn_expansion) for _ in range(cfg.blocks[3])]
        )
        self.up = nn.ModuleList(UpDWBlock(dims[i + 1], dims[i]) for i in range(3))
        self.fuse = nn.ModuleList(nn.Conv2d(2 * dims[i], dims[i], 1) for i in range(3))
        dec: list[nn.ModuleList] = []
        for i in range(3):
            n = cfg.blocks[i]
            if cfg.mgca_decoder:
                dec.append(
                    nn.ModuleList(
                        MGCABlock(
                            dims[i], cfg.heads[i], cfg.window, shifted=bool(j % 2), ffn_expansion=cfg.ffn_expansion
                        )
                        for j in range(n)
                    )
                )
            else:
                dec.append(nn.ModuleList(TransformerBlock(dims[i], cfg.heads[i], cfg.ffn_expansion) for _ in range(n)))
        self.dec = nn.ModuleList(dec)
        self.refine = nn.Sequential(
            *[TransformerBlock(C, cfg.heads[0], cfg.ffn_expansion) for _ in range(cfg.refinement_blocks)]
        )
        self.out = nn.Conv2d(C, out_ch, 3, padding=1)
        self.last_masks: list[Tensor] = []

    def forward(
        self,
        x: Tensor,
        encoder_hook: Callable[[int, Tensor], Tensor] | None = None,
        decoder_hook: Callable[[int, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Residual for ``x``; hooks get (level, features) and return features (level 3 = bottleneck)."""
        self.last_masks = []
        f = self.embed(x)
        skips = []
        for i in range(3):
            f = self.enc[i](f)
            skips.append(f)
            f = self.down[i](f)
            if encoder_hook is not None:
                f = encoder_hook(i + 1, f)
        f = self.bottleneck(f)
        if decoder_hook is not None:
            f = decoder_hook(3, f)
        for i in (2, 1, 0):
            f = self.fuse[i](torch.cat([self.up[i](f), skips[i]], dim=1))
            for block in self.dec[i]:  # type: ignore[attr-defined]
                if isinstance(block, MGCABlock):
                    f, m = block(f)
                    self.last_masks.append(m)
                else:
                    f = block(f)
            if decoder_hook is not None:
                f = decoder_hook(i, f)
        return self.out(self.refine(f))
