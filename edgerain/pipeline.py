"""File-level deraining: image files and folders in, PNG files out.

Commands (``edgerain derain``, later bundle runtimes) call :func:`derain_paths`; every input is
checked (it exists, it is an image, no two inputs share an output name, no output would overwrite
an input) before any model runs or any file is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from edgerain.data.io import expand_inputs, image_size, load_image_tensor, save_image
from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.tta import tta_views

MIN_TILE = 32


def check_tiling(tile: int | None, overlap: int) -> None:
    """EdgerainError for tiling options that cannot work (tile too small, overlap too large)."""
    if overlap < 0:
        raise EdgerainError(f"--overlap must be non-negative, got {overlap}")
    if tile is None:
        return
    if tile < MIN_TILE:
        raise EdgerainError(f"--tile must be at least {MIN_TILE} pixels, got {tile}")
    if 2 * overlap >= tile:
        raise EdgerainError(f"--overlap {overlap} must be less than half of --tile {tile}")


@dataclasses.dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def plan_outputs(inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> list[Job]:
    """Where each input goes: ``OUT/<input stem>.png``. Raises before anything is written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgerainError(f"output {out_dir} exists and is not a folder")
    sources = expand_inputs(inputs)
    resolved_sources = {s.resolve(): s for s in sources}
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for src in sources:
        image_size(src)  # header check: a non-image fails now, not after the others were processed
        target = out_dir / f"{src.stem}.png"
        key = target.resolve()
        if key in resolved_sources:
            raise EdgerainError(
                f"refusing to overwrite the input {resolved_sources[key]}: choose another output folder"
            )
        if key in claimed:
            raise EdgerainError(
                f"inputs {claimed[key]} and {src} would both be written to {target}; derain them into separate folders"
            )
        claimed[key] = src
        jobs.append(Job(src, target))
    return jobs


def resolve_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    from edgerain.errors import MissingCapabilityError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise EdgerainError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise EdgerainError(f"unsupported device '{name}' (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MissingCapabilityError(f"device '{name}' needs a CUDA GPU, and torch sees none here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MissingCapabilityError(f"device '{name}': only {torch.cuda.device_count()} CUDA GPU(s) visible")
    return device


def model_device(model: DerainModel) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def derain_file(
    model: DerainModel, path: str | os.PathLike[str], tile: int | None = None, overlap: int = 32, tta: str = "none"
) -> torch.Tensor:
    """Read one image and derain it: (1, 3, H, W) in [0, 1] on the CPU."""
    from edgerain.models.inference import derain_tensor

    x = load_image_tensor(path).to(model_device(model))
    return derain_tensor(model, x, tile=tile, overlap=overlap, tta=tta).cpu()


def run_jobs(
    jobs: Sequence[Job],
    derain: Callable[[Path], torch.Tensor],
    progress: bool = True,
) -> list[Path]:
    """Run ``derain`` on each job's source and write its target (atomically) with a progress bar."""
    from tqdm import tqdm

    written = []
    for job in tqdm(jobs, desc="derain", unit="image", disable=not progress, dynamic_ncols=True):
        written.append(save_image(job.target, derain(job.source)))
    return written


def derain_paths(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    model: DerainModel,
    tile: int | None = None,
    overlap: int = 32,
    progress: bool = True,
    tta: str = "none",
) -> list[Path]:
    """Derain image files and folders into ``out_dir`` (PNG, mirrored stems); returns the written paths.

    ``tta``: self-ensemble mode (:data:`edgerain.tta.TTA_MODES`)."""
    check_tiling(tile, overlap)
    tta_views(tta)
    jobs = plan_outputs(inputs, out_dir)
    model.eval()
    return run_jobs(jobs, lambda src: derain_file(model, src, tile, overlap, tta), progress)
