"""DLA report: which layers of a graph NVIDIA's DLA can run, and what falls back to the GPU.

The rules are those of TensorRT's "DLA Supported Layers and Restrictions" (TensorRT 10.x, Jetson
Orin, https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html):
FP16/INT8 only; static shapes (one engine per shape profile, min = opt = max); non-batch
dimensions up to 8192; at most 16 DLA loadables per core. Per layer type:

* Convolution: 2D, kernel 1..32, stride 1..8, dilation 1..32, padding 0..31 and below the kernel,
  groups and output channels up to 8192, constant weights.
* Deconvolution: 2D, kernel 1..32, stride 1..32, no padding, no groups, no dilation.
* Pooling (max/average): 2D, window 1..8, stride 1..16, padding 0..7.
* Activation: ReLU, Sigmoid, TanH, Clipped ReLU, Leaky ReLU; Parametric ReLU with a constant slope.
* ElementWise (Sum, Sub, Product, Div, Pow, Max, Min): 4D, broadcasting only NCHW with NCHW, NC11
  or N111.
* Scale (BatchNormalization): 4D.  Concatenation: channel axis only, at least two inputs.
* Resize: 4D, batch and channel scales 1, integer spatial scales: nearest 1..32; bilinear 1..4 with
  half-pixel coordinates. Bicubic is not supported.
* SoftMax: on Orin, 4D, along a non-batch axis.  Reduce: MAX over C, H and W together only.
* Shuffle (Reshape/Transpose/Squeeze/Unsqueeze/Flatten): 4D in and out, batch axis untouched.
* Slice (and Split): 4D, static, unit steps, not along the batch axis.
* Unary: Abs, Sin, Cos, Atan only.  Comparison (Equal/Greater/Less): INT8 only.
Everything else (MatMul/Gemm, Gather, Cast, Pad, Erf, Exp, Sqrt, ReduceMean, Where, ...) has no DLA
implementation and runs on the GPU. Constants, identities and Q/DQ pairs (folded into the
neighbouring layers' INT8 scales) are not layers and are not counted.

The analysis runs on a copy of the graph with its input fixed to the profile's size and shape
arithmetic folded (as TensorRT does), so every tensor shape is known. It predicts TensorRT's
partitioning: DLA subgraphs are the connected groups of DLA-capable layers; TensorRT itself has
the last word (its build log lists "Layers Running on DLA").
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

DLA_RULES_URL = "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html"
MAX_DIM = 8192
MAX_LOADABLES_PER_CORE = 16
_NOT_LAYERS = {"Constant", "Identity", "QuantizeLinear", "DequantizeLinear"}
_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu"}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}
_SHUFFLE = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}
_UNARY_OK = {"Abs", "Sin", "Cos", "Atan"}
_COMPARISON = {"Equal", "Greater", "Less"}


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _within(values: Sequence[int], lo: int, hi: int) -> bool:
    return all(lo <= int(v) <= hi for v in values)


class _Graph:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        g = model.graph
        self.consts: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for node in g.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(a.t)
        # Q/DQ of a constant is still a constant (quantised weights).
        for node in g.node:
            if node.op_type in ("DequantizeLinear", "QuantizeLinear") and node.input[0] in self.consts:
                self.consts[node.output[0]] = self.consts[node.input[0]]
        self.shapes: dict[str, list[int | None]] = {}
        for v in [*g.input, *g.value_info, *g.output]:
            dims = v.type.tensor_type.shape.dim
            self.shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        for name, arr in self.consts.items():
            self.shapes[name] = list(arr.shape)

    def shape(self, name: str) -> list[int | None] | None:
        return self.shapes.get(name)

    def const(self, name: str) -> Any:
        return self.consts.get(name)


def _rank4(g: _Graph, names: Sequence[str]) -> str | None:
    for n in names:
        s = g.shape(n)
        if s is None:
            return f"shape of {n} unknown"
        if len(s) != 4:
            return f"{len(s)}D tensor {n} (DLA runs 4D NCHW tensors only)"
        if any(d is None for d in s):
            return f"dynamic dimension in {n}"
        if any(d > MAX_DIM for d in s[1:]):  # type: ignore[operator]
            return f"dimension above {MAX_DIM} in {n}"
    return None


def classify(node: Any, g: _Graph, precision: str) -> str | None:
    """None when DLA can run ``node``; else the reason it falls back to the GPU."""
    op = node.op_type
    a = _attrs(node)
    data_in = [i for i in node.input[:1] if i]
    io_names = [*data_in, *node.output[:1]]
    if op == "Conv":
        k: Any = a.get("kernel_shape") or (g.shape(node.input[1]) or [None, None])[2:]
        if len(k) != 2:
            return "only 2D convolution runs on DLA"
        if (r := _rank4(g, io_names)) is not None:
            return r
        if g.const(node.input[1]) is None:
            return "convolution weights are not constant"
        if not _within(k, 1, 32):
            return f"kernel {list(k)} outside 1..32"
        if not _within(a.get("strides", [1, 1]), 1, 8):
            return f"stride {a.get('strides')} outside 1..8"
        if not _within(a.get("dilations", [1, 1]), 1, 32):
            return f"dilation {a.get('dilations')} outside 1..32"
        pads = a.get("pads", [0, 0, 0, 0])
        if not _within(pads, 0, 31) or any(p >= k[i % 2] for i, p in enumerate(pads) if p):
            return f"padding {list(pads)} outside 0..31 or not below the kernel"
        out_ch = (g.shape(node.output[0]) or [0, 0])[1]
        if a.get("group", 1) > MAX_DIM or (out_ch or 0) > MAX_DIM:
            return "groups or output channels above 8192"
        return None
    if op == "ConvTranspose":
        k = a.get("kernel_shape") or (g.shape(node.input[1]) or [None, None])[2:]
        if len(k) != 2:
            return "only 2D deconvolution runs on DLA"
        if (r := _rank4(g, io_names)) is not None:
            return r
        if a.get("group", 1) != 1:
            return "grouped deconvolution"
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            return "dilated deconvolution"
        if any(p != 0 for p in a.get("pads", [0, 0, 0, 0])):
            return "deconvolution padding must be 0"
        if not _within(k, 1, 32) or not _within(a.get("strides", [1, 1]), 1, 32):
            return "deconvolution kernel or stride outside 1..32"
        return None
    if op in ("MaxPool", "AveragePool"):
        if (r := _rank4(g, io_names)) is not None:
            return r
        if not _within(a.get("kernel_shape", []), 1, 8):
            return f"pooling window {a.get('kernel_shape')} outside 1..8"
        if not _within(a.get("strides", [1, 1]), 1, 16):
            return "pooling stride outside 1..16"
        if not _within(a.get("pads", [0, 0, 0, 0]), 0, 7):
            return "pooling padding outside 0..7"
        return None
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        if (r := _rank4(g, io_names)) is not None:
            return r
        hw = (g.shape(node.input[0]) or [0, 0, 99, 99])[2:]
        return None if _within(hw, 1, 8) else f"global pooling over {hw[0]}x{hw[1]} exceeds the 8x8 window"  # type: ignore[arg-type]
    if op in _ACTIVATIONS:
        return _rank4(g, io_names)
    if op == "PRelu":
        return _rank4(g, io_names) or (None if g.const(node.input[1]) is not None else "slope is not constant")
    if op == "BatchNormalization":
        return _rank4(g, io_names)
    if op in _ELEMENTWISE:
        out = g.shape(node.output[0])
        if out is None or len(out) != 4 or any(d is None for d in out):
            return f"elementwise on a {len(out) if out else '?'}D tensor (DLA needs 4D)"
        for name in node.input:
            s: Any = g.shape(name)
            if s is None:
                return f"shape of {name} unknown"
            s4 = [1] * (4 - len(s)) + list(s)
            if len(s4) != 4:
                return f"elementwise operand of rank {len(s)}"
            ok = s4 == out or (s4[2:] == [1, 1] and s4[1] in (1, out[1]) and s4[0] in (1, out[0]))
            if not ok:
                return f"broadcast {s4} -> {out} is not NCHW, NC11 or N111"
        return None
    if op == "Concat":
        if len(node.input) < 2:
            return "concatenation of a single input"
        r = _rank4(g, [*node.input, node.output[0]])
        if r is not None:
            return r
        return None if a.get("axis") in (1, -3) else f"concatenation along axis {a.get('axis')} (channel axis only)"
    if op == "Resize":
        if (r := _rank4(g, io_names)) is not None:
            return r
        si, so = g.shape(node.input[0]), g.shape(node.output[0])
        assert si is not None and so is not None
        if si[0] != so[0] or si[1] != so[1]:
            return "resize changes the batch or channel dimension"
        scales = [so[i] / si[i] for i in (2, 3)]  # type: ignore[operator]
        if any(s != int(s) for s in scales):
            return f"non-integer resize scale {scales}"
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        if mode == "nearest":
            return None if _within([int(s) for s in scales], 1, 32) else "nearest resize scale outside 1..32"
        if mode == "linear":
            if ctm not in ("half_pixel", "pytorch_half_pixel"):
                return f"bilinear resize with {ctm} coordinates (DLA: half-pixel only)"
            return None if _within([int(s) for s in scales], 1, 4) else "bilinear resize scale outside 1..4"
        return f"{mode} resize"
    if op == "Softmax":
        s = g.shape(node.input[0])  # type: ignore[assignment]
        if s is None or len(s) != 4:
            return f"softmax on a {len(s) if s else '?'}D tensor (DLA needs 4D)"
        axis = a.get("axis", -1) % 4
        return None if axis != 0 else "softmax along the batch axis"
    if op == "ReduceMax":
        if (r := _rank4(g, data_in)) is not None:
            return r
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            c = g.const(node.input[1])
            axes = None if c is None else [int(x) for x in c.reshape(-1)]
        return (
            None if axes is not None and sorted(int(x) % 4 for x in axes) == [1, 2, 3] else "reduce over C, H, W only"
        )
    if op in _SHUFFLE:
        s_in, s_out = g.shape(node.input[0]), g.shape(node.output[0])
        if not s_in or not s_out or len(s_in) != 4 or len(s_out) != 4:
            return f"reshape/transpose between {len(s_in or [])}D and {len(s_out or [])}D tensors (DLA: 4D only)"
        if op == "Transpose" and int(a.get("perm", [0])[0]) != 0:
            return "transpose moves the batch axis"
        if s_in[0] != s_out[0]:
            return "reshape changes the batch dimension"
        return None
    if op in ("Slice", "Split"):
        if (r := _rank4(g, io_names)) is not None:
            return r
        if op == "Split":
            return None if a.get("axis", 0) % 4 != 0 else "split along the batch axis"
        params = [g.const(n) for n in node.input[1:]]
        if any(p is None for p in params):
            return "slice bounds are computed at run time (DLA: static slices only)"
        axes = params[2] if len(params) > 2 else None
        steps = params[3] if len(params) > 3 else None
        if axes is not None and any(int(x) % 4 == 0 for x in axes.reshape(-1)):
            return "slice along the batch axis"
        if steps is not None and any(int(x) != 1 for x in steps.reshape(-1)):
            return "slice with a step other than 1"
        return None
    if op in _UNARY_OK:
        return _rank4(g, io_names)
    if op in _COMPARISON:
        return None if precision == "int8" else "comparisons run on DLA in INT8 only"
    return f"{op} has no DLA implementation"


def static_copy(model: Any, height: int, width: int) -> Any:
    """The graph with its image input fixed to (1, 3, height, width), shape arithmetic folded."""
    import copy

    import onnx
    import onnxslim

    m = copy.deepcopy(model)
    for inp in m.graph.input:
        if inp.name == "image":
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, (1, 3, height, width), strict=True):
                d.Clear()
                d.dim_value = v
    for out in m.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    del m.graph.value_info[:]
    # onnx's data-propagating shape inference makes the shape arithmetic constant; onnxslim then
    # folds it (its own symbolic shape inference is slow and not needed once shapes are static).
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    with contextlib.redirect_stdout(io.StringIO()):
        slim = onnxslim.slim(m, no_shape_infer=True)
    m = slim if slim is not None else m
    return onnx.shape_inference.infer_shapes(m, data_prop=True)


def analyse(model: Any, height: int, width: int, precision: str) -> dict[str, Any]:
    """Per-layer DLA support of ``model`` at a static input size, with the expected partitioning."""
    m = static_copy(model, height, width)
    g = _Graph(m)
    layers = []
    on_dla: dict[str, bool] = {}
    producer: dict[str, str] = {}
    # Shape arithmetic left after folding (Shape -> Gather -> Concat ...) is computed by TensorRT
    # at build time for static shapes: not layers either.
    build_time = set(g.consts)
    alias: dict[str, str] = {}  # Q/DQ/Identity output -> the tensor it passes through
    for i, node in enumerate(m.graph.node):
        ins = [n for n in node.input if n]
        if node.op_type == "Shape" or (ins and all(n in build_time for n in ins)) or node.op_type == "Constant":
            build_time.update(node.output)
            continue
        if node.op_type in _NOT_LAYERS:
            alias[node.output[0]] = node.input[0]
            continue
        name = node.name or f"{node.op_type}_{i}"
        reason = classify(node, g, precision)
        if precision == "fp32" and reason is None:
            reason = "DLA runs FP16 and INT8 only (this bundle is fp32)"
        layers.append({"name": name, "op": node.op_type, "dla": reason is None, "reason": reason})
        on_dla[name] = reason is None
        for out in node.output:
            producer[out] = name
    # DLA subgraphs. A loadable cannot hold two DLA layers with a GPU layer on a path between them
    # (the partition graph would have a cycle), so layers get a stage number that grows by one at
    # every DLA<->GPU change along any path, and a subgraph is a connected group of DLA layers of
    # one stage. This is how TensorRT has to split the graph, give or take its own heuristics.
    parent = {n: n for n, ok in on_dla.items() if ok}
    stage: dict[str, int] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, node in enumerate(m.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if name not in on_dla:
            continue
        sources = []
        for inp in node.input:
            while inp in alias:
                inp = alias[inp]
            if inp in producer:
                sources.append(producer[inp])
        stage[name] = max((stage[s] + (on_dla[s] != on_dla[name]) for s in sources), default=0)
        if on_dla[name]:
            for src in sources:
                if on_dla[src] and stage[src] == stage[name]:
                    parent[find(src)] = find(name)
    subgraphs = len({find(n) for n in parent})
    dla_layers = sum(on_dla.values())
    return {
        "input": [1, 3, height, width],
        "precision": precision,
        "layers": layers,
        "summary": {
            "layers": len(layers),
            "dla_layers": dla_layers,
            "gpu_fallbacks": len(layers) - dla_layers,
            "dla_subgraphs": subgraphs,
            "exceeds_loadable_limit": subgraphs > MAX_LOADABLES_PER_CORE,
        },
    }


def fallback_reasons(report: dict[str, Any], top: int = 5) -> list[tuple[str, int]]:
    """The most common reasons for GPU fallback, with counts."""
    counts: dict[str, int] = {}
    for layer in report["layers"]:
        if not layer["dla"]:
            key = layer["reason"]
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def structure_key(model: Any) -> str:
    """A digest of a graph's structure (ops, attributes, wiring, shapes), ignoring weight values.

    Graphs with the same key get the same DLA report, so equal experts are analysed once.
    """
    import hashlib

    h = hashlib.sha256()
    for node in model.graph.node:
        h.update(node.op_type.encode())
        h.update(
            repr(sorted(_attrs(node).items(), key=lambda kv: kv[0])).encode() if node.op_type != "Constant" else b""
        )
        h.update(repr((list(node.input), list(node.output))).encode())
    for t in model.graph.initializer:
        h.update(repr((t.name, list(t.dims), t.data_type)).encode())
    return h.hexdigest()
