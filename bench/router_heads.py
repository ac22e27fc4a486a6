"""Which routing head to fit: feature-statistics heads of several pool sizes and penalties against the
checkpoint's own router, all scored on one run of every expert per pair.

For each folder every expert of the checkpoint runs once per pair (``bench/routing.py``'s table,
cached under ``--tables`` by the checkpoint's sha256 so a rerun skips it). Then, for each
``--per-class`` N, the pooled feature statistics of N synthetic views per class are computed once
and a head is fitted for each ``--l2`` (:func:`edgerain.train.router.fit_logistic_head`, the fit
``edgerain calibrate-router --head feature-stats`` makes), and each head's picks are scored on the
table. Choose on the held-out synthetic folders (those with labels.csv); benchmark folders are
reported, never used to choose.

    .venv/bin/python bench/router_heads.py --weights edgerain/weights/default.safetensors \\
        --data /tmp/val320 --data ../shared/data/rain100l --per-class 300 --per-class 1000 \\
        --out bench/results/router_heads_default.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routing import expert_table  # bench/ is not a package: its own folder on the path


def cached_table(model: Any, digest: str, folder: Path, tables: Path | None) -> list[dict[str, Any]]:
    """Every expert's PSNR per pair of ``folder``, from ``tables`` when computed for this checkpoint."""
    path = tables / f"{folder.name}.json" if tables is not None else None
    if path is not None and path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("sha256") == digest and cached.get("folder") == str(folder.resolve()):
            return cached["rows"]
    rows = expert_table(model, folder)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"sha256": digest, "folder": str(folder.resolve()), "rows": rows}))
    return rows


def score(router: Any, images: dict[str, list[torch.Tensor]], tables: dict[str, np.ndarray], synthetic: set[str]):
    """Routed PSNR and routing counts per folder, and the mean over the pairs of the synthetic folders."""
    out: dict[str, Any] = {"folders": {}}
    held: list[np.ndarray] = []
    with torch.no_grad():
        for name, xs in images.items():
            picks = np.array([int(router(x).argmax(-1)) for x in xs])
            routed = tables[name][np.arange(len(picks)), picks]
            out["folders"][name] = {
                "routed_psnr_y": round(float(routed.mean()), 3),
                "routing_counts": np.bincount(picks, minlength=tables[name].shape[1]).tolist(),
            }
            if name in synthetic:
                held.append(routed)
    if held:
        out["heldout_synthetic_psnr_y"] = round(float(np.concatenate(held).mean()), 3)
        out["heldout_synthetic_pairs"] = int(sum(len(h) for h in held))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="CLIP-RPN checkpoint")
    ap.add_argument("--data", type=Path, action="append", required=True, help="folder of pairs (repeatable)")
    ap.add_argument("--per-class", type=int, action="append", required=True, help="pool size (repeatable)")
    ap.add_argument("--l2", type=float, action="append", help="penalties (repeatable; default 1e-3 1e-2 1e-1)")
    ap.add_argument("--procedural-rain", type=float, default=0.5)
    ap.add_argument("--noise-rain", type=float, default=0.8)
    ap.add_argument("--noise-heavy", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=31337, help="seed of the pools (calibrate-router's default)")
    ap.add_argument("--tables", type=Path, help="cache folder for the per-pair expert tables")
    ap.add_argument("--out", type=Path, required=True, help="JSON report")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from edgerain.data.io import load_image
    from edgerain.data.pairs import find_pairs
    from edgerain.errors import EdgerainError
    from edgerain.models.checkpoint import load_checkpoint
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.runtime.profile import write_bench_report
    from edgerain.train.data import open_source, read_labels
    from edgerain.train.router import feature_stats_pool, fit_logistic_head
    from edgerain.utils import sha256_file

    torch.set_num_threads(args.threads)
    try:
        model = load_checkpoint(args.weights).eval()
        if not isinstance(model, ClipRPN):
            raise EdgerainError(f"{args.weights}: not a CLIP-RPN checkpoint")
        digest = sha256_file(args.weights)
        tables, images, synthetic = {}, {}, set()
        for folder in args.data:
            rows = cached_table(model, digest, folder, args.tables)
            if not rows:
                raise EdgerainError(f"{folder}: no rain/norain pairs")
            tables[folder.name] = np.array([r["experts"] for r in rows])
            images[folder.name] = [
                torch.from_numpy(load_image(p.rain)).permute(2, 0, 1)[None] for p in find_pairs(folder)
            ]
            if read_labels(folder):
                synthetic.add(folder.name)
            print(f"{folder.name}: experts {tables[folder.name].mean(0).round(3).tolist()}", flush=True)
        source: Any = open_source(
            "synth", args.seed, args.procedural_rain, noise=args.noise_rain, noise_heavy=args.noise_heavy
        )
        heads: dict[str, Any] = {"checkpoint": score(model.router, images, tables, synthetic)}
        print(f"checkpoint's router: {heads['checkpoint']}", flush=True)
        for per_class in args.per_class:
            feats, labels = feature_stats_pool(model, source.synth, per_class, args.seed)
            for l2 in args.l2 or [1e-3, 1e-2, 1e-1]:
                fitted = copy.deepcopy(model)
                weight, bias = fit_logistic_head(feats, labels, len(model.experts), l2)
                fitted.set_router_head(weight.float(), bias.float(), kind="feature-stats")
                key = f"feature-stats per_class={per_class} l2={l2:g}"
                heads[key] = score(fitted.router, images, tables, synthetic)
                print(f"{key}: {heads[key]}", flush=True)
    except EdgerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    oracle = {name: round(float(t.max(1).mean()), 3) for name, t in tables.items()}
    experts = {name: [round(float(v), 3) for v in t.mean(0)] for name, t in tables.items()}
    write_bench_report(
        args.out,
        "routed Y-PSNR of feature-statistics routing heads vs the checkpoint's router (bench/router_heads.py)",
        argv,
        {
            "weights": {"path": str(args.weights), "sha256": digest},
            "pools": {
                "seed": args.seed,
                "procedural_rain": args.procedural_rain,
                "noise_rain": args.noise_rain,
                "noise_heavy": args.noise_heavy,
            },
            "synthetic_folders": sorted(synthetic),
            "oracle_psnr_y": oracle,
            "expert_psnr_y": experts,
            "heads": heads,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
