"""FLOPs and memory traffic of a bundle's ONNX graphs at concrete shapes, for roofline projections.

Counted from the graph after shape inference: convolutions and matrix products at 2 FLOPs per
multiply-add, other operators at one FLOP per output element. Bytes: every operator reads its
inputs and writes its outputs (``unfused_bytes``); the *fused* bound counts only the weights and
the graph's inputs/outputs (a perfectly fused engine). The roofline projection puts each operator
at its own roofline (the best case for layer-by-layer execution, the headline FPS) and also gives
the fully fused ideal. Needs the ``onnx`` package (a development dependency).
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache
from pathlib import Path
from typing import Any

from edgerain.errors import MissingCapabilityError

_ELEM_BYTES = {1: 4, 10: 2, 16: 2, 11: 8, 7: 8, 6: 4, 3: 1, 2: 1, 9: 1}  # onnx TensorProto dtypes


@dataclasses.dataclass
class GraphCost:
    flops: float
    fused_bytes: float
    unfused_bytes: float
    weight_bytes: float
    # (flops, bytes) of each operator, for the per-operator roofline; empty where not counted
    per_op: list[tuple[float, float]] = dataclasses.field(default_factory=list, repr=False)

    def __add__(self, other: GraphCost) -> GraphCost:
        return GraphCost(
            self.flops + other.flops,
            self.fused_bytes + other.fused_bytes,
            self.unfused_bytes + other.unfused_bytes,
            self.weight_bytes + other.weight_bytes,
            self.per_op + other.per_op,
        )

    def summary(self) -> dict[str, float]:
        return {
            "flops": self.flops,
            "fused_bytes": self.fused_bytes,
            "unfused_bytes": self.unfused_bytes,
            "weight_bytes": self.weight_bytes,
            "operators": len(self.per_op),
        }


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingCapabilityError("counting FLOPs of ONNX graphs needs the onnx package: pip install onnx") from None
    return onnx


@cache
def _load(path: str) -> Any:
    return _onnx().load(path)


def graph_cost(path: Path, input_shapes: dict[str, tuple[int, ...]]) -> GraphCost:
    """Cost of one run of the graph at ``path`` with the given input shapes."""
    onnx = _onnx()
    model = onnx.ModelProto()
    model.CopyFrom(_load(str(path)))
    for inp in model.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shapes[inp.name], strict=True):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = model.graph
    shapes: dict[str, tuple[list[int], int]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        shapes[vi.name] = ([d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim], t.elem_type)
    weights: dict[str, tuple[list[int], int]] = {init.name: (list(init.dims), init.data_type) for init in g.initializer}
    for node in g.node:  # Constant nodes hold weights too after some exporters' folding
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            t = node.attribute[0].t
            weights[node.output[0]] = (list(t.dims), t.data_type)

    def nbytes(name: str) -> float:
        dims, dtype = weights.get(name) or shapes.get(name) or ([], 1)
        return float(math.prod(dims)) * _ELEM_BYTES.get(dtype, 4) if dims else 0.0

    def numel(name: str) -> float:
        dims, _ = weights.get(name) or shapes.get(name) or ([], 1)
        return float(math.prod(dims)) if dims else 0.0

    per_op: list[tuple[float, float]] = []
    for node in g.node:
        if node.op_type == "Constant":
            continue
        out = node.output[0] if node.output else ""
        op_bytes = sum(nbytes(n) for n in node.input if n) + sum(nbytes(n) for n in node.output if n)
        flops = 0.0
        if node.op_type == "Conv" and len(node.input) > 1:
            w_dims = (weights.get(node.input[1]) or shapes.get(node.input[1]) or ([0], 1))[0]
            flops = 2.0 * numel(out) * math.prod(w_dims[1:])
        elif node.op_type == "ConvTranspose" and len(node.input) > 1:
            w_dims = (weights.get(node.input[1]) or shapes.get(node.input[1]) or ([0], 1))[0]
            flops = 2.0 * numel(node.input[0]) * math.prod(w_dims[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a_dims = (weights.get(node.input[0]) or shapes.get(node.input[0]) or ([0], 1))[0]
            k = a_dims[-1] if a_dims else 0
            if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute) and len(a_dims) > 1:
                k = a_dims[0]
            flops = 2.0 * numel(out) * k
        else:
            flops = numel(out)
        per_op.append((flops, op_bytes))
    weight_bytes = sum(nbytes(n) for n in weights)
    io_bytes = sum(nbytes(i.name) for i in g.input if i.name not in weights) + sum(nbytes(o.name) for o in g.output)
    total_flops = sum(f for f, _ in per_op)
    unfused = sum(b for _, b in per_op)
    return GraphCost(total_flops, weight_bytes + io_bytes, unfused, weight_bytes, per_op)


def roofline(cost: GraphCost, target: Any, precision: str) -> dict[str, Any]:
    """Best-case time and FPS of ``cost`` on a target profile at ``precision``.

    Compute peaks: the target's dense fp16 rate for fp16, its dense int8 rate for int8; fp32 runs on
    CUDA cores at a quarter of the fp16 Tensor Core rate (Ampere: 4x). Bytes shrink with the element
    size (fp32 4, fp16 2, int8 1 byte), starting from the counted fp32 graph.
    """
    data = target.data
    gpu = data.get("gpu")
    bandwidth = (data.get("memory") or {}).get("bandwidth_gbs")
    if gpu is None or bandwidth is None:
        return {
            "target": target.name,
            "precision": precision,
            "note": "no GPU peak or bandwidth in this target profile",
        }
    peak = {
        "fp16": gpu["peak_dense_fp16_tflops"] * 1e12,
        "int8": gpu["peak_dense_int8_tops"] * 1e12,
        "fp32": gpu["peak_dense_fp16_tflops"] * 1e12 / 4,
    }[precision]
    scale = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}[precision]
    bw = bandwidth * 1e9
    t_compute = cost.flops / peak
    t_fused = max(t_compute, cost.fused_bytes * scale / bw)
    if cost.per_op:
        t_per_op = sum(max(f / peak, b * scale / bw) for f, b in cost.per_op)
        memory_bound_share = sum(b * scale / bw for f, b in cost.per_op if b * scale / bw > f / peak) / t_per_op
    else:  # no operator list (PyTorch models): only the fused ideal is known
        t_per_op, memory_bound_share = t_fused, float("nan")
    return {
        "target": target.name,
        "precision": precision,
        "peak_ops_per_s": peak,
        "bandwidth_bytes_per_s": bw,
        "intensity_fused": cost.flops / max(cost.fused_bytes * scale, 1.0),
        "intensity_unfused": cost.flops / max(cost.unfused_bytes * scale, 1.0),
        "ridge_intensity": peak / bw,
        "best_case_ms": t_per_op * 1e3,
        "best_case_fps": 1.0 / t_per_op if t_per_op > 0 else None,
        "memory_bound_time_share": memory_bound_share,
        "fused_ideal_ms": t_fused * 1e3,
        "fused_ideal_fps": 1.0 / t_fused if t_fused > 0 else None,
    }
