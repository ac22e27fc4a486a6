"""``edgerain export``, ``edgerain verify`` and ``edgerain targets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("verify")(verify)
    app.command("targets")(targets)


def _console() -> Any:
    from rich.console import Console

    console = Console()
    # Piped output (make demo, logs) gets a wide fixed width instead of rich's 80 columns.
    return console if console.is_terminal else Console(width=160)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def export(
    target: Annotated[str, typer.Option(help="Target profile: a name (edgerain targets), NAME:MODE, or a .json file.")],
    out: Annotated[Path, typer.Option(help="Bundle folder to write (replaced atomically if it is a bundle).")],
    model: Annotated[str | None, typer.Option(help="Registered network; default: the bundled default.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint (.safetensors) to export.")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8; default: the target's.")] = None,
    calib: Annotated[Path | None, typer.Option(help="int8: folder of rainy images to calibrate on.")] = None,
    samples: Annotated[Path | None, typer.Option(help="Folder of images for the parity samples.")] = None,
    clip_weights: Annotated[str | None, typer.Option(help="CLIP weights when --model has no checkpoint.")] = None,
    tile: Annotated[int | None, typer.Option(help="Tile side the runtimes use on large images.")] = None,
    overlap: Annotated[int, typer.Option(help="Tile overlap in pixels.")] = 32,
    engines: Annotated[
        bool, typer.Option(help="Build TensorRT engines when TensorRT and the target GPU are here.")
    ] = True,
) -> None:
    """Export a network to a deployable bundle for a target device (ONNX graphs, parity, build script)."""
    from edgerain.export import export_bundle

    result = export_bundle(
        out,
        target,
        model=model,
        weights=weights,
        precision=precision,
        calib=calib,
        samples=samples,
        clip_weights=clip_weights,
        tile=tile,
        overlap=overlap,
        build_engines=engines,
    )
    print_export_summary(result)


def print_export_summary(result: Any) -> None:
    from rich.table import Table

    m = result.manifest
    console = _console()
    tgt = m["target"]
    trained = m["model"].get("trained")
    title = f"edgerain export: {m['model']['name']} -> {result.bundle} ({m['precision']}, {tgt['name']})"
    table = Table(title=title, title_justify="left")
    for col in ("graph", "role", "precision", "size", "nodes", "inputs"):
        table.add_column(col, justify="right" if col in ("size", "nodes") else "left")
    entries = [m["graphs"]["context"], *m["graphs"]["main"]] if m["graphs"]["context"] else m["graphs"]["main"]
    for row, g in zip(result.graphs, entries, strict=True):
        ins = ", ".join(f"{i['name']}{tuple(i['shape'])}".replace("'", "") for i in g["inputs"])
        role = g.get("kind") or (f"expert {g['expert']}" if g.get("expert") is not None else "main")
        table.add_row(row.file, role, row.precision, _size(row.bytes), str(row.nodes), ins)
    console.print(table)

    par = Table(title=f"Parity: ONNX Runtime vs {m['parity']['reference']}", title_justify="left")
    for col in ("sample", "size", "max abs", "PSNR (dB)", "routing"):
        par.add_column(col, justify="left" if col in ("sample", "routing") else "right")
    for s in m["parity"]["samples"]:
        routing = f"expert {s['expert_onnx']}" if s.get("expert_onnx") is not None else "-"
        par.add_row(s["input"], f"{s['height']}x{s['width']}", f"{s['max_abs']:.2e}", f"{s['psnr_db']:.1f}", routing)
    console.print(par)
    console.print(
        f"tolerance: max abs <= {m['parity']['atol']:g}, PSNR >= {m['parity']['min_psnr_db']:g} dB: "
        + ("[green]PASSED[/green]" if m["parity"]["passed"] else "[red]FAILED[/red]")
    )
    gpu = tgt.get("gpu")
    sw = tgt["software"]
    if gpu:
        line = f"target {tgt['name']}: {tgt['description']}; sm {gpu['sm']}, TensorRT {sw['tensorrt']}"
        line += f" (JetPack {sw['jetpack']})" if sw.get("jetpack") else ""
        line += f", workspace cap {tgt['tensorrt_workspace_mib']} MiB, {len(m['shape_profiles'])} shape profiles"
    else:
        line = f"target {tgt['name']}: {tgt['description']}"
    console.print(line)
    if m.get("dla"):
        for f, s in m["dla"]["graphs"].items():
            console.print(
                f"DLA ({m['dla']['profile']}): {f}: {s['dla_layers']} of {s['layers']} layers on DLA, "
                f"{s['gpu_fallbacks']} GPU fallbacks, {s['dla_subgraphs']} DLA subgraphs (see {m['dla']['report']})"
            )
            break
        if m["dla"]["top_fallback_reasons"]:
            top = m["dla"]["top_fallback_reasons"][0]
            console.print(f"  most common fallback: {top['reason']} ({top['layers']} layers)")
    console.print(result.engines_note)
    if trained is False:
        console.print("[yellow]note: the network has untrained (seeded random) weights[/yellow]")
    console.print(f"next: {result.next_step}")


def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by edgerain export.")],
) -> None:
    """Check a bundle: manifest schema, file hashes, engine compatibility, parity on its samples."""
    from rich.table import Table

    from edgerain.export import verify_bundle

    report = verify_bundle(bundle)
    m = report.manifest
    console = _console()
    console.print(
        f"{bundle}: {m['model']['name']} ({m['precision']}, target {m['target']['name']}); "
        f"manifest and {report.files_checked} file hashes OK"
    )
    table = Table(title="Parity: ONNX Runtime vs the stored PyTorch reference", title_justify="left")
    for col in ("size", "max abs", "PSNR (dB)", "routing"):
        table.add_column(col, justify="right")
    for s in report.samples:
        routing = f"expert {s['expert_onnx']}" if s.get("expert_onnx") is not None else "-"
        table.add_row(f"{s['height']}x{s['width']}", f"{s['max_abs']:.2e}", f"{s['psnr_db']:.1f}", routing)
    console.print(table)
    for e in report.engines:
        console.print(
            f"engine {e['engine']}: TensorRT {e['tensorrt']}, {e['gpu']} (sm {e['compute_capability']}): {e['checked']}"
        )
    console.print(report.tensorrt_note)
    console.print("[green]bundle verified[/green]")


def targets(
    name: Annotated[str | None, typer.Argument(help="Show one profile in full (name, NAME:MODE or file).")] = None,
) -> None:
    """List the deployment target profiles (built-in, and yours from $EDGERAIN_TARGETS_DIR)."""
    from rich.table import Table

    from edgerain.targets import ENV_DIRS, aliases_of, get_target, list_targets

    console = _console()
    if name is not None:
        t = get_target(name)
        console.print(f"# {t.name} (from {t.source})")
        console.print(json.dumps(t.data, indent=2, sort_keys=False), soft_wrap=True, markup=False, highlight=False)
        return
    table = Table(title="edgerain target profiles", title_justify="left")
    cols = (
        "name",
        "SM",
        "memory",
        "GB/s",
        "FP16 TFLOPS",
        "INT8 TOPS",
        "DLA",
        "JetPack",
        "TensorRT",
        "default",
        "shape profiles",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("name", "shape profiles", "default") else "right")
    for t in list_targets():
        gpu = t.data.get("gpu") or {}
        mem = t.data["memory"]
        shown = t.name + "".join(f" ({a})" for a in aliases_of(t.name) if ":" not in t.name)

        def num(v: Any) -> str:
            return "-" if v is None else f"{v:g}"

        table.add_row(
            shown,
            gpu.get("sm", "-"),
            "-" if mem.get("size_gb") is None else f"{mem['size_gb']:g} GB",
            num(mem.get("bandwidth_gbs")),
            num(gpu.get("peak_dense_fp16_tflops")),
            num(gpu.get("peak_dense_int8_tops")),
            str(t.dla_cores),
            t.jetpack or "-",
            t.tensorrt or "-",
            t.default_precision,
            " ".join(p.name for p in t.shape_profiles),
        )
    console.print(table)
    console.print(
        f"peak rates are dense (no sparsity). Add your own profile: a JSON file passed as --target FILE, "
        f"or a folder of them in ${ENV_DIRS}; 'edgerain targets NAME' shows a profile in full."
    )
