"""Which ONNX Runtime rewrite edgerain turns off on x86 CPUs without VNNI, and that sessions honour it."""

from __future__ import annotations

import pytest

from edgerain import ort_cpu

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma {extra}

processor\t: 1
flags\t\t: fpu sse2 avx avx2 fma {extra}
"""


@pytest.mark.parametrize(
    ("extra", "lacks_vnni"),
    [("", True), ("avx512f avx512_vnni", False), ("avx_vnni", False), ("avx512f avx512bw", True)],
)
def test_vnni_read_from_cpuinfo(tmp_path, extra, lacks_vnni):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    flags = ort_cpu.cpu_flags(path)
    assert flags is not None and "avx2" in flags
    assert ort_cpu.x86_without_vnni("x86_64", flags) is lacks_vnni


def test_unreadable_or_flagless_cpuinfo(tmp_path):
    assert ort_cpu.cpu_flags(tmp_path / "missing") is None
    (tmp_path / "noflags").write_text("processor\t: 0\nmodel name\t: something\n")
    assert ort_cpu.cpu_flags(tmp_path / "noflags") is None
    # Unknown x86 flags take the exact path; other architectures never have the rewrite.
    assert ort_cpu.x86_without_vnni("AMD64", None) is True
    assert ort_cpu.x86_without_vnni("aarch64", None) is False
    assert ort_cpu.x86_without_vnni("aarch64", frozenset({"asimd"})) is False


def _qdq_conv_graph(path):
    """x -> Q/DQ (int8) -> Conv (int8 weight via DQ) -> Q/DQ: what ORT fuses into QLinearConv."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype):
        return numpy_helper.from_array(np.array(value, dtype), name)

    weight = np.random.default_rng(0).integers(-127, 127, (4, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(weight, "w_q"), const("s", 0.02, np.float32), const("z", 0, np.int8)]
    inits += [const("ws", 0.01, np.float32), const("os", 0.05, np.float32)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "ws", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "os", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "os", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 needs; newer onnx writes an IR version ONNX Runtime may not read yet
    onnx.save(model, str(path))


@pytest.mark.skipif(not ort_cpu.x86_without_vnni(flags=frozenset()), reason="the rewrite exists only on x86")
def test_sessions_honour_the_disabled_rewrite(tmp_path):
    """On x86, ORT's default turns the int8 Q/DQ conv into a uint8 QLinearConv; with the rewrite
    disabled (as edgerain's sessions do on CPUs without VNNI) no uint8 tensor and no fused conv remain.
    A renamed transformer in a new ORT would be ignored silently: this test is what notices."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _qdq_conv_graph(tmp_path / "q.onnx")

    def optimized(disabled):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp_path / "opt.onnx")
        ort.InferenceSession(
            str(tmp_path / "q.onnx"), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
        )
        model = onnx.load(str(tmp_path / "opt.onnx"))
        return {n.op_type for n in model.graph.node}, {t.data_type for t in model.graph.initializer}

    ops, dtypes = optimized([])
    assert "QLinearConv" in ops and onnx.TensorProto.UINT8 in dtypes
    ops, dtypes = optimized([ort_cpu.S8_TO_U8_TRANSFORMER])
    assert "QLinearConv" not in ops and onnx.TensorProto.UINT8 not in dtypes
    assert ort_cpu.disabled_optimizers() in ([], [ort_cpu.S8_TO_U8_TRANSFORMER])
    # The helper every edgerain session comes from applies this CPU's list.
    sess = ort_cpu.inference_session(tmp_path / "q.onnx", ort.SessionOptions(), ["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "x"
    assert ort_cpu.describe()
