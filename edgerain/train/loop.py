"""The training loop: per-family losses, AdamW + cosine decay, AMP on GPU, validation, resumable runs, DDP.

A run directory holds:
- ``last.safetensors``: the model (edgerain checkpoint, provenance includes the step) and
  ``last.optim.safetensors``: AdamW moments as tensors + the rest of the state as JSON metadata;
  both are safetensors, so resuming never executes code;
- ``best.safetensors``: the model with the best mean validation PSNR so far;
- ``log.jsonl``: one JSON object per logged step / validation; ``curve.png``: loss and PSNR curves;
- ``run.json``: the resolved recipe.

Under ``torchrun`` every rank draws its own slice of each step's samples, gradients are averaged by
DistributedDataParallel, and rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from edgerain.data.streaks import RAIN_CLASSES
from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.clip_rpn import FITTED_HEADS, feature_stats_dim
from edgerain.train import losses
from edgerain.train.data import (
    RouterRoutedSource,
    StepBatches,
    SynthSource,
    TrainSource,
    ValidationSet,
    check_routed_patch,
    is_synth_spec,
    open_source,
)
from edgerain.train.router import calibrate_router
from edgerain.utils import atomic_path, set_torch_threads

CHECKPOINT = "last.safetensors"
OPTIMIZER = "last.optim.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
CURVE = "curve.png"
RUN = "run.json"


ROUTE_BY = ("labels", "router")


@dataclasses.dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    iters: int
    batch: int = 8
    patch: int = 64
    lr: float = 5e-4
    min_lr_ratio: float = 0.02  # cosine decays to lr * min_lr_ratio
    warmup_iters: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    val: tuple[str, ...] = ()
    val_every: int = 500
    val_max_pairs: int | None = None
    log_every: int = 10
    ckpt_every: int = 200
    ckpt_minutes: float = 5.0
    clip_weights: str | None = None
    # CLIP-RPN: fraction of the run in which one shared expert learns from every sample before it is
    # copied into all experts, which then specialise on their rain class (robust to misrouting).
    shared_warmup: float = 0.0
    # CLIP-RPN without pretrained CLIP: synthetic images per class used to fit the prompt embeddings.
    calibrate_per_class: int = 200
    resume: bool = False
    # Warm start: the weights of this checkpoint (same model), with a fresh optimiser and schedule.
    init: str | None = None
    # Fraction of synthetic pairs whose streaks are procedural rather than Garg-Nayar layers.
    procedural_rain: float = 0.0
    # Fraction of synthetic heavy-rain pairs whose streak layers cross (each in its own direction).
    crossing_rain: float = 0.0
    # Fraction of procedural light and moderate pairs whose streaks are grown from noise (long, thin,
    # of varied brightness: the light rain of the synthetic benchmarks).
    noise_rain: float = 0.0
    # Fraction of procedural heavy pairs whose streaks are grown from noise (thin, dense, partly near
    # white: the heavy rain of the synthetic benchmarks).
    noise_heavy: float = 0.0
    # --data synth: the rain classes drawn (None: all), e.g. ("light",) to train the light-rain expert on.
    rain_classes: tuple[str, ...] | None = None
    # CLIP-RPN: fraction of the pairs sent to an expert for heavier rain than their label (see
    # ``misroute_labels``), so that the experts tolerate the router's usual mistake.
    misroute: float = 0.0
    # CLIP-RPN: "labels" sends each pair to its rain class's expert; "router" to the expert the frozen
    # router picks for the whole synthetic view it is cropped from (``RouterRoutedSource``), so that
    # each expert trains on what it receives when deployed.
    route_by: str = "labels"
    # Wall-clock budget: the schedule follows elapsed time when it binds before ``iters`` (CPU runs
    # on shared machines, whose speed is unknown in advance); the run stops when it is spent.
    time_budget_minutes: float | None = None
    # Stop (with a checkpoint) after this step although the schedule spans ``iters``: one leg of a
    # run split across sessions; ``--resume`` continues it.
    stop_after: int | None = None
    # CPU threads for torch (None: torch's default). On a shared, oversubscribed CPU one thread is
    # far faster than two: OpenMP workers spin waiting for a descheduled sibling.
    threads: int | None = None
    # Processes that synthesise the next batches while the model trains (0: in the training
    # process). Synthesis costs ~8-12 ms a crop on one core, so a GPU step waits on it without them.
    workers: int = 0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    progress: bool = True


def family_of(name: str) -> str:
    from edgerain.models.registry import get_entry

    return get_entry(name).family


class TrainStep(nn.Module):
    """One family's training forward + loss, as a module so that DDP can wrap it."""

    def __init__(self, model: DerainModel, family: str, feature_net: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.feature_net = feature_net  # frozen CLIP tower for RDMC's contrastive loss

    def forward(self, rainy: Tensor, clean: Tensor, labels: Tensor, progress: float) -> dict[str, Tensor]:
        """Loss terms for one batch; ``progress`` in [0, 1] is how far the run is (for DLS)."""
        m: Any = self.model
        if self.family == "clip-rpn":
            from edgerain.models.clip_rpn import Routing

            # Routing is forced by the labels, so the router's CLIP forward would be wasted work.
            out = m(rainy, Routing.forced(labels, len(m.experts), rainy.dtype))
            dls_total = 10_000
            return losses.clip_rpn_loss(out, clean, rainy, list(m.last_masks), round(progress * dls_total), dls_total)
        if self.family == "fclip-unet":
            d = m.forward_train(rainy)
            return losses.fclip_unet_loss(d["out"], clean, lambda t: m.encoder.resnet_taps(t, upto=3))
        if self.family == "clip-weather":
            d = m.forward_train(rainy)
            return losses.clip_weather_loss(d["out"], clean, d["sar_proj"], m.srd_teacher(rainy, clean))
        if self.family == "rdmc":
            d = m.forward_train(rainy)
            fn: Any = self.feature_net
            return losses.rdmc_loss(d["out"], clean, rainy, lambda t: fn.resnet_taps(t, upto=3))
        raise EdgerainError(f"no training recipe for family '{self.family}'")


def run_progress(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    """How far the run is, in [0, 1]: by steps, or by time when a time budget is set and binds first."""
    p = step / cfg.iters
    if cfg.time_budget_minutes:
        p = max(p, elapsed_s / (60.0 * cfg.time_budget_minutes))
    return min(1.0, p)


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_iters`` steps, then cosine decay to lr * min_lr_ratio at progress 1."""
    warm = min(1.0, (step + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * warm * cos


# --- distributed helpers ---------------------------------------------------------------------


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


@contextlib.contextmanager
def distributed() -> Iterator[tuple[int, int, torch.device]]:
    rank, world, local = _dist_env()
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        try:
            yield rank, world, device
        finally:
            dist.destroy_process_group()
    else:
        yield rank, world, device


def device_name(device: torch.device) -> str:
    """What a checkpoint's provenance says it was trained on, e.g. 'cuda (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores)"


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (so that all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# --- optimizer state as safetensors ----------------------------------------------------------


def save_optimizer(opt: torch.optim.Optimizer, path: Path, extra: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    meta = {
        "format": "edgerain-optimizer",
        "param_groups": json.dumps(sd["param_groups"]),
        "scalars": json.dumps(scalars),
        "extra": json.dumps(extra),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "edgerain-optimizer":
            raise EdgerainError(f"{path} is not an edgerain optimizer state")
        state: dict[int, dict[str, Any]] = {}
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = f.get_tensor(key)
    for idx, sc in json.loads(meta["scalars"]).items():
        state.setdefault(int(idx), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    extra: dict[str, Any] = json.loads(meta["extra"])
    return extra


# --- validation -------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: DerainModel, sets: list[ValidationSet], device: torch.device) -> dict[str, float]:
    """Mean Y-channel PSNR (the evaluation convention, edgerain.eval.metrics) per validation folder."""
    from edgerain.data.io import quantize_8bit
    from edgerain.eval.metrics import psnr

    was = model.training
    model.eval()
    out: dict[str, float] = {}
    for vs in sets:
        scores = []
        for rainy, clean in vs.items:
            pred = model(rainy.to(device)).float().cpu()[0].permute(1, 2, 0).numpy()
            scores.append(psnr(quantize_8bit(pred), clean, y_channel=True))
        out[vs.name] = round(sum(scores) / len(scores), 4)
    model.train(was)
    return out


# --- the loop ---------------------------------------------------------------------------------


def _provenance(cfg: TrainConfig, step: int, source: TrainSource, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "trained": True,
        "step": step,
        "recipe": dataclasses.asdict(cfg),
        "data": source.describe(),
        "clip_pretrained": cfg.clip_weights is not None,
        **extra,
    }


_MISROUTE_STREAM = 0x4D52


def misroute_labels(labels: Tensor, indices: list[int], fraction: float, seed: int, num_experts: int) -> Tensor:
    """Send a ``fraction`` of the pairs to a random expert for heavier rain than their label.

    On held-out synthetic rain, 25 of the trained router's 29 mistakes send a pair to an expert for
    heavier rain, and an expert that never saw lighter rain over-smooths it (before this option,
    light rain through the heavy expert lost 11 dB). Labels are classes ordered light to heavy; the
    heaviest class keeps its expert. The choice is a pure function of (seed, sample index): resumed
    and DDP runs agree.
    """
    if fraction <= 0:
        return labels
    out = labels.clone()
    for j, (index, label) in enumerate(zip(indices, labels.tolist(), strict=True)):
        heavier = num_experts - 1 - int(label)
        if heavier <= 0:
            continue
        # The synthetic stream draws sample ``index`` from [seed, index]; a third entry gives the
        # routing draw its own stream, independent of the rain it is drawn for.
        rng = np.random.default_rng([seed, index, _MISROUTE_STREAM])
        if rng.random() < fraction:
            out[j] = int(label) + 1 + int(rng.integers(heavier))
    return out


def _copy_expert(model: Any, opt: torch.optim.Optimizer | None, src: int) -> None:
    """Copy expert ``src``'s weights (and, given ``opt``, its AdamW moments) into every other expert."""
    experts = model.experts
    for e in range(len(experts)):
        if e == src:
            continue
        for ps, pd in zip(experts[src].parameters(), experts[e].parameters(), strict=True):
            pd.data.copy_(ps.data)
            if opt is not None and ps in opt.state:
                opt.state[pd] = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in opt.state[ps].items()}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final summary (rank 0's view)."""
    from edgerain.models.checkpoint import load_checkpoint, save_checkpoint
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.models.registry import build_model

    family = family_of(cfg.model)
    if cfg.iters <= 0 or cfg.batch <= 0 or cfg.patch < 8:
        raise EdgerainError("--iters and --batch must be positive and --patch at least 8")
    if not 0.0 <= cfg.shared_warmup < 1.0:
        raise EdgerainError("--shared-warmup must be in [0, 1)")
    if not 0.0 <= cfg.misroute < 1.0:
        raise EdgerainError("--misroute must be in [0, 1)")
    if cfg.misroute and family != "clip-rpn":
        raise EdgerainError(f"--misroute is for CLIP-RPN networks (their experts); {cfg.model} has none")
    if cfg.route_by not in ROUTE_BY:
        raise EdgerainError(f"--route-by must be one of {', '.join(ROUTE_BY)}, not '{cfg.route_by}'")
    if cfg.route_by == "router":
        if family != "clip-rpn":
            raise EdgerainError(f"--route-by router is for CLIP-RPN networks (their router); {cfg.model} has none")
        if not is_synth_spec(cfg.data):
            raise EdgerainError(
                "--route-by router needs synthetic data (--data synth): it routes whole synthetic views"
            )
        if cfg.misroute or cfg.shared_warmup:
            raise EdgerainError("--route-by router replaces --misroute and --shared-warmup: pass one of them")
        if cfg.rain_classes is not None and set(cfg.rain_classes) < set(RAIN_CLASSES):
            # Measured on the bundled default: light rain alone, routed, took the moderate- and heavy-rain
            # experts from 28.2 and 28.4 to 26.2 and 26.9 dB on mixed held-out pairs in 1000 steps.
            raise EdgerainError(
                "--route-by router with --rain-classes trains the other classes' experts on nothing but the "
                "rain the router misroutes to them, and they forget their own; to train one class's expert, "
                "route by --route-by labels"
            )
        check_routed_patch(cfg.patch)
    if cfg.workers < 0:
        raise EdgerainError("--workers must be 0 or more")
    if min(cfg.val_every, cfg.ckpt_every, cfg.log_every) <= 0 or cfg.lr <= 0:
        raise EdgerainError("--val-every, --ckpt-every, --log-every and --lr must be positive")
    out = Path(cfg.out)
    ckpt_path, optim_path = out / CHECKPOINT, out / OPTIMIZER
    has_run = ckpt_path.is_file() and optim_path.is_file()
    if cfg.resume and not has_run:
        raise EdgerainError(f"nothing to resume in {out} (no {CHECKPOINT} + {OPTIMIZER})")
    if not cfg.resume and (out / LOG).exists():
        raise EdgerainError(f"{out} already holds a training run: pass --resume or choose another --out")
    resume = cfg.resume
    if resume and cfg.init:
        raise EdgerainError("--init starts a new run from a checkpoint; --resume continues one: pass one of them")
    if cfg.init and not Path(cfg.init).is_file():
        raise EdgerainError(f"--init {cfg.init}: no such checkpoint file")

    set_torch_threads(cfg.threads)
    with distributed() as (rank, world, device):
        if cfg.batch % world:
            raise EdgerainError(f"--batch {cfg.batch} must be divisible by the {world} processes")
        per_rank = cfg.batch // world
        torch.manual_seed(cfg.seed + rank)
        source = open_source(
            cfg.data,
            cfg.seed,
            cfg.procedural_rain,
            cfg.rain_classes,
            cfg.crossing_rain,
            cfg.noise_rain,
            cfg.noise_heavy,
        )
        val_sets = [ValidationSet(v, cfg.val_max_pairs) for v in cfg.val] if rank == 0 else []

        extra: dict[str, Any] = {"device": device_name(device)}
        start = 0
        with warnings.catch_warnings():
            if cfg.clip_weights is None:
                warnings.simplefilter("ignore")  # recorded in the provenance instead: clip_pretrained false
            if resume:
                model = load_checkpoint(ckpt_path, expect_model=cfg.model)
                prov = getattr(model, "provenance", {})
                if prov.get("recipe", {}).get("model") != cfg.model:
                    raise EdgerainError(f"{ckpt_path} was trained as '{prov.get('recipe', {}).get('model')}'")
                extra.update({k: prov[k] for k in ("router", "shared_expert_copied", "init_from") if k in prov})
            elif cfg.init:
                model = load_checkpoint(cfg.init, expect_model=cfg.model)
                extra["init_from"] = _init_record(Path(cfg.init), getattr(model, "provenance", {}))
            else:
                model = build_model(cfg.model, pretrained=cfg.clip_weights, quiet_clip=True)
        model.to(device)

        feature_net: nn.Module | None = None
        if family == "rdmc":
            feature_net = _contrastive_features(cfg.clip_weights).to(device)
            extra["contrastive_features"] = (
                "CLIP RN50 (given weights)"
                if cfg.clip_weights
                else ("edgerain-tiny-rn CLIP tower, random weights (seed 0), frozen")
            )

        if family == "clip-rpn" and not resume and rank == 0:
            init_router = getattr(model, "provenance", {}).get("router") if cfg.init else None
            if cfg.clip_weights is None and cfg.calibrate_per_class > 0:
                extra["router"] = calibrate_router(model, source, cfg.calibrate_per_class, cfg.seed)
            elif init_router is not None:
                # --calibrate-per-class 0 on a warm start keeps the --init checkpoint's router as it is.
                extra["router"] = {**init_router, "kept_from_init": True}
                if init_router.get("decision_offsets"):
                    # Offsets are fitted on the experts as they were; this stage changes them.
                    extra["router"]["decision_offsets"] = {**init_router["decision_offsets"], "carried_over": True}
            else:
                extra["router"] = {"calibrated": False, "method": "zero-shot CLIP text prompts"}
        if world > 1 and family == "clip-rpn":
            # Rank 0 calibrated the router: every rank must hold the same router (DDP also checks
            # that all ranks have the same parameters), so the others install its head and take
            # its values.
            rpn: Any = model
            router = rpn.router
            # Which head rank 0 has: 0 none (prompts), then 1 + its index among the fitted kinds.
            kind_code = 0 if router.head is None else 1 + FITTED_HEADS.index(router.head_kind)
            head_code = torch.tensor([kind_code], device=device)
            dist.broadcast(head_code, src=0)
            if int(head_code.item()) and int(head_code.item()) != kind_code:
                kind = FITTED_HEADS[int(head_code.item()) - 1]
                k = router.prompt_embeddings.shape[0]
                dim = router.prompt_embeddings.shape[1] if kind == "linear" else feature_stats_dim(router.image)
                rpn.set_router_head(torch.zeros(k, dim), torch.zeros(k), kind=kind)
            dist.broadcast(router.prompt_embeddings.data, src=0)
            if router.head is not None:
                dist.broadcast(router.head.weight.data, src=0)
                dist.broadcast(router.head.bias.data, src=0)

        step_module = TrainStep(model, family, feature_net)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        best = -math.inf
        elapsed_before = 0.0
        if resume:
            state = load_optimizer(opt, optim_path)
            start = int(state["step"])
            model_step = getattr(model, "provenance", {}).get("step")
            if model_step is not None and int(model_step) != start:
                raise EdgerainError(
                    f"cannot resume {out}: {CHECKPOINT} is at step {model_step} but {OPTIMIZER} at step {start} "
                    f"(the run stopped while saving); start a new run with --init {ckpt_path}"
                )
            best = float(state.get("best", -math.inf))
            elapsed_before = float(state.get("elapsed_s", 0.0))
            if "torch_rng" in state:
                torch.manual_seed(int(state["torch_rng"]) + rank)
        runner: nn.Module = step_module
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Hard routing leaves the unselected experts without gradients in a step.
            runner = DistributedDataParallel(step_module, find_unused_parameters=True)

        if cfg.route_by == "router":
            # The router is frozen and, once DDP has broadcast rank 0's parameters (the random CLIP
            # tower included), the same on every rank: a CPU copy labels the samples wherever they
            # are synthesised (worker processes included).
            assert isinstance(source, SynthSource)
            routed: Any = model
            source = RouterRoutedSource(source, copy.deepcopy(routed.router).cpu().eval())

        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / RUN).write_text(json.dumps({"config": dataclasses.asdict(cfg), "world_size": world}, indent=2))
        use_amp = cfg.amp and device.type == "cuda"
        shared = family == "clip-rpn" and cfg.shared_warmup > 0
        num_experts = len(model.experts) if isinstance(model, ClipRPN) else 0

        def write_checkpoint(step: int, elapsed: float) -> None:
            # Both files are written in full under temporary names, then renamed one after the
            # other: a run stopped while saving (seconds) keeps the previous pair, and only a stop
            # between the two renames (microseconds) could leave a mixed pair, which --resume refuses.
            with atomic_path(ckpt_path) as ckpt_tmp, atomic_path(optim_path) as optim_tmp:
                save_checkpoint(
                    model,
                    ckpt_tmp,
                    _provenance(cfg, step, source, {**extra, "elapsed_s": round(elapsed), "processes": world}),
                )
                save_optimizer(
                    opt,
                    optim_tmp,
                    {"step": step, "best": best, "elapsed_s": elapsed, "torch_rng": cfg.seed * 1_000_003 + step},
                )

        pbar = None
        if rank == 0 and cfg.progress:
            from tqdm import tqdm

            pbar = tqdm(total=cfg.iters, initial=start, desc=f"train {cfg.model}", unit="it", dynamic_ncols=True)
        model.train()
        last_ckpt = time.monotonic()
        t0 = time.monotonic()
        log = open(out / LOG, "a") if rank == 0 else None  # noqa: SIM115 (kept open for the run)
        summary: dict[str, Any] = {}
        done = start
        batches = StepBatches(source, cfg.batch, per_rank, rank, cfg.patch)
        try:
            for step, (rainy, clean, labels) in enumerate(
                batches.iterate(start, cfg.iters, cfg.workers, device), start=start
            ):
                elapsed = elapsed_before + time.monotonic() - t0
                progress = run_progress(cfg, step, elapsed)
                if cfg.time_budget_minutes and _any_rank(progress >= 1.0, world, device):
                    break
                if cfg.stop_after is not None and step >= cfg.stop_after:
                    break
                if shared and progress >= cfg.shared_warmup and "shared_expert_copied" not in extra:
                    _copy_expert(model, opt, 0)
                    extra["shared_expert_copied"] = step
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, step, progress)
                indices = batches.indices(step)
                labels = misroute_labels(labels, indices, cfg.misroute, cfg.seed, num_experts)
                rainy, clean = rainy.to(device, non_blocking=True), clean.to(device, non_blocking=True)
                labels = labels.to(device)
                if shared and "shared_expert_copied" not in extra:
                    labels = torch.zeros_like(labels)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    terms = runner(rainy, clean, labels, progress)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                if shared and "shared_expert_copied" not in extra:
                    # The other experts receive no gradients yet; mirroring expert 0 into them keeps
                    # every checkpoint and validation of the shared phase a complete, usable model.
                    with torch.no_grad():
                        _copy_expert(model, None, 0)
                if not torch.isfinite(terms["loss"]):
                    raise EdgerainError(f"training diverged at step {step} (loss {float(terms['loss'])})")
                done = step + 1
                if rank == 0:
                    assert log is not None
                    if pbar is not None:
                        pbar.update(1)
                        pbar.set_postfix(loss=f"{terms['loss'].item():.4f}")
                    if done % cfg.log_every == 0 or done == cfg.iters:
                        rec = {
                            "step": done,
                            "progress": round(progress, 4),
                            "lr": opt.param_groups[0]["lr"],
                            "time_s": round(elapsed_before + time.monotonic() - t0, 2),
                        }
                        rec.update({k: round(v.item(), 6) for k, v in terms.items()})
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                    if val_sets and (done % cfg.val_every == 0 or done == cfg.iters):
                        psnr = validate(model, val_sets, device)
                        mean_psnr = sum(psnr.values()) / len(psnr)
                        log.write(json.dumps({"step": done, "val_psnr_y": psnr}) + "\n")
                        log.flush()
                        if mean_psnr > best:
                            best = mean_psnr
                            save_checkpoint(model, out / BEST, _provenance(cfg, done, source, {**extra, "val": psnr}))
                        summary["val_psnr_y"] = psnr
                    due = done % cfg.ckpt_every == 0 or time.monotonic() - last_ckpt > 60 * cfg.ckpt_minutes
                    if due or done == cfg.iters:
                        write_checkpoint(done, elapsed_before + time.monotonic() - t0)
                        plot_curves(out / LOG, out / CURVE)
                        last_ckpt = time.monotonic()
            if rank == 0 and done < cfg.iters:  # stopped early (time budget, stop_after): keep the state
                write_checkpoint(done, elapsed_before + time.monotonic() - t0)
                plot_curves(out / LOG, out / CURVE)
        finally:
            if pbar is not None:
                pbar.close()
            if log is not None:
                log.close()
        _barrier(world)
        summary.update(
            {"rank": rank, "steps": done, "out": str(out), "world_size": world, "router": extra.get("router")}
        )
        return summary


def _init_record(path: Path, prov: dict[str, Any]) -> dict[str, Any]:
    """What a warm-started run started from: the file's hash and the recipe that made it."""
    from edgerain.utils import sha256_file

    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "step": prov.get("step"),
        "elapsed_s": prov.get("elapsed_s"),
        "shared_expert_copied": prov.get("shared_expert_copied"),
        "processes": prov.get("processes"),
        "device": prov.get("device"),
        "recipe": prov.get("recipe"),
        "init_from": prov.get("init_from"),
    }


def _contrastive_features(clip_weights: str | None) -> nn.Module:
    from edgerain.models.clip import FrozenCLIPImage, clip_image_size, create_clip

    if clip_weights is not None:
        clip = create_clip("RN50", clip_weights)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            clip = create_clip("edgerain-tiny-rn", None, quiet=True)
    return FrozenCLIPImage(clip.visual, clip_image_size(clip)).eval()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(log_path: Path, png: Path) -> None:
    """Loss (raw and smoothed) and validation PSNR against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_log(log_path)
    train = [r for r in recs if "loss" in r]
    val = [r for r in recs if "val_psnr_y" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        steps = [r["step"] for r in train]
        loss = [r["loss"] for r in train]
        axes[0].plot(steps, loss, alpha=0.3, label="loss")
        k = max(1, len(loss) // 30)
        smooth = [sum(loss[max(0, i - k) : i + 1]) / len(loss[max(0, i - k) : i + 1]) for i in range(len(loss))]
        axes[0].plot(steps, smooth, label="loss (smoothed)")
        axes[0].set_yscale("log")
        axes[0].legend()
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss")
    names = sorted({n for r in val for n in r["val_psnr_y"]})
    for n in names:
        pts = [(r["step"], r["val_psnr_y"][n]) for r in val if n in r["val_psnr_y"]]
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=n)
    axes[1].set_xlabel("step")
    axes[1].set_title("validation Y-PSNR (dB)")
    if names:
        axes[1].legend()
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
