"""``edgerain profile run``: latency percentiles, throughput, peak memory, a per-op breakdown and a
roofline projection of one network (a bundle, or a PyTorch model) at one image size.

The per-op breakdown comes from the backend's own profiler: ONNX Runtime's session profiling, the
torch profiler, or ``trtexec --dumpProfile`` when TensorRT's ``trtexec`` is on the PATH. FLOPs and
bytes are counted from the graphs (:mod:`edgerain.runtime.costs`) or, for PyTorch models, with
torch's FLOP counter, and projected onto target profiles (``targets/``) for a best-case FPS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgerain.errors import EdgerainError
from edgerain.machine import cpu_name, git_commit
from edgerain.runtime.costs import GraphCost, graph_cost, roofline
from edgerain.runtime.derainer import Derainer


def parse_shape(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (as video sizes are written: 1280x720) -> (height, width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise EdgerainError(f"--shape must be WIDTHxHEIGHT, e.g. 1280x720 (got {text!r})")
    return int(parts[1]), int(parts[0])


def environment() -> dict[str, Any]:
    """Machine, package versions and git commit recorded with every measurement."""
    import importlib.metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "onnx"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    gpu = None
    if "torch" in sys.modules or versions.get("torch"):
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name()
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "system": platform.platform()},
        "versions": versions,
        "commit": git_commit(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_bench_report(path: Path, what: str, argv: list[str] | None, fields: dict[str, Any]) -> None:
    """A benchmark script's JSON report, written atomically: what it measured, the command that ran
    it (``argv``: the script's arguments, None for ``sys.argv``), the environment, then its fields."""
    from edgerain.utils import atomic_path

    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    report = {"what": what, "command": command, "environment": environment(), **fields}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")


def open_derainer(
    subject: str, backend: str, weights: str | None = None, tile: int | None = None, threads: int | None = None
) -> Derainer:
    """A bundle folder, a checkpoint file, or a registry name -> a Derainer on ``backend``."""
    path = Path(subject)
    if path.is_dir():
        if weights is not None:
            raise EdgerainError("--weights goes with a model name, not with a bundle")
        return Derainer(path, backend=backend, tile=tile, threads=threads)
    if backend != "torch":
        raise EdgerainError(f"{subject} is not a bundle folder; a model name or checkpoint runs with --backend torch")
    if path.is_file():
        return Derainer(model=None, weights=str(path), backend="torch", tile=tile)
    return Derainer(model=subject, weights=weights, backend="torch", tile=tile)


class _CallRecorder:
    """Wraps a runner to record the input shapes of every graph call in one run (for costing)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.calls: list[tuple[str, int | None, tuple[int, ...], tuple[int, ...] | None]] = []

    def context(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(("context", None, x.shape, None))
        return self.runner.context(x)

    def main(self, index: int, x: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        self.calls.append(("main", index, x.shape, None if context is None else context.shape))
        return self.runner.main(index, x, context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)


def count_cost(derainer: Derainer, image: np.ndarray) -> GraphCost | None:
    """FLOPs and bytes of one image through the derainer (None where they cannot be counted)."""
    if derainer.spec is not None:
        recorder = _CallRecorder(derainer.runner)
        derainer.runner, original = recorder, derainer.runner  # type: ignore[assignment]
        try:
            derainer.run_nchw(image)
        finally:
            derainer.runner = original
        spec = derainer.spec
        total = GraphCost(0.0, 0.0, 0.0, 0.0, [])
        for role, index, shape, ctx_shape in recorder.calls:
            if role == "context":
                assert spec.context_file is not None
                total = total + graph_cost(spec.context_file, {"image": shape})
            else:
                assert index is not None
                shapes = {"image": shape}
                if ctx_shape is not None:
                    shapes["context"] = ctx_shape
                total = total + graph_cost(spec.main_files[index], shapes)
        return total
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = derainer.runner.model  # type: ignore[attr-defined]
    counter = FlopCounterMode(display=False)
    with counter:
        derainer.run_nchw(image)
    weight_bytes = float(sum(p.numel() * p.element_size() for p in model.parameters()))
    weight_bytes += float(sum(b.numel() * b.element_size() for b in model.buffers()))
    io_bytes = 2.0 * image.size * 4
    del torch
    # Torch's counter sees only matmuls/convolutions; eager traffic is not counted (no unfused bound).
    return GraphCost(float(counter.get_total_flops()), weight_bytes + io_bytes, float("nan"), weight_bytes)


def _ort_breakdown(trace_files: list[str], top: int) -> dict[str, Any]:
    by_type: dict[str, list[float]] = defaultdict(list)
    by_node: dict[str, float] = defaultdict(float)
    for f in trace_files:
        with contextlib.suppress(OSError, ValueError):
            events = json.loads(Path(f).read_text())
            for e in events:
                if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                    op = e.get("args", {}).get("op_name", "?")
                    by_type[op].append(float(e.get("dur", 0)))
                    by_node[e["name"].removesuffix("_kernel_time")] += float(e.get("dur", 0))
    return _table(by_type, by_node, top, "onnxruntime session profiling (kernel time)")


def _table(by_type: dict[str, list[float]], by_node: dict[str, float], top: int, source: str) -> dict[str, Any]:
    total = sum(sum(v) for v in by_type.values()) or 1.0
    ops: list[dict[str, Any]] = [
        {"op": k, "calls": len(v), "total_ms": sum(v) / 1e3, "share": sum(v) / total} for k, v in by_type.items()
    ]
    ops.sort(key=lambda r: -float(r["total_ms"]))
    nodes: list[dict[str, Any]] = [{"node": k, "total_ms": v / 1e3} for k, v in by_node.items()]
    nodes.sort(key=lambda r: -float(r["total_ms"]))
    return {"source": source, "by_op": ops[:top], "top_nodes": nodes[:top]}


def _torch_breakdown(derainer: Derainer, image: np.ndarray, top: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    cuda = str(getattr(derainer.runner, "device", "cpu")).startswith("cuda")
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        derainer.run_nchw(image)
    by_type: dict[str, list[float]] = defaultdict(list)
    for evt in prof.key_averages():
        us = evt.self_device_time_total if cuda else evt.self_cpu_time_total
        if us > 0:
            by_type[evt.key].extend([us / max(evt.count, 1)] * evt.count)
    return _table(by_type, {}, top, "torch profiler (self " + ("CUDA" if cuda else "CPU") + " time)")


def _trtexec_breakdown(derainer: Derainer, hw: tuple[int, int], workdir: Path, top: int) -> dict[str, Any] | None:
    """``trtexec --dumpProfile`` per-layer times of the main graph, when trtexec is on the PATH."""
    exe = shutil.which("trtexec")
    if exe is None or derainer.spec is None:
        return None
    from edgerain.bundle import padded_size

    h, w = padded_size(*hw, derainer.pad_multiple)
    main = derainer.spec.main_files[0]
    shapes = f"image:1x3x{h}x{w}"
    out = workdir / "trtexec_profile.json"
    cmd = [exe, f"--onnx={main}", f"--shapes={shapes}", "--dumpProfile", f"--exportProfile={out}", "--noDataTransfers"]
    if derainer.spec.precision in ("fp16", "int8"):
        cmd.append(f"--{derainer.spec.precision}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not out.is_file():
        return {"source": "trtexec --dumpProfile", "error": (res.stderr or res.stdout).strip().splitlines()[-1:]}
    layers = [r for r in json.loads(out.read_text()) if isinstance(r, dict) and "name" in r]
    by_node = {r["name"]: float(r.get("averageMs", 0.0)) * 1e3 for r in layers}
    by_type: dict[str, list[float]] = defaultdict(list)
    for name, us in by_node.items():
        by_type[name.split("/")[-1].split("_")[0]].append(us)
    return _table(by_type, by_node, top, f"trtexec --dumpProfile ({main.name}, {shapes})")


@dataclasses.dataclass
class ProfileResult:
    out_dir: Path
    report: dict[str, Any]


def profile(
    subject: str,
    backend: str = "ort",
    shape: str = "1280x720",
    iters: int = 20,
    warmup: int = 2,
    out: str | os.PathLike[str] | None = None,
    targets: list[str] | None = None,
    weights: str | None = None,
    tile: int | None = None,
    threads: int | None = None,
    top: int = 12,
    log: Any = None,
) -> ProfileResult:
    """Measure one network at one size; write ``profile.json`` and ``profile.png`` into ``out``."""
    from edgerain.targets import get_target
    from edgerain.utils import atomic_path

    if iters < 1 or warmup < 0:
        raise EdgerainError("--iters must be at least 1 and --warmup at least 0")
    h, w = parse_shape(shape)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise EdgerainError(f"--out {out} exists and is not a folder")
    resolved_targets = [get_target(t) for t in (targets or ["jetson-orin-agx", "jetson-orin-nano"])]
    derainer = open_derainer(subject, backend, weights=weights, tile=tile, threads=threads)
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, h, w), dtype=np.float32)
    say = log or (lambda _msg: None)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    say(f"warming up ({warmup} runs of {w}x{h}) ...")
    for _ in range(warmup):
        derainer.run_nchw(image)
    cuda = _cuda_sync(derainer)
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    times = []
    say(f"timing {iters} runs ...")
    for _ in range(iters):
        t0 = time.perf_counter()
        derainer.run_nchw(image)
        if cuda is not None:
            cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    latency = {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }
    memory = {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_before_mib": rss_before,
        "note": "peak resident set of the whole process (the host side; on a Jetson host and GPU memory are shared)",
    }
    if cuda is not None:
        memory["cuda_peak_allocated_mib"] = cuda.max_memory_allocated() / 2**20

    say("per-op breakdown ...")
    with tempfile.TemporaryDirectory() as tmp:
        breakdowns = []
        if backend == "ort" and derainer.spec is not None:
            prof = Derainer(derainer.spec.root, backend="ort", tile=tile, threads=threads, verify_hashes=False)
            runner = prof.runner
            from edgerain.runtime.backends import OrtRunner

            assert isinstance(runner, OrtRunner)
            prof.runner = OrtRunner(prof.spec, threads=threads, profile_prefix=str(Path(tmp) / "ort"))  # type: ignore[arg-type]
            prof.run_nchw(image)
            breakdowns.append(_ort_breakdown(prof.runner.end_profiling(), top))  # type: ignore[attr-defined]
        elif backend == "torch":
            breakdowns.append(_torch_breakdown(derainer, image, top))
        trt = _trtexec_breakdown(derainer, (h, w), Path(tmp), top) if backend == "trt" else None
        if trt is not None:
            breakdowns.append(trt)

    say("counting FLOPs and bytes ...")
    cost = count_cost(derainer, image)
    precision = derainer.spec.precision if derainer.spec is not None else "fp32"
    projections = []
    if cost is not None:
        for tgt in resolved_targets:
            for p in ("fp32", "fp16", "int8"):
                if p in tgt.precisions:
                    projections.append(roofline(cost, tgt, p))
    mean_s = latency["mean_ms"] / 1e3
    report = {
        "kind": "edgerain-profile",
        "subject": str(subject),
        "model": derainer.name,
        "backend": backend,
        "runtime": derainer.describe(),
        "precision": precision,
        "shape": {"width": w, "height": h},
        "iters": iters,
        "warmup": warmup,
        "latency": latency,
        "throughput": {"fps": 1.0 / mean_s, "megapixels_per_s": h * w / 1e6 / mean_s},
        "measured_ops_per_s": (cost.flops / mean_s) if cost is not None else None,
        "memory": memory,
        "breakdown": breakdowns,
        "cost": cost.summary() if cost is not None else None,
        "roofline": projections,
        **environment(),
    }
    out_dir = Path(out) if out is not None else Path("out") / "profile" / f"{derainer.name}-{backend}-{w}x{h}"
    with atomic_path(out_dir) as tmp_dir:
        tmp_dir.mkdir(parents=True)
        (tmp_dir / "profile.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        plot_profile(report, ms, tmp_dir / "profile.png")
    return ProfileResult(out_dir, report)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and np.isnan(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


def _cuda_sync(derainer: Derainer) -> Any:
    device = str(getattr(derainer.runner, "device", ""))
    if derainer.backend in ("trt",) or device.startswith("cuda"):
        import torch

        return torch.cuda
    return None


def plot_profile(report: dict[str, Any], ms: np.ndarray, path: Path) -> None:
    """Three panels: latency distribution, per-op time shares, roofline of the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    ax = axes[0]
    ax.hist(ms, bins=min(30, max(5, len(ms) // 2)), color="#4c72b0")
    for key, style in (("p50_ms", "-"), ("p90_ms", "--"), ("p99_ms", ":")):
        ax.axvline(
            report["latency"][key], color="k", linestyle=style, label=f"{key[:3]} {report['latency'][key]:.1f} ms"
        )
    ax.set_xlabel("latency per image (ms)")
    ax.set_ylabel("runs")
    ax.set_title(f"{report['model']} / {report['backend']} at {report['shape']['width']}x{report['shape']['height']}")
    ax.legend()

    ax = axes[1]
    if report["breakdown"] and report["breakdown"][0].get("by_op"):
        rows = report["breakdown"][0]["by_op"][:10][::-1]
        ax.barh([r["op"] for r in rows], [100 * r["share"] for r in rows], color="#55a868")
        ax.set_xlabel("share of operator time (%)")
        ax.set_title(report["breakdown"][0]["source"], fontsize=9)
    else:
        ax.text(0.5, 0.5, "no per-op breakdown for this backend", ha="center", va="center")
        ax.set_axis_off()

    ax = axes[2]
    drawn = False
    for proj in report["roofline"]:
        if "peak_ops_per_s" not in proj:
            continue
        peak, bw = proj["peak_ops_per_s"], proj["bandwidth_bytes_per_s"]
        xs = np.logspace(-1, 4, 200)
        line = ax.loglog(xs, np.minimum(peak, bw * xs) / 1e12, label=f"{proj['target']} {proj['precision']}")[0]
        ai = proj["intensity_unfused"]
        ax.loglog([ai], [min(peak, bw * ai) / 1e12], "o", color=line.get_color())
        drawn = True
    if drawn:
        ax.set_xlabel("arithmetic intensity (FLOP/byte, operator by operator)")
        ax.set_ylabel("attainable TFLOP/s")
        ax.set_title("roofline: dots = this network (whole-graph intensity)", fontsize=9)
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no GPU target to project onto", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What ``edgerain profile run`` prints: a few lines a person can act on."""
    lat, thr = report["latency"], report["throughput"]
    shape = f"{report['shape']['width']}x{report['shape']['height']}"
    lines = [
        f"{report['model']} on {report['backend']} ({report['precision']}) at {shape}, {report['iters']} runs",
        f"  latency  p50 {lat['p50_ms']:.1f} ms   p90 {lat['p90_ms']:.1f} ms   p99 {lat['p99_ms']:.1f} ms",
        f"  throughput {thr['fps']:.2f} images/s ({thr['megapixels_per_s']:.2f} MP/s)   "
        f"peak RSS {report['memory']['peak_rss_mib']:.0f} MiB",
    ]
    if report["cost"]:
        c = report["cost"]
        lines.append(f"  work {c['flops'] / 1e9:.2f} GFLOP, weights {c['weight_bytes'] / 2**20:.1f} MiB per image")
    for b in report["breakdown"]:
        top = ", ".join(f"{r['op']} {100 * r['share']:.0f}%" for r in b.get("by_op", [])[:4])
        lines.append(f"  top ops ({b['source']}): {top or b.get('error')}")
    for p in report["roofline"]:
        if p.get("best_case_fps"):
            lines.append(
                f"  best case on {p['target']} {p['precision']}: {p['best_case_fps']:.1f} FPS "
                f"(fully fused ideal {p['fused_ideal_fps']:.0f} FPS)"
            )
    return lines
