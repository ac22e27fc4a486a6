"""PSNR and SSIM as the deraining literature reports them (conventions: MODELS.md, "Evaluation").

* Inputs: RGB float arrays (H, W, 3) in [0, 1]; computed in float64 on the [0, 255] scale.
* Y channel: luma of YCbCr, ITU-R BT.601 studio range as MATLAB's ``rgb2ycbcr`` computes it:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1] (Y in [16, 235]), not rounded.
* No border crop.
* SSIM (Wang et al. 2004): 11x11 Gaussian window with sigma 1.5 (normalised to sum 1), K1 = 0.01,
  K2 = 0.03, L = 255, population (biased) statistics, averaged over the positions where the
  window lies fully inside the image ("valid"); for RGB, the mean over the three channels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PEAK = 255.0
Y_OFFSET = 16.0
Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"expected RGB arrays (H, W, 3), got {pred.shape}")


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma (H, W) on the [16, 235] scale of an RGB image (H, W, 3) in [0, 1]."""
    rgb = np.asarray(image, dtype=np.float64)
    return Y_OFFSET + rgb @ np.asarray(Y_WEIGHTS, dtype=np.float64)


def _planes(pred: np.ndarray, target: np.ndarray, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as (H, W, C) float64 on the [0, 255] scale (C = 1 for Y, 3 for RGB)."""
    _check_pair(pred, target)
    if y_channel:
        return rgb_to_y(pred)[..., None], rgb_to_y(target)[..., None]
    return np.asarray(pred, dtype=np.float64) * PEAK, np.asarray(target, dtype=np.float64) * PEAK


def psnr(pred: np.ndarray, target: np.ndarray, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); ``inf`` for identical images."""
    a, b = _planes(pred, target, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(PEAK**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D Gaussian taps (sum 1); the 2-D window is their outer product (MATLAB fspecial)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(plane: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of (H, W) with ``taps`` x ``taps``, 'valid' region only."""
    k = len(taps)
    rows = sliding_window_view(plane, k, axis=0) @ taps  # (H-k+1, W)
    return sliding_window_view(rows, k, axis=1) @ taps  # (H-k+1, W-k+1)


def _ssim_plane(a: np.ndarray, b: np.ndarray, taps: np.ndarray) -> float:
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a**2
    var_b = _filter_valid(b * b, taps) - mu_b**2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(pred: np.ndarray, target: np.ndarray, y_channel: bool = True) -> float:
    """Structural similarity; both sides must be at least 11 pixels (the window) in each dimension."""
    a, b = _planes(pred, target, y_channel)
    h, w = a.shape[:2]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {w}x{h}")
    taps = gaussian_window()
    return float(np.mean([_ssim_plane(a[..., c], b[..., c], taps) for c in range(a.shape[2])]))
