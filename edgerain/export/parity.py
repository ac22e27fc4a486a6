"""Parity between the exported graphs (ONNX Runtime) and the PyTorch network on sample images.

Samples are stored in the bundle (input PNG + PyTorch reference output ``.npy``) so that
``edgerain verify`` can repeat the check on the device. Default samples are synthetic rainy
images drawn from a fixed seed, at sizes that are not multiples of the padding or the attention
window, so that padding, cropping and every shape-dependent path of the graphs are exercised.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgerain.errors import EdgerainError
from edgerain.export.onnx_run import OrtBundle, max_abs, psnr_db

# (height, width) of the default samples: odd sizes, one landscape and one portrait.
DEFAULT_SAMPLE_SIZES = ((52, 76), (84, 44))
SAMPLE_SEED = 20260522


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float  # max abs error of the final image, in [0, 1] units
    min_psnr_db: float
    context_atol: float  # max abs error of the context output (router scores / prior tokens)


# ORT vs PyTorch. fp32: the same arithmetic in another order. fp16: half-precision weights and
# activations. int8: the Q/DQ graph against the fake-quantised PyTorch model (ORT switches to
# integer kernels, ~1e-3 on its own; rounding flips at quantiser steps add a few steps of 1/255).
# Context outputs (router scores, prior tokens) get 1e-3: the routing decision itself must match
# exactly (checked apart), and a router head calibrated on a random CLIP reads tiny deviations of
# the embedding with large weights, which turns float32 rounding into score errors of ~1e-4
# (1.02e-4 measured on the bundled default, context graph in float32).
TOLERANCES = {
    "fp32": Tolerance(atol=1e-3, min_psnr_db=60.0, context_atol=1e-3),
    "fp16": Tolerance(atol=4e-2, min_psnr_db=40.0, context_atol=1e-3),
    "int8": Tolerance(atol=8e-2, min_psnr_db=35.0, context_atol=1e-3),
}


def synthetic_rainy(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth scene with bright slanted streaks: uint8 (H, W, 3)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            0.5 + 0.3 * np.sin(xx / (7 + 5 * rng.random()) + rng.random() * 6),
            0.4 + 0.3 * np.cos(yy / (9 + 5 * rng.random()) + rng.random() * 6),
            0.3 + 0.2 * np.sin((xx + yy) / (11 + 5 * rng.random())),
        ],
        axis=-1,
    )
    streaks = np.zeros((height, width), np.float32)
    slope = 0.3 * rng.standard_normal()
    for _ in range(max(4, (height * width) // 150)):
        y0, x0, length = rng.integers(0, height), rng.integers(0, width), rng.integers(4, 14)
        for t in range(int(length)):
            y, x = y0 + t, round(x0 + slope * t)
            if 0 <= y < height and 0 <= x < width:
                streaks[y, x] = 0.6 + 0.4 * rng.random()
    img = np.clip(base + 0.5 * streaks[..., None], 0.0, 1.0)
    return np.floor(img * 255.0 + 0.5).astype(np.uint8)


def default_samples(sizes: tuple[tuple[int, int], ...] = DEFAULT_SAMPLE_SIZES) -> list[np.ndarray]:
    rng = np.random.default_rng(SAMPLE_SEED)
    return [synthetic_rainy(h, w, rng) for h, w in sizes]


def samples_from_folder(folder: str | os.PathLike[str], count: int = 2, max_side: int = 96) -> list[np.ndarray]:
    """The first ``count`` images of a folder (sorted), centre-cropped to ``max_side``: uint8 (H, W, 3)."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise EdgerainError(f"sample folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not paths:
        raise EdgerainError(f"sample folder {folder} holds no .png/.jpg images")
    out = []
    for p in paths[:count]:
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise EdgerainError(f"cannot read sample image {p}: {exc}") from None
        h, w = arr.shape[:2]
        top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
        out.append(np.ascontiguousarray(arr[top : top + max_side, left : left + max_side]))
    return out


def to_nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0))


def torch_reference(model: Any, img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """The PyTorch network's output on one uint8 image, its context output and chosen expert.

    Computed in the dtype of ``model``'s parameters and returned as float32. The exporter passes a
    float64 copy: a more exact reference, and one whose float32 rounding does not depend on which
    CPU kernels earlier work in the process happened to select (float32 results differ in the
    last bit between such runs, which would break reproducible bundle hashes).
    """
    import torch

    from edgerain.models.clip_rpn import ClipRPN

    dtype = next(model.parameters()).dtype
    x = torch.from_numpy(to_nchw(img)).to(dtype)
    with torch.no_grad():
        out = model(x).float().numpy()
        ctx = model.global_context(x)
    if isinstance(model, ClipRPN):
        return out, ctx.scores.float().numpy(), int(ctx.expert[0])
    return out, (ctx.float().numpy() if ctx is not None else None), None


def check_sample(
    runner: OrtBundle, img: np.ndarray, reference: np.ndarray, ref_context: np.ndarray | None, ref_expert: int | None
) -> dict[str, Any]:
    """ORT on one sample against the PyTorch reference: errors and routing, as a manifest row."""
    try:
        res = runner.run(to_nchw(img))
    except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgerainError(
            f"parity check failed: ONNX Runtime cannot run the bundle on a {img.shape[0]}x{img.shape[1]} image ({first})"
        ) from None
    row: dict[str, Any] = {
        "height": int(img.shape[0]),
        "width": int(img.shape[1]),
        "max_abs": max_abs(res.output, reference),
        "psnr_db": psnr_db(res.output, reference),
    }
    if res.context is not None and ref_context is not None:
        row["context_max_abs"] = max_abs(res.context, ref_context)
    if ref_expert is not None or res.expert is not None:
        row["expert_torch"] = ref_expert
        row["expert_onnx"] = res.expert
    return row


def failures(rows: list[dict[str, Any]], tol: Tolerance) -> list[str]:
    """Why each failing sample failed (empty when all pass)."""
    out = []
    for i, r in enumerate(rows):
        size = f"sample {i} ({r['height']}x{r['width']})"
        if r.get("expert_torch") != r.get("expert_onnx"):
            out.append(f"{size}: routed to expert {r['expert_onnx']} by ONNX but {r['expert_torch']} by PyTorch")
        if r.get("context_max_abs", 0.0) > tol.context_atol:
            out.append(f"{size}: context max abs error {r['context_max_abs']:.2e} > {tol.context_atol:.0e}")
        if r["max_abs"] > tol.atol:
            out.append(f"{size}: max abs error {r['max_abs']:.2e} > {tol.atol:.0e}")
        if r["psnr_db"] < tol.min_psnr_db:
            out.append(f"{size}: PSNR {r['psnr_db']:.1f} dB < {tol.min_psnr_db:.0f} dB")
    return out
