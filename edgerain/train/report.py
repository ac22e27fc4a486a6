"""Measure a trained checkpoint for its model card: benchmark scores, routing, CPU latency, real photos.

    python -m edgerain.train.report --weights RUN/last.safetensors --data ../shared/data \
        --json bench/results/train_default.json [--side-by-side docs/images] [--limit N]

Writes one JSON with the device, library versions and git commit (numbers in the model card and the
README come from it). Evaluation folders are read, never trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgerain.machine import cpu_name, git_commit
from edgerain.tta import tta_views


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux ``/proc/stat``), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        # user nice system idle iowait irq softirq; steal (the hypervisor's) is not a process here.
        ticks = [int(v) for v in fields[1:8]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@torch.no_grad()
def cpu_latency(model: Any, height: int = 320, width: int = 480, repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    """Median wall time of the whole model (routing included) on one H x W image on the CPU.

    Also records how many cores *other* processes kept busy meanwhile (system busy time minus this
    process's CPU time, over the wall time), because on a shared machine that, not the network,
    is what moves the numbers between runs; None where it cannot be measured (not Linux, or runs
    too short for /proc/stat's clock ticks).
    """
    from edgerain.models.inference import derain_tensor

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
        derain_tensor(model, x)  # warm-up
        times = []
        busy0, own0, wall0 = _system_busy_seconds(), time.process_time(), time.perf_counter()
        for _ in range(repeats):
            t = time.perf_counter()
            derain_tensor(model, x)
            times.append(time.perf_counter() - t)
        busy1, own1, wall1 = _system_busy_seconds(), time.process_time(), time.perf_counter()
    finally:
        torch.set_num_threads(before)
    others = None
    cores = os.cpu_count() or 1
    # /proc/stat counts whole clock ticks per core, so the busy time is uncertain by about a tick per
    # core: a window shorter than 20 such ticks gives no estimate rather than a wrong one (a tiny
    # model timed for a millisecond read as 38 busy cores on 2).
    if busy0 is not None and busy1 is not None and wall1 - wall0 >= 20 * cores / os.sysconf("SC_CLK_TCK"):
        others = round(min(float(cores), max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)), 2)
    return {
        "size": f"{width}x{height}",
        "threads": threads,
        "repeats": repeats,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "cores": os.cpu_count(),
        "other_processes_busy_cores": others,
    }


@torch.no_grad()
def routing_counts(model: Any, folder: Path, limit: int | None) -> dict[str, int] | None:
    from edgerain.data.io import expand_inputs, load_image_tensor

    if not hasattr(model, "route"):
        return None
    counts: dict[str, int] = {}
    prompts = list(model.config.prompts)
    for path in expand_inputs([folder])[:limit]:
        e = int(model.route(load_image_tensor(path)).expert[0])
        key = f"expert {e}: {prompts[e][:40]}"
        counts[key] = counts.get(key, 0) + 1
    return counts


@torch.no_grad()
def side_by_sides(model: Any, folder: Path, names: list[str], out_dir: Path, max_width: int = 640) -> list[str]:
    """rainy | derained panels of a few real photos, downscaled to ``max_width`` (results only, kept small)."""
    from PIL import Image

    from edgerain.data.io import load_image, save_image, to_uint8
    from edgerain.eval.evaluate import side_by_side
    from edgerain.models.inference import derain_tensor

    written = []
    for name in names:
        path = folder / name
        rainy = load_image(path)
        y = derain_tensor(model, torch.from_numpy(rainy).permute(2, 0, 1).unsqueeze(0))
        panel = to_uint8(side_by_side(rainy, y[0].permute(1, 2, 0).numpy()))
        img = Image.fromarray(panel)
        if img.width > max_width:
            img = img.resize((max_width, round(img.height * max_width / img.width)), Image.Resampling.BICUBIC)
        target = out_dir / f"default_real_{Path(name).stem}.png"
        save_image(target, np.asarray(img).astype(np.float32) / 255.0)
        written.append(str(target))
    return written


DATA_TERMS = (
    "Trained only on pairs synthesised from ../shared/data/train: BSDS500 (non-commercial research use; "
    "the 78 Rain100L/H test backgrounds removed), Sun-Hays 80, Kodak 24, scikit-image photos (public domain / "
    "CC0) and the Garg-Nayar rain-streak database, plus procedurally drawn streaks (no data). The weights "
    "inherit the research-use terms of that data. Never trained on rain100l, rain100h or real-internet."
)

PRENET = {"rain100l": (37.66, 0.980), "rain100h": (29.98, 0.903)}


def _others_phrase(lat: dict[str, Any]) -> str:
    """What else the machine was doing while a latency was measured, as the JSON recorded it."""
    others, cores = lat.get("other_processes_busy_cores"), lat.get("cores")
    if others is None:
        return " (the load of other processes was not measured)"
    of = f" of {cores}" if cores else ""
    return f" (other processes kept {others:.2f}{of} cores busy meanwhile)"


def model_card(report: dict[str, Any]) -> str:
    """The bundled default's model card, every number taken from the report."""
    prov = report["provenance"]
    router = prov.get("router", {})
    lines = [
        "# Model card: the bundled default (`edgerain/weights/default.safetensors`)",
        "",
        f"- Network: `{report['model']}` ({report['params'] / 1e6:.2f} M parameters, "
        f"{report['bytes'] / 1e6:.1f} MB safetensors, float32). CLIP-RPN: a frozen CLIP image tower routes each "
        "image to one of 3 MGCA experts (light / moderate / heavy rain).",
        f"- CLIP initialised from pretrained weights: **{'yes' if prov.get('clip_pretrained') else 'no'}**: "
        + (
            "the CLIP image tower is randomly initialised (seeded), then trained as the router (below) and frozen."
            if router.get("tower_trained")
            else "the CLIP tower is randomly initialised (seeded) and frozen."
        ),
        _router_line(router),
        *_training_lines(report["model"], prov),
        f"- Data and terms: {DATA_TERMS}",
        "",
        "## Measured (Y-channel PSNR / SSIM, BT.601, 8-bit output; `python -m edgerain.train.report`)",
        "",
    ]
    modes = sorted({m for ev in report["evaluation"].values() for m in ev.get("self_ensemble", {})})
    lines += [
        "| folder | pairs | rainy input | this model | "
        + "".join(f"`--tta {m}` ({len(tta_views(m))}x time) | " for m in modes)
        + "PReNet (released weights) |",
        "|---|---|---|---|" + "---|" * len(modes) + "---|",
    ]

    def cell(scores: dict[str, float] | None) -> str:
        return f"{scores['psnr_y']:.2f} dB / {scores['ssim_y']:.3f}" if scores else "n/a"

    for name, ev in report["evaluation"].items():
        ref = PRENET.get(name)
        ref_s = f"{ref[0]:.2f} dB / {ref[1]:.3f}" if ref else "n/a"
        tta_cells = "".join(f"{cell(ev.get('self_ensemble', {}).get(m))} | " for m in modes)
        lines.append(
            f"| {name} | {ev['pairs']} | {cell(ev['rainy_input'])} | **{cell(ev['model'])}** | {tta_cells}{ref_s} |"
        )
    if modes:
        lines += [
            "",
            "`--tta`: the self-ensemble of `edgerain derain`/`eval` (mirrored views averaged, docs/derain.md); "
            "the other columns are single-pass.",
        ]
    lines += ["", "Routing of the benchmark images (hard top-1):", ""]
    for name, ev in report["evaluation"].items():
        if ev.get("routing"):
            lines.append(f"- {name}: " + ", ".join(f"{k.split(':')[0]} x{v}" for k, v in ev["routing"].items()))
    lines += ["", "CPU latency, one 480x320 image, whole model (routing included), PyTorch eager:", ""]
    for lat in report["cpu_latency_480x320"]:
        lines.append(
            f"- {lat['threads']} thread(s): median {lat['median_s']:.2f} s, best {lat['min_s']:.2f} s"
            f"{_others_phrase(lat)}."
        )
    l100 = report["evaluation"].get("rain100l", {}).get("model", {}).get("psnr_y")
    if l100 is not None and l100 < PRENET["rain100l"][0]:
        lines += [
            "",
            f"The gap to PReNet on Rain100L ({PRENET['rain100l'][0] - l100:.2f} dB) remains: this is an edge-size "
            "network trained for hours, not days, with synthetic streaks, not a converged benchmark "
            "model. Retrain on a GPU with the same recipe and a longer budget (`--iters`, no "
            "`--time-budget-minutes`) to close it.",
        ]
    lines += [
        "",
        f"Measured at git commit `{report.get('git_commit')}`; raw numbers: `bench/results/train_default.json`.",
    ]
    if report.get("side_by_sides"):
        lines += ["", "Real rainy photos (rainy | derained): " + ", ".join(f"`{p}`" for p in report["side_by_sides"])]
    return "\n".join(lines) + "\n"


def _router_line(router: dict[str, Any]) -> str:
    if router.get("head") == "feature-stats":
        text = (
            f"- Router: {router.get('method')} (`edgerain calibrate-router --head feature-stats`: "
            f"{router.get('images_per_class')} synthetic views per class, {router.get('features')} statistics, "
            f"L2 {router.get('l2')}). Held-out synthetic rain: accuracy {router.get('heldout_accuracy')} (was "
            f"{router.get('heldout_accuracy_before', '?')} with a head on the tower's embedding of the resized "
            "image). Light and moderate rain overlap by construction, so routing is imperfect; a misrouted "
            "image still goes to a complete deraining network."
        )
    elif router.get("tower_trained"):
        before = router.get("heldout_before") or {}
        held = router.get("heldout", {})
        text = (
            f"- Router: {router.get('method')} (`edgerain calibrate-router`: {router.get('steps')} steps, "
            f"{router.get('images_per_class')} images per class, regret weight {router.get('regret_weight')}). "
            f"Held-out synthetic rain: accuracy {held.get('accuracy')} (was {before.get('accuracy', '?')} with a "
            f"head on the random tower), mean PSNR lost to misrouting {held.get('mean_regret_db')} dB "
            f"(was {before.get('mean_regret_db', '?')}). Light and moderate rain overlap by construction, so "
            "routing is imperfect; the regret term makes the remaining mistakes the cheap ones."
        )
    else:
        text = (
            f"- Router: {router.get('method', 'n/a')}; {router.get('images_per_class', '?')} images per class, "
            f"accuracy {router.get('train_accuracy', '?')} (fit) / {router.get('heldout_accuracy', '?')} (held out), "
            "3 classes (chance 0.33). A random CLIP barely separates rain densities (and light and moderate rain "
            "overlap by construction), so routing is imperfect; a misrouted image still goes to a complete "
            "deraining network."
        )
    data = router.get("data") or {}
    if data.get("noise_fraction") or data.get("noise_heavy_fraction"):
        text += (
            f" Its synthetic rain: {data.get('procedural_fraction', 0.0):.0%} procedural streaks, of which "
            f"{data.get('noise_fraction', 0.0):.0%} of the light and moderate and "
            f"{data.get('noise_heavy_fraction', 0.0):.0%} of the heavy are grown from noise."
        )
    if router.get("router_from"):
        text += (
            " Trained on the checkpoint of an earlier stage (the routing regret measured on its experts) and "
            f"joined to the final experts (`calibrate-router --router-from {router['router_from'].get('file')}`)."
        )
    elif router.get("kept_from_init"):
        text += " Fitted before the last stage, which kept it (`--calibrate-per-class 0`)."
    offsets = router.get("decision_offsets")
    if offsets:
        cv = offsets.get("cross_validated", {})
        before = float(cv.get("before", {}).get("routed_psnr_y", float("nan")))
        after = float(cv.get("after", {}).get("routed_psnr_y", float("nan")))
        text += (
            f" Decision offsets {offsets.get('offsets')} (log-probability, per class) fitted on "
            f"{'the experts of an earlier stage and carried over' if offsets.get('carried_over') else 'the final experts'} "
            f"(`edgerain calibrate-router --offsets-only`, {offsets.get('pairs_per_class')} synthetic pairs per class, "
            f"every expert run on each): routed Y-PSNR on those pairs {before:.2f} -> {after:.2f} dB, two-fold "
            f"cross-validated (best expert per pair {float(cv.get('oracle_psnr_y', float('nan'))):.2f})."
        )
    return text


def _stage_line(label: str, model: str, stage: dict[str, Any]) -> str:
    """One training stage (a checkpoint's provenance or init record): command-line essentials, steps, time."""
    recipe = stage.get("recipe") or {}
    step, elapsed_s, shared = stage.get("step"), stage.get("elapsed_s"), stage.get("shared_expert_copied")
    opts = (
        f"--batch {recipe.get('batch')} --patch {recipe.get('patch')} --lr {recipe.get('lr')} "
        f"--procedural-rain {recipe.get('procedural_rain', 0.0)}"
    )
    if recipe.get("shared_warmup"):
        opts += f" --shared-warmup {recipe.get('shared_warmup')}"
    if recipe.get("misroute"):
        opts += f" --misroute {recipe.get('misroute')}"
    if recipe.get("crossing_rain"):
        opts += f" --crossing-rain {recipe['crossing_rain']}"
    if recipe.get("noise_rain"):
        opts += f" --noise-rain {recipe['noise_rain']}"
    if recipe.get("noise_heavy"):
        opts += f" --noise-heavy {recipe['noise_heavy']}"
    if recipe.get("rain_classes"):
        opts += f" --rain-classes {','.join(recipe['rain_classes'])}"
    if recipe.get("route_by", "labels") != "labels":
        opts += f" --route-by {recipe['route_by']}"
    if recipe.get("init") and recipe.get("calibrate_per_class") == 0:
        opts += " --calibrate-per-class 0"
    processes = stage.get("processes") or 1
    launcher = f"torchrun --nproc-per-node {processes} -m edgerain.cli" if processes > 1 else "edgerain"
    # Stages recorded before elapsed time was kept fall back to their time budget.
    minutes = round(float(elapsed_s) / 60) if elapsed_s else round(float(recipe.get("time_budget_minutes") or 0))
    text = (
        f"  - {label}: `{launcher} train --model {model} --data synth {opts} ...`: {step} steps of "
        f"batch {recipe.get('batch')} x {recipe.get('patch')}x{recipe.get('patch')} crops, {minutes} min, "
        f"{('on ' + stage['device']) if stage.get('device') else 'device not recorded'}"
    )
    if shared:
        text += f"; one shared expert until step {shared}, then copied into all experts, each on its own rain class"
    return text + "."


def _training_lines(model: str, prov: dict[str, Any]) -> list[str]:
    """How the checkpoint was trained, stage by stage (a warm-started run lists what it started from)."""
    stages = []
    init = prov.get("init_from")
    while isinstance(init, dict):
        stages.append(init)
        init = init.get("init_from")
    stages.reverse()
    lines = [
        f"- Trained in {len(stages) + 1} stage(s) (`scripts/train_default.sh`): DLS (MSE to L1) + 0.1 mask BCE, "
        "AdamW, cosine decay. Each stage names the device its checkpoint recorded (checkpoints from before "
        "that field say 'device not recorded')."
    ]
    for i, st in enumerate(stages):
        lines.append(_stage_line(f"stage {i + 1}", model, st))
    label = f"stage {len(stages) + 1}" + (" (warm start from the stage before)" if stages else "")
    lines.append(_stage_line(label, model, prov))
    return lines


def main(argv: list[str] | None = None) -> int:
    from edgerain.eval.evaluate import evaluate
    from edgerain.models.checkpoint import load_checkpoint, read_metadata
    from edgerain.utils import atomic_path, sha256_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--sets", default="rain100l,rain100h")
    ap.add_argument("--side-by-side", type=Path, default=None, help="folder for real-photo panels")
    ap.add_argument("--real", default="", help="comma-separated real-internet/rain file names")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs per set (quick look)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tta", default="", help="comma-separated self-ensemble modes to score too, e.g. x2,x4")
    ap.add_argument("--ship", type=Path, default=None, help="also write the checkpoint here, metrics in its provenance")
    ap.add_argument("--model-card", type=Path, default=None, help="write MODEL_CARD.md from the measurements")
    args = ap.parse_args(argv)
    tta_modes = [m for m in args.tta.split(",") if m]
    for mode in tta_modes:
        tta_views(mode)

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.weights)
    meta = read_metadata(args.weights)
    report: dict[str, Any] = {
        "weights": str(args.weights),
        "sha256": sha256_file(args.weights),
        "bytes": args.weights.stat().st_size,
        "model": meta["model"],
        "params": sum(p.numel() for p in model.parameters()),
        "provenance": meta["provenance"],
        "device": f"cpu ({cpu_name()}, {os.cpu_count()} cores)",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "git_commit": git_commit(),
        "evaluation": {},
    }
    for name in [s for s in args.sets.split(",") if s]:
        folder = args.data / name
        if args.limit:
            import tempfile

            from edgerain.data.pairs import find_pairs

            tmp = Path(tempfile.mkdtemp(prefix="edgerain_report_"))
            for sub in ("rain", "norain"):
                (tmp / sub).mkdir()
            for pair in find_pairs(folder)[: args.limit]:
                os.symlink(pair.rain.resolve(), tmp / "rain" / pair.rain.name)
                os.symlink(pair.norain.resolve(), tmp / "norain" / pair.norain.name)
            folder_eval = tmp
        else:
            folder_eval = folder
        res = evaluate(model, folder_eval, progress=False, weights=str(args.weights))
        report["evaluation"][name] = {
            "pairs": len(res.rows),
            "model": {k: round(v, 4) for k, v in res.means.items()},
            "rainy_input": {k: round(v, 4) for k, v in res.input_means.items()},
            "routing": routing_counts(model, folder / "rain", args.limit),
        }
        if tta_modes:
            report["evaluation"][name]["self_ensemble"] = {
                mode: {k: round(v, 4) for k, v in evaluate(model, folder_eval, progress=False, tta=mode).means.items()}
                for mode in tta_modes
            }
        print(name, report["evaluation"][name], flush=True)
    report["cpu_latency_480x320"] = [cpu_latency(model, threads=t) for t in sorted({1, args.threads})]
    if args.side_by_side and args.real:
        names = [n for n in args.real.split(",") if n]
        report["side_by_sides"] = side_by_sides(model, args.data / "real-internet" / "rain", names, args.side_by_side)
    if args.ship is not None:
        from edgerain.models.checkpoint import save_checkpoint

        prov = dict(meta["provenance"])
        prov["data_terms"] = DATA_TERMS
        prov["metrics"] = {
            name: {"psnr_y": ev["model"]["psnr_y"], "ssim_y": ev["model"]["ssim_y"], "pairs": ev["pairs"]}
            for name, ev in report["evaluation"].items()
        }
        prov["cpu_latency_480x320_s"] = report["cpu_latency_480x320"][0]["median_s"]
        save_checkpoint(model, args.ship, prov)
        report["shipped"] = {
            "path": str(args.ship),
            "sha256": sha256_file(args.ship),
            "bytes": args.ship.stat().st_size,
        }
    with atomic_path(args.json) as tmp_json:
        tmp_json.write_text(json.dumps(report, indent=2) + "\n")
    if args.model_card is not None:
        with atomic_path(args.model_card) as tmp_card:
            tmp_card.write_text(model_card(report))
    print(json.dumps({k: report[k] for k in ("evaluation", "cpu_latency_480x320")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
