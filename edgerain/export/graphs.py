"""Splitting a network into deployable graphs and exporting each one to checked ONNX.

CLIP-RPN becomes a router graph (whole image -> scores) plus one graph per expert, so a device
runs only the chosen expert; the weather-prior network becomes a prior graph (whole image ->
tokens) plus the restoration graph that takes the tokens as a second input; single-path networks
become one graph. Every restoration graph computes ``model.forward_padded`` (input + residual) on
an input already padded to the model's multiple, with dynamic height and width.

Export is the legacy TorchScript exporter (``dynamo=False``) at a pinned opset: it keeps weights
inside the ``.onnx`` file and is the exporter that ModelOpt's Q/DQ graphs go through. The result
is simplified (onnxslim), checked (``onnx.checker`` full check, strict shape inference) and
serialised deterministically, so the same weights give the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from edgerain.errors import EdgerainError
from edgerain.models.base import DerainModel
from edgerain.models.clip_rpn import ClipRPN
from edgerain.models.clip_weather import ClipWeather
from edgerain.models.graphs import ExpertGraph, MainGraph, PriorGraph, RouterGraph

OPSET = 17
EXPORTER = "torch.onnx legacy TorchScript exporter (dynamo=False)"
IMAGE = "image"
OUTPUT = "output"
# Graph-level ONNX names; the manifest lists them per graph.
DYNAMIC_HW = {2: "height", 3: "width"}


@dataclasses.dataclass
class GraphPlan:
    """One graph to export: its role, file name, module and ONNX interface."""

    role: str  # "context" | "main"
    file: str
    module: nn.Module
    input_names: list[str]
    output_name: str
    kind: str | None = None  # context graphs: "router" | "prior"
    expert: int | None = None  # CLIP-RPN expert index

    def example_inputs(self, model: DerainModel, height: int, width: int) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        image = torch.rand((1, 3, height, width), generator=g)
        if self.input_names == [IMAGE]:
            return (image,)
        with torch.no_grad():
            context = model.global_context(image)
        return (image, context)


def plan_graphs(model: DerainModel) -> list[GraphPlan]:
    """The graphs a bundle of ``model`` holds (docs/bundle-format.md), wrappers in eval mode.

    Eval mode matters beyond the export itself: exporters restore the wrapper's training flag
    afterwards, and a wrapper left in its default train mode would switch the whole network to
    training behaviour (no output clamp, training-only perturbations) for whatever runs next.
    """
    plans = _plan_graphs(model)
    for plan in plans:
        plan.module.eval()
    return plans


def _plan_graphs(model: DerainModel) -> list[GraphPlan]:
    if isinstance(model, ClipRPN):
        plans = [GraphPlan("context", "context.onnx", RouterGraph(model), [IMAGE], "scores", kind="router")]
        plans += [
            GraphPlan("main", f"main_{i}.onnx", ExpertGraph(model, i), [IMAGE], OUTPUT, expert=i)
            for i in range(len(model.experts))
        ]
        return plans
    if isinstance(model, ClipWeather):
        return [
            GraphPlan("context", "context.onnx", PriorGraph(model), [IMAGE], "tokens", kind="prior"),
            GraphPlan("main", "main_0.onnx", MainGraph(model), [IMAGE, "context"], OUTPUT),
        ]
    probe = torch.zeros(1, 3, model.pad_multiple, model.pad_multiple)
    with torch.no_grad():
        if model.global_context(probe) is not None:
            raise EdgerainError(
                f"'{model.registry_name}' has a whole-image context that the exporter does not know how to split"
            )
    return [GraphPlan("main", "main_0.onnx", MainGraph(model), [IMAGE], OUTPUT)]


def _floor_divide(g: Any, a: Any, b: Any) -> Any:
    from torch.onnx import symbolic_opset9

    return symbolic_opset9._floor_divide(g, a, b)


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Settings for every trace: quiet tracer warnings, and a correct integer floor division.

    The legacy exporter still maps ``aten::floor_divide`` to a *truncating* ONNX Div (PyTorch's
    old, deprecated semantics), so shape arithmetic such as ``-(-H // w)`` (ceil division in the
    MGCA window grid) is wrong for every H that is not a multiple of w. The override below emits
    the flooring form while an export runs, and is removed afterwards.
    """
    torch.onnx.register_custom_op_symbolic("aten::floor_divide", _floor_divide, OPSET)
    try:
        with warnings.catch_warnings():
            # TracerWarnings about Python ints in shape arithmetic are expected: parity at sizes
            # other than the trace size is what proves the graph really is shape-generic.
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::floor_divide", OPSET)


def torch_to_onnx(plan: GraphPlan, example: tuple[Tensor, ...]) -> Any:
    """Trace ``plan.module`` to an ONNX ModelProto with dynamic H and W on every image tensor."""
    import onnx

    dynamic: dict[str, dict[int, str]] = {}
    if plan.role == "main" or plan.kind is not None:
        dynamic[IMAGE] = dict(DYNAMIC_HW)
    if plan.role == "main":
        dynamic[plan.output_name] = dict(DYNAMIC_HW)
    buf = io.BytesIO()
    with exporting(), torch.no_grad():
        torch.onnx.export(
            plan.module.eval(),
            example,
            buf,  # type: ignore[arg-type]
            opset_version=OPSET,
            dynamo=False,
            input_names=plan.input_names,
            output_names=[plan.output_name],
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def simplify(model: Any, name: str) -> Any:
    """onnxslim: constant folding (shape arithmetic included) and fusions.

    onnxslim's own symbolic shape inference is skipped: on these attention graphs it takes minutes
    and adds nothing that onnx's strict shape inference (run in :func:`finalize`) does not.
    """
    import onnxslim

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(model, no_shape_infer=True)
    except Exception as exc:  # a simplifier crash on a checked graph: say so rather than ship unsimplified
        raise EdgerainError(f"onnxslim could not simplify {name}: {exc}") from None
    return slim if slim is not None else model


def finalize(model: Any, name: str, simplify_graph: bool = True) -> Any:
    """Simplify, strip non-deterministic text, check, and infer shapes (strict)."""
    import onnx

    from edgerain import __version__

    if simplify_graph:
        model = simplify(model, name)
    model.producer_name = "edgerain"
    model.producer_version = __version__
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise EdgerainError(f"ONNX check of {name} failed: {str(exc).splitlines()[0]}") from None
    return model


def to_fp16(model: Any, name: str) -> Any:
    """Weights and activations in float16, inputs and outputs kept float32.

    Channel LayerNorm statistics (mean of squared deviations) overflow float16 on trained
    activations, so the nodes that compute them stay in float32.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Pow", "ReduceMean", "Sqrt", "Reciprocal"],
        )
    # The converter only inserts casts around blocked nodes (a second simplification pass buys
    # nothing) but appends the input casts at the end of the node list: restore the order.
    toposort(half)
    return finalize(half, name, simplify_graph=False)


def toposort(model: Any) -> None:
    """Reorder ``model.graph.node`` in place so that every node follows its producers (stable)."""
    nodes = list(model.graph.node)
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    placed: list[Any] = []
    pending = nodes
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                placed.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise EdgerainError(f"graph has a cycle or an undefined input at node {rest[0].name}")
        pending = rest
    del model.graph.node[:]
    model.graph.node.extend(placed)


def pin_output_like_image(model: Any) -> None:
    """A restoration graph's output has the image input's shape: state it (1, 3, height, width).

    Shape inference cannot always prove the batch and channel dims through the residual add and
    would name them (e.g. ``Addoutput_dim_0``); runtimes allocate from the declared shape.
    """
    image = next(i for i in model.graph.input if i.name == IMAGE)
    out = model.graph.output[0].type.tensor_type.shape
    out.ClearField("dim")
    for d in image.type.tensor_type.shape.dim:
        out.dim.add().CopyFrom(d)


def serialize(model: Any) -> bytes:
    return bytes(model.SerializeToString(deterministic=True))


def io_spec(model: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Names, shapes (ints or symbolic names) and dtypes of a graph's inputs and outputs."""
    import onnx

    def one(v: Any) -> dict[str, Any]:
        t = v.type.tensor_type
        dims: list[Any] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}

    return [one(v) for v in model.graph.input], [one(v) for v in model.graph.output]


def node_count(model: Any) -> int:
    return len(model.graph.node)
