"""Save and restore quantized networks without pickle.

ModelOpt's ``mto.save``/``mto.restore`` write one ``torch.save`` pickle (model state dict plus the
ModelOpt state), and restoring it means unpickling. edgerain keeps ModelOpt's own restore path
(``mto.modelopt_state`` -> ``mto.restore_from_modelopt_state``) but stores it as data:

* the tensors (weights, biases and every quantizer's ``_amax``) in a safetensors file;
* the ModelOpt state (quantizer configuration and per-quantizer attributes) as JSON in the
  safetensors metadata, with ``torch.dtype`` values and tuples tagged so they round-trip exactly;
* the edgerain network name and config, as in a float checkpoint.

Loading builds the float network from the config, applies ModelOpt's restore, then loads the
tensors strictly: no code from the file is executed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel

FORMAT = "edgerain-quantized"


def _encode(obj: Any) -> Any:
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"ModelOpt state has non-string keys: {list(obj)[:3]}")
        return {k: _encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in the ModelOpt state as JSON")


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__dtype__"}:
            dtype = getattr(torch, str(obj["__dtype__"]), None)
            if not isinstance(dtype, torch.dtype):
                raise EdgerainError(f"unknown tensor dtype {obj['__dtype__']!r} in a quantized checkpoint")
            return dtype
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v) for v in obj["__tuple__"])
        return {k: _decode(v) for k, v in obj.items()}
    return obj


def save_quantized(
    model: DerainModel,
    path: str | os.PathLike[str],
    provenance: dict[str, Any] | None = None,
    folded_batchnorm: list[str] | None = None,
) -> Path:
    """Write a fake-quantized network (weights, scales, ModelOpt state) atomically to ``path``.

    ``folded_batchnorm`` (``QuantResult.folded_batchnorm``) is recorded so loading folds the same
    BatchNorms of the freshly built network before restoring.
    """
    import modelopt
    import modelopt.torch.opt as mto

    from edgerain.models.checkpoint import write_model_file

    extra = {
        "modelopt_version": modelopt.__version__,
        "modelopt_state": json.dumps(_encode(mto.modelopt_state(model))),
        "folded_batchnorm": json.dumps(list(folded_batchnorm or [])),
        "provenance": json.dumps(provenance or {}),
    }
    return write_model_file(model, path, FORMAT, extra)


def read_quantized_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    from edgerain.models.checkpoint import read_model_file_metadata

    meta = read_model_file_metadata(path, FORMAT, "quantized model")
    out: dict[str, Any] = dict(meta)
    for key in ("config", "provenance", "modelopt_state"):
        out[key] = json.loads(meta.get(key, "{}"))
    out["folded_batchnorm"] = json.loads(meta.get("folded_batchnorm", "[]"))
    return out


def load_quantized(path: str | os.PathLike[str]) -> DerainModel:
    """Rebuild a quantized network saved by :func:`save_quantized` (eval mode, fake-quant)."""
    from edgerain.models.registry import build_model, config_from_dict
    from edgerain.quant.calibrate import require_modelopt
    from edgerain.quant.fold import fold_batchnorm

    require_modelopt()
    import modelopt.torch.opt as mto

    meta = read_quantized_metadata(path)
    cfg = config_from_dict(meta["family"], meta["config"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CLIP weights come from the file itself
        model = build_model(meta["model"], config=cfg, quiet_clip=True)
    if meta["folded_batchnorm"]:
        folded = fold_batchnorm(model)
        if sorted(folded) != sorted(meta["folded_batchnorm"]):
            raise EdgerainError(f"{path}: its folded BatchNorm layers do not match the '{meta['model']}' network")
    with warnings.catch_warnings():
        # Quantizers without buffers (never-run, disabled) make ModelOpt guess the device: CPU is right.
        warnings.filterwarnings("ignore", message="Could not identify the device")
        model = mto.restore_from_modelopt_state(model, _decode(meta["modelopt_state"]))
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise EdgerainError(f"{path} is corrupt ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EdgerainError(
            f"{path} does not match the '{meta['model']}' network: {str(exc).splitlines()[0]}"
        ) from None
    model.provenance = meta["provenance"]  # type: ignore[assignment]
    return model.eval()
