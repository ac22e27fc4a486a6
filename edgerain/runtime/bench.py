"""``edgerain bench``: one table over backends and precisions, the way ``yolo benchmark`` reports formats.

Rows: torch fp32 (reference ops), torch + fused kernels (CUDA), ONNX Runtime fp32 / fp16 / int8
bundles, TensorRT fp16 (where TensorRT is). Each row derains the same pairs and reports latency,
Y-channel PSNR/SSIM, PSNR against the torch fp32 output (parity), size on disk, and pass/fail: a
row passes when it ran and its PSNR stays within the precision's allowance of the torch fp32 row.

This is a development tool: unlike the rest of :mod:`edgerain.runtime`, it imports the exporter
(to write the bundles it measures), the data and the eval modules, all lazily inside :func:`bench`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgerain.errors import EdgerainError
from edgerain.runtime.derainer import Derainer

ROWS = ("torch-fp32", "torch-fused", "ort-fp32", "ort-fp16", "ort-int8", "trt-fp16")
# Allowed PSNR drop (dB) against the torch fp32 row, per precision.
MAX_DROP = {"fp32": 0.05, "fp16": 0.3, "int8": 1.0}


@dataclasses.dataclass
class BenchRow:
    row: str
    backend: str
    precision: str
    status: str  # "pass" | "fail" | "skip"
    latency_ms: float | None = None  # median per image
    psnr: float | None = None
    ssim: float | None = None
    psnr_vs_fp32: float | None = None  # PSNR of this row's output against the torch fp32 output
    size_mb: float | None = None
    note: str = ""


@dataclasses.dataclass
class BenchResult:
    model: str
    rows: list[BenchRow]
    report: dict[str, Any]
    path: Path | None


@contextlib.contextmanager
def _ops_backend(name: str) -> Iterator[None]:
    """Force the fused-op dispatch ($EDGERAIN_OPS_BACKEND) for the duration of a row."""
    old = os.environ.get("EDGERAIN_OPS_BACKEND")
    os.environ["EDGERAIN_OPS_BACKEND"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EDGERAIN_OPS_BACKEND", None)
        else:
            os.environ["EDGERAIN_OPS_BACKEND"] = old


def _center_crop(img: np.ndarray, side: int | None) -> np.ndarray:
    if side is None:
        return img
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return img[y0 : y0 + side, x0 : x0 + side]


def _psnr_plain(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse <= 1e-10 else 10.0 * float(np.log10(1.0 / mse))


def _measure(
    derainer: Derainer, pairs: list[tuple[str, np.ndarray, np.ndarray]], reference: dict[str, np.ndarray] | None
) -> tuple[BenchRow, dict[str, np.ndarray]]:
    from edgerain.eval.metrics import psnr, ssim

    outputs: dict[str, np.ndarray] = {}
    times, psnrs, ssims, parity = [], [], [], []
    derainer(pairs[0][1])  # warm-up: sessions, caches, CUDA graphs
    for name, rainy, clean in pairs:
        t0 = time.perf_counter()
        out = derainer(rainy)
        times.append(time.perf_counter() - t0)
        outputs[name] = out
        psnrs.append(psnr(out, clean))
        ssims.append(ssim(out, clean))
        if reference is not None:
            parity.append(_psnr_plain(out, reference[name]))
    row = BenchRow(
        row="",
        backend="",
        precision="",
        status="pass",
        latency_ms=float(np.median(times) * 1e3),
        psnr=float(np.mean(psnrs)),
        ssim=float(np.mean(ssims)),
        psnr_vs_fp32=float(np.mean(parity)) if parity else None,
    )
    return row, outputs


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*.onnx")) / 1e6


def bench(
    data: str | os.PathLike[str],
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    rows: tuple[str, ...] | list[str] = ROWS,
    limit: int | None = 5,
    crop: int | None = None,
    target: str = "x86-cpu",
    out: str | os.PathLike[str] | None = None,
    keep_bundles: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark one network over backends and precisions on the pairs in ``data``."""
    import torch

    from edgerain.data.io import load_image, save_image
    from edgerain.data.pairs import find_pairs
    from edgerain.export.exporter import export_bundle, load_network
    from edgerain.runtime.profile import environment

    say = log or (lambda _m: None)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise EdgerainError(f"unknown bench row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    if limit is not None and limit < 1:
        raise EdgerainError("--limit must be at least 1")
    all_pairs = find_pairs(data)
    found = all_pairs[:limit]
    # int8 calibrates on rainy images that are not scored (up to 8 of the rest; the scored ones if none).
    calib_pairs = all_pairs[len(found) : len(found) + 8] or found
    pairs = [(p.name, _center_crop(load_image(p.rain), crop), _center_crop(load_image(p.norain), crop)) for p in found]
    # The exporter's loader: without a checkpoint it seeds the random weights, so the torch rows and
    # the exported bundles are the same network.
    net = load_network(model, str(weights) if weights else None, None)
    name = getattr(net, "registry_name", model or "?")
    if model is None and weights is None:
        model = name
    say(f"{name}: {len(pairs)} pairs from {data}")
    env = environment()

    results: list[BenchRow] = []
    reference: dict[str, np.ndarray] | None = None
    cuda = torch.cuda.is_available()
    ckpt_mb = Path(weights).stat().st_size / 1e6 if weights else sum(p.numel() * 4 for p in net.parameters()) / 1e6

    def report() -> dict[str, Any]:
        return {
            "kind": "edgerain-bench",
            "model": name,
            "weights": str(weights) if weights else None,
            "data": str(data),
            "pairs": len(pairs),
            "calibration_images": len(calib_pairs),
            "crop": crop,
            "target": target,
            "max_psnr_drop_db": MAX_DROP,
            "rows": [dataclasses.asdict(r) for r in results],
            "rows_requested": list(dict.fromkeys(["torch-fp32", *rows])),
            **env,
        }

    def write() -> Path | None:
        if out is None:
            return None
        from edgerain.utils import atomic_path

        with atomic_path(out) as tmp_file:
            tmp_file.write_text(json.dumps(report(), indent=2) + "\n")
        return Path(out)

    def record(row: BenchRow, label: str, backend: str, precision: str) -> None:
        row.row, row.backend, row.precision = label, backend, precision
        results.append(row)
        say(f"  {label}: {row.status} {row.note}".rstrip())
        write()  # after every row: a run cut short still leaves what it measured

    with tempfile.TemporaryDirectory() as tmp_name:
        bundles_root = Path(keep_bundles) if keep_bundles is not None else Path(tmp_name)
        bundles: dict[str, Path | str] = {}  # precision -> bundle folder, or the reason there is none
        calib_dir = Path(tmp_name) / "calibration"
        calib_dir.mkdir()
        for p in calib_pairs:
            save_image(calib_dir / f"{p.name}.png", _center_crop(load_image(p.rain), crop))

        def bundle_for(precision: str) -> Path | str:
            if precision not in bundles:
                say(f"  exporting a {precision} bundle ...")
                try:
                    res = export_bundle(
                        bundles_root / f"{name}-{precision}",
                        target,
                        model=model if weights is None else None,
                        weights=weights,
                        precision=precision,
                        calib=calib_dir if precision == "int8" else None,
                        build_engines=False,
                    )
                    bundles[precision] = res.bundle
                except EdgerainError as exc:
                    bundles[precision] = f"export failed: {exc}"
            return bundles[precision]

        for label in ["torch-fp32", *[r for r in rows if r != "torch-fp32"]]:
            backend, precision = label.split("-")
            try:
                if label == "torch-fp32":
                    with _ops_backend("reference"):
                        row, outs = _measure(Derainer(model=net, backend="torch"), pairs, None)
                    reference = outs
                    row.size_mb = ckpt_mb
                    row.note = "reference ops" + (" (weights: " + Path(weights).name + ")" if weights else "")
                elif label == "torch-fused":
                    if not cuda:
                        record(
                            BenchRow("", "", "", "skip", note="fused kernels run on CUDA tensors; no GPU here"),
                            label,
                            "torch",
                            "fp32",
                        )
                        continue
                    with _ops_backend("auto"):
                        d = Derainer(model=net, backend="torch", device="cuda", cuda_graphs=True)
                        row, _ = _measure(d, pairs, reference)
                    row.size_mb = ckpt_mb
                    row.note = "fused kernels + CUDA graphs"
                else:
                    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
                        note = "TensorRT's Python package is not installed here (JetPack ships it on a Jetson)"
                        record(BenchRow("", "", "", "skip", note=note), label, backend, precision)
                        continue
                    bundle = bundle_for("fp16" if label == "trt-fp16" else precision)
                    if isinstance(bundle, str):
                        record(BenchRow("", "", "", "fail", note=bundle[:160]), label, backend, precision)
                        continue
                    if backend == "trt":
                        d = Derainer(bundle, backend="trt", fp16=True)
                    else:
                        d = Derainer(bundle, backend="ort")
                    row, _ = _measure(d, pairs, reference)
                    row.size_mb = _dir_mb(bundle)
                    row.note = ", ".join(d.describe().get("providers", [])) if backend == "ort" else ""
            except EdgerainError as exc:  # MissingCapabilityError included: say what is missing
                status = "skip" if exc.__class__.__name__ == "MissingCapabilityError" else "fail"
                record(BenchRow("", "", "", status, note=str(exc)[:160]), label, backend, precision)
                continue
            if label != "torch-fp32" and reference is not None:
                ref_psnr = results[0].psnr or 0.0
                drop = ref_psnr - (row.psnr or 0.0)
                if drop > MAX_DROP[precision]:
                    row.status = "fail"
                    row.note = f"PSNR {drop:.2f} dB below torch fp32 (allowed {MAX_DROP[precision]})"
            record(row, label, backend, precision)

    path = write()
    return BenchResult(name, results, report(), path)


def markdown_table(reports: list[dict[str, Any]]) -> str:
    """A markdown table of one or more bench reports (one block of rows per network)."""
    lines = [
        "| network | row | status | latency ms | PSNR | SSIM | PSNR vs fp32 | size MB | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]

    def f(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for rep in reports:
        for r in rep["rows"]:
            lines.append(
                f"| {rep['model']} | {r['row']} | {r['status']} | {f(r['latency_ms'], '.1f')} | {f(r['psnr'], '.2f')} | "
                f"{f(r['ssim'], '.4f')} | {f(r['psnr_vs_fp32'], '.1f')} | {f(r['size_mb'], '.1f')} | "
                f"{r['note'].replace('|', '/')} |"
            )
    return "\n".join(lines) + "\n"
