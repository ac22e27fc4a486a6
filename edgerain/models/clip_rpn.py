"""CLIP-RPN: a frozen CLIP routes each image to one rain-pattern expert (MODELS.md section 1)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.clip import FrozenCLIPImage, clip_image_size, create_clip, encode_prompts, resnet_widths
from edgerain.models.unet import RestormerLiteUNet, UNetConfig

DEFAULT_PROMPTS = (
    "a photo taken in light rain with sparse thin rain streaks",
    "a photo taken in moderate rain with dense rain streaks",
    "a photo taken in heavy rain with thick bright rain streaks and haze",
)


@dataclasses.dataclass
class ClipRPNConfig:
    clip_model: str = "RN50"
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    routing: str = "hard"  # "hard": top-1 expert; "soft": score-weighted mixture of all experts
    temperature: float = 100.0  # tau in softmax(tau * e @ t^T); CLIP's logit scale
    # "prompts": zero-shot scores against the prompt embeddings (pretrained CLIP); "linear": a linear
    # head on the image embedding fitted on labelled rain (a CLIP without pretrained weights);
    # "feature-stats": a linear head on the channel means and standard deviations of the tower's
    # spatial features at the image's own resolution (ResNet towers; see ClipRouter).
    router_head: str = "prompts"
    expert: UNetConfig = dataclasses.field(default_factory=UNetConfig)


@dataclasses.dataclass
class Routing:
    """Per-image routing decision: scores (B, K), chosen expert (B,), mixture weights (B, K)."""

    scores: Tensor
    expert: Tensor
    weights: Tensor

    @classmethod
    def forced(cls, expert: Tensor, num_experts: int, dtype: torch.dtype = torch.float32) -> Routing:
        """Every image of the batch to the given expert (B,): one-hot scores and weights."""
        onehot = F.one_hot(expert, num_experts).to(dtype)
        return cls(scores=onehot, expert=expert, weights=onehot)


ROUTER_HEADS = ("prompts", "linear", "feature-stats")
# Heads with fitted weights (installed by calibration), as opposed to the prompt embeddings.
FITTED_HEADS = ("linear", "feature-stats")


# The ResNet taps pool by 2 four times before layer3; a side under 16 pixels leaves nothing to pool.
FEATURE_STATS_MIN_SIDE = 16


def feature_stats(image: FrozenCLIPImage, x: Tensor) -> Tensor:
    """(B, 2 * sum(widths)): per channel, the spatial mean and standard deviation of each ResNet tap.

    The taps run at the image's own resolution (no resize), so a streak covers as many pixels as in
    the synthetic rain the head was fitted on, whatever the photo's size or aspect ratio. Population
    standard deviation (divide by N): defined for a 1x1 map, and a plain reduction in ONNX.
    """
    h, w = x.shape[-2:]
    if min(h, w) < FEATURE_STATS_MIN_SIDE:  # a Python check: traced away in the exported graph
        raise EdgerainError(
            f"the feature-stats router needs images of at least {FEATURE_STATS_MIN_SIDE}x{FEATURE_STATS_MIN_SIDE} "
            f"pixels (its deepest tap is 1/16 of the image); got {w}x{h}"
        )
    stats = []
    for tap in image.resnet_taps(x, upto=3):
        mean = tap.mean(dim=(2, 3))
        stats += [mean, (tap - mean[:, :, None, None]).square().mean(dim=(2, 3)).sqrt()]
    return torch.cat(stats, dim=1)


def feature_stats_dim(image: FrozenCLIPImage) -> int:
    """Length of :func:`feature_stats` for this tower (EdgerainError for a tower without ResNet taps)."""
    return 2 * sum(resnet_widths(image))


class ClipRouter(nn.Module):
    """Scores an image against K rain patterns from its CLIP image embedding ``e``.

    ``head="prompts"``: softmax(tau * e @ t^T) against K cached prompt embeddings, computed once
    from the CLIP text tower at build time and stored in the checkpoint, so a deployed router
    carries only the image tower (zero-shot CLIP-RPN). ``head="linear"``: softmax(W e + b), a linear
    head fitted on labelled synthetic rain (:func:`edgerain.train.loop.calibrate_router`), for a
    CLIP without pretrained weights, whose embeddings carry no meaning the prompts could match.
    """

    def __init__(
        self, image: FrozenCLIPImage, prompt_embeddings: Tensor, temperature: float, head: str = "prompts"
    ) -> None:
        super().__init__()
        if head not in ROUTER_HEADS:
            raise ValueError(f"router_head must be one of {ROUTER_HEADS}, got {head!r}")
        self.image = image
        self.prompt_embeddings = nn.Parameter(prompt_embeddings.clone(), requires_grad=False)
        self.temperature = temperature
        k, dim = prompt_embeddings.shape
        self.head: nn.Linear | None = None
        self.head_kind = head
        if head == "linear":
            self.set_linear_head(torch.zeros(k, dim), torch.zeros(k))
        elif head == "feature-stats":
            self.set_linear_head(torch.zeros(k, feature_stats_dim(image)), torch.zeros(k), kind=head)

    def set_linear_head(self, weight: Tensor, bias: Tensor, kind: str = "linear") -> None:
        """Install (or replace) a fitted head: weight (K, F), bias (K,); frozen like the tower.

        ``kind`` is what the head reads: "linear" the image embedding (F = E), "feature-stats" the
        pooled tap statistics (F = :func:`feature_stats_dim`).
        """
        if kind not in FITTED_HEADS:
            raise ValueError(f"a fitted head is one of {FITTED_HEADS}, got {kind!r}")
        want = self.prompt_embeddings.shape[1] if kind == "linear" else feature_stats_dim(self.image)
        if weight.shape[1] != want:
            raise ValueError(f"a {kind} head reads {want} features, got a weight of shape {tuple(weight.shape)}")
        head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        head.requires_grad_(False)
        self.head = head.to(self.prompt_embeddings.device)
        self.head_kind = kind

    def head_input(self, x: Tensor) -> Tensor:
        """What the fitted head reads for images ``x``: the embedding or the pooled tap statistics."""
        return feature_stats(self.image, x) if self.head_kind == "feature-stats" else self.image(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.head is not None:
            return torch.softmax(self.head(self.head_input(x)), dim=-1)
        e = self.image(x)
        t = F.normalize(self.prompt_embeddings, dim=-1)
        return torch.softmax(self.temperature * e @ t.t(), dim=-1)


class ClipRPN(DerainModel):
    pad_multiple = 8

    def __init__(self, cfg: ClipRPNConfig, pretrained: str | None = None, quiet_clip: bool = False) -> None:
        super().__init__()
        if cfg.routing not in ("hard", "soft"):
            raise ValueError(f"routing must be 'hard' or 'soft', got {cfg.routing!r}")
        self.config = cfg
        clip = create_clip(cfg.clip_model, pretrained, quiet=quiet_clip)
        prompts = encode_prompts(clip, cfg.clip_model, list(cfg.prompts))
        image = FrozenCLIPImage(clip.visual, clip_image_size(clip))
        self.router = ClipRouter(image, prompts, cfg.temperature, head=cfg.router_head)
        del clip  # the text tower is not deployed
        self.experts = nn.ModuleList(RestormerLiteUNet(cfg.expert) for _ in cfg.prompts)
        self.last_masks: list[Tensor] = []

    def set_router_head(self, weight: Tensor, bias: Tensor, kind: str | None = None) -> None:
        """Install a fitted routing head (K, F) + (K,) and record its kind in the config, so that a
        saved checkpoint rebuilds the same router. ``kind`` defaults to the installed head's kind
        ("linear" where the router still uses prompts)."""
        kind = kind or (self.router.head_kind if self.router.head is not None else "linear")
        self.router.set_linear_head(weight, bias, kind=kind)
        self.config.router_head = kind

    @property
    def min_side(self) -> int:
        # The check inside feature_stats is Python, traced away on export: bundles carry this instead.
        router = self.router
        return FEATURE_STATS_MIN_SIDE if router.head is not None and router.head_kind == "feature-stats" else 1

    def _expert_masks(self, index: int) -> list[Tensor]:
        expert: RestormerLiteUNet = self.experts[index]  # type: ignore[assignment]
        return expert.last_masks

    def route(self, x: Tensor) -> Routing:
        scores = self.router(x)
        expert = scores.argmax(dim=-1)
        if self.config.routing == "hard":
            weights = F.one_hot(expert, scores.shape[-1]).to(scores.dtype)
        else:
            weights = scores
        return Routing(scores=scores, expert=expert, weights=weights)

    def global_context(self, x: Tensor) -> Routing:
        return self.route(x)

    def run_expert(self, index: int, x: Tensor) -> Tensor:
        """One expert on a padded batch: input + residual (what an exported expert graph computes)."""
        return x + self.experts[index](x)

    def forward_padded(self, x: Tensor, context: Any = None) -> Tensor:
        routing: Routing = context if context is not None else self.route(x)
        if self.config.routing == "hard":
            out = torch.empty_like(x)
            masks: list[Tensor] = []
            for e in torch.unique(routing.expert).tolist():
                sel = routing.expert == e
                out[sel] = self.run_expert(e, x[sel])
                # Scatter each MGCA block's mask back to batch order, so losses line up with x.
                for j, m in enumerate(self._expert_masks(e)):
                    if len(masks) <= j:
                        masks.append(m.new_zeros((x.shape[0], *m.shape[1:])))
                    masks[j][sel] = m
            self.last_masks = masks
            return out
        out = torch.zeros_like(x)
        mixed: list[Tensor] = []
        for e in range(len(self.experts)):
            w = routing.weights[:, e, None, None, None]
            out = out + w * self.run_expert(e, x)
            for j, m in enumerate(self._expert_masks(e)):
                if len(mixed) <= j:
                    mixed.append(w * m)
                else:
                    mixed[j] = mixed[j] + w * m
        self.last_masks = mixed
        return out

    def forward_train(self, x: Tensor, expert: Tensor | None = None) -> dict[str, Any]:
        """Training forward; ``expert`` (B,) forces the routing (e.g. synthetic rain-pattern labels)."""
        routing = self.route(x)
        if expert is not None:
            routing = Routing(
                scores=routing.scores,
                expert=expert,
                weights=F.one_hot(expert, routing.scores.shape[-1]).to(routing.scores.dtype),
            )
        out = self(x, routing)
        return {"out": out, "masks": list(self.last_masks), "routing": routing}
