"""Routing CLIP-RPN without pretrained CLIP: fit the router on labelled synthetic rain.

A pretrained CLIP routes zero-shot through its text prompts. A randomly initialised one cannot, so
the router is fitted on synthetic rain whose class the synthesiser knows, in one of two ways:

- :func:`calibrate_router` keeps the image tower as it is and fits a linear head on its embeddings
  (cheap; runs at the start of every ``edgerain train`` run of CLIP-RPN);
- :func:`train_router` also trains the image tower as a rain-class classifier (``edgerain
  calibrate-router``). Its loss adds the expected *regret* of a routing decision, the Y-PSNR the
  experts lose on held-out synthetic pairs of each class when routed to each other expert, so
  that the cheap mistakes (light rain to the moderate expert) are preferred to the costly ones
  (light rain to the heavy expert, which over-smooths).

Both install the result as the router's linear head (``router_head: "linear"``), which the export
writes into the router graph; nothing else in the network changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgerain.errors import EdgerainError
from edgerain.train.data import VIEW_SIZES, TrainSource, synth_view


def _synth_of(source: TrainSource) -> Any:
    synth = getattr(source, "synth", None)
    if synth is None:
        raise EdgerainError("router calibration needs synthetic data (--data synth) that knows its rain classes")
    return synth


def labelled_views(synth: Any, seed: int, per_class: int, classes: int) -> Iterator[tuple[int, Tensor]]:
    """(class index, rainy view (1, 3, H, W)) for ``per_class`` synthetic views of each of the first
    ``classes`` rain classes; sizes and views cycle through :data:`VIEW_SIZES` x 3 aspects."""
    from edgerain.data.streaks import RAIN_CLASSES

    for k, cls in enumerate(RAIN_CLASSES[:classes]):
        for i in range(per_class):
            size, kind = VIEW_SIZES[i % len(VIEW_SIZES)], (i // len(VIEW_SIZES)) % 3
            view, _ = synth_view(synth, seed, k * 1_000_000 + i, size, kind, cls)
            yield k, torch.from_numpy(view).permute(2, 0, 1).unsqueeze(0)


@torch.no_grad()
def router_pool(model: Any, source: TrainSource, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """``per_class`` synthetic rainy images of each class, as the router sees them.

    Returns (images (N, 3, S, S) float16 already resized by the tower to its input size S, labels
    (N,)). Deterministic in ``seed``; sizes and views cycle through :data:`VIEW_SIZES` x 3 aspects.
    """
    from edgerain.data.streaks import RAIN_CLASSES

    synth = _synth_of(source)
    tower = model.router.image
    images, labels = [], []
    for k, x in labelled_views(synth, seed, per_class, len(RAIN_CLASSES)):
        images.append(tower.resize(x)[0].half())
        labels.append(k)
    return torch.stack(images), torch.tensor(labels)


@torch.no_grad()
def forced_expert_psnr(model: Any, rainy: np.ndarray, clean: np.ndarray) -> list[float]:
    """Y-PSNR of each expert alone on one pair (H, W, 3 in [0, 1]), output saved as 8 bits."""
    from edgerain.data.io import quantize_8bit
    from edgerain.eval.metrics import psnr
    from edgerain.models.clip_rpn import Routing

    x = torch.from_numpy(rainy).permute(2, 0, 1).unsqueeze(0)
    k_experts = len(model.experts)
    return [
        psnr(quantize_8bit(model(x, Routing.forced(torch.tensor([k]), k_experts))), clean) for k in range(k_experts)
    ]


@torch.no_grad()
def measure_regret(model: Any, source: TrainSource, per_class: int, seed: int, size: int = 192) -> Tensor:
    """(K, K) mean Y-PSNR (dB) lost by sending a pair of class c to expert k instead of expert c.

    Measured by running every expert on ``per_class`` held-out synthetic pairs of each class;
    negative entries (another expert did better on average) are clipped to zero.
    """
    from edgerain.data.streaks import RAIN_CLASSES

    synth = _synth_of(source)
    k_experts = len(model.experts)
    lost = torch.zeros(k_experts, k_experts, dtype=torch.float64)
    for c, cls in enumerate(RAIN_CLASSES[:k_experts]):
        for i in range(per_class):
            rainy, clean, _ = synth.pair(seed, c * 1_000_000 + i, size, rain_class=cls)
            scores = forced_expert_psnr(model, rainy, clean)
            lost[c] += torch.tensor([scores[c] - s for s in scores], dtype=torch.float64)
    return (lost / max(per_class, 1)).clamp_min(0.0).float()


def fit_logistic_head(feats: Tensor, labels: Tensor, k: int, l2: float) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression (L-BFGS, L2 penalty ``l2``) on standardised features (N, F),
    folded back into one linear layer on the raw features: weight (K, F), bias (K,), float64."""
    x = feats.double()
    mu, sd = x.mean(0), x.std(0) + 1e-12
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, labels) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        return (w / sd[:, None]).t(), b - (mu / sd) @ w  # W z + b with z = (x - mu) / sd


def calibrate_router(model: Any, source: TrainSource, per_class: int, seed: int, l2: float = 1e-3) -> dict[str, Any]:
    """Fit a linear routing head for CLIP-RPN on synthetic rain-class labels (a CLIP without pretrained weights).

    The frozen image tower embeds ``per_class`` synthetic images of each class (the synthesiser
    knows the class it drew); a multinomial logistic regression on the standardised embeddings
    (L-BFGS, L2 penalty ``l2``) is then folded into one linear layer, ``softmax(W e + b)``, and
    installed as the router's head (``router_head="linear"``). A quarter of the images is held out
    to report accuracy.

    Why standardise: an untrained tower maps every image to nearly one direction (cosine ~0.9999),
    so what separates the classes lives in small deviations whose scales differ by orders of
    magnitude across dimensions; fitting raw embeddings (as zero-shot prompts would be) converges
    to a far worse boundary.
    """
    from edgerain.data.streaks import RAIN_CLASSES

    size = 2 * model.router.image.image_size
    synth = _synth_of(source)
    # The tower runs where the model is (a GPU during GPU training); the fit runs in float64 on the CPU.
    device = model.router.prompt_embeddings.device
    feats, labels = [], []
    with torch.no_grad():
        for k, cls in enumerate(RAIN_CLASSES):
            for i in range(per_class):
                rainy, _, _ = synth.pair(seed + 7919, k * 1_000_000 + i, size, rain_class=cls)
                x = torch.from_numpy(rainy).permute(2, 0, 1).unsqueeze(0).to(device)
                feats.append(model.router.image(x).float().cpu())
                labels.append(k)
    e = torch.cat(feats).double()
    y = torch.tensor(labels)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    n_val = len(y) // 4
    val, tr = perm[:n_val], perm[n_val:]
    weight, bias = fit_logistic_head(e[tr], y[tr], len(RAIN_CLASSES), l2)
    with torch.no_grad():
        model.set_router_head(weight.float(), bias.float(), kind="linear")
        pred = model.router.head(e.float().to(device)).argmax(-1).cpu()
        acc_tr = float((pred[tr] == y[tr]).float().mean())
        acc_val = float((pred[val] == y[val]).float().mean())
    return {
        "calibrated": True,
        "method": "linear head fitted by logistic regression on standardised frozen-CLIP embeddings of labelled "
        "synthetic rain",
        "images_per_class": per_class,
        "image_size": size,
        "train_accuracy": round(acc_tr, 4),
        "heldout_accuracy": round(acc_val, 4),
    }


# What `edgerain calibrate-router --head` fits: "embedding" trains the tower with a linear head on its
# embedding (train_router); "feature-stats" keeps the tower and fits a head on its pooled spatial
# features (fit_feature_stats_head).
ROUTER_FITS = ("embedding", "feature-stats")
# L2 penalty of the feature-statistics head. On 210 held-out synthetic pairs of the stage-18 default
# (bench/results/router_heads_default.json) 1e-3, 1e-2 and 1e-1 were within 0.06 dB of each other and
# ranked differently with 300 and 1000 views per class: the middle one is kept.
FEATURE_STATS_L2 = 1e-2


@torch.no_grad()
def feature_stats_pool(model: Any, synth: Any, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """Feature statistics (N, F) and class labels (N,) of ``per_class`` synthetic views of each class,
    cycling through :data:`VIEW_SIZES` x square/landscape/portrait as :func:`router_pool` does."""
    from edgerain.models.clip_rpn import feature_stats

    device = model.router.prompt_embeddings.device
    feats, labels = [], []
    for k, x in labelled_views(synth, seed, per_class, len(model.experts)):
        feats.append(feature_stats(model.router.image, x.to(device)).double().cpu())
        labels.append(k)
    return torch.cat(feats), torch.tensor(labels)


def fit_feature_stats_head(
    model: Any, source: TrainSource, *, per_class: int, seed: int, l2: float = FEATURE_STATS_L2, log: Any = None
) -> dict[str, Any]:
    """Route on texture statistics: keep the router's tower and fit a ``feature-stats`` head.

    Each synthetic view (sizes :data:`VIEW_SIZES`, square and oblong, the class the synthesiser
    drew) goes through the tower's ResNet taps at its own resolution; the channel means and
    standard deviations (:func:`edgerain.models.clip_rpn.feature_stats`) feed a multinomial
    logistic regression (:func:`fit_logistic_head`), installed as the router's head. Accuracy is
    reported on a fifth as many views per class from another seed, for this head and for the head
    it replaces. Only the head changes; the tower and the experts are kept.
    """
    from edgerain.models.clip_rpn import feature_stats_dim

    if per_class < 2:
        raise EdgerainError("fitting a routing head needs at least 2 images per class")
    feature_stats_dim(model.router.image)  # a ResNet tower, or a clear error before any work
    say = log or (lambda _msg: None)
    t0 = time.monotonic()
    synth = _synth_of(source)
    model.eval()
    train_x, train_y = feature_stats_pool(model, synth, per_class, seed)
    val_n = max(per_class // 5, 1)
    device = model.router.prompt_embeddings.device
    say(f"feature statistics of {len(train_y)} training views ({time.monotonic() - t0:.0f} s)")

    def heldout_accuracy() -> float | None:
        if model.router.head is None:
            return None
        with torch.no_grad():
            right = [
                int(model.router(x.to(device)).argmax(-1)) == k
                for k, x in labelled_views(synth, seed + 1, val_n, len(model.experts))
            ]
        return round(float(np.mean(right)), 4)

    before = heldout_accuracy()
    weight, bias = fit_logistic_head(train_x, train_y, len(model.experts), l2)
    with torch.no_grad():
        model.set_router_head(weight.float(), bias.float(), kind="feature-stats")
    after = heldout_accuracy()
    with torch.no_grad():
        fitted = model.router.head(train_x.float().to(device)).argmax(-1).cpu()
    train_acc = float((fitted == train_y).float().mean())
    say(f"feature-stats head: held-out accuracy {after} (was {before}) ({time.monotonic() - t0:.0f} s)")
    return {
        "calibrated": True,
        "method": "linear head fitted by logistic regression on the channel means and standard deviations of the "
        "CLIP tower's spatial features at the image's own resolution, on labelled synthetic rain",
        "head": "feature-stats",
        "features": int(train_x.shape[1]),
        "images_per_class": per_class,
        "view_sizes": list(VIEW_SIZES),
        "l2": l2,
        "seed": seed,
        "train_accuracy": round(train_acc, 4),
        "heldout_accuracy": after,
        "heldout_accuracy_before": before,
        "seconds": round(time.monotonic() - t0),
    }


# Decision offsets are searched on this grid (log-probability units), one per class but the first.
OFFSET_STEP = 0.25
OFFSET_SPAN = 4.0
# Pairs per class for the offsets: with 100, offsets fitted on half the pairs of the bundled default
# lost 0.05 dB on the other half; with 300 the cross-validated gain was stable.
DEFAULT_OFFSETS_PER_CLASS = 300


def _pair_regret(log_p: np.ndarray, psnr: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(M, N) Y-PSNR lost (dB) against each pair's best expert, for each row of ``offsets`` (M, K).

    ``log_p`` (N, K) are the router's log-probabilities, ``psnr`` (N, K) every expert's Y-PSNR.
    """
    picks = (log_p[None] + offsets[:, None]).argmax(-1)
    chosen = np.take_along_axis(np.broadcast_to(psnr, (len(offsets), *psnr.shape)), picks[..., None], 2)[..., 0]
    return psnr.max(1)[None] - chosen


def best_offsets(log_p: np.ndarray, psnr: np.ndarray) -> np.ndarray:
    """Per-class offsets (K,), first entry 0, for the router's log-probabilities: the smallest that lose little.

    Exhaustive over the grid (``OFFSET_SPAN`` / ``OFFSET_STEP``). The mean loss of a decision rule
    is a step function, noisy with a few hundred pairs, so the smallest offsets (L1) whose mean
    loss is within one standard error of the minimum win (the one-standard-error rule): a pool
    that cannot tell offsets apart leaves the router as it was.
    """
    k = log_p.shape[1]
    if k > 4:
        raise EdgerainError(f"decision offsets are searched exhaustively, for at most 4 experts (this router has {k})")
    axis = np.arange(-OFFSET_SPAN, OFFSET_SPAN + OFFSET_STEP / 2, OFFSET_STEP)
    grid = np.stack(np.meshgrid(*([axis] * (k - 1)), indexing="ij"), -1).reshape(-1, k - 1)
    grid = np.concatenate([np.zeros((len(grid), 1)), grid], 1)
    lost = _pair_regret(log_p, psnr, grid)
    mean = lost.mean(1)
    best = int(mean.argmin())
    tolerance = lost[best].std(ddof=1) / np.sqrt(lost.shape[1]) if lost.shape[1] > 1 else 0.0
    near = np.flatnonzero(mean <= mean[best] + tolerance + 1e-9)
    return grid[near[np.lexsort((mean[near], np.abs(grid[near]).sum(1)))[0]]]


def _routing_summary(log_p: np.ndarray, psnr: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    picks = (log_p + offsets).argmax(-1)
    return {
        "pairs": len(psnr),
        "routed_psnr_y": round(float(psnr[np.arange(len(psnr)), picks].mean()), 4),
        "oracle_psnr_y": round(float(psnr.max(1).mean()), 4),
        "routing_counts": np.bincount(picks, minlength=psnr.shape[1]).tolist(),
    }


def fit_router_offsets(
    model: Any, source: TrainSource, *, per_class: int, seed: int, log: Any = None
) -> dict[str, Any]:
    """Shift the routing decision towards the expert that serves each image best; install it in the head.

    Class labels are a proxy: what routing should maximise is the PSNR of the expert it picks.
    Where classes overlap (light and moderate rain do, by construction), which mistake is cheap
    depends on the experts as they are now, so this runs after the last change to the experts:
    every expert is run on ``per_class`` synthetic pairs of each class (sizes 256-384, square and
    oblong), and per-class offsets added to the router's log-probabilities are chosen by
    :func:`best_offsets`. They are folded into the linear head's bias (softmax is unchanged by
    adding a constant), so the exported router graph needs nothing new. What the procedure gains
    is reported by two-fold cross-validation (offsets fitted on alternate pairs, scored on the
    others), next to the in-sample numbers of the offsets installed (fitted on all pairs).
    """
    from edgerain.data.streaks import RAIN_CLASSES

    if model.router.head is None:
        raise EdgerainError(
            "decision offsets need a fitted linear routing head (edgerain calibrate-router); this router uses prompts"
        )
    if model.config.routing != "hard":
        raise EdgerainError(f"decision offsets apply to hard routing; this model routes '{model.config.routing}'")
    if per_class < 2:
        raise EdgerainError("fitting decision offsets needs at least 2 pairs per class")
    say = log or (lambda _msg: None)
    t0 = time.monotonic()
    synth = _synth_of(source)
    k_experts = len(model.experts)
    model.eval()
    log_p, psnr = [], []
    with torch.no_grad():
        for c, cls in enumerate(RAIN_CLASSES[:k_experts]):
            for i in range(per_class):
                rainy, clean = synth_view(synth, seed, c * 1_000_000 + i, (256, 320, 384)[i % 3], (i // 3) % 3, cls)
                x = torch.from_numpy(rainy).permute(2, 0, 1).unsqueeze(0)
                log_p.append(torch.log(model.router(x)[0].double().clamp_min(1e-12)).numpy())
                psnr.append(forced_expert_psnr(model, rainy, clean))
            say(f"offsets: ran every expert on {per_class} {cls} pairs ({time.monotonic() - t0:.0f} s)")
    lp, ps = np.stack(log_p), np.array(psnr, dtype=np.float64)
    zero = np.zeros(k_experts)
    offsets = best_offsets(lp, ps)
    # Alternate pairs: both folds hold every class, size and view.
    folds = [np.arange(len(ps)) % 2 == f for f in (0, 1)]
    fold_offsets = [best_offsets(lp[~fold], ps[~fold]) for fold in folds]

    def pooled(offs: list[np.ndarray]) -> dict[str, Any]:
        routed = np.concatenate(
            [ps[f][np.arange(f.sum()), (lp[f] + o).argmax(-1)] for f, o in zip(folds, offs, strict=True)]
        )
        return {"routed_psnr_y": round(float(routed.mean()), 4)}

    info = {
        "method": "per-class offsets on the router's log-probabilities: the smallest within one standard error of "
        "the least PSNR lost to the best expert, on synthetic pairs on which every expert was run",
        "offsets": [round(float(v), 4) for v in offsets],
        "pairs_per_class": per_class,
        "seed": seed,
        "in_sample": {"before": _routing_summary(lp, ps, zero), "after": _routing_summary(lp, ps, offsets)},
        "cross_validated": {
            "folds": 2,
            "fold_offsets": [[round(float(v), 4) for v in o] for o in fold_offsets],
            "before": pooled([zero, zero]),
            "after": pooled(fold_offsets),
            "oracle_psnr_y": round(float(ps.max(1).mean()), 4),
        },
        "seconds": round(time.monotonic() - t0),
    }
    with torch.no_grad():
        head = model.router.head
        model.set_router_head(head.weight.clone(), head.bias + torch.as_tensor(offsets, dtype=head.bias.dtype))
    return info


@torch.no_grad()
def _route_stats(model: Any, images: Tensor, labels: Tensor, regret: Tensor) -> dict[str, Any]:
    """Accuracy, confusion and mean regret (dB) of the model's current router on a pool."""
    k = regret.shape[0]
    picks = torch.cat([model.router(images[i : i + 128].float()).argmax(-1) for i in range(0, len(labels), 128)])
    confusion = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(labels.tolist(), picks.tolist(), strict=True):
        confusion[t, p] += 1
    return {
        "accuracy": round(float((picks == labels).float().mean()), 4),
        "mean_regret_db": round(float(regret[labels, picks].mean()), 4),
        "confusion": confusion.tolist(),
    }


def train_router(
    model: Any,
    source: TrainSource,
    *,
    steps: int,
    per_class: int,
    seed: int,
    batch: int = 64,
    lr: float = 1e-3,
    regret_weight: float = 0.2,
    regret_per_class: int = 24,
    log: Any = None,
) -> dict[str, Any]:
    """Train the router's image tower and a linear head on labelled synthetic rain; install the head.

    Loss per image of class c: cross-entropy + ``regret_weight`` * sum_k p_k * regret[c, k], with
    ``regret`` from :func:`measure_regret` (dB). AdamW with cosine decay, random horizontal flips,
    BatchNorm statistics updated while training and frozen again afterwards. A fifth as many
    images per class, from another seed, are held out to report accuracy and regret before and after.
    ``log`` (optional) is called with one line of progress now and then.
    """
    if getattr(model, "provenance", {}).get("clip_pretrained"):
        raise EdgerainError(
            "this router has pretrained CLIP weights and routes zero-shot: training it would overwrite them"
        )
    if steps < 1 or per_class < 1:
        raise EdgerainError("router training needs --steps and --per-class of at least 1")
    say = log or (lambda _msg: None)
    t0 = time.monotonic()
    model.eval()
    regret = measure_regret(model, source, regret_per_class, seed + 104_729)
    say(f"regret (dB lost, rows = rain class, columns = expert): {regret.numpy().round(2).tolist()}")
    train_x, train_y = router_pool(model, source, per_class, seed)
    val_x, val_y = router_pool(model, source, max(per_class // 5, 1), seed + 1)
    before = _route_stats(model, val_x, val_y, regret) if model.router.head is not None else None
    say(f"pools: {len(train_y)} training, {len(val_y)} held-out images ({time.monotonic() - t0:.0f} s)")

    tower = model.router.image
    visual: nn.Module = tower.visual
    embed_dim = int(model.router.prompt_embeddings.shape[1])
    with torch.random.fork_rng():  # the head's initialisation follows ``seed``, not the global RNG
        torch.manual_seed(seed)
        head = nn.Linear(embed_dim, regret.shape[0])
    # The embedding is L2-normalised: a learned scale gives the logits a usable range.
    scale = nn.Parameter(torch.tensor(10.0))
    for p in visual.parameters():
        p.requires_grad_(True)
    params = [*visual.parameters(), *head.parameters(), scale]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    visual.train()  # the FrozenCLIPImage wrapper pins eval mode; the tower inside trains
    try:
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
            idx = torch.randint(0, len(train_y), (batch,), generator=g)
            x = train_x[idx].float()
            flip = torch.rand(batch, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = train_y[idx]
            logits = scale * head(F.normalize(visual(tower.normalise(x)), dim=-1))
            expected_regret = (logits.softmax(-1) * regret[y]).sum(-1).mean()
            loss = F.cross_entropy(logits, y) + regret_weight * expected_regret
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % max(steps // 10, 1) == 0:
                say(f"router step {step + 1}/{steps}: loss {loss.item():.4f} ({time.monotonic() - t0:.0f} s)")
    finally:
        visual.eval()
        for p in visual.parameters():
            p.requires_grad_(False)
    with torch.no_grad():
        model.set_router_head(head.weight * scale, head.bias, kind="linear")
    after = _route_stats(model, val_x, val_y, regret)
    return {
        "calibrated": True,
        "method": "CLIP image tower trained with a linear head on labelled synthetic rain (cross-entropy + "
        "expected routing regret)",
        "tower_trained": True,
        "images_per_class": per_class,
        "view_sizes": list(VIEW_SIZES),
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "regret_weight": regret_weight,
        "regret_db": regret.numpy().round(3).tolist(),
        "seed": seed,
        "heldout_accuracy": after["accuracy"],
        "heldout": after,
        "heldout_before": before,
        "seconds": round(time.monotonic() - t0),
    }


def train_router_checkpoint(
    weights: str | Path,
    out: str | Path,
    *,
    data: str = "synth",
    procedural_rain: float = 0.5,
    crossing_rain: float = 0.0,
    noise_rain: float = 0.0,
    noise_heavy: float = 0.0,
    steps: int = 1500,
    per_class: int = 1500,
    seed: int = 31337,
    regret_weight: float = 0.2,
    regret_per_class: int = 24,
    offsets_per_class: int = DEFAULT_OFFSETS_PER_CLASS,
    offsets_only: bool = False,
    router_from: str | Path | None = None,
    head: str = "embedding",
    threads: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """``edgerain calibrate-router``: :func:`train_router` on a CLIP-RPN checkpoint, written to ``out``.

    ``head="feature-stats"`` keeps the tower and fits :func:`fit_feature_stats_head` instead
    (``per_class`` views per class; ``steps`` and the regret options are the tower's and unused).

    Then, with ``offsets_per_class`` > 0, :func:`fit_router_offsets` on that many pairs per class;
    ``offsets_only`` keeps the checkpoint's tower and head and fits the offsets alone (after the
    experts have been trained further). ``router_from`` names another checkpoint of the same network
    whose router (tower, head and record) replaces this one's before the offsets are fitted, so a
    router trained while the experts trained further joins the final experts without retraining.
    Only the router changes; the experts are the checkpoint's. The provenance keeps the rest of the
    checkpoint's record, replaces ``router`` and adds ``router_trained_from`` (file, sha256) when the
    tower was trained.
    """
    from edgerain.models.checkpoint import load_checkpoint, save_checkpoint
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.train.data import is_synth_spec, open_source
    from edgerain.utils import set_torch_threads, sha256_file

    src = Path(weights)
    if not src.is_file():
        raise EdgerainError(f"{src}: no such checkpoint file")
    set_torch_threads(threads)
    model = load_checkpoint(src)
    if not isinstance(model, ClipRPN):
        raise EdgerainError(f"{src} holds a {type(model).__name__} checkpoint; only CLIP-RPN has a router")
    if not is_synth_spec(data):
        raise EdgerainError(
            f"--data {data}: the router is fitted on synthetic rain (synth or synth:ROOT), whose classes are known"
        )
    if offsets_per_class < 0:
        raise EdgerainError(f"--offsets-per-class {offsets_per_class}: give 0 (no offsets) or a positive count")
    if offsets_only and offsets_per_class == 0 and router_from is None:
        raise EdgerainError("--offsets-only with --offsets-per-class 0 would change nothing")
    if head not in ROUTER_FITS:
        raise EdgerainError(f"--head {head}: choose one of {', '.join(ROUTER_FITS)}")
    if head != "embedding" and (offsets_only or router_from is not None):
        raise EdgerainError(f"--head {head} fits a new head; --offsets-only and --router-from keep the router there is")
    source = open_source(data, seed, procedural_rain, crossing=crossing_rain, noise=noise_rain, noise_heavy=noise_heavy)
    digest = sha256_file(src)
    prov = dict(getattr(model, "provenance", {}))
    if router_from is not None:
        _take_router(model, prov, Path(router_from))
        offsets_only = True  # the donor's router is the one to keep
    if offsets_only:
        # Offsets shift a fitted linear head (--offsets-only alone with no offsets was refused above).
        if model.router.head is None and offsets_per_class > 0:
            raise EdgerainError(
                f"--router-from {router_from}: its router has no fitted linear head to shift "
                "(--offsets-per-class 0 takes it as it is)"
                if router_from is not None
                else f"{src}: --offsets-only needs a router with a fitted linear head (calibrate it first)"
            )
        info = dict(prov.get("router") or {})
    else:
        if head == "feature-stats":
            replaced = dict(prov.get("router") or {})
            info = fit_feature_stats_head(model, source, per_class=per_class, seed=seed, log=log)
            # The tower stays as it was (trained by an earlier calibrate-router, or random): say which.
            info["tower_trained"] = bool(replaced.get("tower_trained"))
            info["replaced_router"] = {k: replaced[k] for k in ("method", "heldout_accuracy") if k in replaced}
            info["fitted_on"] = {"file": src.name, "sha256": digest}
        else:
            info = train_router(
                model,
                source,
                steps=steps,
                per_class=per_class,
                seed=seed,
                regret_weight=regret_weight,
                regret_per_class=regret_per_class,
                log=log,
            )
        info["data"] = {
            "spec": data,
            "procedural_fraction": procedural_rain,
            "crossing_fraction": crossing_rain,
            "noise_fraction": noise_rain,
            "noise_heavy_fraction": noise_heavy,
        }
        if head == "embedding":
            prov["router_trained_from"] = {"file": src.name, "sha256": digest}
    if offsets_per_class > 0:
        # Another seed than the router's own pools: the offsets are fitted on pairs it has not seen.
        fitted = fit_router_offsets(model, source, per_class=offsets_per_class, seed=seed + 7_777_777, log=log)
        previous = (info.get("decision_offsets") or {}).get("offsets")
        if previous is not None:  # refitted on top of earlier offsets: the head now carries their sum
            fitted["offsets_added"] = fitted["offsets"]
            fitted["offsets"] = [round(a + b, 4) for a, b in zip(previous, fitted["offsets"], strict=True)]
        info["decision_offsets"] = {**fitted, "fitted_on": {"file": src.name, "sha256": digest}}
    prov["router"] = info
    save_checkpoint(model, out, prov)
    return info


def _take_router(model: Any, prov: dict[str, Any], donor_path: Path) -> None:
    """Copy ``donor_path``'s router weights into ``model`` and its router record into ``prov``.

    The donor must be the same network (the same config up to the kind of routing head): the
    router's shapes, its preprocessing and the number of experts it chooses between come from it.
    """
    from edgerain.models.checkpoint import load_checkpoint
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.utils import sha256_file

    if not donor_path.is_file():
        raise EdgerainError(f"--router-from {donor_path}: no such checkpoint file")
    donor = load_checkpoint(donor_path)
    if not isinstance(donor, ClipRPN):
        raise EdgerainError(f"--router-from {donor_path} holds a {type(donor).__name__} checkpoint, not CLIP-RPN")
    ours = {k: v for k, v in model.config_dict().items() if k != "router_head"}
    theirs = {k: v for k, v in donor.config_dict().items() if k != "router_head"}
    if donor.registry_name != model.registry_name or ours != theirs:
        raise EdgerainError(
            f"--router-from {donor_path} holds a '{donor.registry_name}' network configured otherwise; "
            f"the router must come from the same network as the experts ('{model.registry_name}')"
        )
    # The router is a self-contained module: take it whole, with the kind of head it has.
    model.router = donor.router
    model.config.router_head = donor.config.router_head
    donor_prov = dict(getattr(donor, "provenance", {}))
    record = dict(donor_prov.get("router") or {})
    record["router_from"] = {"file": donor_path.name, "sha256": sha256_file(donor_path)}
    prov["router"] = record
    if "router_trained_from" in donor_prov:
        prov["router_trained_from"] = donor_prov["router_trained_from"]
    else:
        prov.pop("router_trained_from", None)
