"""Each training loss on hand-checkable inputs, and gradients flowing where they must."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgerain.train import losses


def test_dls_schedule_moves_from_mse_to_l1() -> None:
    assert losses.dls_alpha(0, 100) == 0.0
    assert losses.dls_alpha(50, 100) == pytest.approx(0.5)
    assert losses.dls_alpha(100, 100) == pytest.approx(1.0)
    assert losses.dls_alpha(250, 100) == pytest.approx(1.0)  # clamped past the end
    out, clean = torch.full((1, 3, 2, 2), 0.5), torch.zeros(1, 3, 2, 2)
    assert float(losses.dls_loss(out, clean, 0, 100)) == pytest.approx(0.25)  # MSE
    assert float(losses.dls_loss(out, clean, 100, 100)) == pytest.approx(0.5)  # L1
    assert float(losses.dls_loss(out, clean, 50, 100)) == pytest.approx(0.375)


def test_mask_target_and_bce() -> None:
    clean = torch.zeros(1, 3, 4, 4)
    rainy = clean.clone()
    rainy[..., :2, :] = 0.3  # top half rainy
    target = losses.rain_mask_target(rainy, clean)
    assert target[0, 0, :2].eq(1).all() and target[0, 0, 2:].eq(0).all()
    # A mask at half resolution sees the area-pooled target: rows of 1 then 0.
    perfect = [target.clone().clamp(0.01, 0.99), F.avg_pool2d(target, 2).clamp(0.01, 0.99)]
    wrong = [1 - m for m in perfect]
    good, bad = losses.mask_bce_loss(perfect, rainy, clean), losses.mask_bce_loss(wrong, rainy, clean)
    assert float(good) == pytest.approx(-math.log(0.99), rel=1e-4)
    assert float(bad) == pytest.approx(-math.log(0.01), rel=1e-4)
    half = [torch.full((1, 1, 4, 4), 0.5)]
    assert float(losses.mask_bce_loss(half, rainy, clean)) == pytest.approx(math.log(2), rel=1e-5)


def test_mask_bce_handles_padded_masks() -> None:
    clean = torch.zeros(1, 3, 6, 6)
    rainy = clean + 0.5
    mask = [torch.full((1, 1, 8, 8), 0.9), torch.full((1, 1, 4, 4), 0.9)]  # from an input padded to 8x8
    # Everything is rainy (the replicate-padded target too): BCE = -log(0.9).
    assert float(losses.mask_bce_loss(mask, rainy, clean)) == pytest.approx(-math.log(0.9), rel=1e-4)


def test_ssim_matches_scikit_image() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((40, 48)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    ours = float(losses.ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]))
    assert ours == pytest.approx(ref, abs=1e-4)
    x = torch.rand(1, 3, 16, 16)
    assert float(losses.ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def _identity_features(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, F.avg_pool2d(x, 2)]


def _four_level_features(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, F.avg_pool2d(x, 2), F.avg_pool2d(x, 4), F.avg_pool2d(x, 8)]


def test_contrastive_value_and_gradient_through_output() -> None:
    clean, rainy = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    out = torch.full((1, 3, 4, 4), 0.25, requires_grad=True)
    loss = losses.contrastive_loss(_identity_features, out, clean, rainy, weights=(1.0, 0.5))
    # Each level: |0.25 - 0| / |0.25 - 1| = 1/3; weighted sum 1.5 / 3.
    assert loss.item() == pytest.approx(0.5, rel=1e-5)
    loss.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    # Moving the output towards the clean image lowers the loss.
    closer = losses.contrastive_loss(_identity_features, torch.full((1, 3, 4, 4), 0.1), clean, rainy, (1.0, 0.5))
    assert closer.item() < loss.item()


def test_contrastive_rejects_mismatched_weights() -> None:
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError):
        losses.contrastive_loss(_identity_features, x, x, x, weights=(1.0,))


def test_rdmc_loss_terms() -> None:
    clean = torch.rand(1, 3, 16, 16)
    rainy = (clean + 0.3).clamp(0, 1)
    out = clean.clone().requires_grad_(True)
    terms = losses.rdmc_loss(out, clean, rainy, _four_level_features)
    assert terms["mse"].item() == 0.0 and terms["ssim"].item() == pytest.approx(1.0, abs=1e-5)
    assert terms["contrastive"].item() == pytest.approx(0.0, abs=1e-5)
    assert terms["loss"].item() == pytest.approx(0.0, abs=1e-5)
    worse = losses.rdmc_loss(rainy.clone().requires_grad_(True), clean, rainy, _four_level_features)
    worse["loss"].backward()
    assert worse["loss"].item() > 0.1


def test_perceptual_and_fclip_loss() -> None:
    clean = torch.zeros(1, 3, 4, 4)
    out = torch.full((1, 3, 4, 4), 0.5, requires_grad=True)
    terms = losses.fclip_unet_loss(out, clean, _identity_features)
    assert float(terms["l1"]) == pytest.approx(0.5)
    assert terms["perceptual"].item() == pytest.approx(1.0)  # 0.5 at each of two levels
    assert terms["loss"].item() == pytest.approx(1.5)
    terms["loss"].backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_srd_soft_weight() -> None:
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[0, 0, 0, 0] = 3.0
    teacher[0, 1, 0, 0] = 4.0  # norm 5 at one pixel (weight 2), 0 elsewhere (weight 1)
    student = torch.zeros(1, 2, 2, 2, requires_grad=True)
    loss = losses.srd_loss([student], [teacher])
    # mean over 8 entries of weight * |diff|: (2 * 3 + 2 * 4) / 8
    assert loss.item() == pytest.approx(14 / 8)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    # A student on a coarser grid is resized to the teacher's grid.
    assert losses.srd_loss([torch.zeros(1, 2, 1, 1)], [teacher]).shape == ()
    terms = losses.clip_weather_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), [student], [teacher])
    assert terms["loss"].item() == pytest.approx(losses.SRD_WEIGHT * 14 / 8)
