"""Rain synthesis from real streak layers (Garg & Nayar 2006) composited onto clean photographs.

Every pair is a pure function of ``(seed, index)``: the same seed gives the same pairs on any machine
and in any order, which makes ``edgerain synth`` folders reproducible and lets DDP ranks draw disjoint
samples of one stream. Each pair carries the rain pattern the synthesiser drew: the density class
(light / moderate / heavy, the CLIP-RPN router label) and the streak orientation.

Composition is additive (as in Rain100L/H, whose rain never darkens a pixel): the streak layers
(grayscale, on black) are resized, rotated, cropped, scaled in intensity and summed; heavy rain also
gets an atmospheric veil, ``clean * (1 - a) + a * A``, before the streaks are added.

A fraction of the pairs (``procedural``) draws its streaks procedurally instead (random drops smeared
by a motion blur, :mod:`edgerain.data.synth`): the way the Photoshop-rendered rain of Rain100L/H was
made (Yang et al., CVPR 2017). The photographed Garg-Nayar streaks are thinner, dimmer and more varied
in angle than that rain; a network trained on them alone learns too little of the long, bright,
near-uniform streaks of the synthetic benchmarks, and one trained on procedural rain alone too little
of real rain. Mixing the two covers both.

A fraction of the heavy-rain pairs (``crossing``) draws streaks that cross: each layer takes its own
direction (up to 30 degrees either side of the image's) and the procedural ones are longer. Heavy rain
whose layers share one direction is the easy case; the heavy synthetic benchmark was rendered with
streaks in several directions (Rain100H: five orientations, Yang et al., CVPR 2017), and wind gusts
do the same to real downpours.

A fraction of the procedural light and moderate pairs (``noise``) grows its streaks from noise
(:func:`edgerain.data.synth.noise_streaks`, the Photoshop rain recipe): long, thin streaks whose
brightness varies continuously, many faint and few bright, as in Rain100L, where the sparse drops of
the procedural streaks are all of one brightness band and short. A fraction of the procedural heavy
pairs (``noise_heavy``, crossing pairs excepted) does the same with denser, brighter layers: the thin,
partly near-white streaks of Rain100H, thinner and less often saturated than the procedural and
Garg-Nayar heavy rain (bench/streak_stats.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgerain.data.synth import RainParams, noise_streaks, rain_layer
from edgerain.errors import EdgerainError

# Clean photo sets that may be trained on (../shared/data/train/README.md). The evaluation folders
# (rain100l, rain100h, real-internet) are never among them.
CLEAN_SETS = ("BSDS500_clean", "SunHays80_clean", "Kodak24_clean", "skimage_clean")
STREAK_SET = "streaks_Garg06"
EVALUATION_ONLY = ("rain100l", "rain100h", "real-internet")
RAIN_CLASSES = ("light", "moderate", "heavy")
ORIENTATIONS = ("left", "vertical", "right")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def default_train_root() -> Path:
    """``$EDGERAIN_TRAIN_DATA`` or ``../shared/data/train`` beside the repository."""
    env = os.environ.get("EDGERAIN_TRAIN_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "train"


@dataclasses.dataclass(frozen=True)
class ClassRanges:
    """What one density class draws: number of streak layers, their intensity and scale, the veil."""

    layers: tuple[int, int]  # inclusive range
    intensity: tuple[float, float]
    scale: tuple[float, float]  # resize factor of a streak layer before cropping
    veil: tuple[float, float]  # atmospheric veil strength a


# Chosen so that the mean added rain of each class brackets the benchmarks it stands for: Rain100L
# adds 0.006-0.035 per pixel (light), Rain100H 0.1-0.3 (heavy). Garg layers add 0.008-0.08 each.
CLASS_RANGES: dict[str, ClassRanges] = {
    "light": ClassRanges(layers=(1, 1), intensity=(0.35, 0.9), scale=(0.5, 1.0), veil=(0.0, 0.0)),
    "moderate": ClassRanges(layers=(2, 3), intensity=(0.6, 1.0), scale=(0.6, 1.3), veil=(0.0, 0.08)),
    "heavy": ClassRanges(layers=(3, 5), intensity=(0.8, 1.3), scale=(0.8, 1.8), veil=(0.1, 0.35)),
}


@dataclasses.dataclass(frozen=True)
class ProceduralRanges:
    """What one density class draws for procedural streaks (see :class:`edgerain.data.synth.RainParams`)."""

    layers: tuple[int, int]  # inclusive range; each layer at the shared angle +- a few degrees
    density: tuple[float, float]
    length: tuple[float, float]
    width: tuple[float, float]
    intensity: tuple[float, float]


# Same mean-added-rain targets as CLASS_RANGES (light 0.006-0.035 per pixel, heavy 0.1-0.3).
PROCEDURAL_RANGES: dict[str, ProceduralRanges] = {
    "light": ProceduralRanges(layers=(1, 1), density=(0.0006, 0.0025), length=(10, 45), width=(0.3, 0.8),
                              intensity=(0.25, 0.8)),
    "moderate": ProceduralRanges(layers=(1, 2), density=(0.0008, 0.002), length=(15, 45), width=(0.4, 0.9),
                                 intensity=(0.35, 0.85)),
    "heavy": ProceduralRanges(layers=(2, 3), density=(0.001, 0.0022), length=(20, 55), width=(0.5, 1.0),
                              intensity=(0.4, 0.85)),
}  # fmt: skip

# Crossing heavy rain (``RainSynthesizer(crossing=...)``): layers in their own directions, this far
# either side of the image's angle, and procedural streaks longer than PROCEDURAL_RANGES["heavy"]
# with fewer drops, so that the added rain stays in the heavy class's 0.1-0.3 per pixel.
SHARED_SPREAD = 4.0  # degrees: layers of one image otherwise share a direction up to this much
CROSSING_SPREAD = 30.0
CROSSING_PROCEDURAL = ProceduralRanges(layers=(2, 4), density=(0.0006, 0.0014), length=(35, 90), width=(0.5, 1.0),
                                       intensity=(0.4, 0.85))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class NoiseStreakRanges:
    """What one density class draws for streaks grown from noise (:func:`edgerain.data.synth.noise_streaks`)."""

    layers: tuple[int, int]  # inclusive range; each layer at the shared angle +- a few degrees
    density: tuple[float, float]  # fraction of the noise that seeds drops
    length: tuple[float, float]
    blur: tuple[float, float]
    gamma: tuple[float, float]
    intensity: tuple[float, float]  # brightness of the brightest streaks (the 99.9th percentile)


# Within the same mean-added-rain bands as CLASS_RANGES. Light and moderate rain follow
# ``RainSynthesizer(noise=...)``, heavy rain ``noise_heavy``. The light ranges bracket what
# bench/streak_stats.py and the residual images show of Rain100L: long (30-120 px), thin streaks of
# continuously varied brightness, few of them near white. The heavy ranges (with the heavy class's veil)
# give Rain100H's medians: residual about 0.2, two thirds of the pixels raised by more than 0.1, about
# 10 % near white, streaks 2 px in half-width (the procedural and Garg-Nayar heavy rain: 3 px, 13-17 %).
NOISE_STREAK_RANGES: dict[str, NoiseStreakRanges] = {
    "light": NoiseStreakRanges(layers=(1, 1), density=(0.008, 0.016), length=(30, 120), blur=(1.0, 2.0),
                               gamma=(1.0, 1.5), intensity=(0.4, 0.85)),
    "moderate": NoiseStreakRanges(layers=(1, 2), density=(0.01, 0.02), length=(30, 120), blur=(1.0, 2.0),
                                  gamma=(0.9, 1.4), intensity=(0.6, 1.0)),
    "heavy": NoiseStreakRanges(layers=(2, 3), density=(0.006, 0.015), length=(25, 80), blur=(0.8, 1.5),
                               gamma=(0.6, 1.0), intensity=(0.8, 1.1)),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RainPattern:
    """What was drawn for one pair (written to labels.csv / labels.json)."""

    rain_class: str
    label: int  # index into RAIN_CLASSES: the router / expert label
    source: str  # "garg" (photographed streak layers), "procedural" (motion-blurred drops) or "noise"
    angle: float  # degrees, positive = streaks lean right (clockwise from vertical)
    orientation: str
    layers: tuple[str, ...]
    intensity: float
    scale: float
    veil: float
    clean: str
    mean_rain: float  # mean over pixels and channels of rainy - clean
    crossing: bool = False  # layers in their own directions (heavy rain only)

    def as_record(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = " ".join(self.layers)
        return d


# Boundaries between the classes in mean added rain per pixel (rainy - clean), for labelling pairs
# whose synthesis parameters are unknown (a folder of pairs without labels.csv).
CLASS_BOUNDARIES = (0.035, 0.11)


def class_of_mean_rain(mean_rain: float) -> int:
    """Density-class label (index into RAIN_CLASSES) of a pair from its mean added rain."""
    return int(sum(mean_rain >= b for b in CLASS_BOUNDARIES))


def orientation_of(angle: float) -> str:
    if angle < -10.0:
        return "left"
    if angle > 10.0:
        return "right"
    return "vertical"


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


@functools.lru_cache(maxsize=256)
def _load_gray(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


@functools.lru_cache(maxsize=128)
def _load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class RainSynthesizer:
    """Draws deterministic rainy/clean pairs from the clean sets and the Garg streak layers under ``root``."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        clean_sets: tuple[str, ...] = CLEAN_SETS,
        procedural: float = 0.0,
        crossing: float = 0.0,
        noise: float = 0.0,
        noise_heavy: float = 0.0,
    ) -> None:
        if not 0.0 <= procedural <= 1.0:
            raise EdgerainError(f"the procedural-rain fraction must be in [0, 1], got {procedural}")
        if not 0.0 <= crossing <= 1.0:
            raise EdgerainError(f"the crossing-rain fraction must be in [0, 1], got {crossing}")
        for flag, fraction in (("--noise-rain", noise), ("--noise-heavy", noise_heavy)):
            if not 0.0 <= fraction <= 1.0:
                raise EdgerainError(f"the {flag} fraction must be in [0, 1], got {fraction}")
            if fraction > 0 and procedural == 0:
                raise EdgerainError(f"{flag} applies to procedural pairs: give --procedural-rain above 0 too")
        self.procedural = procedural
        self.crossing = crossing
        self.noise = noise
        self.noise_heavy = noise_heavy
        self.root = Path(root) if root is not None else default_train_root()
        for name in clean_sets:
            if name in EVALUATION_ONLY or name not in CLEAN_SETS:
                raise EdgerainError(f"'{name}' is not a training set (allowed: {', '.join(CLEAN_SETS)})")
        self.clean: list[Path] = []
        for name in clean_sets:
            folder = self.root / name / "clean"
            if folder.is_dir():
                self.clean += _list_images(folder)
        streak_dir = self.root / STREAK_SET / "layers"
        self.streaks = _list_images(streak_dir) if streak_dir.is_dir() else []
        if not self.clean or not self.streaks:
            raise EdgerainError(
                f"training data not found under {self.root}: need <set>/clean/ photos of {', '.join(clean_sets)} "
                f"and {STREAK_SET}/layers/ (set EDGERAIN_TRAIN_DATA or pass --train-root)"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "clean_images": len(self.clean),
            "streak_layers": len(self.streaks),
            "procedural_fraction": self.procedural,
            "crossing_fraction": self.crossing,
            "noise_fraction": self.noise,
            "noise_heavy_fraction": self.noise_heavy,
        }

    def pair(
        self, seed: int, index: int, size: int, rain_class: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, RainPattern]:
        """Pair ``index`` of stream ``seed``: (rainy, clean) float32 (size, size, 3) in [0, 1] and its pattern."""
        rng = np.random.default_rng([seed, index])
        cls = rain_class if rain_class is not None else RAIN_CLASSES[int(rng.integers(len(RAIN_CLASSES)))]
        clean_path = self.clean[int(rng.integers(len(self.clean)))]
        clean = _crop_clean(_load_rgb(str(clean_path)), size, rng)
        rainy, pattern = self.add_rain(clean, rng, cls, clean_name=f"{clean_path.parent.parent.name}/{clean_path.name}")
        return rainy, clean, pattern

    def add_rain(
        self, clean: np.ndarray, rng: np.random.Generator, rain_class: str, clean_name: str = ""
    ) -> tuple[np.ndarray, RainPattern]:
        """Composite rain of ``rain_class`` onto ``clean`` (H, W, 3) float32 in [0, 1]."""
        if rain_class not in CLASS_RANGES:
            raise EdgerainError(f"unknown rain class '{rain_class}' (one of {', '.join(RAIN_CLASSES)})")
        # Drawn only when mixing, so that procedural=0 reproduces the streams of earlier versions.
        procedural = self.procedural > 0 and bool(rng.random() < self.procedural)
        crossing = self.crossing > 0 and rain_class == "heavy" and bool(rng.random() < self.crossing)
        # Crossing heavy rain keeps its own streaks; the noise draw is skipped where it cannot apply.
        noise_fraction = self.noise_heavy if rain_class == "heavy" else self.noise
        noise = procedural and not crossing and noise_fraction > 0 and bool(rng.random() < noise_fraction)
        spread = CROSSING_SPREAD if crossing else SHARED_SPREAD
        r = CLASS_RANGES[rain_class]
        h, w = clean.shape[:2]
        if procedural:
            angle = float(rng.uniform(-30.0, 30.0))
            veil = float(rng.uniform(*r.veil)) if r.veil[1] > 0 else 0.0
            if noise:
                streak, names, intensity, scale = _noise_streak_layers(
                    h, w, NOISE_STREAK_RANGES[rain_class], angle, rng
                )
            else:
                ranges = CROSSING_PROCEDURAL if crossing else PROCEDURAL_RANGES[rain_class]
                streak, names, intensity, scale = _procedural_streaks(h, w, ranges, angle, spread, rng)
        else:  # (the draw order of earlier versions, which keeps their streams reproducible)
            n_layers = int(rng.integers(r.layers[0], r.layers[1] + 1))
            angle = float(rng.uniform(-30.0, 30.0))
            intensity = float(rng.uniform(*r.intensity))
            scale = float(rng.uniform(*r.scale))
            veil = float(rng.uniform(*r.veil)) if r.veil[1] > 0 else 0.0
            streak = np.zeros((h, w), np.float32)
            names = []
            for _ in range(n_layers):
                path = self.streaks[int(rng.integers(len(self.streaks)))]
                names.append(path.name)
                # Layers of one image share a direction up to a few degrees, like wind-driven rain,
                # unless the rain crosses.
                layer_angle = angle + float(rng.uniform(-spread, spread))
                layer_scale = scale * float(rng.uniform(0.85, 1.15))
                streak += _streak_patch(_load_gray(str(path)), h, w, layer_angle, layer_scale, rng)
            streak *= intensity
        base = clean
        if veil > 0:
            airlight = float(rng.uniform(0.7, 0.95))
            base = clean * (1.0 - veil) + veil * airlight
        rainy = np.clip(base + streak[..., None], 0.0, 1.0).astype(np.float32)
        pattern = RainPattern(
            rain_class=rain_class,
            label=RAIN_CLASSES.index(rain_class),
            source="noise" if noise else "procedural" if procedural else "garg",
            angle=round(angle, 3),
            orientation=orientation_of(angle),
            layers=tuple(names),
            intensity=round(intensity, 4),
            scale=round(scale, 4),
            veil=round(veil, 4),
            clean=clean_name,
            mean_rain=round(float((rainy - clean).mean()), 5),
            crossing=crossing,
        )
        return rainy, pattern


def _procedural_streaks(
    h: int, w: int, r: ProceduralRanges, angle: float, spread: float, rng: np.random.Generator
) -> tuple[np.ndarray, list[str], float, float]:
    """Summed procedural streak layers (H, W) drawn from ``r``, each at ``angle`` +- ``spread`` degrees;
    also their names, mean intensity and mean length (reported as the pattern's intensity and scale)."""
    n_layers = int(rng.integers(r.layers[0], r.layers[1] + 1))
    streak = np.zeros((h, w), np.float32)
    intensities, lengths = [], []
    for _ in range(n_layers):
        params = RainParams(
            density=float(rng.uniform(*r.density)),
            length=float(rng.uniform(*r.length)),
            angle=angle + float(rng.uniform(-spread, spread)),
            width=float(rng.uniform(*r.width)),
            intensity=float(rng.uniform(*r.intensity)),
            blend="additive",
        )
        streak += rain_layer(h, w, params, rng)
        intensities.append(params.intensity)
        lengths.append(params.length)
    names = [f"procedural{i}" for i in range(n_layers)]
    return streak, names, float(np.mean(intensities)), float(np.mean(lengths))


def _noise_streak_layers(
    h: int, w: int, r: NoiseStreakRanges, angle: float, rng: np.random.Generator
) -> tuple[np.ndarray, list[str], float, float]:
    """Summed noise-grown streak layers (H, W) drawn from ``r``, each at ``angle`` +- SHARED_SPREAD
    degrees; also their names, mean intensity and mean length (the pattern's intensity and scale)."""
    n_layers = int(rng.integers(r.layers[0], r.layers[1] + 1))
    streak = np.zeros((h, w), np.float32)
    intensities, lengths = [], []
    for _ in range(n_layers):
        density, length = float(rng.uniform(*r.density)), float(rng.uniform(*r.length))
        layer_angle = angle + float(rng.uniform(-SHARED_SPREAD, SHARED_SPREAD))
        blur, gamma = float(rng.uniform(*r.blur)), float(rng.uniform(*r.gamma))
        intensity = float(rng.uniform(*r.intensity))
        streak += intensity * noise_streaks(h, w, density, length, layer_angle, blur, gamma, rng)
        intensities.append(intensity)
        lengths.append(length)
    names = [f"noise{i}" for i in range(n_layers)]
    return np.clip(streak, 0.0, 1.0), names, float(np.mean(intensities)), float(np.mean(lengths))


def _crop_clean(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random (size, size) crop at a random downscale (0.5-1x where the photo allows), random flip."""
    h, w = img.shape[:2]
    short = min(h, w)
    lo = min(1.0, size / short)
    s = float(rng.uniform(max(lo, 0.5), 1.0)) if lo < 1.0 else lo
    # Crop a window of size/s pixels, then resize it to size: the same as downscaling first.
    win = min(short, max(size, round(size / s)))
    y = int(rng.integers(0, h - win + 1))
    x = int(rng.integers(0, w - win + 1))
    crop = img[y : y + win, x : x + win]
    if win != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop, dtype=np.float32) / 255.0


def _streak_patch(
    layer: np.ndarray, h: int, w: int, angle: float, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """An (h, w) float32 crop of a streak layer resized by ``scale`` and rotated by ``angle`` degrees.

    The layer is tiled (wrap) where it is too small: streak layers are random fields, so the seams
    are invisible at this scale. Rotation is done on a region large enough that no corner is empty.
    """
    lh, lw = layer.shape
    sh, sw = max(8, round(lh * scale)), max(8, round(lw * scale))
    img = Image.fromarray(layer).resize((sw, sh), Image.Resampling.BILINEAR)
    # Side of a square that still covers (h, w) after rotating by angle.
    rad = math.radians(abs(angle))
    need = math.ceil(max(h, w) * (math.cos(rad) + math.sin(rad))) + 2
    arr = np.asarray(img)
    if arr.shape[0] < need or arr.shape[1] < need:
        arr = np.pad(arr, ((0, max(0, need - arr.shape[0])), (0, max(0, need - arr.shape[1]))), mode="wrap")
    y = int(rng.integers(0, arr.shape[0] - need + 1))
    x = int(rng.integers(0, arr.shape[1] - need + 1))
    region = Image.fromarray(np.ascontiguousarray(arr[y : y + need, x : x + need]))
    # PIL rotates counter-clockwise; a positive angle leans streaks to the right (clockwise).
    rotated = np.asarray(region.rotate(-angle, resample=Image.Resampling.BILINEAR))
    oy, ox = (need - h) // 2, (need - w) // 2
    return rotated[oy : oy + h, ox : ox + w].astype(np.float32) / 255.0


def write_pair_folder(
    out: str | os.PathLike[str],
    count: int,
    seed: int,
    size: int = 256,
    root: str | os.PathLike[str] | None = None,
    rain_class: str | None = None,
    progress: bool = True,
    procedural: float = 0.0,
    crossing: float = 0.0,
    noise: float = 0.0,
    noise_heavy: float = 0.0,
) -> Path:
    """Write ``count`` pairs as OUT/rain/NNNN.png, OUT/norain/NNNN.png, labels.csv and labels.json.

    The folder appears only when complete (written beside it, then moved into place); an existing
    non-empty OUT is refused rather than mixed with.
    """
    import csv
    import json

    from edgerain.data.io import save_image
    from edgerain.utils import atomic_path

    out = Path(out)
    if count <= 0:
        raise EdgerainError("--count must be positive")
    if size < 16:
        raise EdgerainError("--size must be at least 16")
    if rain_class is not None and rain_class not in RAIN_CLASSES:
        raise EdgerainError(f"unknown rain class '{rain_class}' (one of {', '.join(RAIN_CLASSES)})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EdgerainError(f"{out} already exists and is not an empty folder")
    synth = RainSynthesizer(root, procedural=procedural, crossing=crossing, noise=noise, noise_heavy=noise_heavy)
    width = max(4, len(str(count)))
    records = []
    with atomic_path(out) as tmp:
        iterator: Any = range(count)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="synth", unit="pair")
        for i in iterator:
            rainy, clean, pattern = synth.pair(seed, i, size, rain_class)
            name = f"{i + 1:0{width}d}"
            save_image(tmp / "rain" / f"{name}.png", rainy)
            save_image(tmp / "norain" / f"{name}.png", clean)
            records.append({"name": name, **pattern.as_record()})
        fields = list(records[0])
        with open(tmp / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)
        meta = {
            "generator": "edgerain synth (Garg-Nayar streak layers or procedural streaks on clean photos)",
            "seed": seed,
            "size": size,
            "count": count,
            "rain_class": rain_class,
            "classes": list(RAIN_CLASSES),
            "class_ranges": {k: dataclasses.asdict(v) for k, v in CLASS_RANGES.items()},
            "procedural_ranges": {k: dataclasses.asdict(v) for k, v in PROCEDURAL_RANGES.items()},
            "crossing": {"spread_degrees": CROSSING_SPREAD, "procedural": dataclasses.asdict(CROSSING_PROCEDURAL)},
            "noise_streak_ranges": {k: dataclasses.asdict(v) for k, v in NOISE_STREAK_RANGES.items()},
            "source": synth.describe(),
            "pairs": records,
        }
        (tmp / "labels.json").write_text(json.dumps(meta, indent=1))
    return out
