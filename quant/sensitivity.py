"""Per-layer sensitivity and the automatic choice of layers kept in float.

The sensitivity of a layer is measured with that layer alone quantized (every other layer float),
on a few evaluation pairs cropped to a small size:

* ``output_psnr``: PSNR (dB) of the part's output against the float output. Low = sensitive; this
  ranks the layers of the image path (experts, decoders, encoders, CLIP encoders feeding them).
* ``psnr_cost``: the Y-channel PSNR (vs the clean image) lost by quantizing this layer alone. It is
  what the gate measures, but on a few crops it is noisy (it can even be negative), so it is
  reported, not used for ranking.
* router layers (CLIP-RPN): ``score_change``, the largest change of any routing score, and the
  number of top-1 flips; these rank the router's layers for the agreement condition.

When the gate fails, the most sensitive layers are switched back to float, in growing batches (1,
1, 2, 4, ... layers), router layers first while agreement fails, then image-path layers while the
PSNR drop is too large, and the gate is measured again each time.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edgerain.models.base import DerainModel
from edgerain.quant.calibrate import (
    ProbePart,
    fit_to_size,
    is_layer_quantized,
    layer_quantizers,
    only_layers_quantized,
    part_of,
    probe_parts,
    set_layer_quantized,
)
from edgerain.quant.gate import EvalPair, EvalRun, GateResult, compare, run_eval


@dataclasses.dataclass
class LayerSensitivity:
    layer: str
    part: str
    kind: str  # module class name
    output_psnr: float | None = None  # image-path layers
    psnr_cost: float | None = None
    score_change: float | None = None  # router layers
    top1_flips: int | None = None

    @property
    def is_router(self) -> bool:
        return self.score_change is not None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["output_psnr"] is not None and math.isinf(d["output_psnr"]):
            d["output_psnr"] = "inf"
        return d


@dataclasses.dataclass
class KeptFloat:
    layer: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def _psnr_rgb(a: Tensor, b: Tensor) -> float:
    mse = float(torch.mean((a.float() - b.float()) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _clean_output(y: Tensor, h: int, w: int) -> Tensor:
    return y[..., :h, :w].clamp(0.0, 1.0)


@torch.no_grad()
def layer_sensitivity(
    qmodel: DerainModel,
    pairs: list[EvalPair],
    layers: list[str],
    size: tuple[int, int] = (128, 128),
    progress: bool = True,
) -> list[LayerSensitivity]:
    """Sensitivity of each layer in ``layers`` on centre crops of ``pairs`` (see the module doc)."""
    from tqdm import tqdm

    from edgerain.eval.metrics import psnr

    parts = probe_parts(qmodel)
    rainy = [fit_to_size(p.rainy, size) for p in pairs]
    clean = [fit_to_size(torch.from_numpy(p.clean).permute(2, 0, 1)[None], size) for p in pairs]
    h, w = size

    def hwc(t: Tensor) -> np.ndarray:
        return t[0].permute(1, 2, 0).numpy()

    def outputs(part: ProbePart) -> list[Tensor]:
        y = [part.run(x) for x in rainy]
        return y if part.is_router else [_clean_output(t, h, w) for t in y]

    with only_layers_quantized(qmodel, set()):
        reference = {part.name: outputs(part) for part in parts}
    ref_psnr = {
        part.name: float(np.mean([psnr(hwc(y), hwc(c)) for y, c in zip(reference[part.name], clean, strict=True)]))
        for part in parts
        if not part.is_router
    }
    modules = dict(qmodel.named_modules())
    result = []
    for layer in tqdm(layers, desc="sensitivity", unit="layer", disable=not progress, leave=False):
        part = part_of(parts, layer)
        row = LayerSensitivity(layer, part.name, type(modules[layer]).__name__)
        with only_layers_quantized(qmodel, {layer}):
            got = outputs(part)
        ref = reference[part.name]
        if part.is_router:
            row.score_change = float(max((a - b).abs().max() for a, b in zip(got, ref, strict=True)))
            row.top1_flips = sum(int(a.argmax() != b.argmax()) for a, b in zip(got, ref, strict=True))
        else:
            row.output_psnr = _psnr_rgb(torch.cat(got), torch.cat(ref))
            q_psnr = float(np.mean([psnr(hwc(y), hwc(c)) for y, c in zip(got, clean, strict=True)]))
            row.psnr_cost = ref_psnr[part.name] - q_psnr
        result.append(row)
    return result


def exclude_until_gate(
    qmodel: DerainModel,
    pairs: list[EvalPair],
    reference: EvalRun,
    sensitivities: list[LayerSensitivity],
    max_drop: float,
    min_agreement: float,
    max_float_layers: int,
) -> tuple[GateResult, list[KeptFloat], list[dict[str, Any]]]:
    """Switch the most sensitive layers to float until the gate holds (or no candidate is left).

    Returns the final gate, the layers switched to float with the reason, and the trail of gate
    measurements (one per round) for the report.
    """
    router_rank = sorted((s for s in sensitivities if s.is_router), key=lambda s: -(s.score_change or 0.0))
    image_rank = sorted(
        (s for s in sensitivities if not s.is_router),
        key=lambda s: s.output_psnr if s.output_psnr is not None else math.inf,
    )
    quantized = {name for name, qs in layer_quantizers(qmodel).items() if is_layer_quantized(qs)}
    router_rank = [s for s in router_rank if s.layer in quantized]
    image_rank = [s for s in image_rank if s.layer in quantized]

    kept: list[KeptFloat] = []
    trail: list[dict[str, Any]] = []
    gate = compare(reference, run_eval(qmodel, pairs), max_drop, min_agreement)
    trail.append({"float_layers": 0, **gate.to_json()})
    while not gate.passed and len(kept) < max_float_layers:
        step = min(max(1, len(kept)), max_float_layers - len(kept))
        if not gate.router_ok and router_rank:
            batch, router_rank = router_rank[:step], router_rank[step:]
            why = f"router top-1 agreement {gate.router_agreement or 0.0:.1%} < {min_agreement:.1%} with it in INT8"
            for s in batch:
                kept.append(KeptFloat(s.layer, f"{why}; routing-score change {s.score_change:.3g} alone"))
        elif not gate.psnr_ok and image_rank:
            batch, image_rank = image_rank[:step], image_rank[step:]
            why = f"PSNR drop {gate.psnr_drop:.3f} dB > {max_drop:g} dB with it in INT8"
            for s in batch:
                kept.append(
                    KeptFloat(
                        s.layer,
                        f"{why}; alone: output {s.output_psnr:.1f} dB from float, PSNR cost {s.psnr_cost:+.3f} dB",
                    )
                )
        else:
            break
        for s in batch:
            set_layer_quantized(qmodel, s.layer, False)
        gate = compare(reference, run_eval(qmodel, pairs), max_drop, min_agreement)
        trail.append({"float_layers": len(kept), **gate.to_json()})
    return gate, kept, trail
