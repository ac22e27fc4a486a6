"""Training and validation data: an on-the-fly synthetic rain stream, or a folder of rain/norain pairs.

Sample ``i`` of a source is a pure function of (seed, i), so a resumed or distributed run draws
exactly the samples a single uninterrupted run would (each DDP rank takes its own slice of a step's
indices).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from edgerain.data.io import load_image
from edgerain.data.pairs import find_pairs
from edgerain.data.streaks import RAIN_CLASSES, RainSynthesizer, class_of_mean_rain
from edgerain.errors import EdgerainError

SYNTH_PREFIX = "synth"

# Whole images are squashed to the router tower's square input whatever their size and aspect: the
# router is trained on, and routed training draws, these sizes, each as a square, a landscape (3:2)
# or a portrait (2:3) view (:func:`synth_view`).
VIEW_SIZES = (256, 320, 384, 480)
# Stream keys of draws that must not take from a pair's own generator (see ``SynthSource.sample``).
_CLASS_STREAM = 1
_VIEW_STREAM = 0x5654
# The largest crop every view holds (a 2:3 view of the smallest size): ``--route-by router``'s patch limit.
ROUTED_MAX_PATCH = min(VIEW_SIZES) * 2 // 3


def synth_view(
    synth: RainSynthesizer, seed: int, index: int, size: int, kind: int, rain_class: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``index`` of stream ``seed`` synthesised at ``size`` and cut to a square (``kind`` 0), a 3:2
    landscape (1) or a 2:3 portrait (2) view: (rainy, clean) contiguous float32 (H, W, 3)."""
    rainy, clean, _ = synth.pair(seed, index, size, rain_class=rain_class)
    h, w = rainy.shape[:2]
    window = {0: np.s_[:, :], 1: np.s_[: h * 2 // 3, :], 2: np.s_[:, : w * 2 // 3]}[kind]
    return np.ascontiguousarray(rainy[window]), np.ascontiguousarray(clean[window])


def check_routed_patch(patch: int) -> None:
    """Routed training crops its patches from whole views: refuse a patch that some view cannot hold."""
    if patch > ROUTED_MAX_PATCH:
        raise EdgerainError(f"--route-by router crops its patches from whole views: --patch {ROUTED_MAX_PATCH} at most")


class TrainSource(Protocol):
    def describe(self) -> dict[str, object]: ...

    def sample(self, index: int, patch: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(rainy, clean) float32 (patch, patch, 3) in [0, 1] and the density-class label."""
        ...


class SynthSource:
    """Pairs synthesised on the fly (``--data synth`` or ``--data synth:TRAIN_ROOT``).

    ``classes`` restricts the rain classes drawn (``--rain-classes``), e.g. to train one CLIP-RPN
    expert further on its own class; ``None`` draws every class, as the synthesiser does.
    """

    def __init__(self, synth: RainSynthesizer, seed: int, classes: tuple[str, ...] | None = None) -> None:
        self.synth = synth
        self.seed = seed
        self.classes = check_rain_classes(classes)

    def describe(self) -> dict[str, object]:
        kind = "synthetic (Garg-Nayar and procedural streaks on clean photos)"
        if self.synth.procedural == 0:
            kind = "synthetic (Garg-Nayar streaks on clean photos)"
        out: dict[str, object] = {"kind": kind, "seed": self.seed, **self.synth.describe()}
        if self.classes is not None:
            out["rain_classes"] = list(self.classes)
        return out

    def class_for(self, index: int) -> str | None:
        """The rain class sample ``index`` is drawn from (``None``: the synthesiser picks any)."""
        if self.classes is None:
            return None
        # A stream of its own: the pick takes no draws from the pair's generator.
        pick = np.random.default_rng([self.seed, index, _CLASS_STREAM]).integers(len(self.classes))
        return self.classes[int(pick)]

    def sample(self, index: int, patch: int) -> tuple[np.ndarray, np.ndarray, int]:
        rainy, clean, pattern = self.synth.pair(self.seed, index, patch, rain_class=self.class_for(index))
        return rainy, clean, pattern.label


class RouterRoutedSource:
    """Synthetic pairs labelled with the expert the router picks, not with their rain class (``--route-by router``).

    Sample ``i`` is a whole synthetic view (a size of :data:`VIEW_SIZES`, square, landscape or
    portrait, as the router is trained on and as it sees a deployed image), routed by the frozen
    router, and a random ``patch`` crop of it labelled with the chosen expert. Trained on these,
    each CLIP-RPN expert learns the rain the router actually sends it, its mistakes included: on
    held-out pairs most of the PSNR lost to routing is light rain that the moderate expert receives
    but never trained on. ``route`` maps a (1, 3, H, W) image to routing scores (1, K); it must be
    frozen for the stream to stay a pure function of (seed, i).
    """

    def __init__(self, base: SynthSource, route: Callable[[Tensor], Tensor]) -> None:
        self.base = base
        self.synth = base.synth  # router calibration draws from the synthesiser (``_synth_of``)
        self.seed = base.seed
        self.route = route

    def describe(self) -> dict[str, object]:
        return {**self.base.describe(), "route_by": "router", "view_sizes": list(VIEW_SIZES)}

    def sample(self, index: int, patch: int) -> tuple[np.ndarray, np.ndarray, int]:
        check_routed_patch(patch)
        rng = np.random.default_rng([self.seed, index, _VIEW_STREAM])
        size, kind = VIEW_SIZES[int(rng.integers(len(VIEW_SIZES)))], int(rng.integers(3))
        rainy, clean = synth_view(self.synth, self.seed, index, size, kind, self.base.class_for(index))
        h, w = rainy.shape[:2]
        with torch.no_grad():
            scores = self.route(torch.from_numpy(rainy).permute(2, 0, 1).unsqueeze(0))
        expert = int(scores.argmax(dim=-1).item())
        y, x = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
        crop = (slice(y, y + patch), slice(x, x + patch))
        return np.ascontiguousarray(rainy[crop]), np.ascontiguousarray(clean[crop]), expert


def check_rain_classes(classes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """``None`` (every class) or a non-empty tuple of distinct known classes, in RAIN_CLASSES order."""
    if classes is None:
        return None
    unknown = [c for c in classes if c not in RAIN_CLASSES]
    if unknown or not classes:
        raise EdgerainError(
            f"--rain-classes takes a comma-separated subset of {','.join(RAIN_CLASSES)}, got {','.join(classes)!r}"
        )
    return tuple(c for c in RAIN_CLASSES if c in classes)


def read_labels(root: Path) -> dict[str, int]:
    """labels.csv written by ``edgerain synth`` (name, rain_class, ...), when present."""
    path = root / "labels.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["name"]: RAIN_CLASSES.index(row["rain_class"]) for row in csv.DictReader(f)}


class PairFolderSource:
    """Random crops of a folder of pairs held in memory; labels from labels.csv or the rain amount."""

    def __init__(self, root: str | os.PathLike[str], seed: int) -> None:
        self.root = Path(root)
        self.seed = seed
        pairs = find_pairs(self.root)
        labels = read_labels(self.root)
        self.names: list[str] = []
        self.rainy: list[np.ndarray] = []
        self.clean: list[np.ndarray] = []
        self.labels: list[int] = []
        for pair in pairs:
            r, c = load_image(pair.rain), load_image(pair.norain)
            self.names.append(pair.name)
            self.rainy.append(r)
            self.clean.append(c)
            self.labels.append(labels.get(pair.name, class_of_mean_rain(float((r - c).mean()))))

    def describe(self) -> dict[str, object]:
        return {"kind": "pair folder", "root": str(self.root), "pairs": len(self.names), "seed": self.seed}

    def sample(self, index: int, patch: int) -> tuple[np.ndarray, np.ndarray, int]:
        rng = np.random.default_rng([self.seed, index])
        i = int(rng.integers(len(self.names)))
        r, c = self.rainy[i], self.clean[i]
        h, w = r.shape[:2]
        if h < patch or w < patch:
            raise EdgerainError(f"pair '{self.names[i]}' ({w}x{h}) is smaller than the patch size {patch}")
        y, x = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
        rc, cc = r[y : y + patch, x : x + patch], c[y : y + patch, x : x + patch]
        if rng.random() < 0.5:
            rc, cc = rc[:, ::-1], cc[:, ::-1]
        return np.ascontiguousarray(rc), np.ascontiguousarray(cc), self.labels[i]


def is_synth_spec(spec: str) -> bool:
    """``synth`` or ``synth:ROOT``: pairs synthesised on the fly, whose rain classes are known."""
    return spec == SYNTH_PREFIX or spec.startswith(SYNTH_PREFIX + ":")


def open_source(
    spec: str,
    seed: int,
    procedural: float = 0.0,
    classes: tuple[str, ...] | None = None,
    crossing: float = 0.0,
    noise: float = 0.0,
    noise_heavy: float = 0.0,
) -> TrainSource:
    """``synth`` (default training root), ``synth:ROOT`` or a folder of rain/norain pairs; ``procedural``
    is the fraction of synthetic pairs with procedural instead of Garg-Nayar streaks, ``classes`` the
    rain classes synthesised (default: all), ``crossing`` the fraction of heavy-rain pairs whose
    streaks cross, ``noise`` and ``noise_heavy`` the fractions of procedural light and moderate pairs,
    and of procedural heavy pairs, whose streaks are grown from noise."""
    if is_synth_spec(spec):
        root = spec.partition(":")[2] or None
        synth = RainSynthesizer(root, procedural=procedural, crossing=crossing, noise=noise, noise_heavy=noise_heavy)
        return SynthSource(synth, seed, classes)
    if classes is not None:
        raise EdgerainError("--rain-classes is for synthetic data (--data synth), whose rain classes are drawn")
    drawn = {"--crossing-rain": crossing, "--noise-rain": noise, "--noise-heavy": noise_heavy}
    for flag, fraction in drawn.items():
        if fraction:
            raise EdgerainError(f"{flag} is for synthetic data (--data synth), whose streaks are drawn")
    path = Path(spec)
    if not path.is_dir():
        raise EdgerainError(f"--data '{spec}' is neither 'synth', 'synth:ROOT' nor a folder of pairs")
    return PairFolderSource(path, seed)


def make_batch(source: TrainSource, indices: list[int], patch: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stack samples into (rainy, clean) (B, 3, P, P) tensors and labels (B,)."""
    rs, cs, ls = [], [], []
    for i in indices:
        r, c, label = source.sample(i, patch)
        rs.append(r)
        cs.append(c)
        ls.append(label)
    rainy = torch.from_numpy(np.stack(rs)).permute(0, 3, 1, 2).contiguous()
    clean = torch.from_numpy(np.stack(cs)).permute(0, 3, 1, 2).contiguous()
    return rainy, clean, torch.tensor(ls, dtype=torch.long)


class StepBatches(torch.utils.data.Dataset[tuple[Tensor, Tensor, Tensor]]):
    """Step ``s``'s batch for one rank: samples ``s * batch + rank * per_rank`` onwards.

    A map-style dataset over steps, so that worker processes can build batches ahead of the
    training step while every batch stays the pure function of (seed, step, rank) that resuming and
    DDP rely on: ``workers`` changes the speed, never the data.
    """

    def __init__(self, source: TrainSource, batch: int, per_rank: int, rank: int, patch: int) -> None:
        self.source = source
        self.batch = batch
        self.per_rank = per_rank
        self.rank = rank
        self.patch = patch

    def indices(self, step: int) -> list[int]:
        first = step * self.batch + self.rank * self.per_rank
        return list(range(first, first + self.per_rank))

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        return make_batch(self.source, self.indices(step), self.patch)

    def iterate(
        self, start: int, stop: int, workers: int, device: torch.device
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The batches of steps ``start`` .. ``stop - 1`` in order, built by ``workers`` processes."""
        if workers == 0:
            for step in range(start, stop):
                yield self[step]
            return
        loader = torch.utils.data.DataLoader(
            self,
            batch_size=None,
            sampler=range(start, stop),
            num_workers=workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=4,
            worker_init_fn=_one_thread_worker,
        )
        yield from loader


def _one_thread_worker(_: int) -> None:
    # Synthesis is numpy/PIL work on one core each; torch's intra-op pool would oversubscribe.
    torch.set_num_threads(1)


class ValidationSet:
    """A folder of pairs evaluated on whole images (no crop)."""

    def __init__(self, root: str | os.PathLike[str], max_pairs: int | None = None) -> None:
        self.root = Path(root)
        pairs = find_pairs(self.root)[:max_pairs]
        self.name = self.root.name
        # (rainy as a (1, 3, H, W) tensor, clean as an (H, W, 3) array for the metric)
        self.items: list[tuple[Tensor, np.ndarray]] = []
        for pair in pairs:
            rainy = torch.from_numpy(load_image(pair.rain)).permute(2, 0, 1).unsqueeze(0).contiguous()
            self.items.append((rainy, load_image(pair.norain)))
