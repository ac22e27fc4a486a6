"""Procedural rain: streak fields drawn on clean photos, deterministic by seed.

The model of a rain layer is the usual one of synthetic deraining sets (Rain100L/H style): sparse
random drops, each smeared into a streak by a linear motion blur of a given length and angle, scaled
to a brightness and blended onto the photo (screen blend by default, or additive). Heavy rain also
gets a uniform veil (rain accumulation / haze). Three pattern labels (light, moderate, heavy) match
the CLIP-RPN prompts and pick the parameter ranges.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
from scipy.ndimage import convolve, gaussian_filter
from scipy.special import ndtri

Pattern = Literal["light", "moderate", "heavy"]
Blend = Literal["screen", "additive"]
PATTERNS: tuple[Pattern, ...] = ("light", "moderate", "heavy")

# (low, high) ranges drawn uniformly for each pattern.
_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "light": {"density": (0.0015, 0.003), "length": (10, 20), "width": (0.0, 0.4), "intensity": (0.3, 0.5),
              "veil": (0.0, 0.0)},
    "moderate": {"density": (0.003, 0.006), "length": (15, 28), "width": (0.3, 0.6), "intensity": (0.4, 0.6),
                 "veil": (0.0, 0.04)},
    "heavy": {"density": (0.005, 0.009), "length": (20, 35), "width": (0.5, 0.9), "intensity": (0.5, 0.75),
              "veil": (0.05, 0.15)},
}  # fmt: skip
_MAX_ANGLE = 25.0  # degrees either side of vertical


@dataclasses.dataclass(frozen=True)
class RainParams:
    """One rain layer. ``density``: fraction of pixels seeding a drop; ``length``: streak length in
    pixels; ``angle``: degrees from vertical (positive leans right); ``width``: Gaussian sigma of the
    drops before the motion blur (0: one pixel wide); ``intensity``: peak streak brightness in [0, 1];
    ``veil``: uniform haze added on top (heavy rain)."""

    density: float
    length: float
    angle: float
    width: float
    intensity: float
    veil: float = 0.0
    blend: Blend = "screen"

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if self.length < 1.0:
            raise ValueError(f"length must be at least 1 pixel, got {self.length}")
        if not 0.0 <= self.intensity <= 1.0 or not 0.0 <= self.veil <= 1.0 or self.width < 0.0:
            raise ValueError("intensity and veil must be in [0, 1] and width non-negative")
        if self.blend not in ("screen", "additive"):
            raise ValueError(f"blend must be 'screen' or 'additive', got {self.blend!r}")


@dataclasses.dataclass
class RainSample:
    rainy: np.ndarray  # (H, W, 3) float32 in [0, 1]
    streaks: np.ndarray  # (H, W) float32 in [0, 1]: the rain layer before blending (veil excluded)
    pattern: Pattern
    params: RainParams


def sample_params(rng: np.random.Generator, pattern: Pattern, blend: Blend = "screen") -> RainParams:
    if pattern not in _RANGES:
        raise ValueError(f"unknown rain pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    r = _RANGES[pattern]
    draw = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in r.items()}
    return RainParams(angle=float(rng.uniform(-_MAX_ANGLE, _MAX_ANGLE)), blend=blend, **draw)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle`` degrees from vertical (anti-aliased)."""
    size = math.ceil(length) | 1  # odd, so the streak is centred on its drop
    kernel = np.zeros((size, size), dtype=np.float64)
    c = (size - 1) / 2.0
    theta = math.radians(angle)
    dx, dy = math.sin(theta), math.cos(theta)
    # Sample the segment densely and splat each sample bilinearly.
    for t in np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, max(2, int(length * 4))):
        x, y = c + t * dx, c + t * dy
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for yy, xx, w in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x0 + 1, fx * (1 - fy)),
                          (y0 + 1, x0, (1 - fx) * fy), (y0 + 1, x0 + 1, fx * fy)):  # fmt: skip
            if 0 <= yy < size and 0 <= xx < size:
                kernel[yy, xx] += w
    return kernel / kernel.sum()


def rain_layer(height: int, width: int, params: RainParams, rng: np.random.Generator) -> np.ndarray:
    """The streak field (H, W) float32 in [0, 1] for one set of parameters."""
    drops = (rng.random((height, width)) < params.density) * rng.uniform(0.5, 1.0, (height, width))
    if params.width > 0:
        drops = gaussian_filter(drops, params.width, mode="wrap")
        drops /= max(float(gaussian_filter(np.pad([[1.0]], 4), params.width).max()), 1e-6)
    kernel = motion_kernel(params.length, params.angle)
    # Wrap-around so streaks enter and leave the frame like real rain instead of thinning at borders.
    streaks = convolve(drops, kernel, mode="wrap") * params.length
    return np.clip(streaks * params.intensity, 0.0, 1.0).astype(np.float32)


def _circular_convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.convolve(image, kernel, mode="wrap")`` for an odd square kernel, through the FFT:
    a streak kernel of 120 px costs as little as one of 10 (the direct sum grows with its area)."""
    h, w = image.shape
    k = kernel.shape[0]
    # The kernel laid onto the image grid with its centre at (0, 0), wrapped where it is larger.
    ys, xs = np.mgrid[:k, :k] - k // 2
    grid = np.zeros((h, w))
    np.add.at(grid, (ys % h, xs % w), kernel)
    out = np.fft.irfft2(np.fft.rfft2(image) * np.fft.rfft2(grid), s=(h, w))
    return np.asarray(out)


def noise_streaks(
    height: int,
    width: int,
    density: float,
    length: float,
    angle: float,
    blur: float,
    gamma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Streaks grown from noise, the Photoshop rain recipe: (H, W) float32, peak about 1, unscaled.

    Dense uniform noise is blurred by ``blur`` (Gaussian sigma, pixels) and thresholded so that a
    ``density`` fraction of it survives, keeping the amount above the threshold: drop brightness is
    then continuous and heavy-tailed (many faint drops, few bright ones), unlike :func:`rain_layer`,
    whose drops are all of one brightness band. A motion blur of ``length`` pixels at ``angle`` smears
    the drops into streaks, and a levels curve (normalise the 99.9th percentile to 1, raise to
    ``gamma``) sets the contrast between faint and bright streaks. Long thin streaks of varied
    brightness are what the light rain of Rain100L looks like (bench/streak_stats.py).
    """
    if not 0.0 < density < 1.0 or length < 1.0 or blur < 0.0 or gamma <= 0.0:
        raise ValueError(f"bad noise-streak parameters: {density=}, {length=}, {blur=}, {gamma=}")
    noise = rng.random((height, width))
    if blur > 0:
        noise = gaussian_filter(noise, blur, mode="wrap")
    noise = (noise - noise.mean()) / max(float(noise.std()), 1e-12)
    drops = np.clip(noise + float(ndtri(density)), 0.0, None)  # ndtri(density) = minus the threshold
    streaks = _circular_convolve(drops, motion_kernel(length, angle))
    streaks /= max(float(np.percentile(streaks, 99.9)), 1e-12)
    streaks[streaks < 1e-6] = 0.0  # the FFT's round-off (about 1e-16) where no streak passes
    return (streaks**gamma).astype(np.float32)


def blend_rain(clean: np.ndarray, streaks: np.ndarray, params: RainParams) -> np.ndarray:
    """Composite a streak layer (and the veil) onto a clean RGB image in [0, 1]."""
    base = np.asarray(clean, dtype=np.float32)
    if params.veil > 0:
        base = base * (1.0 - params.veil) + params.veil  # a grey-white haze lifting the dark tones
    s = streaks[..., None]
    out = 1.0 - (1.0 - base) * (1.0 - s) if params.blend == "screen" else base + s
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def add_rain(
    clean: np.ndarray,
    seed: int,
    pattern: Pattern | None = None,
    params: RainParams | None = None,
    blend: Blend = "screen",
) -> RainSample:
    """Rain on a clean RGB image (H, W, 3) in [0, 1]; the same ``seed`` always gives the same rain.

    ``pattern``: light/moderate/heavy (drawn from the seed when None); ``params`` overrides the
    drawn parameters (the pattern label is then kept as given, or "moderate").
    """
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got {clean.shape}")
    rng = np.random.default_rng(seed)
    if pattern is None:
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    if params is None:
        params = sample_params(rng, pattern, blend)
    streaks = rain_layer(clean.shape[0], clean.shape[1], params, rng)
    return RainSample(blend_rain(clean, streaks, params), streaks, pattern, params)
