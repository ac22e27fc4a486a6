"""Checkpoints: safetensors with the model name, config and provenance in the metadata.

Loading never executes code: safetensors holds tensors only, and the config is JSON.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.registry import build_model, config_from_dict, get_entry
from edgerain.utils import atomic_path

FORMAT_VERSION = "1"
CHECKPOINT_FORMAT = "edgerain-checkpoint"


def write_model_file(
    model: DerainModel, path: str | os.PathLike[str], file_format: str, extra: dict[str, str] | None = None
) -> Path:
    """Write ``model``'s tensors to safetensors atomically, with the network name and config as metadata.

    ``file_format`` tags what the file is (a plain checkpoint, a quantized model, ...); ``extra``
    adds string metadata (JSON-encoded by the caller).
    """
    if not model.registry_name:
        raise EdgerainError("model has no registry name; build it with edgerain.models.build_model")
    meta = {
        "format": file_format,
        "format_version": FORMAT_VERSION,
        "model": model.registry_name,
        "family": get_entry(model.registry_name).family,
        "config": json.dumps(model.config_dict()),
        **(extra or {}),
    }
    # Tied or shared tensors would make safetensors refuse; clone to contiguous storage.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_model_file_metadata(path: str | os.PathLike[str], file_format: str, what: str) -> dict[str, str]:
    """The raw metadata of a file written by :func:`write_model_file`, checked to be ``file_format``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise EdgerainError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise EdgerainError(f"{path} is not a readable safetensors {what} ({exc})") from None
    if meta.get("format") != file_format:
        raise EdgerainError(f"{path} is a safetensors file but not an edgerain {what} (format {meta.get('format')!r})")
    return dict(meta)


def save_checkpoint(model: DerainModel, path: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically. ``provenance`` (data, recipe, metrics...) is kept as JSON."""
    return write_model_file(model, path, CHECKPOINT_FORMAT, {"provenance": json.dumps(provenance or {})})


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    out: dict[str, Any] = read_model_file_metadata(path, CHECKPOINT_FORMAT, "checkpoint")
    out["config"] = json.loads(out["config"])
    out["provenance"] = json.loads(out.get("provenance", "{}"))
    return out


def load_checkpoint(path: str | os.PathLike[str], expect_model: str | None = None) -> DerainModel:
    """Build the network the checkpoint names and load its weights (strictly)."""
    meta = read_metadata(path)
    name = meta["model"]
    if expect_model is not None and get_entry(expect_model).family != meta["family"]:
        raise EdgerainError(f"{path} holds a '{name}' checkpoint, not '{expect_model}'")
    cfg = config_from_dict(meta["family"], meta["config"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CLIP weights come from the checkpoint itself
        model = build_model(name, config=cfg, quiet_clip=True)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise EdgerainError(f"{path} is corrupt ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise EdgerainError(f"{path} does not match the '{name}' network: {first}") from None
    model.provenance = meta["provenance"]  # type: ignore[assignment]
    return model.eval()


def state_dicts_equal(a: DerainModel, b: DerainModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
