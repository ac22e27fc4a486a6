"""Export fake-quantized modules to ONNX with explicit QuantizeLinear/DequantizeLinear pairs.

This is the form TensorRT >= 10 consumes (explicit quantization; its implicit INT8 calibration is
deprecated) and that ONNX Runtime runs. ModelOpt's fake-quant modules export through the legacy
TorchScript exporter (``dynamo=False``); the dynamo exporter fails on them.

:func:`export_qdq_onnx` works on any ``nn.Module`` (the export room exports the CLIP router and each
expert as separate graphs); :func:`deployment_graphs` lists the graphs of a network in the bundle's
naming (``context``, ``main_<i>``).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgerain.models.base import DerainModel, pad_to_multiple
from edgerain.models.clip_rpn import ClipRPN
from edgerain.models.clip_weather import ClipWeather
from edgerain.models.graphs import ExpertGraph, MainGraph, PriorGraph, RouterGraph
from edgerain.ort_cpu import inference_session
from edgerain.utils import atomic_path

DEFAULT_OPSET = 17  # per-channel QuantizeLinear needs >= 13
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def export_qdq_onnx(
    module: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str] = ("image",),
    output_names: Sequence[str] = ("output",),
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``module`` (fake-quantized or float) to ``path`` atomically; returns the path.

    ``dynamic_axes`` follows ``torch.onnx.export`` (e.g. ``{"image": {2: "height", 3: "width"}}``);
    ``None`` exports the shapes of ``example_inputs``.
    """
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about shape arithmetic it records as constants: expected for static graphs.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                inputs,
                str(tmp),
                dynamo=False,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    finally:
        module.train(was_training)
    return path


def qdq_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Q/DQ structure of an ONNX graph: op counts, and which conv/gemm/matmul nodes run on DQ inputs.

    A node counts as INT8 when both its data input and its weight come from DequantizeLinear.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    ops = collections.Counter(node.op_type for node in graph.node)

    def from_dq(name: str) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    compute = [n for n in graph.node if n.op_type in QUANTIZABLE_OPS]
    int8 = [n for n in compute if len(n.input) >= 2 and from_dq(n.input[0]) and from_dq(n.input[1])]
    return {
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "compute_nodes": len(compute),
        "int8_compute_nodes": len(int8),
        "float_compute_nodes": sorted(n.name for n in compute if n not in int8),
        "ops": dict(ops.most_common()),
    }


def ort_session(
    path: str | os.PathLike[str], optimize: bool = True, threads: int | None = None, optimized_path: str | None = None
):
    """A CPU ONNX Runtime session; ``optimize=False`` runs the graph as written (exact Q/DQ semantics)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if threads:
        so.intra_op_num_threads = threads
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return inference_session(path, so, ["CPUExecutionProvider"])


@dataclasses.dataclass
class Parity:
    """ONNX Runtime vs the PyTorch module on the same input."""

    max_abs: float
    mean_abs: float
    psnr_db: float  # PSNR of the ORT output against the PyTorch output (peak 1)

    def to_json(self) -> dict[str, float | str]:
        return {
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "psnr_db": "inf" if math.isinf(self.psnr_db) else self.psnr_db,
        }


@torch.no_grad()
def onnx_parity(
    module: nn.Module,
    path: str | os.PathLike[str],
    inputs: Tensor | Sequence[Tensor],
    optimize: bool = False,
) -> Parity:
    """Compare ONNX Runtime with the (fake-quant) PyTorch module on ``inputs`` (first output).

    With INT8 Q/DQ even the unoptimised graph is not bit-exact over many layers: a different
    summation order can move a value across a rounding boundary, which then shifts one INT8 step
    downstream. So parity is judged by the PSNR of the difference, with the max also reported.
    """
    args = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    module.eval()
    ref = module(*args).numpy().astype(np.float64)
    sess = ort_session(path, optimize=optimize)
    feed = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args, strict=True)}
    diff = np.abs(sess.run(None, feed)[0].astype(np.float64) - ref)
    mse = float(np.mean(diff**2))
    return Parity(float(diff.max()), float(diff.mean()), math.inf if mse == 0 else 10 * math.log10(1.0 / mse))


# ---------------------------------------------------------------------------------------------
# The deployed graphs of each network (bundle naming: docs/bundle-format.md)


@dataclasses.dataclass
class GraphSpec:
    """One graph to export: ``module(*example_inputs)`` with these names and dynamic axes."""

    name: str
    module: nn.Module
    example_inputs: tuple[Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]] | None = None


def deployment_graphs(
    model: DerainModel, height: int, width: int, image: Tensor | None = None, seed: int = 0
) -> list[GraphSpec]:
    """The graphs a bundle holds for ``model`` at an image size of ``height`` x ``width``.

    ``image`` (1, 3, height, width) is the example input (default: seeded noise); a real image makes
    the parity checks on the examples representative.

    The context graph (CLIP router or prior) resizes internally, so it is exported with dynamic H/W;
    main graphs take the padded size and are exported at that static size (the legacy exporter
    bakes the MGCA window grid of the example size into the graph).
    """
    if image is None:
        image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    elif tuple(image.shape) != (1, 3, height, width):
        raise ValueError(f"example image must be (1, 3, {height}, {width}), got {tuple(image.shape)}")
    padded = pad_to_multiple(image, model.pad_multiple)
    hw = {"image": {2: "height", 3: "width"}}
    specs: list[GraphSpec] = []
    if isinstance(model, ClipRPN):
        specs.append(GraphSpec("context", RouterGraph(model), (image,), ("image",), ("scores",), hw))
        for i in range(len(model.experts)):
            specs.append(GraphSpec(f"main_{i}", ExpertGraph(model, i), (padded,), ("image",), ("output",)))
    elif isinstance(model, ClipWeather):
        prior = PriorGraph(model)
        with torch.no_grad():
            tokens = prior(image)
        specs.append(GraphSpec("context", prior, (image,), ("image",), ("tokens",), hw))
        specs.append(GraphSpec("main_0", MainGraph(model), (padded, tokens), ("image", "context"), ("output",)))
    else:
        specs.append(GraphSpec("main_0", MainGraph(model), (padded,), ("image",), ("output",)))
    return specs
