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


def test_sessions_accept_the_disabled_list(tmp_path):
    """The list is one ONNX Runtime knows; a session built with it runs (on this machine's CPU)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "relu.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 needs; newer onnx writes an IR version ONNX Runtime may not read yet
    onnx.save(model, str(path))
    disabled = ort_cpu.disabled_optimizers()
    assert disabled in ([], [ort_cpu.S8_TO_U8_TRANSFORMER])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    import numpy as np

    assert sess.run(None, {"x": np.array([-1.0, 2.0], dtype=np.float32)})[0].tolist() == [0.0, 2.0]
    assert ort_cpu.describe()
