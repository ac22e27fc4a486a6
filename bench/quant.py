"""INT8 vs FP32 on CPU: ONNX Runtime INT8 (Q/DQ) vs ONNX Runtime FP32 vs PyTorch eager, and PSNR.

For each network: build it (random weights unless --weights-dir has <name>.safetensors), calibrate
INT8 on rainy images, export the deployed graphs (context + main) in FP32 and INT8, then time the
deployed pipeline at 480x320 and measure Y-PSNR on rain100l pairs through ONNX Runtime.

Writes JSON (machine, versions, git commit, settings, per-network results and the ORT-optimised
op census that explains the INT8 speed) and a markdown table next to it.

    nice -n 15 .venv/bin/python bench/quant.py --out bench/results/quant_cpu.json
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rain100l"
NETWORKS = ("rdmc", "fclip-unet", "clip-rpn", "clip-weather")
PLACEMENTS = ("tensorrt", "ort")


def build(name: str, weights_dir: Path | None) -> Any:
    from edgerain.models import build_model
    from edgerain.models.checkpoint import load_checkpoint

    if weights_dir and (weights_dir / f"{name}.safetensors").is_file():
        return load_checkpoint(weights_dir / f"{name}.safetensors"), True
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(name, quiet_clip=True), False


class Pipeline:
    """The deployed pipeline over ORT sessions: context graph (router/prior) then one main graph."""

    def __init__(self, folder: Path, names: list[str], kind: str, threads: int, census_dir: Path | None = None):
        from edgerain.quant.export import ort_session

        self.kind = kind
        self.sessions = {}
        for n in names:
            opt = str(census_dir / f"{n}.opt.onnx") if census_dir else None
            self.sessions[n] = ort_session(folder / f"{n}.onnx", optimize=True, threads=threads, optimized_path=opt)

    def __call__(self, image: np.ndarray, pad_multiple: int) -> tuple[np.ndarray, int | None]:
        h, w = image.shape[-2:]
        ph, pw = (-h) % pad_multiple, (-w) % pad_multiple
        padded = np.pad(image, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect") if ph or pw else image
        expert = None
        if self.kind == "router":
            scores = self.sessions["context"].run(None, {"image": image})[0]
            expert = int(scores.argmax())
            out = self.sessions[f"main_{expert}"].run(None, {"image": padded})[0]
        elif self.kind == "prior":
            tokens = self.sessions["context"].run(None, {"image": image})[0]
            out = self.sessions["main_0"].run(None, {"image": padded, "context": tokens})[0]
        else:
            out = self.sessions["main_0"].run(None, {"image": padded})[0]
        return np.clip(out[..., :h, :w], 0.0, 1.0), expert


def timed(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up (ORT arena, torch allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeats}


def op_census(folder: Path) -> dict[str, int]:
    import onnx

    ops: collections.Counter[str] = collections.Counter()
    for path in sorted(folder.glob("*.opt.onnx")):
        ops.update(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return dict(ops.most_common())


def bench_network(name: str, args: argparse.Namespace, pairs: list[Any]) -> dict[str, Any]:
    from edgerain.eval.metrics import psnr
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.models.clip_weather import ClipWeather
    from edgerain.quant import deployment_graphs, export_qdq_onnx, qdq_summary, quantize_model
    from edgerain.quant.calibrate import load_calibration_images

    model, trained = build(name, args.weights_dir)
    kind = "router" if isinstance(model, ClipRPN) else "prior" if isinstance(model, ClipWeather) else "plain"
    h, w = args.height, args.width
    row: dict[str, Any] = {"network": name, "trained_weights": trained, "size_hw": [h, w]}
    row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    calib = load_calibration_images(args.calib, tuple(args.calib_size), args.calib_limit)
    row["calibration"] = {"images": len(calib), "size_hw": args.calib_size, "method": args.method}
    nets: dict[str, Any] = {"fp32": model}
    for placement in PLACEMENTS:
        t = time.perf_counter()
        result = quantize_model(model, calib, method=args.method, placement=placement, progress=False)
        row[f"calibration_{placement}_s"] = time.perf_counter() - t
        row[f"quantizers_per_submodule_{placement}"] = result.counts
        row["never_run_layers"] = result.never_run
        nets[f"int8_{placement}"] = result.model

    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix=f"bench-quant-{name}-") as tmp_name:
        tmp = Path(tmp_name)
        names = [spec.name for spec in deployment_graphs(model, h, w, image=example)]
        for variant, net in nets.items():
            (tmp / variant).mkdir()
            t = time.perf_counter()
            for spec in deployment_graphs(net, h, w, image=example):
                export_qdq_onnx(
                    spec.module,
                    spec.example_inputs,
                    tmp / variant / f"{spec.name}.onnx",
                    input_names=spec.input_names,
                    output_names=spec.output_names,
                    dynamic_axes=spec.dynamic_axes,
                )
            row[f"export_{variant}_s"] = time.perf_counter() - t
        row["int8_graphs"] = {
            variant: {
                n: {k: v for k, v in qdq_summary(tmp / variant / f"{n}.onnx").items() if k != "ops"} for n in names
            }
            for variant in nets
            if variant != "fp32"
        }
        pipes = {}
        for variant in nets:
            (tmp / f"census_{variant}").mkdir()
            pipes[variant] = Pipeline(tmp / variant, names, kind, args.threads, census_dir=tmp / f"census_{variant}")
        row["ort_optimized_ops"] = {v: op_census(tmp / f"census_{v}") for v in pipes}

        x = example.numpy()
        with torch.no_grad():
            row["latency"] = {"torch_eager_fp32": timed(lambda: model(example), args.repeats)}
        for v, pipe in pipes.items():
            row["latency"][f"ort_{v}"] = timed(lambda pipe=pipe: pipe(x, model.pad_multiple), args.repeats)
        lat = row["latency"]
        for placement in PLACEMENTS:
            row[f"speedup_int8_{placement}_vs_fp32_ort"] = (
                lat["ort_fp32"]["median_s"] / lat[f"ort_int8_{placement}"]["median_s"]
            )

        scores: dict[str, list[float]] = {v: [] for v in pipes}
        experts: dict[str, list[int | None]] = {v: [] for v in pipes}
        for pair in pairs:
            rainy = pair.rainy.numpy()
            # Main graphs are static (h, w): portrait pairs run transposed and are transposed back.
            portrait = rainy.shape[-2:] == (w, h) and h != w
            if portrait:
                rainy = rainy.transpose(0, 1, 3, 2).copy()
            for v, pipe in pipes.items():
                out, expert = pipe(rainy, model.pad_multiple)
                hwc = out[0].transpose(2, 1, 0) if portrait else out[0].transpose(1, 2, 0)
                scores[v].append(psnr(hwc, pair.clean))
                experts[v].append(expert)
        row["psnr"] = {"pairs": len(pairs), **{f"ort_{v}_db": float(np.mean(scores[v])) for v in pipes}}
        for placement in PLACEMENTS:
            v = f"int8_{placement}"
            row["psnr"][f"drop_{placement}_db"] = float(np.mean(scores["fp32"]) - np.mean(scores[v]))
            if kind == "router":
                same = sum(a == b for a, b in zip(experts["fp32"], experts[v], strict=True))
                row["psnr"][f"router_agreement_{placement}"] = same / len(pairs)
    return row


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# INT8 vs FP32 on CPU ({m['cpu']}, {report['settings']['threads']} thread(s), "
        f"{report['settings']['height']}x{report['settings']['width']})",
        "",
        f"Commit `{report['git_commit']}`; onnxruntime {report['versions']['onnxruntime']}, torch "
        f"{report['versions']['torch']}, ModelOpt {report['versions']['nvidia-modelopt']}. Latency: median of "
        f"{report['settings']['repeats']} runs (minimum in brackets) of the deployed pipeline (context + one main graph); "
        "speed-ups from the minima (the least disturbed by the other jobs on the machine). PSNR: Y channel "
        f"on the first {report['settings']['pairs']} rain100l pairs through ONNX Runtime. "
        f"ONNX Runtime's INT8 path on this CPU: {m.get('ort_int8', 'not recorded')}.",
        "",
        "INT8 (TRT placement): Q/DQ on conv/linear inputs only, as TensorRT wants. INT8 (ORT placement): also on "
        "conv/linear outputs, so ONNX Runtime's CPU provider forms QLinearConv. INT8/float convs: conv nodes in the "
        "ORT-optimised INT8 graphs (TRT placement / ORT placement).",
        "",
        "| network | weights | eager FP32 (s) | ORT FP32 (s) | ORT INT8 TRT pl. (s) | ORT INT8 ORT pl. (s) "
        "| speed-up TRT pl. | speed-up ORT pl. | PSNR FP32 | drop TRT pl. (dB) | drop ORT pl. (dB) "
        "| INT8 / float convs TRT pl. | INT8 / float convs ORT pl. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def t(entry: dict[str, float]) -> str:
        return f"{entry['median_s']:.2f} ({entry['min_s']:.2f})"

    for r in report["results"]:
        lat, ps = r["latency"], r["psnr"]
        convs = []
        for placement in PLACEMENTS:
            ops = r["ort_optimized_ops"][f"int8_{placement}"]
            q = ops.get("QLinearConv", 0) + ops.get("ConvInteger", 0)
            f = ops.get("Conv", 0) + ops.get("FusedConv", 0)
            convs.append(f"{q} / {f}")
        speed = [lat["ort_fp32"]["min_s"] / lat[f"ort_int8_{p}"]["min_s"] for p in PLACEMENTS]
        lines.append(
            f"| {r['network']} | {'trained' if r['trained_weights'] else 'random'} | "
            f"{t(lat['torch_eager_fp32'])} | {t(lat['ort_fp32'])} | {t(lat['ort_int8_tensorrt'])} | "
            f"{t(lat['ort_int8_ort'])} | {speed[0]:.2f}x | {speed[1]:.2f}x | "
            f"{ps['ort_fp32_db']:.2f} | {ps['drop_tensorrt_db']:+.3f} | {ps['drop_ort_db']:+.3f} | "
            f"{convs[0]} | {convs[1]} |"
        )
    for note in report.get("workarounds", []):
        lines += ["", f"Workaround in effect: {note}."]
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    lines += ["", report.get("analysis", "")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from edgerain.machine import git_commit
    from edgerain.quant.env import machine, versions
    from edgerain.quant.gate import load_eval_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="rain/norain pairs (PSNR) and calibration")
    ap.add_argument("--calib", type=Path, default=None, help="calibration images (default: --data)")
    ap.add_argument("--calib-size", type=int, nargs=2, default=[160, 240], metavar=("H", "W"))
    ap.add_argument("--calib-limit", type=int, default=4)
    ap.add_argument("--method", default="max")
    ap.add_argument("--pairs", type=int, default=6, help="rain100l pairs for PSNR")
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and ORT")
    ap.add_argument("--weights-dir", type=Path, default=None, help="folder with <network>.safetensors")
    ap.add_argument("--analysis", type=Path, default=None, help="markdown paragraph appended to the table")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "quant_cpu.json")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md table (and analysis) from --out")
    args = ap.parse_args(argv)
    if args.table_only:
        report = json.loads(args.out.read_text())
        if args.analysis and args.analysis.is_file():
            report["analysis"] = args.analysis.read_text()
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(report))
        return 0
    args.calib = args.calib or args.data
    torch.set_num_threads(args.threads)

    pairs = load_eval_pairs(args.data, args.pairs)
    report: dict[str, Any] = {
        "benchmark": "quant_cpu",
        "machine": machine(),
        "versions": versions(),
        "git_commit": git_commit(REPO),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": [],
    }
    for name in args.networks:
        t = time.perf_counter()
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        row = bench_network(name, args, pairs)
        row["wall_s"] = time.perf_counter() - t
        print(f"[{name}] done in {row['wall_s']:.0f} s", file=sys.stderr, flush=True)
        report["results"].append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # partial results survive a timeout
    if args.analysis and args.analysis.is_file():
        report["analysis"] = args.analysis.read_text()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
