"""Evaluate a network on a paired folder (``rain/NNN.png`` + ``norain/NNN.png``).

Metrics follow :mod:`edgerain.eval.metrics`. The network's output is encoded to 8 bits (round half
up) before scoring, so the numbers are those of the PNG files ``edgerain derain`` writes. The rainy
input itself (the identity "model") is scored as the baseline. Under ``out``: ``per_image.csv``,
``summary.json`` and, optionally, ``images/NNN.png`` (rainy | derained | clean), all written only
once every pair has been processed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgerain.data.io import load_image, quantize_8bit, save_image, staged_folder
from edgerain.data.pairs import find_pairs
from edgerain.errors import EdgerainError
from edgerain.eval.metrics import SSIM_WINDOW, psnr, ssim
from edgerain.machine import cpu_name
from edgerain.models.base import DerainModel
from edgerain.pipeline import check_tiling, model_device
from edgerain.tta import tta_views

METRICS = ("psnr_y", "ssim_y", "psnr_rgb")
CONVENTIONS = (
    "Y = 16 + 65.481 R + 128.553 G + 24.966 B (BT.601, [0, 255] scale, not rounded); no border crop; "
    "SSIM: 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, L 255, valid region; "
    "outputs encoded to 8 bits (round half up) before scoring"
)
CSV_NAME, SUMMARY_NAME, IMAGES_DIR = "per_image.csv", "summary.json", "images"
_GAP = 4  # white pixels between the panels of a side-by-side image


@dataclasses.dataclass
class EvalRow:
    name: str
    width: int
    height: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    input_psnr_y: float
    input_ssim_y: float
    input_psnr_rgb: float
    seconds: float  # model time for this image (load and metrics excluded)


@dataclasses.dataclass
class EvalResult:
    model: str
    weights: str | None
    trained: bool
    data_dir: Path
    rows: list[EvalRow]
    means: dict[str, float]  # the network: psnr_y, ssim_y, psnr_rgb
    input_means: dict[str, float]  # the rainy input scored against the clean image
    timing: dict[str, Any]
    tile: int | None
    overlap: int
    tta: str = "none"  # self-ensemble mode (edgerain.tta)
    images: str | None = None  # the side-by-side folder under OUT when this run wrote one

    @property
    def count(self) -> int:
        return len(self.rows)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "weights": self.weights,
            "trained": self.trained,
            "data": str(self.data_dir),
            "count": self.count,
            **{k: _finite_or_none(v) for k, v in self.means.items()},
            "input": {k: _finite_or_none(v) for k, v in self.input_means.items()},
            "timing": self.timing,
            "tile": self.tile,
            "overlap": self.overlap if self.tile else None,
            "tta": self.tta,
            "images": self.images,
            "conventions": CONVENTIONS,
        }


def _finite_or_none(value: float) -> float | None:
    # JSON has no infinity: a PSNR of identical images (inf) is written as null.
    return value if math.isfinite(value) else None


def _scores(pred: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {"psnr_y": psnr(pred, clean), "ssim_y": ssim(pred, clean), "psnr_rgb": psnr(pred, clean, y_channel=False)}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def side_by_side(*panels: np.ndarray) -> np.ndarray:
    h = panels[0].shape[0]
    gap = np.ones((h, _GAP, 3), dtype=np.float32)
    parts: list[np.ndarray] = []
    for p in panels:
        parts += [p, gap]
    return np.concatenate(parts[:-1], axis=1)


def _write_csv(path: Path, rows: list[EvalRow]) -> None:
    fields = [f.name for f in dataclasses.fields(EvalRow)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in rows:
            values = dataclasses.astuple(row)
            writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in values])


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({cpu_name()}, {threads} thread{'s' if threads != 1 else ''})"


def evaluate(
    model: DerainModel,
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    save_images: bool = False,
    tile: int | None = None,
    progress: bool = True,
    *,
    overlap: int = 32,
    weights: str | None = None,
    trained: bool | None = None,
    tta: str = "none",
) -> EvalResult:
    """Score ``model`` on every pair of ``data_dir``; write the CSV/JSON (and images) under ``out`` if given.

    ``tta``: self-ensemble mode (:data:`edgerain.tta.TTA_MODES`), recorded in the summary.
    ``weights`` and ``trained`` only label the summary (``trained`` defaults to the model's provenance).
    """
    from tqdm import tqdm

    from edgerain.models.default import is_trained
    from edgerain.models.inference import derain_tensor

    check_tiling(tile, overlap)
    tta_views(tta)
    if save_images and out is None:
        raise EdgerainError("--save-images needs --out (the folder the images go to)")
    pairs = find_pairs(data_dir)
    for pair in pairs:
        if min(pair.size) < SSIM_WINDOW:
            raise EdgerainError(
                f"pair '{pair.name}' is {pair.size[0]}x{pair.size[1]}: SSIM needs at least "
                f"{SSIM_WINDOW}x{SSIM_WINDOW} pixels"
            )
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise EdgerainError(f"output {out} exists and is not a folder")
    device = model_device(model)
    model.eval()
    rows: list[EvalRow] = []
    staging: contextlib.AbstractContextManager[Path | None] = (
        staged_folder(out) if out is not None else contextlib.nullcontext()
    )
    with staging as stage:
        for pair in tqdm(pairs, desc="eval", unit="pair", disable=not progress, dynamic_ncols=True):
            rainy, clean = load_image(pair.rain), load_image(pair.norain)
            x = torch.from_numpy(rainy).permute(2, 0, 1).unsqueeze(0).to(device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            y = derain_tensor(model, x, tile=tile, overlap=overlap, tta=tta)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            pred = quantize_8bit(y.cpu())
            net, base = _scores(pred, clean), _scores(rainy, clean)
            rows.append(
                EvalRow(pair.name, pair.size[0], pair.size[1], **net, **{f"input_{k}": v for k, v in base.items()},
                        seconds=seconds)
            )  # fmt: skip
            if save_images and stage is not None:
                save_image(stage / IMAGES_DIR / f"{pair.name}.png", side_by_side(rainy, pred, clean))
        result = _result(model, weights, trained if trained is not None else is_trained(model), data_dir, rows,
                         tile, overlap, device)  # fmt: skip
        result.tta = tta
        if stage is not None:
            result.images = IMAGES_DIR if save_images else None
            _write_csv(stage / CSV_NAME, rows)
            (stage / SUMMARY_NAME).write_text(json.dumps(result.summary(), indent=2, allow_nan=False) + "\n")
    return result


def _result(
    model: DerainModel,
    weights: str | None,
    trained: bool,
    data_dir: str | os.PathLike[str],
    rows: list[EvalRow],
    tile: int | None,
    overlap: int,
    device: torch.device,
) -> EvalResult:
    seconds = [r.seconds for r in rows]
    megapixels = sum(r.width * r.height for r in rows) / 1e6
    timing = {
        "device": _device_name(device),
        "torch": torch.__version__,
        "seconds_total": sum(seconds),
        "seconds_per_image": _mean(seconds),
        # The first image pays for warm-up (allocations, CUDA context): the median is the steady state.
        "seconds_per_image_median": statistics.median(seconds),
        "megapixels_per_second": megapixels / sum(seconds) if sum(seconds) > 0 else None,
        "note": "model time only, measured in an evaluation run (not a benchmark)",
    }
    return EvalResult(
        model=model.registry_name or type(model).__name__,
        weights=weights,
        trained=trained,
        data_dir=Path(data_dir),
        rows=rows,
        means={k: _mean([getattr(r, k) for r in rows]) for k in METRICS},
        input_means={k: _mean([getattr(r, f"input_{k}") for r in rows]) for k in METRICS},
        timing=timing,
        tile=tile,
        overlap=overlap,
    )
