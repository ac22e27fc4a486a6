"""``edgerain quantize``: INT8 post-training quantization with an accuracy gate."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Annotated

import typer

from edgerain.errors import EdgerainError


class GateFailedError(EdgerainError):
    """The quantized network failed the accuracy gate: exit code 1 (bad input stays 2)."""

    exit_code = 1


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)


def parse_size(text: str, what: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"320x480"`` -> (320, 480) (height x width)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not m:
        raise EdgerainError(f"{what} must be N or HxW (e.g. 256 or 320x480), got '{text}'")
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if h < 8 or w < 8:
        raise EdgerainError(f"{what} must be at least 8x8, got {h}x{w}")
    return h, w


def quantize(
    calib: Annotated[Path, typer.Option(help="Folder of rainy images (or a rain/norain pair folder) to calibrate on.")],
    eval_dir: Annotated[Path, typer.Option("--eval", help="Folder of rain/norain pairs for the accuracy gate.")],
    out: Annotated[Path, typer.Option(help="Output folder (replaced as a whole).")],
    model: Annotated[str | None, typer.Option(help="Network name (see `edgerain models`).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint (.safetensors); default: random weights.")] = None,
    clip_weights: Annotated[
        str | None, typer.Option(help="CLIP weights for a network built without --weights.")
    ] = None,
    method: Annotated[str, typer.Option(help="Activation calibration: max, entropy or percentile.")] = "max",
    percentile: Annotated[float, typer.Option(help="Percentile for --method percentile.")] = 99.99,
    entropy_stride: Annotated[int, typer.Option(help="Histogram-bin stride for --method entropy.")] = 8,
    placement: Annotated[
        str, typer.Option(help="Q/DQ placement: tensorrt (inputs of convs/linears) or ort (also their outputs).")
    ] = "tensorrt",
    max_drop: Annotated[float, typer.Option(help="Largest allowed mean PSNR drop vs float (dB).")] = 0.1,
    min_agreement: Annotated[float, typer.Option(help="Smallest allowed router top-1 agreement (CLIP-RPN).")] = 0.99,
    calib_size: Annotated[
        str, typer.Option(help="Calibration crop, N or HxW (images are resized to cover it).")
    ] = "256",
    calib_limit: Annotated[int, typer.Option(help="At most this many calibration images (0: all).")] = 32,
    eval_limit: Annotated[int, typer.Option(help="At most this many evaluation pairs (0: all).")] = 0,
    sensitivity: Annotated[
        str, typer.Option(help="Per-layer sensitivity: auto (when the gate fails), always, never.")
    ] = "auto",
    sensitivity_images: Annotated[int, typer.Option(help="Evaluation pairs used for sensitivity.")] = 4,
    sensitivity_size: Annotated[str, typer.Option(help="Crop for sensitivity, N or HxW.")] = "128",
    max_float_layers: Annotated[
        int | None, typer.Option(help="Most layers switched back to float (default: a quarter).")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Layer to keep in float (repeatable).")] = None,
    export_size: Annotated[
        str | None, typer.Option(help="Image size of the exported graphs, HxW (default: first eval image).")
    ] = None,
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Export INT8 Q/DQ ONNX graphs.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Quantize a network to INT8 (ModelOpt PTQ), gate it against float, export Q/DQ ONNX."""
    from rich.console import Console

    from edgerain.api import load_model
    from edgerain.quant.pipeline import QuantizeOptions, quantize_and_gate

    if calib_limit < 0 or eval_limit < 0 or sensitivity_images < 1:
        raise EdgerainError("limits must be >= 0 and --sensitivity-images >= 1")
    if max_float_layers is not None and max_float_layers < 0:
        raise EdgerainError("--max-float-layers must be >= 0")
    options = QuantizeOptions(
        method=method,
        percentile=percentile,
        placement=placement,
        entropy_stride=entropy_stride,
        calib_size=parse_size(calib_size, "--calib-size"),
        calib_limit=calib_limit or None,
        eval_limit=eval_limit or None,
        max_drop=max_drop,
        min_agreement=min_agreement,
        sensitivity=sensitivity,
        sensitivity_images=sensitivity_images,
        sensitivity_size=parse_size(sensitivity_size, "--sensitivity-size"),
        max_float_layers=max_float_layers,
        exclude=tuple(exclude or ()),
        export_size=parse_size(export_size, "--export-size") if export_size else None,
        export_onnx=onnx,
    )
    if weights is None and model is not None:
        warnings.warn(
            f"no --weights: quantizing '{model}' with random weights; its PSNR is meaningless, "
            "but the gate still compares INT8 against the same float network",
            stacklevel=1,
        )
    net = load_model(model, weights, clip_weights)
    console = Console()
    report = quantize_and_gate(net, calib, eval_dir, out, options, progress=progress)
    _print_report(console, report)
    if not report.passed:
        raise GateFailedError(
            f"INT8 gate failed ({'; '.join(report.to_json()['failures'])}); see {report.out}/report.json"
        )


def _print_report(console, report) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    counts = Table(title=f"INT8 quantizers per sub-network ({report.model}, {report.options.method})")
    counts.add_column("sub-network")
    counts.add_column("quantizers", justify="right")
    for group, n in report.result.counts.items():
        counts.add_row(group, str(n))
    console.print(counts)

    kept = Table(title=f"layers kept in float ({len(report.kept_float)})")
    kept.add_column("layer")
    kept.add_column("why")
    for k in report.kept_float:
        kept.add_row(k.layer, k.reason)
    console.print(kept)

    g = report.gate
    gate = Table(title=f"accuracy gate on {g.images} pairs")
    gate.add_column("check")
    gate.add_column("float", justify="right")
    gate.add_column("INT8", justify="right")
    gate.add_column("limit", justify="right")
    gate.add_column("result")
    gate.add_row(
        "PSNR (Y, dB)",
        f"{g.psnr_float:.3f}",
        f"{g.psnr_int8:.3f}",
        f"drop <= {g.max_drop:g}",
        ("pass" if g.psnr_ok else "FAIL") + f" (drop {g.psnr_drop:+.3f})",
    )
    if g.router_agreement is not None:
        gate.add_row(
            "router top-1 agreement",
            "",
            f"{g.router_agreement:.1%}",
            f">= {g.min_agreement:.1%}",
            "pass" if g.router_ok else "FAIL",
        )
    for graph in report.graphs:
        if "parity_error" in graph:
            gate.add_row(f"ONNX {graph['name']} vs fake-quant", "", "", "ORT runs it", "FAIL (ORT refused it)")
            continue
        p = graph["parity_ort_optimized"]
        gate.add_row(
            f"ONNX {graph['name']} vs fake-quant",
            "",
            f"{graph['int8_compute_nodes']}/{graph['compute_nodes']} INT8 ops",
            "parity >= 45 dB",
            ("pass" if graph["parity_ok"] else "FAIL")
            + f" ({p['psnr_db'] if isinstance(p['psnr_db'], str) else round(p['psnr_db'], 1)} dB)",
        )
    console.print(gate)
    if report.passed:
        console.print(f"[green]passed[/green]: {report.out}/quantized.safetensors, {report.out}/onnx/, report.json")
    else:
        console.print(
            f"[red]FAILED[/red] ({'; '.join(report.to_json()['failures'])}): only {report.out}/report.json written"
        )
