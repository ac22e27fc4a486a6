"""``export_bundle``: a network, a target and a precision in; a verified, deployable bundle out.

Steps (each failure leaves nothing behind: the bundle is written into a temporary folder beside
``out`` and moved into place only when every step passed):

1. resolve the target profile and the precision (the target's default unless given);
2. load the network (a checkpoint, a registered name with seeded random weights, or the default);
   for int8, quantise a copy with the quant room's ModelOpt PTQ on ``calib`` images;
3. split it into graphs (context + experts, or one graph) and export each to ONNX at opset 17
   with dynamic H and W; simplify, check, infer shapes; fp16 converts the restoration graphs;
4. store sample images and PyTorch reference outputs, run the bundle with ONNX Runtime and fail
   above the precision's tolerance;
5. write ``build_engine.sh``, the DLA report (targets with DLA), and the manifest with the sha256
   of every file; build TensorRT engines where TensorRT and the target GPU are both here.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgerain import bundle as fmt
from edgerain.errors import EdgerainError, MissingCapabilityError
from edgerain.export import dla as dla_mod
from edgerain.export import graphs as G
from edgerain.export import parity as P
from edgerain.export import tensorrt as T
from edgerain.export.onnx_run import OrtBundle
from edgerain.targets import Target, get_target

MODEL_SEED = 0  # random weights (no checkpoint) are drawn from this seed, so re-exports match


@dataclasses.dataclass
class GraphRow:
    file: str
    role: str
    precision: str
    bytes: int
    nodes: int


@dataclasses.dataclass
class ExportResult:
    bundle: Path
    manifest: dict[str, Any]
    graphs: list[GraphRow]
    engines_built: int
    engines_note: str  # why engines were (not) built here
    next_step: str


def _versions() -> dict[str, str | None]:
    from edgerain import __version__

    def v(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "edgerain": __version__,
        "python": platform.python_version(),
        "torch": v("torch"),
        "onnx": v("onnx"),
        "onnxruntime": v("onnxruntime"),
        "onnxslim": v("onnxslim"),
        "modelopt": v("nvidia-modelopt"),
        "tensorrt": T.tensorrt_version(),
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list))


@contextlib.contextmanager
def _bundle_dir(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, renamed to ``out`` on success, removed on failure."""
    out = out.absolute()
    if out.exists() and not out.is_dir():
        raise EdgerainError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / fmt.MANIFEST_NAME).is_file():
        raise EdgerainError(f"{out} is a non-empty folder that is not a bundle; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_network(model: str | None, weights: str | os.PathLike[str] | None, clip_weights: str | None) -> Any:
    """The network to export; random weights come from a fixed seed so re-exports are identical."""
    import torch

    from edgerain.api import load_model

    with torch.random.fork_rng(), warnings.catch_warnings():
        if weights is None:
            warnings.simplefilter("ignore")  # the untrained state is stated in the manifest and summary
        torch.manual_seed(MODEL_SEED)
        net = load_model(model, weights, clip_weights)
    return net.eval()


def _model_entry(net: Any, model_name: str | None, weights: str | os.PathLike[str] | None) -> dict[str, Any]:
    from edgerain.models.default import DEFAULT_WEIGHTS, is_trained
    from edgerain.models.registry import get_entry
    from edgerain.utils import sha256_file

    entry: dict[str, Any] = {
        "name": net.registry_name,
        "family": get_entry(net.registry_name).family,
        "config": _jsonable(net.config_dict()),
        "weights": None,
        "trained": False,
        "pad_multiple": net.pad_multiple,
    }
    if weights is None and model_name is None and DEFAULT_WEIGHTS.is_file():
        weights = DEFAULT_WEIGHTS  # the bundled default checkpoint
    if weights is not None:
        entry["weights"] = {"file": Path(weights).name, "sha256": sha256_file(weights)}
        entry["provenance"] = _jsonable(getattr(net, "provenance", {}) or {})
        entry["trained"] = is_trained(net)
    else:
        entry["random_seed"] = MODEL_SEED  # seeded random weights: reproducible, untrained
    return entry


def _quantize(net: Any, calib: str | os.PathLike[str] | None) -> tuple[Any, dict[str, Any]]:
    if calib is None:
        raise EdgerainError("--precision int8 needs --calib DIR: a folder of rainy images to calibrate on")
    try:
        from edgerain.quant import quantize_model
    except ImportError as exc:
        raise MissingCapabilityError(
            f"int8 export needs edgerain.quant (ModelOpt PTQ), which cannot be imported here: {exc}"
        ) from None
    result = quantize_model(net, calib, progress=False)
    details = {
        "tool": "nvidia-modelopt PTQ (edgerain.quant.quantize_model)",
        "method": result.settings.method,
        "percentile": result.settings.percentile if result.settings.method == "percentile" else None,
        "images": result.calibration_images,
        "folder": Path(calib).name,
        "weights": "per-channel max (axis 0), symmetric INT8",
        "activations": "per-tensor, symmetric INT8",
        "quantized_layers": len(result.layers),
        "float_layers": sorted(result.never_run),
        "quantizers": _jsonable(result.counts),
        "context_graph": "kept fp32 (the routing/prior decision is made once per image at CLIP size)",
    }
    return result.model, details


def _export_graph(plan: G.GraphPlan, net: Any, precision: str, trace_hw: tuple[int, int], dest: Path) -> GraphRow:
    import onnx

    example = plan.example_inputs(net, *trace_hw)
    graph_precision = "fp32" if plan.role == "context" else precision
    if graph_precision == "int8":
        from edgerain.quant import export_qdq_onnx

        raw = dest.with_suffix(".raw.onnx")
        dyn = {G.IMAGE: dict(G.DYNAMIC_HW), plan.output_name: dict(G.DYNAMIC_HW)}
        with G.exporting():
            export_qdq_onnx(
                plan.module,
                example,
                raw,
                input_names=plan.input_names,
                output_names=[plan.output_name],
                dynamic_axes=dyn,
            )
        model = onnx.load(str(raw))
        raw.unlink()
        # No onnxslim here: it would fold the weights' DequantizeLinear into float constants, and
        # TensorRT reads the weight scales from those Q/DQ pairs.
        for node in model.graph.node:
            node.doc_string = ""
        model.doc_string = ""
        model.producer_name = "edgerain"
        try:
            onnx.checker.check_model(model, full_check=True)
            model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        except Exception as exc:
            raise EdgerainError(f"ONNX check of {plan.file} failed: {str(exc).splitlines()[0]}") from None
    else:
        model = G.finalize(G.torch_to_onnx(plan, example), plan.file)
        if graph_precision == "fp16":
            model = G.to_fp16(model, plan.file)
    if plan.role == "main":
        G.pin_output_like_image(model)
    data = G.serialize(model)
    dest.write_bytes(data)
    return GraphRow(plan.file, plan.role, graph_precision, len(data), G.node_count(model))


def _graph_entry(plan: G.GraphPlan, row: GraphRow, net: Any, bundle: Path) -> dict[str, Any]:
    import onnx

    inputs, outputs = G.io_spec(onnx.load(str(bundle / plan.file), load_external_data=False))
    entry: dict[str, Any] = {"file": plan.file, "precision": row.precision, "inputs": inputs, "outputs": outputs}
    if plan.role == "context":
        entry["kind"] = plan.kind
        if plan.kind == "router":
            entry["rule"] = "hard-top1" if net.config.routing == "hard" else "soft"
    if plan.expert is not None:
        entry["expert"] = plan.expert
        entry["prompt"] = net.config.prompts[plan.expert]
    return entry


def _write_samples(
    bundle: Path, images: list[np.ndarray], reference_net: Any, float_net: Any
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None, dict[str, Any]]]:
    """Store sample inputs and PyTorch reference outputs; return what parity compares against."""
    import torch
    from PIL import Image

    folder = bundle / fmt.SAMPLES_DIR
    folder.mkdir()
    exact = copy.deepcopy(float_net).double().eval()
    out = []
    for i, img in enumerate(images):
        ref, ctx, expert = P.torch_reference(exact, img)
        if reference_net is not float_net:  # int8: the fake-quant network under the float decision
            reference_net.eval()
            x = torch.from_numpy(P.to_nchw(img))
            with torch.no_grad():
                ref = reference_net(x, float_net.global_context(x)).numpy()
        name_in, name_ref = f"{fmt.SAMPLES_DIR}/sample_{i}.png", f"{fmt.SAMPLES_DIR}/sample_{i}.npy"
        Image.fromarray(img).save(bundle / name_in, format="PNG")
        np.save(bundle / name_ref, ref.astype(np.float32), allow_pickle=False)
        entry: dict[str, Any] = {"input": name_in, "reference": name_ref}
        if ctx is not None:
            name_ctx = f"{fmt.SAMPLES_DIR}/sample_{i}.context.npy"
            np.save(bundle / name_ctx, ctx.astype(np.float32), allow_pickle=False)
            entry["context_reference"] = name_ctx
        if expert is not None:
            entry["expert"] = expert
        out.append((img, ref, ctx, expert, entry))
    return out


def export_bundle(
    out: str | os.PathLike[str],
    target: str | Target,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    calib: str | os.PathLike[str] | None = None,
    samples: str | os.PathLike[str] | None = None,
    clip_weights: str | None = None,
    tile: int | None = None,
    overlap: int = 32,
    build_engines: bool = True,
) -> ExportResult:
    """Export a network to a bundle for ``target`` (see the module docstring)."""
    tgt = target if isinstance(target, Target) else get_target(target)
    precision = precision or tgt.default_precision
    if precision not in fmt.PRECISIONS:
        raise EdgerainError(f"unknown precision '{precision}'; choose one of {', '.join(fmt.PRECISIONS)}")
    if precision not in tgt.precisions:
        raise EdgerainError(f"target '{tgt.name}' does not run {precision} (it runs {', '.join(tgt.precisions)})")
    if calib is not None and precision != "int8":
        raise EdgerainError("--calib is only used by --precision int8")
    if tile is not None and (tile < 32 or overlap * 2 >= tile or overlap < 0):
        raise EdgerainError(f"--tile must be at least 32 and more than twice --overlap ({overlap})")
    if samples is not None and not Path(samples).is_dir():
        raise EdgerainError(f"sample folder {samples} does not exist")
    if calib is not None and not Path(calib).is_dir():
        raise EdgerainError(f"calibration folder {calib} does not exist")

    net = load_network(model, weights, clip_weights)
    images = P.samples_from_folder(samples) if samples is not None else P.default_samples()
    if tgt.tensorrt is not None:
        # One sample at the smallest size the shape profiles admit, so that verify can run
        # TensorRT engines (whose profiles start there) against a stored reference on the device.
        smallest = min((p.min for p in tgt.shape_profiles), key=lambda hw: hw[0] * hw[1])
        images.append(P.synthetic_rainy(*smallest, np.random.default_rng(P.SAMPLE_SEED + 1)))
    calibration = None
    export_net = net
    if precision == "int8":
        export_net, calibration = _quantize(net, calib)
    tol = P.TOLERANCES[precision]
    m = net.pad_multiple
    trace_hw = (4 * m, 6 * m)

    with _bundle_dir(Path(out)) as tmp:
        rows: list[GraphRow] = []
        entries: dict[str, Any] = {"context": None, "main": []}
        for plan in G.plan_graphs(export_net):
            if plan.role == "context":  # decisions at full precision, from the float network
                plan = next(p for p in G.plan_graphs(net) if p.role == "context")
            row = _export_graph(plan, export_net if plan.role == "main" else net, precision, trace_hw, tmp / plan.file)
            rows.append(row)
            entry = _graph_entry(plan, row, net, tmp)
            if plan.role == "context":
                entries["context"] = entry
            else:
                entries["main"].append(entry)

        refs = _write_samples(tmp, images, export_net, net)
        manifest: dict[str, Any] = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "model": _model_entry(net, model, weights),
            "precision": precision,
            "target": tgt.manifest_entry(),
            "input": {**fmt.INPUT_CONVENTION, "pad_multiple": m, "min_side": net.min_side},
            "graphs": entries,
            "routing": None,
            "tiling": {"tile": tile, "overlap": overlap},
            "shape_profiles": [p.as_dict() for p in tgt.shape_profiles],
            "providers": tgt.providers,
            "onnx": {
                "opset": G.OPSET,
                "exporter": G.EXPORTER,
                "simplifier": "onnxslim",
                "dynamic_axes": ["height", "width"],
            },
            "calibration": calibration,
            "build": {"script": fmt.BUILD_SCRIPT_NAME, "engines_dir": fmt.ENGINES_DIR},
            "engines": [],
            "dla": None,
            "versions": _versions(),
        }
        if entries["context"] is not None and entries["context"]["kind"] == "router":
            manifest["routing"] = {
                "rule": entries["context"]["rule"],
                "prompts": list(net.config.prompts),
                "temperature": float(net.config.temperature),
                "decided_on": "the whole unpadded image, resized to the CLIP input size inside context.onnx",
            }

        runner = OrtBundle(tmp, manifest)
        parity_rows = [P.check_sample(runner, img, ref, ctx, ex) for img, ref, ctx, ex, _ in refs]
        for row_p, (*_, entry) in zip(parity_rows, refs, strict=True):
            row_p.update(entry)
        problems = P.failures(parity_rows, tol)
        manifest["parity"] = {
            "reference": "PyTorch eager, " + ("fp32 fake-quantised (ModelOpt)" if precision == "int8" else "float64"),
            "runtime": "ONNX Runtime CPUExecutionProvider",
            "atol": tol.atol,
            "min_psnr_db": tol.min_psnr_db,
            "context_atol": tol.context_atol,
            "samples": parity_rows,
            "passed": not problems,
        }
        if problems:
            raise EdgerainError(
                f"parity check failed ({precision}): {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )

        (tmp / fmt.BUILD_SCRIPT_NAME).write_text(T.build_script({**manifest, "files": fmt.hash_tree(tmp)}, tgt))
        (tmp / fmt.BUILD_SCRIPT_NAME).chmod(0o755)
        if tgt.dla_cores > 0:
            manifest["dla"] = _dla_report(tmp, entries["main"], tgt, precision, m)

        manifest["files"] = fmt.hash_tree(tmp)
        fmt.validate_manifest(manifest)
        (tmp / fmt.MANIFEST_NAME).write_text(fmt.dumps_manifest(manifest))

        engines_built, note = 0, ""
        reason = T.can_build_here(tgt) if build_engines else "engine building was switched off"
        if reason is None:
            records = T.build_engines(tmp, manifest, tgt, T.engine_jobs(manifest, tgt))
            engines_built = len(records)
            note = f"built {engines_built} TensorRT engines here"
        else:
            note = f"TensorRT engines not built here: {reason}"

    bundle = Path(out)
    if tgt.tensorrt is None:
        next_step = f"run it with ONNX Runtime: edgerain derain --bundle {bundle} IMAGES"
    else:
        next_step = (
            f"copy {bundle} to the {tgt.description} and run ./build_engine.sh there"
            + (" (add --dla to also build DLA engines)" if tgt.dla_cores else "")
            + f", then edgerain verify {bundle.name}"
        )
    return ExportResult(bundle, manifest, rows, engines_built, note, next_step)


def _dla_report(
    bundle: Path, mains: list[dict[str, Any]], tgt: Target, precision: str, multiple: int
) -> dict[str, Any]:
    """dla_report.json for the largest shape profile; returns the manifest's summary of it."""
    import onnx

    profile = max(tgt.shape_profiles, key=lambda p: p.opt[0] * p.opt[1]).padded(multiple)
    h, w = profile.opt
    graphs: dict[str, Any] = {}
    by_structure: dict[str, dict[str, Any]] = {}  # CLIP-RPN experts share one architecture
    for g in mains:
        graph = onnx.load(str(bundle / g["file"]))
        key = dla_mod.structure_key(graph)
        if key not in by_structure:
            by_structure[key] = dla_mod.analyse(graph, h, w, precision)
        graphs[g["file"]] = by_structure[key]
    first = graphs[mains[0]["file"]]
    report = {
        "target": tgt.name,
        "dla_cores": tgt.dla_cores,
        "profile": profile.as_dict(),
        "rules": dla_mod.DLA_RULES_URL,
        "note": "predicted from TensorRT's documented DLA restrictions; the TensorRT build log has the last word",
        "graphs": graphs,
    }
    (bundle / fmt.DLA_REPORT_NAME).write_text(fmt.dumps_manifest(report))
    return {
        "report": fmt.DLA_REPORT_NAME,
        "profile": profile.name,
        "graphs": {f: r["summary"] for f, r in graphs.items()},
        "top_fallback_reasons": [{"reason": reason, "layers": n} for reason, n in dla_mod.fallback_reasons(first)],
    }
