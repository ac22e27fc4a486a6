"""``edgerain eval``, ``edgerain derain`` and ``edgerain demo-data``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgerain.tta import TTA_HELP, tta_views

if TYPE_CHECKING:
    from rich.console import Console

    from edgerain.models.base import DerainModel

MODEL_HELP = "Network name (see `edgerain models`); default: the bundled default network."
WEIGHTS_HELP = "Checkpoint (.safetensors) to load; it names its own network."
TILE_HELP = "Run in square tiles of this side (pixels) for large images; default: whole image."
OVERLAP_HELP = "Overlap between tiles in pixels (with --tile)."
TTA_OPTION = typer.Option(help=TTA_HELP)
DEVICE_HELP = "auto (a CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N."


# Path parameters use readable=False: edgerain's own checks report unreadable files as one-line
# errors (Typer's would print a usage block instead).


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("derain")(derain)
    app.command("demo-data")(demo_data)


def _load(model: str | None, weights: Path | None, device: str) -> tuple[DerainModel, str, bool]:
    """The network (on ``device``), a label for its weights, and whether they are trained."""
    from edgerain.api import load_model
    from edgerain.models.default import DEFAULT_WEIGHTS, is_trained
    from edgerain.pipeline import resolve_device

    target = resolve_device(device)
    net = load_model(model, weights).to(target)
    if weights is not None:
        return net, str(weights), is_trained(net)
    if model is None:
        label = str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else "none (untrained default)"
        return net, label, is_trained(net)
    return net, "none (random initialisation)", False  # a network built by name has random weights


def _untrained_notice(console: Console, name: str) -> None:
    console.print(
        f"[bold red]WARNING: '{name}' runs with UNTRAINED weights: its output is not a deraining result "
        "(pass --weights CHECKPOINT for a trained network).[/]"
    )


def eval_command(
    data: Annotated[
        Path, typer.Option("--data", help="Folder with rain/NNN.png + norain/NNN.png pairs.", readable=False)
    ],
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    weights: Annotated[Path | None, typer.Option(help=WEIGHTS_HELP, readable=False)] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for per_image.csv, summary.json (and images/).", readable=False)
    ] = None,
    save_images: Annotated[
        bool, typer.Option("--save-images", help="Also write rainy | derained | clean PNGs to OUT/images.")
    ] = False,
    tile: Annotated[int | None, typer.Option(help=TILE_HELP)] = None,
    overlap: Annotated[int, typer.Option(help=OVERLAP_HELP)] = 32,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    tta: Annotated[str, TTA_OPTION] = "none",
) -> None:
    """Y-channel PSNR/SSIM and RGB PSNR of a network on a paired folder, with the rainy input as baseline."""
    from rich.console import Console
    from rich.table import Table

    from edgerain.data.pairs import find_pairs
    from edgerain.errors import EdgerainError
    from edgerain.eval.evaluate import CSV_NAME, IMAGES_DIR, SUMMARY_NAME, evaluate
    from edgerain.pipeline import check_tiling, resolve_device

    # Check everything the user typed before the (slow) model is built.
    check_tiling(tile, overlap)
    tta_views(tta)
    resolve_device(device)
    find_pairs(data)
    if save_images and out is None:
        raise EdgerainError("--save-images needs --out (the folder the images go to)")
    if out is not None and out.exists() and not out.is_dir():
        raise EdgerainError(f"output {out} exists and is not a folder")
    net, weights_label, trained = _load(model, weights, device)
    console = Console()
    result = evaluate(
        net, data, out, save_images, tile, progress, overlap=overlap, weights=weights_label, trained=trained, tta=tta
    )

    ensemble = f", self-ensemble {tta}" if tta != "none" else ""
    table = Table(title=f"{result.model} on {data} ({result.count} pairs{ensemble})")
    table.add_column("")
    for col in ("PSNR-Y (dB)", "SSIM-Y", "PSNR-RGB (dB)", "s / image"):
        table.add_column(col, justify="right")
    base, mine = result.input_means, result.means
    table.add_row(
        "rainy input (identity)", f"{base['psnr_y']:.2f}", f"{base['ssim_y']:.4f}", f"{base['psnr_rgb']:.2f}", ""
    )
    table.add_row(
        result.model + ("" if trained else " [red](untrained)[/]"),
        f"{mine['psnr_y']:.2f}",
        f"{mine['ssim_y']:.4f}",
        f"{mine['psnr_rgb']:.2f}",
        f"{result.timing['seconds_per_image']:.3f}",
    )
    console.print(table)
    console.print(f"weights: {weights_label}; model time on {result.timing['device']}")
    if not trained:
        _untrained_notice(console, result.model)
    if out is not None:
        console.print(f"wrote {out / CSV_NAME} and {out / SUMMARY_NAME}")
        if save_images:
            console.print(f"side-by-side images (rainy | derained | clean) in {out / IMAGES_DIR}")


def derain(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.", readable=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (PNG files, named after the inputs).", readable=False)
    ],
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    weights: Annotated[Path | None, typer.Option(help=WEIGHTS_HELP, readable=False)] = None,
    tile: Annotated[int | None, typer.Option(help=TILE_HELP)] = None,
    overlap: Annotated[int, typer.Option(help=OVERLAP_HELP)] = 32,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    bundle: Annotated[
        Path | None,
        typer.Option(help="Run an exported bundle (edgerain export) with ONNX Runtime instead.", readable=False),
    ] = None,
    tta: Annotated[str, TTA_OPTION] = "none",
) -> None:
    """Derain image files and folders into OUT (one PNG per input, same name)."""
    from rich.console import Console

    from edgerain.pipeline import check_tiling, derain_paths, plan_outputs, resolve_device

    check_tiling(tile, overlap)
    tta_views(tta)
    if bundle is not None:  # the runtime room's path (edgerain.runtime, docs/runtime.md)
        _derain_with_bundle(inputs, out, bundle, model, weights, tile, overlap, progress, tta)
        return
    resolve_device(device)
    plan_outputs(inputs, out)  # fail on bad inputs before the model is built
    net, _label, trained = _load(model, weights, device)
    written = derain_paths(inputs, out, net, tile=tile, overlap=overlap, progress=progress, tta=tta)
    console = Console()
    console.print(f"wrote {len(written)} image{'s' if len(written) != 1 else ''} to {out}")
    if not trained:
        _untrained_notice(console, net.registry_name or type(net).__name__)


def _derain_with_bundle(
    inputs: list[Path],
    out: Path,
    bundle: Path,
    model: str | None,
    weights: Path | None,
    tile: int | None,
    overlap: int,
    progress: bool,
    tta: str,
) -> None:
    from rich.console import Console

    from edgerain.errors import EdgerainError
    from edgerain.runtime import derain_paths_with_bundle

    if model is not None or weights is not None:
        raise EdgerainError("--bundle runs the network stored in the bundle: drop --model/--weights")
    # Without --tile the bundle's own tiling (and overlap) applies.
    written = derain_paths_with_bundle(
        inputs, out, bundle, tile=tile, overlap=overlap if tile is not None else None, progress=progress, tta=tta
    )
    Console().print(f"wrote {len(written)} image{'s' if len(written) != 1 else ''} to {out} (bundle {bundle})")


def demo_data(
    out: Annotated[
        Path, typer.Argument(help="Folder to write rain/NNN.png + norain/NNN.png (+ labels.csv) into.", readable=False)
    ],
    count: Annotated[int, typer.Option(help="Number of pairs.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same pairs.")] = 0,
) -> None:
    """Write demo pairs: public-domain photos shipped with scikit-image plus edgerain's procedural rain."""
    from edgerain.data.demo import make_demo_pairs

    made = make_demo_pairs(out, count=count, seed=seed)
    patterns = sorted({p.pattern for p in made})
    typer.echo(f"wrote {len(made)} pairs ({', '.join(patterns)} rain) to {out}/rain and {out}/norain")
