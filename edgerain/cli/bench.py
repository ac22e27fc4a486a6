"""``edgerain bench``: backends x precisions on paired data, one table (edgerain/runtime/bench.py)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)


def bench_command(
    data: Path = typer.Option(..., "--data", help="Folder with rain/ and norain/ pairs."),
    model: str = typer.Option(None, "--model", "-m", help="Registered network name (default: the bundled default)."),
    weights: Path = typer.Option(None, "--weights", "-w", help="Checkpoint (.safetensors)."),
    rows: str = typer.Option(
        ",".join(("torch-fp32", "torch-fused", "ort-fp32", "ort-fp16", "ort-int8", "trt-fp16")),
        "--rows",
        help="Comma-separated rows: torch-fp32, torch-fused, ort-fp32, ort-fp16, ort-int8, trt-fp16.",
    ),
    limit: int = typer.Option(5, "--limit", help="Pairs to use (0: all)."),
    crop: int = typer.Option(None, "--crop", help="Center-crop every image to at most N x N pixels."),
    target: str = typer.Option("x86-cpu", "--target", help="Target profile the bundles are exported for."),
    out: Path = typer.Option(None, "--out", help="Write the JSON report here."),
    keep_bundles: Path = typer.Option(None, "--keep-bundles", help="Keep the exported bundles in this folder."),
) -> None:
    """Latency, PSNR/SSIM, size and pass/fail for each backend and precision, like `yolo benchmark`."""
    from rich.console import Console
    from rich.table import Table

    from edgerain.runtime.bench import bench

    result = bench(
        data,
        model=model,
        weights=weights,
        rows=[r.strip() for r in rows.split(",") if r.strip()],
        limit=limit or None,
        crop=crop,
        target=target,
        out=out,
        keep_bundles=keep_bundles,
        log=lambda line: typer.echo(line, err=True),
    )
    table = Table(title=f"edgerain bench: {result.model} ({result.report['pairs']} pairs, {data})")
    for col in ("row", "status", "latency ms", "PSNR", "SSIM", "PSNR vs fp32", "size MB", "note"):
        table.add_column(col, justify="right" if col not in ("row", "status", "note") else "left")

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    mark = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]skip[/]"}
    for r in result.rows:
        table.add_row(
            r.row,
            mark[r.status],
            f(r.latency_ms, ".1f"),
            f(r.psnr, ".2f"),
            f(r.ssim, ".4f"),
            f(r.psnr_vs_fp32, ".1f"),
            f(r.size_mb, ".1f"),
            r.note if len(r.note) <= 70 else r.note[:67] + "...",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)
    console.print(table)
    if result.path is not None:
        typer.echo(f"wrote {result.path} (full notes there)")
