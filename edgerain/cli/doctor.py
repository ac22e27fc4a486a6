"""``edgerain doctor``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor() -> None:
    """Check Python, torch, CUDA, Triton, ONNX Runtime, ModelOpt, TensorRT, nvcc and the C++ extension."""
    from rich.console import Console
    from rich.table import Table

    from edgerain.doctor import run_checks

    table = Table(title="edgerain doctor")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("while missing, disabled")
    for c in run_checks():
        table.add_row(c.component, "[green]ok[/]" if c.ok else "[yellow]missing[/]", c.detail, c.disables)
    Console().print(table)
