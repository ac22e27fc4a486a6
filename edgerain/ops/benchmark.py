"""Kernel benchmark: eager PyTorch vs SDPA-with-bias vs Triton vs the CUDA extension, per op and shape.

Shapes are the CLIP-RPN decoder's (Restormer-lite U-Net, :class:`edgerain.models.unet.UNetConfig`)
for a 512x512 and a 1280x720 image, batch 1, fp16. Times are CUDA-event medians after warm-up;
each row also carries the achieved bandwidth (compulsory bytes: inputs read once, output written
once) and throughput next to the device's measured ceilings (a large device-to-device copy and a
large fp16 matmul), and the relative error against eager. Results are written as JSON with the
device, driver, versions and commit. ``bench/kernels.py`` and ``edgerain profile kernels`` run it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from edgerain.errors import MissingCapabilityError
from edgerain.machine import cpu_name, git_commit

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO / "bench" / "results"
IMAGE_SIZES = ((512, 512), (720, 1280))  # (H, W)


@dataclasses.dataclass(frozen=True)
class Case:
    op: str  # "mgca_window_attention" | "updw"
    label: str  # e.g. "512x512 L0"
    shape: dict[str, int]

    def inputs(self, device: torch.device, dtype: torch.dtype, seed: int = 0) -> tuple[Any, ...]:
        g = torch.Generator(device="cpu").manual_seed(seed)

        def rnd(*shape: int, scale: float = 1.0) -> Tensor:
            return (scale * torch.randn(*shape, generator=g)).to(device=device, dtype=dtype)

        s = self.shape
        if self.op == "mgca_window_attention":
            B, h, d, H, W = s["B"], s["heads"], s["d"], s["H"], s["W"]
            # q, k, v as views of one qkv map, as the model produces them.
            q, k, v = rnd(B, 3 * h * d, H, W).view(B, 3, h, d, H, W).unbind(1)
            mask = torch.rand(B, 1, H, W, generator=g).to(device=device, dtype=dtype)
            return (q, k, v, mask, s["window"], s["shift"])
        B, cin, cout, h, w = s["B"], s["cin"], s["cout"], s["h"], s["w"]
        return (
            rnd(B, cin, h, w),
            rnd(cin, 1, 3, 3, scale=0.3),
            rnd(cin, scale=0.1),
            1 + rnd(cin, scale=0.1),
            rnd(cin, scale=0.1),
            rnd(cout, cin, scale=cin**-0.5),
            rnd(cout, scale=0.1),
        )

    def compulsory_bytes(self, element_size: int) -> int:
        s = self.shape
        if self.op == "mgca_window_attention":
            feat = s["B"] * s["heads"] * s["d"] * s["H"] * s["W"]
            return element_size * (4 * feat + s["B"] * s["H"] * s["W"])  # q, k, v, out + mask
        x = s["B"] * s["cin"] * s["h"] * s["w"]
        y = s["B"] * s["cout"] * 4 * s["h"] * s["w"]
        return element_size * (x + y)

    def flops(self) -> int:
        s = self.shape
        if self.op == "mgca_window_attention":
            windows = math.ceil((s["H"] + s["shift"]) / s["window"]) * math.ceil((s["W"] + s["shift"]) / s["window"])
            p = s["window"] ** 2
            return 4 * s["B"] * s["heads"] * windows * p * p * s["d"]  # QK^T and PV
        out_px = s["B"] * 4 * s["h"] * s["w"]
        return out_px * (18 * s["cin"] + 2 * s["cin"] * s["cout"])  # dw 3x3 + 1x1


def decoder_cases(image_sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES, batch: int = 1) -> list[Case]:
    """The MGCA and UpDW shapes of the CLIP-RPN expert decoder for each image size."""
    from edgerain.models.clip_rpn import ClipRPN
    from edgerain.models.unet import UNetConfig

    cfg = UNetConfig()
    dims = [cfg.dim * 2**i for i in range(4)]
    cases = []
    for H, W in image_sizes:
        m = ClipRPN.pad_multiple
        Hp, Wp = -(-H // m) * m, -(-W // m) * m
        for level in range(3):
            h, w = Hp >> level, Wp >> level
            label = f"{W}x{H} L{level}"
            heads = cfg.heads[level]
            for shift in (0, cfg.window // 2):
                shape = dict(B=batch, heads=heads, d=dims[level] // heads, H=h, W=w, window=cfg.window, shift=shift)
                cases.append(Case("mgca_window_attention", f"{label} s{shift}", shape))
            shape = dict(B=batch, cin=dims[level + 1], cout=dims[level], h=h // 2, w=w // 2)
            cases.append(Case("updw", label, shape))
    return cases


def mgca_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int, shift: int) -> Tensor:
    """MGCA with PyTorch SDPA and an additive bias: partition, attend, un-partition, gate.

    The comparison point a user would write without a custom kernel (SDPA picks its own backend;
    with an arbitrary additive mask that is the memory-efficient kernel on CUDA).
    """
    B, h, d, H, W = q.shape
    w, s = window, shift
    nh, nw = (H + s + w - 1) // w, (W + s + w - 1) // w
    pad = (s, nw * w - W - s, s, nh * w - H - s)

    def part(t: Tensor) -> Tensor:  # (B, h, d, H, W) -> (B * nh * nw, h, w*w, d)
        t = F.pad(t.reshape(B, h * d, H, W), pad).reshape(B, h, d, nh, w, nw, w)
        return t.permute(0, 3, 5, 1, 4, 6, 2).reshape(B * nh * nw, h, w * w, d)

    bias = F.pad(torch.log(1.0 - mask + 1e-4), pad, value=float("-inf"))
    bias = bias.reshape(B, nh, w, nw, w).permute(0, 1, 3, 2, 4).reshape(B * nh * nw, 1, 1, w * w)
    o = F.scaled_dot_product_attention(part(q), part(k), part(v), attn_mask=bias.to(q.dtype))
    o = o.reshape(B, nh, nw, h, w, w, d).permute(0, 3, 6, 1, 4, 2, 5).reshape(B, h, d, nh * w, nw * w)
    return o[..., s : s + H, s : s + W] * mask.unsqueeze(1)


def backends_for(op: str) -> dict[str, Callable[..., Tensor]]:
    from edgerain import ops

    fused: Callable[..., Tensor]
    table: dict[str, Callable[..., Tensor]]
    if op == "mgca_window_attention":
        fused = ops.mgca_window_attention
        table = {"eager": ops.mgca_window_attention_reference, "sdpa_bias": mgca_sdpa}
    else:
        fused = ops.updw
        table = {"eager": ops.updw_reference}
    for name in ("triton", "extension"):
        table[name] = lambda *a, _n=name, _f=fused: _f(*a, backend=_n)
    return table


def _median_ms_cuda(fn: Callable[[], Any], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _median_ms_cpu(fn: Callable[[], Any], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure_ceilings(device: torch.device, timer: Callable[..., float]) -> dict[str, float]:
    """Device-to-device copy bandwidth (GB/s) and dense fp16 matmul throughput (TFLOP/s), measured."""
    n = (1 << 28) if device.type == "cuda" else (1 << 20)  # 512 MiB of fp16 on a GPU
    src = torch.empty(n, dtype=torch.float16, device=device).normal_()
    dst = torch.empty_like(src)
    copy_ms = timer(lambda: dst.copy_(src), 5, 20)
    m = 8192 if device.type == "cuda" else 256
    a = torch.randn(m, m, device=device, dtype=torch.float16 if device.type == "cuda" else torch.float32)
    mm_ms = timer(lambda: a @ a, 3, 10)
    return {
        "copy_gbps": 2 * src.numel() * src.element_size() / copy_ms / 1e6,
        "matmul_tflops": 2 * m**3 / mm_ms / 1e9,
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda)}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = "not installed"
    return out


def _driver() -> str:
    try:
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return res.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def run(
    out_dir: Path = DEFAULT_RESULTS,
    cases: list[Case] | None = None,
    dtype: torch.dtype = torch.float16,
    warmup: int = 20,
    iters: int = 100,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Benchmark every case and backend; write and return the JSON result file."""
    if device is None:
        if not torch.cuda.is_available():
            raise MissingCapabilityError(
                "the kernel benchmark needs a CUDA GPU and none is visible here; "
                "run bench/gpu_check.sh on a GPU machine (or see `edgerain profile kernels` for stored results)"
            )
        device = torch.device("cuda")
    timer = _median_ms_cuda if device.type == "cuda" else _median_ms_cpu
    cases = decoder_cases() if cases is None else cases
    ceilings = measure_ceilings(device, timer)
    log(f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s, fp16 matmul {ceilings['matmul_tflops']:.1f} TFLOP/s")
    rows = []
    for case in cases:
        args = case.inputs(device, dtype)
        table = backends_for(case.op)
        with torch.no_grad():
            expected = table["eager"](*args).double()
            eager_ms = None
            for name, fn in table.items():
                row: dict[str, Any] = {"op": case.op, "case": case.label, "shape": case.shape, "backend": name}
                try:
                    got = fn(*args)
                    row["rel_error_vs_eager"] = float((got.double() - expected).norm() / expected.norm())
                    ms = timer(functools.partial(fn, *args), warmup, iters)
                except Exception as exc:  # a backend that cannot run here is reported, not fatal
                    row.update(status="unavailable", reason=f"{type(exc).__name__}: {exc}".splitlines()[0])
                    rows.append(row)
                    log(f"{case.op:22s} {case.label:16s} {name:10s} unavailable: {row['reason']}")
                    continue
                if name == "eager":
                    eager_ms = ms
                gbps = case.compulsory_bytes(args[0].element_size()) / ms / 1e6
                tflops = case.flops() / ms / 1e9
                row.update(
                    status="ok",
                    median_ms=ms,
                    speedup_vs_eager=(eager_ms / ms) if eager_ms else None,
                    achieved_gbps=gbps,
                    fraction_of_copy_bw=gbps / ceilings["copy_gbps"],
                    achieved_tflops=tflops,
                    fraction_of_matmul_peak=tflops / ceilings["matmul_tflops"],
                )
                rows.append(row)
                log(
                    f"{case.op:22s} {case.label:16s} {name:10s} {ms:8.4f} ms  x{row['speedup_vs_eager'] or 0:5.2f}  "
                    f"{gbps:7.1f} GB/s ({100 * row['fraction_of_copy_bw']:4.1f}% copy)  err {row['rel_error_vs_eager']:.1e}"
                )
    dev: dict[str, Any]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        dev = {"name": props.name, "capability": f"sm_{props.major}{props.minor}", "sms": props.multi_processor_count}
    else:
        dev = {"name": f"CPU ({cpu_name()})", "capability": "cpu", "sms": 0}
    result = {
        "kind": "edgerain-kernel-benchmark",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": dev,
        "driver": _driver() if device.type == "cuda" else "n/a",
        "versions": _versions(),
        "commit": git_commit(REPO) or "unknown",
        "dtype": str(dtype).replace("torch.", ""),
        "timing": {
            "method": "cuda events" if device.type == "cuda" else "perf_counter",
            "warmup": warmup,
            "iters": iters,
        },
        "ceilings": ceilings,
        "results": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in str(dev["name"]).lower()).strip("-")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"kernels-{slug}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    log(f"wrote {path}")
    return path


def latest_result(results_dir: Path = DEFAULT_RESULTS) -> Path | None:
    """The newest kernel benchmark JSON in ``results_dir`` (by its 'created' time), or None."""
    best: tuple[str, Path] | None = None
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "edgerain-kernel-benchmark":
            key = str(data.get("created", ""))
            if best is None or key > best[0]:
                best = (key, path)
    return best[1] if best else None


def summary_rows(data: dict[str, Any]) -> list[list[str]]:
    """Table rows (op, case, backend, median ms, speedup, GB/s, % copy bw, status) of a result file."""
    rows = []
    for r in data["results"]:
        if r.get("status") != "ok":
            rows.append([r["op"], r["case"], r["backend"], "-", "-", "-", "-", r.get("reason", "unavailable")])
            continue
        speed = r.get("speedup_vs_eager")
        rows.append(
            [
                r["op"],
                r["case"],
                r["backend"],
                f"{r['median_ms']:.4f}",
                f"{speed:.2f}x" if speed else "-",
                f"{r['achieved_gbps']:.1f}",
                f"{100 * r['fraction_of_copy_bw']:.1f}%",
                "ok",
            ]
        )
    return rows
