"""CLIP through open_clip: loading (hub tag, local file or folder, or random), freezing, prompts.

No weights are ever downloaded silently in tests: hub tags fail at once when the hub is out of
reach, with a message that says how to supply the weights locally.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain.errors import EdgerainError

log = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).parent / "clip_configs"
# open_clip's ImageNet-CLIP normalisation (OPENAI_DATASET_MEAN / STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_registered = False


def _open_clip() -> Any:
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True
    return open_clip


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


class UntrainedCLIPWarning(UserWarning):
    """CLIP was built with random weights: its embeddings carry no meaning."""


def create_clip(model_name: str, pretrained: str | None, *, quiet: bool = False) -> Any:
    """Build an open_clip model.

    ``pretrained`` is ``None`` (random weights, with a loud warning unless ``quiet``, e.g. when a
    checkpoint with the weights is about to be loaded), a hub tag such as ``'openai'``, a
    ``.pt``/``.bin``/``.safetensors`` file, or a folder with ``open_clip_config.json`` and
    ``open_clip_model.safetensors``.
    """
    oc = _open_clip()
    if model_name not in oc.list_models():
        raise EdgerainError(
            f"unknown CLIP model '{model_name}'; choose one of open_clip.list_models() "
            f"(e.g. RN50, ViT-B-32) or edgerain-tiny-rn"
        )
    if pretrained is None:
        if not quiet:
            warnings.warn(
                f"CLIP '{model_name}' is randomly initialised (no pretrained weights given): its "
                "routing and prior carry no meaning until trained or calibrated",
                UntrainedCLIPWarning,
                stacklevel=2,
            )
        # open_clip logs its own "initialized randomly" line; our warning above already says it.
        open_clip_log = logging.getLogger()
        previous = open_clip_log.level
        open_clip_log.setLevel(logging.ERROR)
        try:
            return oc.create_model(model_name, pretrained=None)
        finally:
            open_clip_log.setLevel(previous)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        cfg_file, weights = path / "open_clip_config.json", path / "open_clip_model.safetensors"
        if not weights.is_file():
            raise EdgerainError(f"CLIP folder {path} has no open_clip_model.safetensors")
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text()).get("model_cfg")
            if cfg and model_name not in oc.list_models():
                raise EdgerainError(f"CLIP folder {path} does not describe model '{model_name}'")
        pretrained = str(weights)
        path = weights
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or path.exists():
        if not path.is_file():
            raise EdgerainError(f"CLIP weights file {path} does not exist")
        try:
            return oc.create_model(model_name, pretrained=str(path), weights_only=True)
        except Exception as exc:  # corrupt or mismatched file: one clear line
            raise EdgerainError(f"could not load CLIP weights from {path}: {exc}") from None
    if pretrained not in oc.list_pretrained_tags_by_model(model_name):
        raise EdgerainError(
            f"'{pretrained}' is neither a file nor a pretrained tag of {model_name} "
            f"(tags: {', '.join(oc.list_pretrained_tags_by_model(model_name)) or 'none'})"
        )
    if not _hub_reachable():
        raise EdgerainError(
            f"CLIP weights '{model_name}/{pretrained}' must come from the model hub, which is out of "
            "reach here; download them on a connected machine (open_clip.create_model"
            f"('{model_name}', pretrained='{pretrained}') caches them) and pass the file or folder "
            "with --clip-weights PATH"
        )
    return oc.create_model(model_name, pretrained=pretrained)


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class FrozenCLIPImage(nn.Module):
    """The CLIP image tower, frozen, fed at its native size.

    Takes RGB in [0, 1] of any size; resizes (bilinear) to the tower's input size and normalises.
    It stays in eval mode whatever mode its parent is put in, so BatchNorm statistics never drift.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, visual: nn.Module, image_size: int) -> None:
        super().__init__()
        self.visual = freeze(visual)
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FrozenCLIPImage:
        super().train(False)
        return self

    def normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def resize(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        """L2-normalised image embedding (B, E)."""
        return F.normalize(self.visual(self.normalise(self.resize(x))), dim=-1)

    def resnet_taps(self, x: Tensor, upto: int = 3) -> list[Tensor]:
        """Spatial features of a ModifiedResNet at full input resolution (no resize).

        Returns [stem (H/2), layer1 (H/4), layer2 (H/8), layer3 (H/16)][: upto + 1].
        """
        v: Any = self.visual
        if not hasattr(v, "layer1"):
            raise EdgerainError("spatial CLIP features need a ResNet CLIP tower (e.g. RN50)")
        x = self.normalise(x)
        x = v.act1(v.bn1(v.conv1(x)))
        x = v.act2(v.bn2(v.conv2(x)))
        stem = v.act3(v.bn3(v.conv3(x)))
        taps = [stem]
        x = v.avgpool(stem)
        for layer in (v.layer1, v.layer2, v.layer3)[:upto]:
            x = layer(x)
            taps.append(x)
        return taps


def clip_image_size(clip_model: Any) -> int:
    size = getattr(clip_model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def resnet_widths(clip_model: Any) -> list[int]:
    """Channel widths of stem/layer1/layer2/layer3 of a ModifiedResNet tower."""
    v = clip_model.visual
    if not hasattr(v, "layer1"):
        raise EdgerainError("this network needs a ResNet CLIP tower (e.g. RN50)")
    width = v.conv3.out_channels
    return [width, width * 4, width * 8, width * 16]


@torch.no_grad()
def encode_prompts(clip_model: Any, model_name: str, prompts: list[str]) -> Tensor:
    """L2-normalised text embeddings (K, E) of the prompts."""
    tokenizer = _open_clip().get_tokenizer(model_name)
    was_training = clip_model.training
    clip_model.eval()
    emb = clip_model.encode_text(tokenizer(prompts))
    clip_model.train(was_training)
    return F.normalize(emb.float(), dim=-1)
