"""What the rain in folders of rain/norain pairs looks like: descriptive statistics of the residual.

For each pair, the residual is rainy - clean on the Y channel (BT.601). Per folder (medians over the
pairs): the mean residual, the fraction of pixels it raises by more than 0.1, the fraction of
near-white rainy pixels (Y > 0.97), and the residual's autocorrelation half-widths: across the
streaks (horizontal lag where it falls to 0.5, a width in pixels for near-vertical streaks) and
along them (vertical lag, a length scale). Use it to compare synthetic rain with a benchmark's rain;
it reads the benchmark's images, it never trains on them. ``FOLDER@CLASS`` keeps the pairs of one
rain class of a labelled `edgerain synth` folder.

    .venv/bin/python bench/streak_stats.py --data ../shared/data/rain100h --data /tmp/val320@heavy \\
        --out bench/results/streak_stats.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def half_lag(residual: np.ndarray, axis: int) -> int:
    """First lag along ``axis`` at which the residual's mean autocorrelation falls below 0.5."""
    r = residual - residual.mean()
    n = r.shape[axis]
    spectrum = np.fft.rfft(r, n=2 * n, axis=axis)  # zero-padded: a linear, not circular, correlation
    ac = np.fft.irfft(spectrum * np.conj(spectrum), axis=axis).take(range(n // 2), axis=axis)
    ac = ac.mean(axis=1 - axis)
    if ac[0] <= 0:
        return 0
    below = np.nonzero(ac / ac[0] < 0.5)[0]
    return int(below[0]) if len(below) else n // 2


def pair_stats(rainy: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Statistics of one pair; both (H, W, 3) float in [0, 1]."""
    luma = np.array([0.299, 0.587, 0.114])
    y_rainy, y_clean = rainy @ luma, clean @ luma
    residual = y_rainy - y_clean
    return {
        "mean_residual": float(residual.mean()),
        "covered_over_0.1": float((residual > 0.1).mean()),
        "near_white": float((y_rainy > 0.97).mean()),
        "across_half_width_px": float(half_lag(residual, 1)),
        "along_half_length_px": float(half_lag(residual, 0)),
    }


def folder_stats(spec: str) -> dict[str, Any]:
    from edgerain.data.io import load_image
    from edgerain.data.pairs import find_pairs
    from edgerain.data.streaks import RAIN_CLASSES
    from edgerain.errors import EdgerainError
    from edgerain.train.data import read_labels

    folder, _, rain_class = spec.partition("@")
    pairs = find_pairs(Path(folder))
    if rain_class:
        labels = read_labels(Path(folder))
        if not labels:
            raise EdgerainError(f"{spec}: @{rain_class} needs the labels.csv of an `edgerain synth` folder")
        # An unknown class keeps no pairs (and is refused below as such).
        wanted = RAIN_CLASSES.index(rain_class) if rain_class in RAIN_CLASSES else None
        pairs = [p for p in pairs if labels.get(p.name) == wanted]
    if not pairs:
        raise EdgerainError(f"{spec}: no rain/norain pairs")
    rows = [pair_stats(load_image(p.rain), load_image(p.norain)) for p in pairs]
    return {"pairs": len(rows), **{k: round(float(np.median([r[k] for r in rows])), 4) for k in rows[0]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, help="FOLDER or FOLDER@CLASS (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="JSON report")
    args = ap.parse_args(argv)

    from edgerain.errors import EdgerainError
    from edgerain.runtime.profile import write_bench_report

    results: dict[str, Any] = {}
    try:
        for spec in args.data:
            results[spec] = stats = folder_stats(spec)
            print(f"{spec}: " + ", ".join(f"{k} {v}" for k, v in stats.items()), flush=True)
    except EdgerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = "rain residual statistics of pair folders, medians over pairs (bench/streak_stats.py)"
    write_bench_report(args.out, what, argv, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
