"""Streak-layer rain synthesis: determinism by seed, labels, the synth command and the training sources."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgerain.cli import main
from edgerain.data.streaks import (
    CLASS_BOUNDARIES,
    RAIN_CLASSES,
    RainSynthesizer,
    class_of_mean_rain,
    orientation_of,
)
from edgerain.errors import EdgerainError
from edgerain.train.data import PairFolderSource, make_batch, open_source


def test_pairs_are_a_function_of_seed_and_index(train_root: Path) -> None:
    synth = RainSynthesizer(train_root)
    r1, c1, p1 = synth.pair(3, 7, 48)
    r2, c2, p2 = RainSynthesizer(train_root).pair(3, 7, 48)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(c1, c2)
    assert p1 == p2
    r3, _, _ = synth.pair(4, 7, 48)
    assert not np.array_equal(r1, r3)
    assert r1.shape == c1.shape == (48, 48, 3) and r1.dtype == np.float32
    # Rain is additive: it never darkens a pixel below its clean value unless a veil was drawn.
    if p1.veil == 0:
        assert (r1 >= c1 - 1e-6).all()


@pytest.mark.parametrize("cls", RAIN_CLASSES)
def test_labels_follow_the_drawn_class(train_root: Path, cls: str) -> None:
    synth = RainSynthesizer(train_root)
    for i in range(4):
        rainy, clean, pattern = synth.pair(0, i, 40, rain_class=cls)
        assert pattern.rain_class == cls and pattern.label == RAIN_CLASSES.index(cls)
        assert pattern.orientation == orientation_of(pattern.angle)
        assert pattern.mean_rain == pytest.approx(float((rainy - clean).mean()), abs=1e-4)
        assert -30 <= pattern.angle <= 30


def test_heavier_classes_add_more_rain(train_root: Path) -> None:
    synth = RainSynthesizer(train_root)
    means = {c: np.mean([synth.pair(1, i, 40, rain_class=c)[2].mean_rain for i in range(6)]) for c in RAIN_CLASSES}
    assert means["light"] < means["moderate"] < means["heavy"]


def test_class_of_mean_rain() -> None:
    lo, hi = CLASS_BOUNDARIES
    assert class_of_mean_rain(0.0) == 0
    assert class_of_mean_rain(lo) == 1
    assert class_of_mean_rain(hi + 0.01) == 2


def test_evaluation_sets_are_refused(train_root: Path) -> None:
    with pytest.raises(EdgerainError, match="not a training set"):
        RainSynthesizer(train_root, clean_sets=("rain100l",))
    with pytest.raises(EdgerainError, match="training data not found"):
        RainSynthesizer(train_root / "nowhere")


def test_synth_command_writes_a_labelled_pair_folder(train_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pairs"
    args = ["synth", "--out", str(out), "--count", "5", "--seed", "2", "--size", "32", "--train-root", str(train_root)]
    assert main(args) == 0
    assert sorted(p.name for p in (out / "rain").iterdir()) == [f"{i:04d}.png" for i in range(1, 6)]
    assert len(list((out / "norain").iterdir())) == 5
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [f"{i:04d}" for i in range(1, 6)]
    assert all(r["rain_class"] in RAIN_CLASSES and r["orientation"] for r in rows)
    meta = json.loads((out / "labels.json").read_text())
    assert meta["seed"] == 2 and meta["count"] == 5 and len(meta["pairs"]) == 5
    # Same seed, same pairs: the folder is reproducible byte for byte.
    again = tmp_path / "again"
    assert main([*args[:2], str(again), *args[3:]]) == 0
    for sub in ("rain", "norain"):
        for p in (out / sub).iterdir():
            assert p.read_bytes() == (again / sub / p.name).read_bytes()
    # The folder doubles as training data with its labels.
    src = PairFolderSource(out, seed=0)
    assert src.labels == [RAIN_CLASSES.index(r["rain_class"]) for r in rows]
    rainy, clean, labels = make_batch(src, [0, 1, 2], 16)
    assert rainy.shape == clean.shape == (3, 3, 16, 16) and labels.shape == (3,)


def test_synth_command_bad_input(train_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["synth", "--out", str(out), "--count", "2", "--train-root", str(train_root)]) == 2
    assert main(["synth", "--out", str(tmp_path / "n"), "--count", "0", "--train-root", str(train_root)]) == 2
    assert (
        main(["synth", "--out", str(tmp_path / "c"), "--rain-class", "drizzle", "--train-root", str(train_root)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "n").exists() and not (tmp_path / "c").exists()


def test_open_source_specs(train_root: Path, tmp_path: Path) -> None:
    src = open_source(f"synth:{train_root}", seed=5)
    r, _, label = src.sample(0, 24)
    assert r.shape == (24, 24, 3) and label in (0, 1, 2)
    with pytest.raises(EdgerainError):
        open_source(str(tmp_path / "missing"), seed=0)


def test_rain_classes_restrict_the_synthetic_stream(train_root: Path, tmp_path: Path) -> None:
    light = open_source(f"synth:{train_root}", seed=5, classes=("light",))
    assert {light.sample(i, 24)[2] for i in range(12)} == {0}
    # Given out of order, the classes are kept in RAIN_CLASSES order; both are drawn, deterministically.
    two = open_source(f"synth:{train_root}", seed=5, classes=("heavy", "light"))
    labels = [two.sample(i, 24)[2] for i in range(24)]
    assert set(labels) == {0, 2}
    assert labels == [two.sample(i, 24)[2] for i in range(24)]
    assert two.describe()["rain_classes"] == ["light", "heavy"]
    assert "rain_classes" not in open_source(f"synth:{train_root}", seed=5).describe()
    for bad in (("drizzle",), ()):
        with pytest.raises(EdgerainError, match="--rain-classes"):
            open_source(f"synth:{train_root}", seed=5, classes=bad)
    with pytest.raises(EdgerainError, match="synthetic data"):
        open_source(str(tmp_path), seed=5, classes=("light",))


def test_procedural_fraction_mixes_the_streak_sources(train_root: Path) -> None:
    mixed = RainSynthesizer(train_root, procedural=0.5)
    sources = [mixed.pair(0, i, 40)[2].source for i in range(40)]
    assert 8 <= sources.count("procedural") <= 32 and set(sources) == {"garg", "procedural"}
    assert {RainSynthesizer(train_root, procedural=1.0).pair(0, i, 40)[2].source for i in range(6)} == {"procedural"}
    _, _, pattern = RainSynthesizer(train_root, procedural=0.0).pair(3, 7, 48)
    assert pattern.source == "garg" and pattern.layers[0].endswith(".png")
    with pytest.raises(EdgerainError, match="procedural-rain fraction"):
        RainSynthesizer(train_root, procedural=1.5)


@pytest.mark.parametrize("cls", RAIN_CLASSES)
def test_procedural_rain_is_additive_labelled_and_deterministic(train_root: Path, cls: str) -> None:
    synth = RainSynthesizer(train_root, procedural=1.0)
    for i in range(3):
        rainy, clean, pattern = synth.pair(2, i, 96, rain_class=cls)
        again, _, _ = synth.pair(2, i, 96, rain_class=cls)
        np.testing.assert_array_equal(rainy, again)
        assert pattern.rain_class == cls and pattern.source == "procedural"
        assert pattern.mean_rain == pytest.approx(float((rainy - clean).mean()), abs=1e-4)
        if pattern.veil == 0:
            assert (rainy >= clean - 1e-6).all() and pattern.mean_rain > 0


def test_procedural_heavier_classes_add_more_rain(train_root: Path) -> None:
    synth = RainSynthesizer(train_root, procedural=1.0)
    means = {c: np.mean([synth.pair(1, i, 64, rain_class=c)[2].mean_rain for i in range(8)]) for c in RAIN_CLASSES}
    assert means["light"] < means["moderate"] < means["heavy"]


def test_synth_command_procedural_fraction(train_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    args = ["synth", "--out", str(out), "--count", "6", "--size", "24", "--train-root", str(train_root)]
    assert main([*args, "--procedural-rain", "1"]) == 0
    with open(out / "labels.csv", newline="") as f:
        assert {r["source"] for r in csv.DictReader(f)} == {"procedural"}
    assert json.loads((out / "labels.json").read_text())["procedural_ranges"]["light"]["layers"] == [1, 1]
    assert main([*args[:2], str(tmp_path / "bad"), *args[3:], "--procedural-rain", "-0.1"]) == 2
    assert not (tmp_path / "bad").exists()


def _coherence(field: np.ndarray) -> float:
    """How much one direction dominates the gradients of a streak field (1: a single direction)."""
    gy, gx = np.gradient(field.astype(np.float64))
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    return float(np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy))


def test_crossing_streaks_take_their_own_directions() -> None:
    from edgerain.data.streaks import CROSSING_PROCEDURAL, CROSSING_SPREAD, SHARED_SPREAD, _procedural_streaks

    # The same draws of drops, lengths and widths, once sharing a direction and once
    # crossing: crossing layers leave the gradients without one dominant direction.
    ranges = dataclasses.replace(CROSSING_PROCEDURAL, layers=(4, 4))
    shared = [_procedural_streaks(128, 128, ranges, 0.0, SHARED_SPREAD, np.random.default_rng(s))[0] for s in range(6)]
    crossing = [
        _procedural_streaks(128, 128, ranges, 0.0, CROSSING_SPREAD, np.random.default_rng(s))[0] for s in range(6)
    ]
    assert np.mean([_coherence(f) for f in shared]) > np.mean([_coherence(f) for f in crossing]) + 0.1


def test_crossing_fraction_draws_only_heavy_rain(train_root: Path) -> None:
    plain, crossing = (
        RainSynthesizer(train_root, procedural=0.5),
        RainSynthesizer(train_root, procedural=0.5, crossing=1.0),
    )
    # Light and moderate pairs are the same pairs with or without crossing rain (no extra draws).
    for cls in ("light", "moderate"):
        for i in range(4):
            a, _, pa = plain.pair(4, i, 48, rain_class=cls)
            b, _, pb = crossing.pair(4, i, 48, rain_class=cls)
            np.testing.assert_array_equal(a, b)
            assert pa == pb and not pb.crossing
    heavy = [crossing.pair(4, i, 64, rain_class="heavy")[2] for i in range(8)]
    assert all(p.crossing for p in heavy) and {p.source for p in heavy} == {"garg", "procedural"}
    # Still heavy rain: as much added rain as the heavy class draws without crossing.
    assert np.mean([p.mean_rain for p in heavy]) > CLASS_BOUNDARIES[1]
    half = [RainSynthesizer(train_root, crossing=0.5).pair(4, i, 32, rain_class="heavy")[2].crossing for i in range(30)]
    assert 6 <= sum(half) <= 24
    assert not any(plain.pair(4, i, 32, rain_class="heavy")[2].crossing for i in range(6))
    assert crossing.describe()["crossing_fraction"] == 1.0
    with pytest.raises(EdgerainError, match="crossing-rain fraction"):
        RainSynthesizer(train_root, crossing=-0.5)


def test_crossing_rain_through_the_commands_and_sources(train_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "crossing"
    args = ["synth", "--out", str(out), "--count", "4", "--size", "24", "--train-root", str(train_root)]
    assert main([*args, "--rain-class", "heavy", "--crossing-rain", "1"]) == 0
    with open(out / "labels.csv", newline="") as f:
        assert {r["crossing"] for r in csv.DictReader(f)} == {"True"}
    assert json.loads((out / "labels.json").read_text())["crossing"]["spread_degrees"] > 4
    assert main([*args[:2], str(tmp_path / "bad"), *args[3:], "--crossing-rain", "2"]) == 2
    assert not (tmp_path / "bad").exists()
    src = open_source(f"synth:{train_root}", seed=5, crossing=0.5)
    assert src.describe()["crossing_fraction"] == 0.5
    with pytest.raises(EdgerainError, match="--crossing-rain"):
        open_source(str(out), seed=5, crossing=0.5)


def test_noise_fraction_draws_only_procedural_light_and_moderate_rain(train_root: Path) -> None:
    plain, noisy = RainSynthesizer(train_root, procedural=0.5), RainSynthesizer(train_root, procedural=0.5, noise=1.0)
    # Heavy pairs and Garg-Nayar pairs are the same with or without noise rain (no extra draws).
    for i in range(6):
        a, _, pa = plain.pair(6, i, 48, rain_class="heavy")
        b, _, pb = noisy.pair(6, i, 48, rain_class="heavy")
        np.testing.assert_array_equal(a, b)
        assert pa == pb
    for cls in ("light", "moderate"):
        drawn = [(plain.pair(6, i, 64, rain_class=cls)[2], noisy.pair(6, i, 64, rain_class=cls)) for i in range(12)]
        for before, (rainy, clean, after) in drawn:
            if before.source == "garg":
                assert after == before
            else:
                assert after.source == "noise" and after.rain_class == cls and after.layers[0] == "noise0"
                assert after.mean_rain == pytest.approx(float((rainy - clean).mean()), abs=1e-4)
                if after.veil == 0:
                    assert (rainy >= clean - 1e-6).all()
        assert {after.source for _, (_, _, after) in drawn} == {"garg", "noise"}
    # Still the class's rain: light noise rain below the light/moderate boundary on average, and
    # moderate above it.
    only = RainSynthesizer(train_root, procedural=1.0, noise=1.0)
    light = np.mean([only.pair(7, i, 96, rain_class="light")[2].mean_rain for i in range(10)])
    moderate = np.mean([only.pair(7, i, 96, rain_class="moderate")[2].mean_rain for i in range(10)])
    assert 0.004 < light < CLASS_BOUNDARIES[0] < moderate < CLASS_BOUNDARIES[1]
    half = RainSynthesizer(train_root, procedural=1.0, noise=0.5)
    assert 8 <= sum(half.pair(8, i, 32, rain_class="light")[2].source == "noise" for i in range(32)) <= 24
    assert noisy.describe()["noise_fraction"] == 1.0
    with pytest.raises(EdgerainError, match="noise-rain fraction"):
        RainSynthesizer(train_root, procedural=0.5, noise=1.5)
    with pytest.raises(EdgerainError, match="--procedural-rain above 0"):
        RainSynthesizer(train_root, noise=0.5)


def test_noise_heavy_fraction_draws_only_procedural_heavy_rain_that_does_not_cross(train_root: Path) -> None:
    plain = RainSynthesizer(train_root, procedural=0.5, crossing=0.5)
    noisy = RainSynthesizer(train_root, procedural=0.5, crossing=0.5, noise_heavy=1.0)
    # Light and moderate pairs are the same with or without it (no extra draws).
    for cls in ("light", "moderate"):
        for i in range(4):
            a, _, pa = plain.pair(9, i, 48, rain_class=cls)
            b, _, pb = noisy.pair(9, i, 48, rain_class=cls)
            np.testing.assert_array_equal(a, b)
            assert pa == pb
    drawn = [(plain.pair(9, i, 64, rain_class="heavy")[2], noisy.pair(9, i, 64, rain_class="heavy")) for i in range(16)]
    for before, (rainy, clean, after) in drawn:
        if before.source == "garg" or before.crossing:
            assert after == before
        else:
            assert after.source == "noise" and after.rain_class == "heavy" and after.layers[0] == "noise0"
            assert after.veil > 0  # the heavy class's veil, as for every heavy pair
            assert after.mean_rain == pytest.approx(float((rainy - clean).mean()), abs=1e-4)
    assert {after.source for _, (_, _, after) in drawn} == {"garg", "procedural", "noise"}
    # Still heavy rain: above the moderate/heavy boundary on average.
    only = RainSynthesizer(train_root, procedural=1.0, noise_heavy=1.0)
    heavy = np.mean([only.pair(7, i, 96, rain_class="heavy")[2].mean_rain for i in range(8)])
    assert CLASS_BOUNDARIES[1] < heavy < 0.35
    half = RainSynthesizer(train_root, procedural=1.0, noise_heavy=0.5)
    assert 8 <= sum(half.pair(8, i, 32, rain_class="heavy")[2].source == "noise" for i in range(32)) <= 24
    assert noisy.describe()["noise_heavy_fraction"] == 1.0
    with pytest.raises(EdgerainError, match="noise-heavy fraction"):
        RainSynthesizer(train_root, procedural=0.5, noise_heavy=-0.1)
    with pytest.raises(EdgerainError, match="--noise-heavy applies to procedural pairs"):
        RainSynthesizer(train_root, noise_heavy=0.5)


def test_noise_rain_through_the_commands_and_sources(train_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "noise"
    args = ["synth", "--out", str(out), "--count", "4", "--size", "24", "--train-root", str(train_root)]
    assert main([*args, "--rain-class", "light", "--procedural-rain", "1", "--noise-rain", "1"]) == 0
    with open(out / "labels.csv", newline="") as f:
        assert {r["source"] for r in csv.DictReader(f)} == {"noise"}
    meta = json.loads((out / "labels.json").read_text())
    assert meta["noise_streak_ranges"]["light"]["length"][1] > meta["procedural_ranges"]["light"]["length"][1]
    assert meta["source"]["noise_fraction"] == 1.0
    assert main([*args[:2], str(tmp_path / "bad"), *args[3:], "--noise-rain", "0.5"]) == 2
    assert not (tmp_path / "bad").exists()
    src = open_source(f"synth:{train_root}", seed=5, procedural=0.5, noise=0.5)
    assert src.describe()["noise_fraction"] == 0.5
    with pytest.raises(EdgerainError, match="--noise-rain is for synthetic data"):
        open_source(str(out), seed=5, noise=0.5)
    heavy = tmp_path / "heavy"
    assert (
        main(
            [*args[:2], str(heavy), *args[3:], "--rain-class", "heavy", "--procedural-rain", "1", "--noise-heavy", "1"]
        )
        == 0
    )
    with open(heavy / "labels.csv", newline="") as f:
        assert {r["source"] for r in csv.DictReader(f)} == {"noise"}
    meta = json.loads((heavy / "labels.json").read_text())
    assert meta["source"]["noise_heavy_fraction"] == 1.0 and "heavy" in meta["noise_streak_ranges"]
    assert (
        open_source(f"synth:{train_root}", seed=5, procedural=0.5, noise_heavy=0.5).describe()["noise_heavy_fraction"]
        == 0.5
    )
