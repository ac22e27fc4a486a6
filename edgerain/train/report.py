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
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@torch.no_grad()
def cpu_latency(model: Any, height: int = 320, width: int = 480, repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    """Median wall time of the whole model (routing included) on one H x W image on the CPU."""
    from edgerain.models.inference import derain_tensor

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
        derain_tensor(model, x)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            derain_tensor(model, x)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return {
        "size": f"{width}x{height}",
        "threads": threads,
        "repeats": repeats,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "shared 2-core machine: other jobs were running; min is the least-disturbed run",
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
    args = ap.parse_args(argv)

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
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
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
        print(name, report["evaluation"][name], flush=True)
    report["cpu_latency_480x320"] = [cpu_latency(model, threads=t) for t in sorted({1, args.threads})]
    if args.side_by_side and args.real:
        names = [n for n in args.real.split(",") if n]
        report["side_by_sides"] = side_by_sides(model, args.data / "real-internet" / "rain", names, args.side_by_side)
    with atomic_path(args.json) as tmp_json:
        tmp_json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("evaluation", "cpu_latency_480x320")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
