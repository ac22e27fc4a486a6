"""Procedural rain and the demo pairs: deterministic by seed, plausible, pattern-ordered."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from edgerain.data.demo import make_demo_pairs
from edgerain.data.io import load_image
from edgerain.data.pairs import find_pairs
from edgerain.data.synth import PATTERNS, RainParams, _circular_convolve, add_rain, motion_kernel, noise_streaks
from edgerain.errors import EdgerainError


@pytest.fixture
def clean(rng):
    return rng.uniform(0.1, 0.7, (48, 64, 3)).astype(np.float32)


def test_same_seed_same_rain_other_seed_other_rain(clean):
    a, b, c = add_rain(clean, seed=3), add_rain(clean, seed=3), add_rain(clean, seed=4)
    np.testing.assert_array_equal(a.rainy, b.rainy)
    assert a.pattern == b.pattern and a.params == b.params
    assert not np.array_equal(a.streaks, c.streaks)


def test_rain_only_brightens_and_stays_in_range(clean):
    for pattern in PATTERNS:
        s = add_rain(clean, seed=1, pattern=pattern)
        assert s.rainy.shape == clean.shape and s.rainy.dtype == np.float32
        assert s.rainy.min() >= 0.0 and s.rainy.max() <= 1.0
        assert (s.rainy >= clean - 1e-6).all()  # screen blend and veil never darken
        assert s.streaks.min() >= 0.0 and s.streaks.max() <= 1.0 and s.streaks.max() > 0.1


def test_heavier_patterns_cover_more(clean):
    # Averaged over seeds, the mean change grows light < moderate < heavy.
    change = {p: np.mean([np.abs(add_rain(clean, seed=k, pattern=p).rainy - clean).mean() for k in range(4)])
              for p in PATTERNS}  # fmt: skip
    assert change["light"] < change["moderate"] < change["heavy"]


def test_streaks_follow_the_angle():
    k = motion_kernel(15, 0.0)
    assert k.shape == (15, 15) and k.sum() == pytest.approx(1.0)
    assert np.allclose(k[:, 7].sum(), 1.0)  # vertical: all weight in the centre column
    tilted = motion_kernel(15, 30.0)
    ys, xs = np.nonzero(tilted > 0.01)
    slope = np.polyfit(ys, xs, 1)[0]  # x grows with y for a positive angle
    assert slope == pytest.approx(np.tan(np.radians(30.0)), abs=0.05)


def test_additive_blend_and_validation(clean):
    p = RainParams(density=0.01, length=10, angle=5, width=0.0, intensity=0.5, blend="additive")
    s = add_rain(clean, seed=0, params=p, pattern="light")
    np.testing.assert_allclose(s.rainy, np.clip(clean + s.streaks[..., None], 0, 1), atol=1e-6)
    with pytest.raises(ValueError):
        RainParams(density=0, length=10, angle=0, width=0, intensity=0.5)


def test_demo_pairs_are_deterministic_and_labelled(tmp_path):
    made = make_demo_pairs(tmp_path / "a", count=3, seed=7, size=(64, 48))
    make_demo_pairs(tmp_path / "b", count=3, seed=7, size=(64, 48))
    pairs = find_pairs(tmp_path / "a")
    assert [p.name for p in pairs] == ["001", "002", "003"] and pairs[0].size == (64, 48)
    assert [m.pattern for m in made] == list(PATTERNS)
    for p in pairs:
        np.testing.assert_array_equal(load_image(p.rain), load_image(tmp_path / "b" / "rain" / p.rain.name))
        assert not np.array_equal(load_image(p.rain), load_image(p.norain))
    with open(tmp_path / "a" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["pattern"] for r in rows] == list(PATTERNS) and rows[0]["photo"] == "astronaut"
    # Re-running replaces the pairs as a whole; other files in the folder are left alone.
    (tmp_path / "a" / "notes.txt").write_text("mine")
    make_demo_pairs(tmp_path / "a", count=2, seed=1, size=(64, 48))
    assert len(find_pairs(tmp_path / "a")) == 2 and (tmp_path / "a" / "notes.txt").exists()
    with pytest.raises(EdgerainError, match="--count"):
        make_demo_pairs(tmp_path / "c", count=0)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("shape", "length", "angle"), [((48, 32), 15, 20.0), ((20, 12), 41, -25.0), ((9, 9), 61, 5.0)])
def test_circular_convolution_matches_scipy_wrap(rng, shape, length, angle):
    # Kernels larger than the image included: they wrap around it more than once.
    from scipy.ndimage import convolve

    image, kernel = rng.random(shape), motion_kernel(length, angle)
    np.testing.assert_allclose(_circular_convolve(image, kernel), convolve(image, kernel, mode="wrap"), atol=1e-12)


def _run_length(field: np.ndarray, threshold: float) -> float:
    """Mean length of the vertical runs of pixels above ``threshold`` (the streak length of vertical rain)."""
    on = field > threshold
    pad = np.zeros((1, field.shape[1]), bool)
    runs = (np.diff(np.vstack([pad, on, pad]).astype(np.int8), axis=0) == 1).sum()
    return float(on.sum() / max(runs, 1))


def test_noise_streaks_are_deterministic_long_and_of_varied_brightness():
    short, again = (noise_streaks(128, 128, 0.01, 10, 0.0, 1.0, 1.0, np.random.default_rng(5)) for _ in range(2))
    np.testing.assert_array_equal(short, again)
    long = noise_streaks(128, 128, 0.01, 60, 0.0, 1.0, 1.0, np.random.default_rng(5))
    assert short.dtype == np.float32 and short.min() >= 0.0
    # The levels curve puts the brightest streaks (99.9th percentile) at 1.
    assert np.percentile(long, 99.9) == pytest.approx(1.0, abs=1e-5)
    # Longer motion blur, longer streaks.
    assert _run_length(long, 0.1) > 2.5 * _run_length(short, 0.1)
    # Drop brightness is continuous and heavy-tailed (the amount by which the noise clears the
    # threshold): without a motion blur, the drops span faint to bright, most of them faint.
    drops = noise_streaks(128, 128, 0.01, 1.0, 0.0, 1.0, 1.0, np.random.default_rng(5))
    lit = drops[drops > 1e-3]
    assert np.median(lit) < 0.5 and lit.std() > 0.1
    # A gamma above 1 darkens the faint streaks more than the bright ones.
    steep = noise_streaks(128, 128, 0.01, 60, 0.0, 1.0, 2.0, np.random.default_rng(5))
    assert (steep > 0.05).mean() < (long > 0.05).mean()
    for bad in ({"density": 0.0}, {"length": 0.5}, {"blur": -1.0}, {"gamma": 0.0}):
        kwargs = {"density": 0.01, "length": 10.0, "angle": 0.0, "blur": 1.0, "gamma": 1.0, **bad}
        with pytest.raises(ValueError, match="noise-streak"):
            noise_streaks(16, 16, rng=np.random.default_rng(0), **kwargs)
