"""``edgerain models`` and ``edgerain route``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("route")(route)


def models(
    size: Annotated[int, typer.Option(help="Side of the square input for the FLOP count.")] = 512,
    tiny: Annotated[bool, typer.Option("--tiny/--all", help="Only the test-size configurations.")] = False,
) -> None:
    """List the registered networks with parameter counts and FLOPs."""
    from rich.console import Console
    from rich.table import Table

    from edgerain.models.info import describe_models

    table = Table(title=f"edgerain networks (FLOPs at {size}x{size}, deployed path)")
    for col in ("name", "family", "params (M)", "GFLOPs", "description"):
        table.add_column(col, justify="right" if col in ("params (M)", "GFLOPs") else "left")
    for row in describe_models(size=size, only_tiny=tiny):
        table.add_row(row.name, row.family, f"{row.params / 1e6:.2f}", f"{row.flops / 1e9:.1f}", row.description)
    Console().print(table)


def route(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    model: Annotated[str | None, typer.Option(help="A clip-rpn network; default: the bundled default.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint (.safetensors).")] = None,
) -> None:
    """Print each image's rain-pattern scores and the expert the CLIP router picks."""
    from rich.console import Console
    from rich.table import Table

    from edgerain.api import route_images

    results = route_images(images, model=model, weights=weights)
    table = Table(title="CLIP-RPN routing (scores per prompt; legend below)")
    table.add_column("image", overflow="fold")
    for k in range(len(results.prompts)):
        table.add_column(f"p{k}", justify="right")
    table.add_column("expert", justify="right")
    for r in results.rows:
        table.add_row(str(r.path), *(f"{s:.3f}" for s in r.scores), str(r.expert))
    console = Console()
    console.print(table)
    for k, prompt in enumerate(results.prompts):
        console.print(f"p{k}: {prompt}")
