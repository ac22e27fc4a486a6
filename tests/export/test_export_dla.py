"""DLA report on a hand-built graph whose unsupported layers are known in advance."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgerain.export import dla


def _conv(name: str, x: str, cin: int, cout: int, k: int, **attrs) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    w = numpy_helper.from_array(np.full((cout, cin, k, k), 0.01, np.float32), f"{name}_w")
    return helper.make_node("Conv", [x, w.name], [f"{name}_out"], name=name, kernel_shape=[k, k], **attrs), w


def _graph() -> onnx.ModelProto:
    """image -> conv3x3 -> relu -> [conv 33x33 | erf] ... the expected verdict is in each name."""
    c1, w1 = _conv("ok_conv", "image", 3, 8, 3, pads=[1, 1, 1, 1])
    relu = helper.make_node("Relu", ["ok_conv_out"], ["relu_out"], name="ok_relu")
    c2, w2 = _conv("bad_conv_kernel33", "relu_out", 8, 8, 33, pads=[16, 16, 16, 16])
    erf = helper.make_node("Erf", ["relu_out"], ["erf_out"], name="bad_erf")
    cat = helper.make_node("Concat", ["bad_conv_kernel33_out", "erf_out"], ["cat_out"], name="ok_concat", axis=1)
    pool9 = helper.make_node(
        "MaxPool", ["cat_out"], ["pool9_out"], name="bad_pool9", kernel_shape=[9, 9], pads=[4, 4, 4, 4]
    )
    pool2 = helper.make_node(
        "MaxPool", ["pool9_out"], ["pool2_out"], name="ok_pool2", kernel_shape=[2, 2], strides=[2, 2]
    )
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    cubic = helper.make_node("Resize", ["pool2_out", "", "scales"], ["cubic_out"], name="bad_cubic", mode="cubic")
    near = helper.make_node("Resize", ["cubic_out", "", "scales"], ["near_out"], name="ok_nearest", mode="nearest")
    cat3 = helper.make_node("Concat", ["near_out", "near_out"], ["cat3_out"], name="bad_concat_axis3", axis=3)
    c3, w3 = _conv("ok_conv_after", "cat3_out", 16, 3, 1)
    nodes = [c1, relu, c2, erf, cat, pool9, pool2, cubic, near, cat3, c3]
    graph = helper.make_graph(
        nodes,
        "dla_probe",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("ok_conv_after_out", TensorProto.FLOAT, [1, 3, "h2", "w2"])],
        initializer=[w1, w2, w3, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_dla_report_flags_the_known_unsupported_layers() -> None:
    report = dla.analyse(_graph(), 32, 48, "fp16")
    verdict = {layer["name"]: layer for layer in report["layers"]}
    assert set(verdict) == {n.name for n in _graph().graph.node}
    for name, layer in verdict.items():
        assert layer["dla"] == name.startswith("ok_"), (name, layer["reason"])
    assert "kernel [33, 33] outside 1..32" in verdict["bad_conv_kernel33"]["reason"]
    assert "Erf has no DLA implementation" in verdict["bad_erf"]["reason"]
    assert "window [9, 9] outside 1..8" in verdict["bad_pool9"]["reason"]
    assert "cubic resize" in verdict["bad_cubic"]["reason"]
    assert "channel axis only" in verdict["bad_concat_axis3"]["reason"]
    s = report["summary"]
    assert (s["layers"], s["dla_layers"], s["gpu_fallbacks"]) == (11, 6, 5)
    # DLA groups split by GPU layers: {conv, relu}, {concat}, {pool2}, {nearest}, {conv_after}
    assert s["dla_subgraphs"] == 5
    assert dla.fallback_reasons(report)[0][1] == 1


def test_fp32_never_runs_on_dla() -> None:
    report = dla.analyse(_graph(), 32, 48, "fp32")
    assert report["summary"]["dla_layers"] == 0
    assert all("FP16 and INT8 only" in layer["reason"] for layer in report["layers"] if layer["name"].startswith("ok_"))


def test_dimension_limit_and_static_shapes() -> None:
    report = dla.analyse(_graph(), 16, 8200, "int8")
    ok_conv = next(layer for layer in report["layers"] if layer["name"] == "ok_conv")
    assert not ok_conv["dla"] and "8192" in ok_conv["reason"]
    assert report["input"] == [1, 3, 16, 8200]
