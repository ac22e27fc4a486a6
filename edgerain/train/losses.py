"""The training losses of the four networks (MODELS.md; *(ours)* choices documented there).

- CLIP-RPN: dynamic loss scheduling (MSE -> L1 along training) + 0.1 x BCE on the MGCA rain masks.
- FCLIP-UNet: L1 + 1.0 x perceptual (L1 between frozen CLIP-ResNet features of output and clean).
- CLIP weather-prior: L1 + 0.1 x CLIP soft residual distillation (SRD).
- RDMC: 0.1 MSE + (1 - SSIM) + 0.1 contrastive (output pulled to clean, pushed from rainy, in a frozen
  feature space; gradients flow through the output, unlike the released code that detaches it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

FeatureFn = Callable[[Tensor], Sequence[Tensor]]

MASK_THRESHOLD = 0.1
MASK_WEIGHT = 0.1
PERCEPTUAL_WEIGHT = 1.0
SRD_WEIGHT = 0.1
RDMC_MSE_WEIGHT = 0.1
RDMC_CONTRASTIVE_WEIGHT = 0.1
# The paper weights its five VGG levels 1/32, 1/16, 1/8, 1/4, 1 (shallow -> deep); we have four
# CLIP-ResNet levels (stem, layer1, layer2, layer3) and keep the deepest four weights.
CONTRASTIVE_LEVEL_WEIGHTS = (1 / 16, 1 / 8, 1 / 4, 1.0)


def dls_alpha(step: int, total: int) -> float:
    """DLS schedule alpha(t) = (1 - cos(pi t / T)) / 2: 0 (pure MSE) at the start, 1 (pure L1) at the end."""
    if total <= 0:
        return 1.0
    t = min(max(step, 0), total)
    return 0.5 * (1.0 - math.cos(math.pi * t / total))


def dls_loss(out: Tensor, clean: Tensor, step: int, total: int) -> Tensor:
    """(1 - alpha) MSE + alpha L1 with alpha from :func:`dls_alpha`."""
    a = dls_alpha(step, total)
    return (1.0 - a) * F.mse_loss(out, clean) + a * F.l1_loss(out, clean)


def rain_mask_target(rainy: Tensor, clean: Tensor, threshold: float = MASK_THRESHOLD) -> Tensor:
    """M_gt = [mean_c(rainy - clean) > threshold], shape (B, 1, H, W), float."""
    return ((rainy - clean).mean(dim=1, keepdim=True) > threshold).to(rainy.dtype)


def mask_bce_loss(masks: Sequence[Tensor], rainy: Tensor, clean: Tensor, threshold: float = MASK_THRESHOLD) -> Tensor:
    """Mean BCE of each predicted mask (B, 1, h, w) against M_gt area-pooled to its scale (soft targets).

    The masks of a padded input are larger than the image: the target is padded the same way
    (replicate) so that the two line up pixel for pixel.
    """
    if not masks:
        return rainy.new_zeros(())
    target = rain_mask_target(rainy, clean, threshold)
    total = rainy.new_zeros(())
    for m in masks:
        scale_h = m.shape[-2] / target.shape[-2]
        scale_w = m.shape[-1] / target.shape[-1]
        t = target
        # Masks come from a padded input: pad the target up to the matching full-resolution size.
        factor = max(1, round(1 / min(scale_h, scale_w)))
        ph, pw = m.shape[-2] * factor - t.shape[-2], m.shape[-1] * factor - t.shape[-1]
        if ph > 0 or pw > 0:
            t = F.pad(t, (0, max(pw, 0), 0, max(ph, 0)), mode="replicate")
        t = F.interpolate(t, size=m.shape[-2:], mode="area")
        # BCE on probabilities is refused under CUDA autocast: compute it in float32 outside it.
        with torch.autocast(device_type=m.device.type, enabled=False):
            total = total + F.binary_cross_entropy(m.float().clamp(1e-6, 1 - 1e-6), t.float())
    return total / len(masks)


def clip_rpn_loss(
    out: Tensor, clean: Tensor, rainy: Tensor, masks: Sequence[Tensor], step: int, total: int
) -> dict[str, Tensor]:
    rec = dls_loss(out, clean, step, total)
    mask = mask_bce_loss(masks, rainy, clean)
    return {"loss": rec + MASK_WEIGHT * mask, "reconstruction": rec, "mask_bce": mask}


def feature_l1(features: FeatureFn, a: Tensor, b: Tensor, weights: Sequence[float] | None = None) -> Tensor:
    """sum_i w_i |V_i(a) - V_i(b)|_1 (means); ``b``'s features need no gradient."""
    fa = features(a)
    with torch.no_grad():
        fb = features(b)
    w = weights if weights is not None else [1.0] * len(fa)
    return sum((wi * F.l1_loss(x, y) for wi, x, y in zip(w, fa, fb, strict=True)), a.new_zeros(()))


def fclip_unet_loss(out: Tensor, clean: Tensor, features: FeatureFn) -> dict[str, Tensor]:
    l1 = F.l1_loss(out, clean)
    perc = feature_l1(features, out, clean)
    return {"loss": l1 + PERCEPTUAL_WEIGHT * perc, "l1": l1, "perceptual": perc}


def srd_loss(students: Sequence[Tensor], teachers: Sequence[Tensor]) -> Tensor:
    """CLIP-SRD: per-pixel soft-weighted L1 between SAR projections and the teacher residual T_s.

    Weight 1 + ||T_s|| / max ||T_s|| (channel norm, max per image): pixels where rain changes CLIP's
    features most count up to twice. Students are resized to the teacher's grid where they differ.
    """
    total = students[0].new_zeros(())
    for s, t in zip(students, teachers, strict=True):
        t = t.detach()
        if s.shape[-2:] != t.shape[-2:]:
            s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
        norm = t.norm(dim=1, keepdim=True)
        peak = norm.amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
        weight = 1.0 + norm / peak
        total = total + (weight * (s - t).abs()).mean()
    return total / len(students)


def clip_weather_loss(
    out: Tensor, clean: Tensor, students: Sequence[Tensor], teachers: Sequence[Tensor]
) -> dict[str, Tensor]:
    l1 = F.l1_loss(out, clean)
    srd = srd_loss(students, teachers)
    return {"loss": l1 + SRD_WEIGHT * srd, "l1": l1, "srd": srd}


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Differentiable mean SSIM over channels and pixels (Gaussian 11x11, sigma 1.5, valid region).

    Same constants as the evaluation metric (MODELS.md), on every channel of the tensor; images
    smaller than the window use a window shrunk to fit.
    """
    c = x.shape[1]
    window = min(window, x.shape[-2], x.shape[-1])
    g = _gaussian_window(window, sigma, x.device, x.dtype)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def contrastive_loss(
    features: FeatureFn,
    out: Tensor,
    clean: Tensor,
    rainy: Tensor,
    weights: Sequence[float] = CONTRASTIVE_LEVEL_WEIGHTS,
    eps: float = 1e-7,
) -> Tensor:
    """sum_i w_i |V_i(out) - V_i(clean)|_1 / |V_i(out) - V_i(rainy)|_1; gradients flow through ``out``."""
    fo = features(out)
    with torch.no_grad():
        fc = features(clean)
        fr = features(rainy)
    if len(weights) != len(fo):
        raise ValueError(f"{len(weights)} level weights for {len(fo)} feature levels")
    total = out.new_zeros(())
    for w, o, c, r in zip(weights, fo, fc, fr, strict=True):
        total = total + w * F.l1_loss(o, c) / (F.l1_loss(o, r) + eps)
    return total


def rdmc_loss(out: Tensor, clean: Tensor, rainy: Tensor, features: FeatureFn) -> dict[str, Tensor]:
    mse = F.mse_loss(out, clean)
    s = ssim(out, clean)
    con = contrastive_loss(features, out, clean, rainy)
    loss = RDMC_MSE_WEIGHT * mse + (1.0 - s) + RDMC_CONTRASTIVE_WEIGHT * con
    return {"loss": loss, "mse": mse, "ssim": s, "contrastive": con}
