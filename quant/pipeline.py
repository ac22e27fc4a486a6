"""``edgerain quantize`` as one call: calibrate, gate, pick float layers, export, report.

Outputs (written atomically as one folder; a failed gate leaves only a report marked failed):

    OUT/report.json            settings, quantizer counts, layers kept in float and why, gate, graphs
    OUT/quantized.safetensors  the fake-quantized network (edgerain.quant.load_quantized)
    OUT/onnx/<graph>.onnx      INT8 Q/DQ graphs in the bundle's naming (context, main_<i>)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.quant.calibrate import DEFAULT_CALIB_SIZE, QuantResult, fit_to_size, quantize_model, quantized_layer_count
from edgerain.quant.config import QuantSettings
from edgerain.quant.export import deployment_graphs, export_qdq_onnx, onnx_parity, qdq_summary
from edgerain.quant.gate import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, GateResult, compare, load_eval_pairs, run_eval
from edgerain.quant.sensitivity import KeptFloat, LayerSensitivity, exclude_until_gate, layer_sensitivity
from edgerain.quant.state import save_quantized
from edgerain.utils import atomic_path

SENSITIVITY_MODES = ("auto", "always", "never")
# ORT vs the fake-quant model, PSNR of the difference (peak 1). Rounding-boundary flips give 50-55 dB
# on deep untrained experts; a wrong scale or a missing Q/DQ pair lands far below 45 dB.
PARITY_MIN_PSNR = 45.0


@dataclasses.dataclass
class QuantizeOptions:
    method: str = "max"
    percentile: float = 99.99
    entropy_stride: int = 8
    placement: str = "tensorrt"  # Q/DQ placement: "tensorrt" or "ort" (see edgerain.quant.config)
    calib_size: tuple[int, int] = DEFAULT_CALIB_SIZE
    calib_limit: int | None = 32
    eval_limit: int | None = None
    max_drop: float = DEFAULT_MAX_DROP
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    sensitivity: str = "auto"  # auto: only when the fully quantized network fails the gate
    sensitivity_images: int = 4
    sensitivity_size: tuple[int, int] = (128, 128)
    max_float_layers: int | None = None  # None: a quarter of the quantized layers
    exclude: tuple[str, ...] = ()
    export_size: tuple[int, int] | None = None  # None: the first evaluation image's size
    export_onnx: bool = True

    def __post_init__(self) -> None:
        QuantSettings(self.method, self.percentile, self.entropy_stride, placement=self.placement)  # validates
        if self.sensitivity not in SENSITIVITY_MODES:
            raise EdgerainError(f"sensitivity must be one of {', '.join(SENSITIVITY_MODES)}, got '{self.sensitivity}'")
        if self.max_drop < 0:
            raise EdgerainError(f"max drop must be >= 0 dB, got {self.max_drop}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise EdgerainError(f"min agreement must be in [0, 1], got {self.min_agreement}")


@dataclasses.dataclass
class QuantReport:
    status: str  # "passed" | "failed"
    model: str
    gate: GateResult
    kept_float: list[KeptFloat]
    result: QuantResult
    sensitivity: list[LayerSensitivity]
    trail: list[dict[str, Any]]
    graphs: list[dict[str, Any]]
    out: Path
    seconds: float
    options: QuantizeOptions

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        from edgerain.quant.env import versions

        r = self.result
        return {
            "format": "edgerain-quant-report",
            "status": self.status,
            "model": self.model,
            "failures": self.gate.failures()
            + [
                f"ONNX parity failed for {g['name']}" + (f" ({g['parity_error']})" if "parity_error" in g else "")
                for g in self.graphs
                if not g["parity_ok"]
            ],
            "settings": {
                **{k: v for k, v in dataclasses.asdict(self.options).items() if k != "exclude"},
                "exclude": list(self.options.exclude),
                "calibration_images": r.calibration_images,
            },
            "gate": self.gate.to_json(),
            "quantized_layers": quantized_layer_count(r.model),
            "layers_total": len(r.layers) + len(r.never_run),
            "quantizers_per_submodule": r.counts,
            "folded_batchnorm": len(r.folded_batchnorm),
            "kept_float": [k.to_json() for k in self.kept_float],
            "sensitivity": [s.to_json() for s in self.sensitivity],
            "gate_trail": self.trail,
            "graphs": self.graphs,
            "artefacts": ["quantized.safetensors", *[f"onnx/{g['name']}.onnx" for g in self.graphs]]
            if self.passed
            else [],
            "seconds": round(self.seconds, 1),
            "versions": versions(),
        }


def _never_ran_reason(model: DerainModel, layer: str) -> str:
    parent = type(model.get_submodule(layer.rsplit(".", 1)[0])).__name__ if "." in layer else ""
    if parent == "AttentionPool2d":
        return "RN50's attention pool calls F.multi_head_attention_forward on its raw weights: its quantizers never run"
    if parent == "UpDWBlock":
        return "UpDWBlock hands its raw weights to the fused UpDW op (edgerain.ops.updw): its quantizers never run"
    return "not on the inference path (its quantizers never ran during calibration, e.g. a training-only head)"


def _float_reasons(result: QuantResult, user_excluded: tuple[str, ...]) -> list[KeptFloat]:
    kept = [KeptFloat(layer, _never_ran_reason(result.model, layer)) for layer in result.never_run]
    kept += [KeptFloat(layer, "kept in float by the user (--exclude)") for layer in user_excluded]
    return kept


def quantize_and_gate(
    model: DerainModel,
    calib_dir: str | os.PathLike[str],
    eval_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: QuantizeOptions | None = None,
    progress: bool = True,
) -> QuantReport:
    """Quantize ``model``, apply the accuracy gate, and write OUT (see the module doc).

    On a failed gate OUT holds only ``report.json`` with ``"status": "failed"`` and no model or
    graph; the report is returned either way (the CLI exits non-zero on failure).
    """
    opts = options or QuantizeOptions()
    start = time.monotonic()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgerainError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        # OUT is replaced as a whole: only ever replace an earlier `edgerain quantize` output.
        raise EdgerainError(f"output folder {out} is not empty and is not an earlier quantize output")
    pairs = load_eval_pairs(eval_dir, opts.eval_limit)
    result = quantize_model(
        model,
        calib_dir,
        method=opts.method,
        percentile=opts.percentile,
        placement=opts.placement,
        entropy_stride=opts.entropy_stride,
        calib_size=opts.calib_size,
        calib_limit=opts.calib_limit,
        exclude=opts.exclude,
        progress=progress,
    )
    qmodel = result.model
    reference = run_eval(model, pairs)
    gate = compare(reference, run_eval(qmodel, pairs), opts.max_drop, opts.min_agreement)
    trail: list[dict[str, Any]] = [{"float_layers": 0, **gate.to_json()}]
    kept = _float_reasons(result, opts.exclude)
    sensitivity: list[LayerSensitivity] = []
    candidates = [layer for layer in result.layers if layer not in opts.exclude]
    if opts.sensitivity == "always" or (opts.sensitivity == "auto" and not gate.passed):
        sensitivity = layer_sensitivity(
            qmodel, pairs[: opts.sensitivity_images], candidates, opts.sensitivity_size, progress=progress
        )
    if not gate.passed and sensitivity:
        limit = opts.max_float_layers if opts.max_float_layers is not None else max(1, len(candidates) // 4)
        gate, auto_kept, trail = exclude_until_gate(
            qmodel, pairs, reference, sensitivity, opts.max_drop, opts.min_agreement, limit
        )
        kept += auto_kept

    report = QuantReport(
        "passed" if gate.passed else "failed",
        model.registry_name,
        gate,
        kept,
        result,
        sensitivity,
        trail,
        [],
        out,
        0.0,
        opts,
    )
    with atomic_path(out) as tmp:
        tmp.mkdir()
        if report.passed:
            report.graphs = _write_artefacts(qmodel, pairs, tmp, opts, report)
            if not all(g["parity_ok"] for g in report.graphs):
                report.status = "failed"
                for name in ("quantized.safetensors", "onnx"):
                    target = tmp / name
                    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        report.seconds = time.monotonic() - start
        (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


def _write_artefacts(
    qmodel: DerainModel, pairs: list[Any], folder: Path, opts: QuantizeOptions, report: QuantReport
) -> list[dict[str, Any]]:
    save_quantized(
        qmodel,
        folder / "quantized.safetensors",
        provenance={"quantization": {"method": opts.method, "kept_float": [k.layer for k in report.kept_float]}},
        folded_batchnorm=report.result.folded_batchnorm,
    )
    if not opts.export_onnx:
        return []
    h, w = opts.export_size or tuple(pairs[0].rainy.shape[-2:])
    example = fit_to_size(pairs[0].rainy, (h, w))
    graphs = []
    (folder / "onnx").mkdir()
    for spec in deployment_graphs(qmodel, h, w, image=example):
        path = export_qdq_onnx(
            spec.module,
            spec.example_inputs,
            folder / "onnx" / f"{spec.name}.onnx",
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes,
        )
        row: dict[str, Any] = {
            "name": spec.name,
            "inputs": {n: list(t.shape) for n, t in zip(spec.input_names, spec.example_inputs, strict=True)},
            "dynamic_axes": spec.dynamic_axes,
        }
        try:
            exact = onnx_parity(spec.module, path, spec.example_inputs, optimize=False)
            optimized = onnx_parity(spec.module, path, spec.example_inputs, optimize=True)
        except Exception as exc:  # ONNX Runtime refusing the graph is a failed check, reported as such
            row.update(parity_ok=False, parity_error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        else:
            row.update(
                parity_ort_unoptimized=exact.to_json(),
                parity_ort_optimized=optimized.to_json(),
                parity_ok=min(exact.psnr_db, optimized.psnr_db) >= PARITY_MIN_PSNR,
            )
        row.update({k: v for k, v in qdq_summary(path).items() if k != "ops"})
        graphs.append(row)
    return graphs
