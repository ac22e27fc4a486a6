"""`edgerain profile ...`: performance measurements. `profile kernels` covers the fused kernels.

The `profile` group is a Typer sub-app (:data:`profile_app`) so further measurements (bundles,
whole models) add commands here.
"""

from __future__ import annotations

from pathlib import Path

import typer

profile_app = typer.Typer(
    help="Measure performance: a bundle or network (`profile run`), or the fused kernels (`profile kernels`).",
    no_args_is_help=True,
    add_completion=False,
)


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")


@profile_app.command("kernels")
def kernels(
    results: Path = typer.Option(
        None, "--results", help="Results folder, or one result JSON to show (default: bench/results)."
    ),
    run: bool = typer.Option(
        None,
        "--run/--no-run",
        help="Run the benchmark first (default: when a CUDA GPU is visible), or only show stored results.",
    ),
    quick: bool = typer.Option(False, "--quick", help="Fewer timed iterations (5 warm-up, 20 timed)."),
) -> None:
    """Show the latest fused-kernel benchmark table, running the benchmark first when a GPU is present."""
    import json

    import torch

    from edgerain.errors import EdgerainError, MissingCapabilityError
    from edgerain.ops import benchmark

    folder = results if results is not None and not results.is_file() else benchmark.DEFAULT_RESULTS
    if results is not None and results.suffix == ".json" and not results.is_file():
        raise EdgerainError(f"no such result file: {results}")
    gpu = torch.cuda.is_available()
    if run and not gpu:
        raise MissingCapabilityError("--run needs a CUDA GPU and none is visible; drop --run to show stored results")
    if run or (run is None and gpu and (results is None or not results.is_file())):
        warmup, iters = (5, 20) if quick else (20, 100)
        path = benchmark.run(folder, warmup=warmup, iters=iters, log=lambda line: typer.echo(line, err=True))
    elif results is not None and results.is_file():
        path = results
    else:
        found = benchmark.latest_result(folder)
        if found is None:
            raise MissingCapabilityError(
                f"no kernel benchmark results in {folder} yet, and they need a CUDA GPU (none visible here): "
                "run `python bench/kernels.py` or `bash bench/gpu_check.sh` on a GPU machine"
            )
        path = found
    try:
        data = json.loads(path.read_text())
        rows = benchmark.summary_rows(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgerainError(f"{path} is not a kernel benchmark result ({exc})") from None
    _print_table(path, data, rows)


def _print_table(path: Path, data: dict, rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    dev = data.get("device", {})
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    ceil = data.get("ceilings", {})
    title = (
        f"{dev.get('name', '?')} ({dev.get('capability', '?')}), driver {data.get('driver', '?')}, "
        f"{data.get('dtype', '?')}, commit {str(data.get('commit', '?'))[:10]}"
    )
    table = Table(title=title, caption=f"{path}\n{versions}")
    for col in ("op", "case", "backend", "median ms", "vs eager", "GB/s", "% copy BW", "status"):
        table.add_column(col, justify="right" if col in ("median ms", "vs eager", "GB/s", "% copy BW") else "left")
    for row in rows:
        table.add_row(*row)
    import sys

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if ceil:
        console.print(
            f"measured ceilings: copy {ceil.get('copy_gbps', 0):.0f} GB/s, "
            f"fp16 matmul {ceil.get('matmul_tflops', 0):.1f} TFLOP/s"
        )


# ---- `profile run`: a bundle or model end to end (runtime room; implementation in edgerain/runtime/profile.py) ----


@profile_app.command("run")
def run_network(
    subject: str = typer.Argument(..., help="A bundle folder, a model name (e.g. clip-rpn-edge) or a checkpoint file."),
    backend: str = typer.Option("ort", "--backend", "-b", help="ort | trt (bundles), torch (models)."),
    shape: str = typer.Option("1280x720", "--shape", help="Image size WIDTHxHEIGHT."),
    iters: int = typer.Option(20, "--iters", help="Timed runs."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs first."),
    out: Path = typer.Option(None, "--out", help="Folder for profile.json and profile.png."),
    target: list[str] = typer.Option(
        None, "--target", help="Target profile(s) to project onto (default: jetson-orin-agx, jetson-orin-nano)."
    ),
    weights: str = typer.Option(None, "--weights", help="Checkpoint for a model name (torch backend)."),
    tile: int = typer.Option(None, "--tile", help="Override the tile size (0: whole image)."),
    threads: int = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
) -> None:
    """Latency percentiles, throughput, peak memory, per-op breakdown and roofline projection of one network."""
    from edgerain.runtime.profile import profile, summary_lines

    result = profile(
        subject,
        backend=backend,
        shape=shape,
        iters=iters,
        warmup=warmup,
        out=out,
        targets=target or None,
        weights=weights,
        tile=tile,
        threads=threads,
        log=lambda line: typer.echo(line, err=True),
    )
    for line in summary_lines(result.report):
        typer.echo(line)
    typer.echo(f"wrote {result.out_dir / 'profile.json'} and {result.out_dir / 'profile.png'}")
