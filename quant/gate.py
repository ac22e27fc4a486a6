"""The accuracy gate: INT8 vs float on an evaluation folder of rain/norain pairs.

Two conditions, both configurable: the mean Y-channel PSNR may drop by at most ``max_drop`` dB, and
(CLIP-RPN) the quantized router must pick the float router's expert on at least ``min_agreement``
of the images.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.clip_rpn import ClipRPN, Routing

DEFAULT_MAX_DROP = 0.1
DEFAULT_MIN_AGREEMENT = 0.99


@dataclasses.dataclass
class EvalPair:
    name: str
    rainy: Tensor  # (1, 3, H, W) in [0, 1]
    clean: np.ndarray  # (H, W, 3) float32 in [0, 1]


def load_eval_pairs(folder: str | os.PathLike[str], limit: int | None = None) -> list[EvalPair]:
    from edgerain.data.io import load_image, load_image_tensor
    from edgerain.data.pairs import find_pairs

    root = Path(folder)
    if not root.is_dir():
        raise EdgerainError(f"evaluation folder {root} does not exist or is not a folder")
    pairs = find_pairs(root)
    if not pairs:
        raise EdgerainError(f"evaluation folder {root} holds no rain/norain pairs")
    pairs = pairs[:limit] if limit else pairs
    return [EvalPair(p.name, load_image_tensor(p.rain), load_image(p.norain)) for p in pairs]


@dataclasses.dataclass
class EvalRun:
    """A network's outputs on the pairs: per-image PSNR (dB) and, for CLIP-RPN, the routed expert."""

    psnr: list[float]
    experts: list[int] | None

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))


def _to_hwc(y: Tensor) -> np.ndarray:
    return y[0].permute(1, 2, 0).float().numpy()


@torch.no_grad()
def run_eval(model: DerainModel, pairs: list[EvalPair]) -> EvalRun:
    from edgerain.eval.metrics import psnr

    model.eval()
    scores: list[float] = []
    experts: list[int] | None = [] if isinstance(model, ClipRPN) else None
    for pair in pairs:
        context: Any = model.global_context(pair.rainy)
        out = model(pair.rainy, context)
        scores.append(float(psnr(_to_hwc(out), pair.clean)))
        if experts is not None and isinstance(context, Routing):
            experts.append(int(context.expert[0]))
    return EvalRun(scores, experts)


@dataclasses.dataclass
class GateResult:
    psnr_float: float
    psnr_int8: float
    psnr_drop: float
    router_agreement: float | None  # None: the network has no router
    max_drop: float
    min_agreement: float
    images: int

    @property
    def psnr_ok(self) -> bool:
        return self.psnr_drop <= self.max_drop

    @property
    def router_ok(self) -> bool:
        return self.router_agreement is None or self.router_agreement >= self.min_agreement

    @property
    def passed(self) -> bool:
        return self.psnr_ok and self.router_ok

    def failures(self) -> list[str]:
        out = []
        if not self.psnr_ok:
            out.append(f"PSNR drop {self.psnr_drop:.3f} dB > {self.max_drop:g} dB")
        if not self.router_ok:
            out.append(f"router top-1 agreement {self.router_agreement:.1%} < {self.min_agreement:.1%}")
        return out

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(psnr_ok=self.psnr_ok, router_ok=self.router_ok, passed=self.passed)
        return d


def compare(
    reference: EvalRun,
    quantized: EvalRun,
    max_drop: float = DEFAULT_MAX_DROP,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
) -> GateResult:
    agreement = None
    if reference.experts is not None and quantized.experts is not None:
        same = sum(a == b for a, b in zip(reference.experts, quantized.experts, strict=True))
        agreement = same / len(reference.experts)
    return GateResult(
        psnr_float=reference.mean_psnr,
        psnr_int8=quantized.mean_psnr,
        psnr_drop=reference.mean_psnr - quantized.mean_psnr,
        router_agreement=agreement,
        max_drop=max_drop,
        min_agreement=min_agreement,
        images=len(reference.psnr),
    )
