"""PSNR/SSIM against scikit-image (a maintained implementation) with the literature's options."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edgerain.eval.metrics import psnr, rgb_to_y, ssim


def _pairs(rng):
    """(prediction, target) pairs: noise, a real photo with a blur-like change, a constant offset."""
    from skimage.data import astronaut

    photo = astronaut()[100:164, 150:230].astype(np.float64) / 255
    noisy = np.clip(photo + rng.normal(0, 0.05, photo.shape), 0, 1)
    shifted = np.clip(np.roll(photo, 1, axis=1) * 0.9 + 0.05, 0, 1)
    rand_a, rand_b = rng.random((23, 31, 3)), rng.random((23, 31, 3))
    return [(noisy, photo), (shifted, photo), (rand_a, rand_b), (np.clip(photo + 0.02, 0, 1), photo)]


def _sk_ssim(a, b, **kw):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, **kw
    )


def test_luma_is_matlab_rgb2ycbcr():
    x = np.random.default_rng(0).random((6, 7, 3))
    np.testing.assert_allclose(rgb_to_y(x), rgb2ycbcr(x)[..., 0], atol=1e-10)
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235.0)


def test_psnr_matches_skimage(rng):
    for pred, target in _pairs(rng):
        y_ref = peak_signal_noise_ratio(rgb2ycbcr(target)[..., 0], rgb2ycbcr(pred)[..., 0], data_range=255)
        rgb_ref = peak_signal_noise_ratio(target * 255, pred * 255, data_range=255)
        assert psnr(pred, target) == pytest.approx(y_ref, abs=1e-9)
        assert psnr(pred, target, y_channel=False) == pytest.approx(rgb_ref, abs=1e-9)


def test_ssim_matches_skimage(rng):
    for pred, target in _pairs(rng):
        y_ref = _sk_ssim(rgb2ycbcr(pred)[..., 0], rgb2ycbcr(target)[..., 0])
        rgb_ref = _sk_ssim(pred * 255, target * 255, channel_axis=2)
        assert ssim(pred, target) == pytest.approx(y_ref, abs=1e-9)
        assert ssim(pred, target, y_channel=False) == pytest.approx(rgb_ref, abs=1e-9)


def test_identical_and_invalid_inputs(rng):
    img = rng.random((16, 16, 3))
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(img, img[:8])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(img[:10], img[:10])
