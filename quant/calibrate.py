"""Insert ModelOpt INT8 quantizers into an edgerain network and calibrate them on rainy images.

Every sub-network gets quantizers: the CLIP image tower (router or prior or encoder), the experts,
decoders, SAR encoder, prior MLP. A CLIP-RPN calibrates every expert on every image (hard routing
would otherwise leave experts that no calibration image is routed to without activation ranges).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain.errors import EdgerainError, MissingCapabilityError
from edgerain.models.base import DerainModel, pad_to_multiple
from edgerain.models.clip import FrozenCLIPImage
from edgerain.models.clip_rpn import ClipRPN
from edgerain.quant.config import QuantSettings, modelopt_config
from edgerain.quant.fold import fold_batchnorm

DEFAULT_CALIB_SIZE = (256, 256)


def require_modelopt() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation inside ModelOpt
            import modelopt.torch.quantization  # noqa: F401
    except ImportError as exc:
        raise MissingCapabilityError(
            f"INT8 quantization needs NVIDIA ModelOpt ({exc}); install it with "
            "`pip install 'edgerain[quant]'` (nvidia-modelopt without the [onnx] extra, plus requests)"
        ) from None


# ---------------------------------------------------------------------------------------------
# Calibration data


def calibration_files(folder: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Rainy images for calibration: the images in ``folder``, or in ``folder/rain`` for a pair folder."""
    from edgerain.data.io import expand_inputs, list_images

    root = Path(folder)
    if not root.is_dir():
        raise EdgerainError(f"calibration folder {root} does not exist or is not a folder")
    if not list_images(root) and (root / "rain").is_dir():
        root = root / "rain"
    files = expand_inputs([root])
    return files[:limit] if limit else files


def fit_to_size(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (bilinear, keeping the aspect ratio) so the image covers ``size``, then centre-crop it."""
    h, w = size
    ih, iw = x.shape[-2:]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    if (nh, nw) != (ih, iw):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (nh - h) // 2, (nw - w) // 2
    return x[..., top : top + h, left : left + w].clamp(0.0, 1.0).contiguous()


def load_calibration_images(
    folder: str | os.PathLike[str], size: tuple[int, int] = DEFAULT_CALIB_SIZE, limit: int | None = 32
) -> list[Tensor]:
    """Calibration batches (1, 3, h, w) from a folder of rainy images, fitted to ``size``."""
    from edgerain.data.io import load_image_tensor

    if size[0] < 8 or size[1] < 8:
        raise EdgerainError(f"calibration size must be at least 8x8, got {size[0]}x{size[1]}")
    return [fit_to_size(load_image_tensor(p), size) for p in calibration_files(folder, limit)]


# ---------------------------------------------------------------------------------------------
# What runs during calibration and sensitivity: each deployed part of the network


@dataclasses.dataclass
class ProbePart:
    """One deployed part of a network: the layers under ``prefix`` only affect ``run``'s output."""

    name: str
    prefix: str
    run: Callable[[Tensor], Tensor]
    is_router: bool = False


def probe_parts(model: DerainModel) -> list[ProbePart]:
    """The parts to calibrate and probe: CLIP-RPN's router and each expert; else the whole network."""
    if isinstance(model, ClipRPN):
        parts = [ProbePart("router", "router.", model.router, is_router=True)]
        for i in range(len(model.experts)):
            parts.append(ProbePart(f"expert {i}", f"experts.{i}.", functools.partial(_padded_expert, model, i)))
        return parts
    return [ProbePart("network", "", lambda x: model(x))]


def _padded_expert(model: ClipRPN, index: int, x: Tensor) -> Tensor:
    return model.run_expert(index, pad_to_multiple(x, model.pad_multiple))


def part_of(parts: list[ProbePart], layer: str) -> ProbePart:
    for part in parts:
        if layer.startswith(part.prefix):
            return part
    raise KeyError(layer)


@torch.no_grad()
def run_calibration_forward(model: DerainModel, images: Iterable[Tensor], progress: bool = True) -> None:
    from tqdm import tqdm

    parts = probe_parts(model)
    images = list(images)
    for x in tqdm(images, desc="calibrating", unit="img", disable=not progress, leave=False):
        for part in parts:
            part.run(x)


# ---------------------------------------------------------------------------------------------
# Quantizer bookkeeping


def _quantizer_type() -> Any:
    from modelopt.torch.quantization.nn import TensorQuantizer

    return TensorQuantizer


def layer_quantizers(model: nn.Module) -> dict[str, list[Any]]:
    """Quantized layers (modules holding enabled-at-insertion input or weight quantizers) -> quantizers."""
    tq = _quantizer_type()
    layers: dict[str, list[Any]] = {}
    for name, module in model.named_modules():
        children = [
            q
            for cname, q in module.named_children()
            if isinstance(q, tq) and cname in ("input_quantizer", "weight_quantizer", "output_quantizer")
        ]
        if children and any(not q._disabled or _has_amax(q) for q in children):
            layers[name] = children
    return layers


def _has_amax(q: Any) -> bool:
    return getattr(q, "amax", None) is not None


def is_layer_quantized(quantizers: list[Any]) -> bool:
    return any(q.is_enabled for q in quantizers)


def set_layer_quantized(model: nn.Module, layer: str, enabled: bool) -> None:
    """Switch one layer between INT8 (its calibrated quantizers on) and float (all off)."""
    for q in layer_quantizers(model)[layer]:
        if enabled and _has_amax(q):
            q.enable()
        else:
            q.disable()


@contextlib.contextmanager
def only_layers_quantized(model: nn.Module, layers: set[str]) -> Iterator[None]:
    """Temporarily quantize exactly ``layers`` (everything else float); restores the previous state."""
    all_layers = layer_quantizers(model)
    before = {name: [q.is_enabled for q in qs] for name, qs in all_layers.items()}
    try:
        for name, qs in all_layers.items():
            for q in qs:
                if name in layers and _has_amax(q):
                    q.enable()
                else:
                    q.disable()
        yield
    finally:
        for name, qs in all_layers.items():
            for q, was in zip(qs, before[name], strict=True):
                q.enable() if was else q.disable()


def quantized_layer_count(model: nn.Module) -> int:
    return sum(1 for qs in layer_quantizers(model).values() if is_layer_quantized(qs))


def clip_tower_prefixes(model: nn.Module) -> list[str]:
    return [name + "." for name, m in model.named_modules() if isinstance(m, FrozenCLIPImage)]


def group_of(layer: str, clip_prefixes: list[str]) -> str:
    """The sub-network a layer belongs to, for per-submodule counts (e.g. ``router.image (CLIP)``)."""
    for prefix in clip_prefixes:
        if layer.startswith(prefix):
            return f"{prefix[:-1]} (CLIP image tower)"
    parts = layer.split(".")
    if len(parts) > 1 and parts[1].isdigit() and parts[0] == "experts":
        return ".".join(parts[:2])
    return parts[0]


def quantizer_counts(model: nn.Module) -> dict[str, int]:
    """Enabled (and calibrated) quantizers per sub-network."""
    clip_prefixes = clip_tower_prefixes(model)
    counts: dict[str, int] = {}
    for layer, qs in layer_quantizers(model).items():
        group = group_of(layer, clip_prefixes)
        counts.setdefault(group, 0)
        counts[group] += sum(1 for q in qs if q.is_enabled and _has_amax(q))
    return counts


# ---------------------------------------------------------------------------------------------
# Quantize + calibrate


@dataclasses.dataclass
class QuantResult:
    """A fake-quantized copy of a network and what was done to it."""

    model: DerainModel
    settings: QuantSettings
    layers: list[str]  # every layer with INT8 quantizers after calibration
    never_run: list[str]  # layers whose quantizers never ran during calibration: kept float
    counts: dict[str, int]  # enabled quantizers per sub-network
    calibration_images: int
    folded_batchnorm: list[str] = dataclasses.field(default_factory=list)  # BN folded into their convs


def calibrate(model: nn.Module, images: list[Tensor], settings: QuantSettings, progress: bool = True) -> None:
    """Collect weight and activation statistics and load the INT8 ranges (amax) into the quantizers."""
    from modelopt.torch.quantization import model_calib
    from modelopt.torch.quantization.calib import HistogramCalibrator

    tq = _quantizer_type()
    q: Any
    model_calib.enable_stats_collection(model)
    model_calib.weight_only_quantize(model)  # weights: per-channel max, from the tensors themselves
    run_calibration_forward(model, images, progress=progress)  # type: ignore[arg-type]
    for _, q in model.named_modules():
        if not isinstance(q, tq) or q._disabled or q._calibrator is None:
            continue
        cal = q._calibrator
        if isinstance(cal, HistogramCalibrator):
            kwargs: dict[str, Any] = {}
            if settings.method == "percentile":
                kwargs["percentile"] = settings.percentile
            elif settings.method == "entropy":
                kwargs["stride"] = settings.entropy_stride
            if cal.compute_amax(settings.method, **kwargs) is not None:
                q.load_calib_amax(settings.method, **kwargs)
        elif cal.compute_amax() is not None:
            q.load_calib_amax()
        q.enable_quant()
        q.disable_calib()


def quantize_model(
    model: DerainModel,
    calib: str | os.PathLike[str] | list[Tensor],
    *,
    method: str = "max",
    percentile: float = 99.99,
    placement: str = "tensorrt",
    entropy_stride: int = 8,
    calib_size: tuple[int, int] = DEFAULT_CALIB_SIZE,
    calib_limit: int | None = 32,
    exclude: Iterable[str] = (),
    fold_bn: bool = True,
    progress: bool = True,
) -> QuantResult:
    """INT8 PTQ of a copy of ``model`` (the float model is left untouched).

    ``calib`` is a folder of rainy images (or of rain/norain pairs) or ready (1, 3, h, w) batches.
    ``placement`` says where Q/DQ pairs go (:data:`edgerain.quant.config.QDQ_PLACEMENTS`). Layers in
    ``exclude`` stay float. ``fold_bn`` folds eval-mode BatchNorm into the preceding convs of the copy
    first (:mod:`edgerain.quant.fold`). Layers whose quantizers never run (their weights are used
    through a functional call, e.g. RN50's attention pool or the fused UpDW op) are switched off
    and listed in ``never_run``, so nothing uncalibrated reaches the export.
    """
    require_modelopt()
    import modelopt.torch.quantization as mtq

    settings = QuantSettings(method=method, percentile=percentile, placement=placement, entropy_stride=entropy_stride)
    excluded = list(exclude)
    modules = dict(model.named_modules())
    unknown = [e for e in excluded if e not in modules]
    if unknown:
        raise EdgerainError(f"cannot keep unknown layers in float: {', '.join(unknown)} (not modules of the network)")
    images = calib if isinstance(calib, list) else load_calibration_images(calib, calib_size, calib_limit)
    if not images:
        raise EdgerainError("no calibration images")
    qmodel = copy.deepcopy(model).eval()
    folded = fold_batchnorm(qmodel) if fold_bn else []
    with contextlib.redirect_stdout(io.StringIO()):  # ModelOpt prints "Inserted N quantizers"
        mtq.quantize(qmodel, modelopt_config(settings), forward_loop=None)
    qmodel.eval()  # quantize() can flip BatchNorm back to train mode
    calibrate(qmodel, images, settings, progress=progress)
    qmodel.eval()

    never_run = []
    for layer, qs in layer_quantizers(qmodel).items():
        inputs = [q for q in qs if q.is_enabled and q is getattr(_module(qmodel, layer), "input_quantizer", None)]
        if any(not _has_amax(q) for q in inputs) or all(not q.is_enabled for q in qs):
            never_run.append(layer)
            for q in qs:
                q.disable()
    layers = [name for name in layer_quantizers(qmodel) if name not in never_run]
    not_quantized = [e for e in excluded if e not in layers and e not in never_run]
    if not_quantized:
        raise EdgerainError(f"cannot keep in float what is not quantized: {', '.join(not_quantized)}")
    for layer in excluded:
        if layer in layers:
            set_layer_quantized(qmodel, layer, False)
    return QuantResult(qmodel, settings, layers, never_run, quantizer_counts(qmodel), len(images), folded)


def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model
