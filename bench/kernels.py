#!/usr/bin/env python
"""Benchmark the fused kernels (GPU): eager vs SDPA-with-bias vs Triton vs the CUDA extension.

    python bench/kernels.py                 # decoder shapes of 512x512 and 1280x720, fp16 -> bench/results/
    python bench/kernels.py --quick         # fewer iterations
    python bench/kernels.py --smoke --out DIR   # CPU + Triton interpreter at tiny shapes (checks the code path)

The measurement itself lives in edgerain/ops/benchmark.py (also behind `edgerain profile kernels`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results)")
    parser.add_argument("--quick", action="store_true", help="5 warm-up and 20 timed runs instead of 20 and 100")
    parser.add_argument(
        "--smoke", action="store_true", help="run on the CPU with the Triton interpreter at tiny shapes (no GPU)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        if args.out is None:
            parser.error("--smoke needs --out (smoke numbers must not mix with real results)")
        os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton

    import torch

    from edgerain.errors import EdgerainError
    from edgerain.ops import benchmark

    out = args.out or benchmark.DEFAULT_RESULTS
    try:
        if args.smoke:
            cases = [
                benchmark.Case(
                    "mgca_window_attention",
                    "smoke s4",
                    dict(B=1, heads=1, d=16, H=8, W=8, window=8, shift=4),
                ),
                benchmark.Case("updw", "smoke", dict(B=1, cin=16, cout=16, h=4, w=4)),
            ]
            benchmark.run(out, cases, torch.float16, warmup=0, iters=1, device=torch.device("cpu"))
        else:
            warmup, iters = (5, 20) if args.quick else (20, 100)
            benchmark.run(out, warmup=warmup, iters=iters)
    except EdgerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
