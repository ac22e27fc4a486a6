"""What routing costs: every expert of a CLIP-RPN checkpoint forced on every pair, against the router's pick.

For each checkpoint and each folder of rain/norain pairs, runs each expert alone (Y-PSNR, 8-bit
output, the evaluation convention) and the router, and reports the routed PSNR (what the model
delivers), the oracle PSNR (the best expert per image: what a perfect router would deliver) and
each expert's mean. Folders written by `edgerain synth` carry labels.csv: the report then adds the
router's confusion matrix (rows: the drawn rain class, columns: the chosen expert) and the mean
PSNR of each expert per class. Use held-out synthetic folders (other seeds than training) to
compare routers; the benchmark folders are reported, never used to choose. ``--router CKPT``
(repeatable) also scores the router of another checkpoint of the same network on the same expert
runs (its experts are not run): what a new router gains on these experts, at the cost of one pass.

    .venv/bin/python bench/routing.py --weights edgerain/weights/default.safetensors \\
        --data /tmp/val320 --data ../shared/data/rain100l --out bench/results/routing_default.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def expert_table(model: Any, folder: Path, routers: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Per pair: name, input PSNR, each expert's PSNR, the router's pick (and each of ``routers``' picks)."""
    from edgerain.data.io import load_image
    from edgerain.data.pairs import find_pairs
    from edgerain.eval.metrics import psnr
    from edgerain.train.router import forced_expert_psnr

    rows = []
    with torch.no_grad():
        for pair in find_pairs(folder):
            rainy, clean = load_image(pair.rain), load_image(pair.norain)
            x = torch.from_numpy(rainy).permute(2, 0, 1)[None]
            pick = int(model.route(x).expert)
            others = [int(r(x).argmax(-1)) for r in routers]
            experts = forced_expert_psnr(model, rainy, clean)
            rows.append(
                {
                    "name": pair.rain.stem,
                    "input": psnr(rainy, clean),
                    "experts": experts,
                    "pick": pick,
                    "others": others,
                }
            )
    return rows


def summarise(
    rows: list[dict[str, Any]], labels: dict[str, int] | None, k_experts: int, router: int | None = None
) -> dict[str, Any]:
    """Routed/oracle/per-expert PSNR of ``rows``; ``router`` i summarises the picks of ``--router`` i."""
    experts = np.array([r["experts"] for r in rows])
    picks = np.array([r["pick"] if router is None else r["others"][router] for r in rows])
    routed = experts[np.arange(len(rows)), picks]
    out: dict[str, Any] = {
        "pairs": len(rows),
        "input_psnr_y": round(float(np.mean([r["input"] for r in rows])), 3),
        "routed_psnr_y": round(float(routed.mean()), 3),
        "oracle_psnr_y": round(float(experts.max(1).mean()), 3),
        "expert_psnr_y": [round(float(v), 3) for v in experts.mean(0)],
        "routing_counts": np.bincount(picks, minlength=k_experts).tolist(),
    }
    if labels is not None:
        truth = np.array([labels[r["name"]] for r in rows])
        confusion = np.zeros((k_experts, k_experts), int)
        for t, p in zip(truth, picks, strict=True):
            confusion[t, p] += 1
        out["accuracy"] = round(float((truth == picks).mean()), 4)
        out["confusion"] = confusion.tolist()
        out["class_expert_psnr_y"] = [
            [round(float(v), 3) for v in experts[truth == c].mean(0)] if (truth == c).any() else None
            for c in range(k_experts)
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, action="append", required=True, help="CLIP-RPN checkpoint (repeatable)")
    ap.add_argument("--data", type=Path, action="append", required=True, help="folder of pairs (repeatable)")
    ap.add_argument(
        "--router", type=Path, action="append", default=[], help="also score this checkpoint's router (repeatable)"
    )
    ap.add_argument("--out", type=Path, required=True, help="JSON report")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from edgerain.errors import EdgerainError
    from edgerain.models.checkpoint import load_checkpoint
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.runtime.profile import write_bench_report
    from edgerain.train.data import read_labels
    from edgerain.utils import sha256_file

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    try:
        for weights in args.weights:
            model = load_checkpoint(weights).eval()
            if not isinstance(model, ClipRPN):
                raise EdgerainError(f"{weights}: not a CLIP-RPN checkpoint")
            routers = []
            for path in args.router:
                other = load_checkpoint(path).eval()
                if not isinstance(other, ClipRPN) or len(other.experts) != len(model.experts):
                    raise EdgerainError(f"--router {path}: not a CLIP-RPN checkpoint with {len(model.experts)} experts")
                routers.append(other.router)
            entry: dict[str, Any] = {
                "sha256": sha256_file(weights),
                "router": getattr(model, "provenance", {}).get("router"),
                "folders": {},
            }
            for folder in args.data:
                t0 = time.monotonic()
                rows = expert_table(model, folder, tuple(routers))
                if not rows:
                    raise EdgerainError(f"{folder}: no rain/norain pairs")
                labels = read_labels(folder) or None
                summary = summarise(rows, labels, len(model.experts))
                summary["seconds"] = round(time.monotonic() - t0, 1)
                entry["folders"][folder.name] = summary
                for i, path in enumerate(args.router):
                    other_summary = summarise(rows, labels, len(model.experts), router=i)
                    entry.setdefault("other_routers", {}).setdefault(str(path), {})[folder.name] = {
                        k: other_summary[k]
                        for k in ("routed_psnr_y", "routing_counts", "accuracy")
                        if k in other_summary
                    }
                    print(
                        f"  router of {path.name}: routed {other_summary['routed_psnr_y']:.2f} dB, "
                        f"routing {other_summary['routing_counts']}",
                        flush=True,
                    )
                print(
                    f"{weights.name} {folder.name}: routed {summary['routed_psnr_y']:.2f} dB, "
                    f"oracle {summary['oracle_psnr_y']:.2f}, experts {summary['expert_psnr_y']}, "
                    f"routing {summary['routing_counts']}",
                    flush=True,
                )
            results[str(weights)] = entry
    except EdgerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_bench_report(
        args.out,
        "routed vs oracle Y-PSNR of CLIP-RPN checkpoints (bench/routing.py)",
        argv,
        {"threads": args.threads, "results": results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
