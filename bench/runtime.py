#!/usr/bin/env python
"""Record `edgerain bench` for every network on this machine: bench/results/runtime_<tag>.{json,md}.

    nice -n 15 python bench/runtime.py                      # CPU: every full-size network
    python bench/runtime.py --networks rdmc,fclip-unet --crop 128 --limit 2 --timeout 900

Each network runs in its own process with a time limit, so one slow export cannot stall the rest;
a network that runs out of time is recorded as such. Without trained checkpoints the networks carry
seeded random weights: their PSNR measures nothing about deraining, but latency, parity between
backends (PSNR vs fp32) and size are real.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETWORKS = ("clip-rpn", "clip-rpn-edge", "fclip-unet", "clip-weather", "rdmc")


def _one(args: argparse.Namespace) -> int:
    from edgerain.runtime.bench import bench

    res = bench(
        args.data,
        model=args.one,
        rows=args.rows.split(","),
        limit=args.limit,
        crop=args.crop,
        target=args.target,
        out=args.json,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    return 0 if res.rows else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rain100l")
    parser.add_argument("--rows", default="torch-fp32,torch-fused,ort-fp32,ort-fp16,ort-int8,trt-fp16")
    parser.add_argument("--limit", type=int, default=2, help="pairs per network")
    parser.add_argument("--crop", type=int, default=192, help="center crop (pixels) of every image")
    parser.add_argument("--target", default="x86-cpu")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per network")
    parser.add_argument("--tag", default="cpu", help="results file name: runtime_<tag>.json")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return _one(args)

    from edgerain.runtime.bench import markdown_table
    from edgerain.runtime.profile import environment

    load_before = os.getloadavg()
    reports, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks.split(","):
            path = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, __file__, "--one", name, "--json", str(path), "--data", str(args.data)]
            cmd += ["--rows", args.rows, "--limit", str(args.limit), "--crop", str(args.crop), "--target", args.target]
            t0 = time.time()
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, timeout=args.timeout, cwd=REPO)
                why = f"exit code {proc.returncode}" if proc.returncode else ""
            except subprocess.TimeoutExpired:
                why = f"ran out of its {args.timeout} s"
            if path.is_file():  # the bench writes its report after every row
                rep = json.loads(path.read_text())
                rep["wall_s"] = round(time.time() - t0, 1)
                done = {r["row"] for r in rep["rows"]}
                for row in rep.get("rows_requested", []):
                    if row not in done:
                        rep["rows"].append(
                            {
                                "row": row,
                                "status": "timeout" if "ran out" in why else "fail",
                                "note": why,
                                **dict.fromkeys(("latency_ms", "psnr", "ssim", "psnr_vs_fp32", "size_mb")),
                            }
                        )
                reports.append(rep)
            if why:
                failures.append({"model": name, "reason": why})
                print(f"   {name}: {why}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "kind": "edgerain-runtime-bench",
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("one", "json")},
        "networks": reports,
        "not_measured": failures,
        # Other work on the machine slows every row alike; the load average says how busy it was.
        "load_average": {"before": load_before, "after": os.getloadavg()},
        **environment(),
    }
    json_path = args.out / f"runtime_{args.tag}.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    env = summary["machine"]
    md = [
        f"# edgerain bench on {env['cpu']} ({env['cores']} cores{', ' + env['gpu'] if env['gpu'] else ''})",
        "",
        f"Commit {summary['commit']}, {summary['time_utc']}; {args.limit} Rain100L pairs per network, center-cropped "
        f"to {args.crop}x{args.crop}; bundles exported for target `{args.target}`. Latency is the median per image "
        "(whole image, batch 1). Networks carry seeded random weights (no trained checkpoints yet): PSNR/SSIM say "
        "nothing about deraining; parity (PSNR vs fp32), latency and size are what these rows measure. "
        f"1-minute load average {summary['load_average']['before'][0]:.1f} before, "
        f"{summary['load_average']['after'][0]:.1f} after (other work on the machine slows every row).",
        "",
        markdown_table(reports),
    ]
    if failures:
        md += ["Cut short:", ""] + [f"- {f['model']}: {f['reason']}" for f in failures] + [""]
    (args.out / f"runtime_{args.tag}.md").write_text("\n".join(md))
    print(f"wrote {json_path} and runtime_{args.tag}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
