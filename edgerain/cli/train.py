"""``edgerain synth`` (labelled rainy/clean pairs), ``edgerain train`` and ``edgerain calibrate-router``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("train")(train)
    app.command("calibrate-router")(calibrate_router)


def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for rain/, norain/, labels.csv, labels.json.")],
    count: Annotated[int, typer.Option(help="Number of pairs.")] = 100,
    seed: Annotated[int, typer.Option(help="Stream seed: the same seed gives the same pairs.")] = 0,
    size: Annotated[int, typer.Option(help="Side of the square pairs in pixels.")] = 256,
    rain_class: Annotated[
        str | None, typer.Option("--rain-class", help="Only this density class: light, moderate or heavy.")
    ] = None,
    train_root: Annotated[
        Path | None,
        typer.Option(
            help="Training data root (clean sets + streaks_Garg06); default $EDGERAIN_TRAIN_DATA or ../shared/data/train."
        ),
    ] = None,
    procedural_rain: Annotated[
        float,
        typer.Option(help="Fraction of pairs with procedural (motion-blurred drop) streaks instead of Garg-Nayar."),
    ] = 0.0,
    crossing_rain: Annotated[
        float,
        typer.Option(help="Fraction of heavy-rain pairs whose streak layers cross, each in its own direction."),
    ] = 0.0,
    noise_rain: Annotated[
        float,
        typer.Option(help="Fraction of procedural light and moderate pairs whose streaks are grown from noise."),
    ] = 0.0,
    noise_heavy: Annotated[
        float,
        typer.Option(help="Fraction of procedural heavy pairs (not crossing) whose streaks are grown from noise."),
    ] = 0.0,
) -> None:
    """Synthesise labelled rainy/clean pairs from clean photos and real Garg-Nayar (or procedural) rain streaks."""
    from edgerain.data.streaks import write_pair_folder

    path = write_pair_folder(
        out,
        count,
        seed,
        size,
        train_root,
        rain_class,
        procedural=procedural_rain,
        crossing=crossing_rain,
        noise=noise_rain,
        noise_heavy=noise_heavy,
    )
    typer.echo(f"wrote {count} pairs to {path} (labels in labels.csv / labels.json)")


def train(
    model: Annotated[str, typer.Option(help="Registered network name (see `edgerain models`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log.jsonl, curve.png.")],
    data: Annotated[
        str, typer.Option(help="'synth' (on-the-fly synthesis), 'synth:TRAIN_ROOT', or a folder of rain/norain pairs.")
    ] = "synth",
    iters: Annotated[int, typer.Option(help="Total optimiser steps (the cosine schedule spans them).")] = 1000,
    batch: Annotated[int, typer.Option(help="Global batch size (split across torchrun processes).")] = 8,
    patch: Annotated[int, typer.Option(help="Side of the square training crops.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 5e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-4,
    warmup_iters: Annotated[int, typer.Option(help="Linear learning-rate warm-up steps.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the data stream and the initialisation.")] = 0,
    val: Annotated[
        list[Path] | None, typer.Option(help="Folder of rain/norain pairs for validation PSNR (repeatable).")
    ] = None,
    val_every: Annotated[int, typer.Option(help="Validate every N steps.")] = 500,
    val_max_pairs: Annotated[int | None, typer.Option(help="Use at most N pairs of each validation folder.")] = None,
    ckpt_every: Annotated[int, typer.Option(help="Checkpoint every N steps...")] = 200,
    ckpt_minutes: Annotated[float, typer.Option(help="...or every M minutes, whichever comes first.")] = 5.0,
    log_every: Annotated[int, typer.Option(help="Write a log.jsonl line every N steps.")] = 10,
    clip_weights: Annotated[
        str | None, typer.Option(help="Pretrained CLIP weights (file, folder or hub tag); default: random.")
    ] = None,
    shared_warmup: Annotated[
        float,
        typer.Option(help="CLIP-RPN: fraction of the run training one shared expert before all experts specialise."),
    ] = 0.0,
    calibrate_per_class: Annotated[
        int, typer.Option(help="CLIP-RPN without pretrained CLIP: synthetic images per class to fit the router.")
    ] = 200,
    time_budget_minutes: Annotated[
        float | None,
        typer.Option(help="Stop after this much training time; the schedule follows time when it binds first."),
    ] = None,
    stop_after: Annotated[
        int | None, typer.Option(help="Stop after this step (checkpointed); the schedule still spans --iters.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from this checkpoint's weights (same --model) with a fresh optimiser and schedule."),
    ] = None,
    procedural_rain: Annotated[
        float,
        typer.Option(help="--data synth: fraction of pairs with procedural streaks instead of Garg-Nayar layers."),
    ] = 0.0,
    crossing_rain: Annotated[
        float,
        typer.Option(
            help="--data synth: fraction of heavy-rain pairs whose streak layers cross, each in its own direction."
        ),
    ] = 0.0,
    noise_rain: Annotated[
        float,
        typer.Option(
            help="--data synth: fraction of procedural light and moderate pairs whose streaks are grown from noise."
        ),
    ] = 0.0,
    noise_heavy: Annotated[
        float,
        typer.Option(
            help="--data synth: fraction of procedural heavy pairs (not crossing) whose streaks are grown from noise."
        ),
    ] = 0.0,
    misroute: Annotated[
        float,
        typer.Option(
            help="CLIP-RPN: fraction of pairs sent to an expert for heavier rain, so experts tolerate misrouting."
        ),
    ] = 0.0,
    route_by: Annotated[
        str,
        typer.Option(
            help="CLIP-RPN: send each pair to its rain class's expert ('labels') or to the one the router picks ('router')."
        ),
    ] = "labels",
    rain_classes: Annotated[
        str | None,
        typer.Option(help="--data synth: comma-separated rain classes to draw (light,moderate,heavy); default all."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch; 1 is fastest on a shared, busy CPU.")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Processes that synthesise batches ahead of the step (0: none; use them on a GPU).")
    ] = 0,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on a CUDA GPU (ignored on the CPU).")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a network on synthetic or paired data; resumable, runs under torchrun (DDP) as well."""
    import json

    from edgerain.train.loop import TrainConfig
    from edgerain.train.loop import train as run_training

    cfg = TrainConfig(
        model=model,
        data=data,
        out=str(out),
        iters=iters,
        batch=batch,
        patch=patch,
        lr=lr,
        weight_decay=weight_decay,
        warmup_iters=warmup_iters,
        seed=seed,
        val=tuple(str(v) for v in (val or [])),
        val_every=val_every,
        val_max_pairs=val_max_pairs,
        ckpt_every=ckpt_every,
        ckpt_minutes=ckpt_minutes,
        log_every=log_every,
        clip_weights=clip_weights,
        shared_warmup=shared_warmup,
        calibrate_per_class=calibrate_per_class,
        resume=resume,
        init=str(init) if init is not None else None,
        procedural_rain=procedural_rain,
        crossing_rain=crossing_rain,
        noise_rain=noise_rain,
        noise_heavy=noise_heavy,
        misroute=misroute,
        route_by=route_by,
        rain_classes=tuple(c.strip() for c in rain_classes.split(",")) if rain_classes is not None else None,
        time_budget_minutes=time_budget_minutes,
        stop_after=stop_after,
        threads=threads,
        workers=workers,
        amp=amp,
        progress=progress,
    )
    summary = run_training(cfg)
    if summary.get("rank", 0) == 0:
        typer.echo(json.dumps(summary))


def calibrate_router(
    weights: Annotated[Path, typer.Argument(help="CLIP-RPN checkpoint whose router to fit.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (the same experts, the new router).")],
    data: Annotated[str, typer.Option(help="'synth' or 'synth:TRAIN_ROOT' (needs the rain-class labels).")] = "synth",
    procedural_rain: Annotated[
        float, typer.Option(help="Fraction of images with procedural streaks instead of Garg-Nayar layers.")
    ] = 0.5,
    crossing_rain: Annotated[
        float,
        typer.Option(help="Fraction of heavy-rain images whose streak layers cross, each in its own direction."),
    ] = 0.0,
    noise_rain: Annotated[
        float,
        typer.Option(help="Fraction of procedural light and moderate images whose streaks are grown from noise."),
    ] = 0.0,
    noise_heavy: Annotated[
        float,
        typer.Option(help="Fraction of procedural heavy images (not crossing) whose streaks are grown from noise."),
    ] = 0.0,
    steps: Annotated[int, typer.Option(help="Optimiser steps (batch 64, cosine decay).")] = 1500,
    per_class: Annotated[int, typer.Option(help="Synthetic training images per rain class.")] = 1500,
    regret_weight: Annotated[
        float, typer.Option(help="Weight of the expected routing regret (dB) next to the cross-entropy.")
    ] = 0.2,
    regret_per_class: Annotated[
        int, typer.Option(help="Held-out synthetic pairs per class on which every expert is run to measure the regret.")
    ] = 24,
    offsets_per_class: Annotated[
        int,
        typer.Option(
            help="Synthetic pairs per class on which every expert is run to fit decision offsets (the PSNR each "
            "pick loses against the best expert); 0 skips them."
        ),
    ] = 300,  # edgerain.train.router.DEFAULT_OFFSETS_PER_CLASS, not imported: the CLI starts without torch
    offsets_only: Annotated[
        bool,
        typer.Option(
            "--offsets-only",
            help="Keep the checkpoint's router and fit only the decision offsets (after the experts changed).",
        ),
    ] = False,
    router_from: Annotated[
        Path | None,
        typer.Option(
            help="Take the router (tower, head, record) of this checkpoint of the same network instead of training "
            "one, then fit the offsets on these experts: a router trained while the experts trained further."
        ),
    ] = None,
    head: Annotated[
        str,
        typer.Option(
            help="What to fit: 'embedding' trains the image tower with a linear head on its embedding; "
            "'feature-stats' keeps the tower and fits a linear head on the channel means and standard "
            "deviations of its spatial features at the image's own resolution (--per-class views per class)."
        ),
    ] = "embedding",  # edgerain.train.router.ROUTER_FITS[0]
    seed: Annotated[int, typer.Option(help="Seed of the synthetic images and the initialisation.")] = 31337,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Fit the CLIP router of a CLIP-RPN checkpoint on labelled synthetic rain (by default: train a
    randomly initialised image tower with a linear head), then shift its decisions towards the expert
    that serves each image best."""
    import json

    from edgerain.train.router import train_router_checkpoint

    info = train_router_checkpoint(
        weights,
        out,
        data=data,
        procedural_rain=procedural_rain,
        crossing_rain=crossing_rain,
        noise_rain=noise_rain,
        noise_heavy=noise_heavy,
        steps=steps,
        per_class=per_class,
        seed=seed,
        regret_weight=regret_weight,
        regret_per_class=regret_per_class,
        offsets_per_class=offsets_per_class,
        offsets_only=offsets_only,
        router_from=router_from,
        head=head,
        threads=threads,
        log=lambda line: typer.echo(line, err=True),
    )
    if router_from is not None:
        typer.echo(f"router taken from {router_from}")
    elif head == "feature-stats":
        typer.echo(
            f"router: feature-stats head, held-out routing accuracy {info['heldout_accuracy']:.1%}"
            + (f" (was {info['heldout_accuracy_before']:.1%})" if info["heldout_accuracy_before"] is not None else "")
        )
    elif not offsets_only:
        held = info["heldout"]
        before = info["heldout_before"]
        was = f" (was {before['accuracy']:.1%}, {before['mean_regret_db']:.2f} dB)" if before else ""
        typer.echo(
            f"router: held-out routing accuracy {held['accuracy']:.1%}, mean regret {held['mean_regret_db']:.2f} dB{was}"
        )
        typer.echo(json.dumps({"confusion": held["confusion"], "regret_db": info["regret_db"]}))
    offsets = info.get("decision_offsets")
    if offsets:
        cv = offsets["cross_validated"]
        typer.echo(
            f"decision offsets {offsets['offsets']}: routed Y-PSNR {cv['before']['routed_psnr_y']:.2f} -> "
            f"{cv['after']['routed_psnr_y']:.2f} dB (two-fold cross-validated on "
            f"{offsets['in_sample']['before']['pairs']} synthetic pairs; best expert per pair {cv['oracle_psnr_y']:.2f})"
        )
    typer.echo(f"wrote {out}")
