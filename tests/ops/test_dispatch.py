"""The dispatch point: backend choice and reasons, forced backends, custom ops, export and models."""

from __future__ import annotations

import pytest
import torch
from ops_helpers import mgca_inputs, rel_error, updw_inputs

from edgerain import ops
from edgerain.errors import EdgerainError, MissingCapabilityError


def test_auto_on_cpu_uses_reference_and_says_why(monkeypatch):
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    args = (*mgca_inputs(1, 1, 4, 5, 5, torch.float32, seed=1), 4, 0)
    name, skipped = ops.choose("mgca_window_attention", args)
    assert name == "reference"
    assert {n for n, _ in skipped} == {"extension", "triton"}
    assert all(reason for _, reason in skipped)


def test_unknown_backend_is_a_user_error(monkeypatch):
    monkeypatch.setenv(ops.ENV_VAR, "cudnn")
    args = updw_inputs(1, 2, 2, 2, 2, torch.float32, seed=0)
    with pytest.raises(EdgerainError, match="unknown ops backend 'cudnn'"):
        ops.updw(*args)


def test_forced_backend_that_cannot_serve_names_why():
    q, k, v, mask = mgca_inputs(1, 1, 4, 5, 5, torch.float64, seed=0)
    with pytest.raises(MissingCapabilityError, match=r"triton.*dtype torch.float64"):
        ops.mgca_window_attention(q, k, v, mask, 4, 0, backend="triton")


@pytest.mark.parametrize("backend", ["extension", "triton"])
def test_forced_fused_backends_match_reference(backend, request):
    if backend == "extension":
        request.getfixturevalue("has_extension")
    q, k, v, mask = mgca_inputs(1, 2, 4, 6, 7, torch.float32, seed=3)
    out = ops.mgca_window_attention(q, k, v, mask, 4, 2, backend=backend)
    ref = ops.mgca_window_attention(q, k, v, mask, 4, 2, backend="reference")
    assert rel_error(out, ref.double()) < 1e-5
    args = updw_inputs(1, 5, 3, 3, 4, torch.float32, seed=4)
    assert rel_error(ops.updw(*args, backend=backend), ops.updw_reference(*args).double()) < 1e-5


def test_custom_op_backward_is_the_reference_gradient(has_extension):
    q, k, v, mask = (t.requires_grad_() for t in mgca_inputs(1, 1, 3, 4, 5, torch.float64, seed=5))
    ops.mgca_window_attention(q, k, v, mask, 4, 1, backend="extension").square().sum().backward()
    fused = [t.grad.clone() for t in (q, k, v, mask)]
    for t in (q, k, v, mask):
        t.grad = None
    ops.mgca_window_attention_reference(q, k, v, mask, 4, 1).square().sum().backward()
    for a, t in zip(fused, (q, k, v, mask), strict=True):
        torch.testing.assert_close(a, t.grad)
    args = [t.requires_grad_() for t in updw_inputs(1, 3, 2, 2, 3, torch.float64, seed=6)]
    assert torch.autograd.gradcheck(lambda *a: ops.updw(*a, backend="extension"), args, eps=1e-6, atol=1e-6)


def test_fake_impls_give_shapes_for_export(has_extension):
    class Block(torch.nn.Module):
        def forward(self, x, w1, b1, lw, lb, pw, pb):
            return torch.ops.edgerain.updw(x, w1, b1, lw, lb, pw, pb, "extension")

    args = updw_inputs(1, 4, 6, 3, 5, torch.float32, seed=8)
    import edgerain.ops.custom_ops  # noqa: F401  (registers torch.ops.edgerain.*)

    program = torch.export.export(Block(), args)
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert targets == ["edgerain.updw.default"]
    out = program.module()(*args)
    assert out.shape == (1, 6, 6, 10)


def test_onnx_export_traces_the_reference(has_extension, tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv(ops.ENV_VAR, "extension")

    class Attn(torch.nn.Module):
        def forward(self, q, k, v, m):
            return ops.mgca_window_attention(q, k, v, m, 4, 2)

    args = mgca_inputs(1, 1, 4, 6, 6, torch.float32, seed=9)
    path = tmp_path / "attn.onnx"
    torch.onnx.export(Attn(), args, str(path), dynamo=False)
    domains = {n.domain for n in onnx.load(str(path)).graph.node}
    assert domains <= {"", "ai.onnx"}, domains


def test_onnx_export_with_dynamic_sizes_matches_reference(tmp_path):
    # Shifted windows and sizes that are not multiples of the window, exported once and run at
    # another size: the window count must follow the input (ceil division of traced sizes).
    import onnxruntime as ort

    class Attn(torch.nn.Module):
        def forward(self, q, k, v, m):
            return ops.mgca_window_attention(q, k, v, m, 4, 2)

    path = tmp_path / "attn.onnx"
    axes = {0: "B", 3: "H", 4: "W"}
    torch.onnx.export(
        Attn(),
        mgca_inputs(1, 1, 4, 6, 7, torch.float32, seed=11),
        str(path),
        input_names=["q", "k", "v", "m"],
        dynamic_axes={"q": axes, "k": axes, "v": axes, "m": {0: "B", 2: "H", 3: "W"}},
        dynamo=False,
    )
    q, k, v, mask = mgca_inputs(2, 1, 4, 9, 5, torch.float32, seed=12)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "m": mask.numpy()})
    assert rel_error(torch.from_numpy(out), ops.mgca_window_attention_reference(q, k, v, mask, 4, 2).double()) < 1e-5


def test_backend_report_covers_every_op_and_backend():
    rows = ops.backend_report()
    assert {(op, b) for op, b, _, _ in rows} == {
        (op, b) for op in ("mgca_window_attention", "updw") for b in ("extension", "triton", "reference")
    }
    assert all(isinstance(ok, bool) and reason for _, _, ok, reason in rows)


@pytest.mark.parametrize("name", ["clip-rpn-tiny", "fclip-unet-tiny", "clip-weather-tiny"])
def test_model_with_fused_cpu_ops_gives_reference_output(name, has_extension, tiny_model_factory, monkeypatch):
    model = tiny_model_factory(name, 0).eval()
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    monkeypatch.setenv(ops.ENV_VAR, "reference")
    with torch.no_grad():
        ref = model(x)
    calls = []
    original = ops.dispatch.choose

    def spy(op, args, backend=None):
        chosen = original(op, args, backend)
        calls.append((op, chosen[0]))
        return chosen

    monkeypatch.setattr(ops.dispatch, "choose", spy)
    monkeypatch.setenv(ops.ENV_VAR, "extension")
    with torch.no_grad():
        fused = model(x)
    uses = {"clip-rpn-tiny": {"mgca_window_attention", "updw"}, "clip-weather-tiny": {"mgca_window_attention", "updw"}}
    assert {op for op, _ in calls} == uses.get(name, {"updw"})
    assert {backend for _, backend in calls} == {"extension"}
    assert rel_error(fused, ref.double()) < 1e-5


@pytest.mark.parametrize("backend", ["extension", "auto"])
def test_compile_sees_one_node_without_graph_breaks(backend, request):
    if backend == "extension":
        request.getfixturevalue("has_extension")
    q, k, v, mask = mgca_inputs(1, 1, 4, 6, 7, torch.float32, seed=10)
    graphs = []

    def count_graphs(gm, example_inputs):  # type: ignore[no-untyped-def]
        graphs.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    def attend(q, k, v, mask):  # type: ignore[no-untyped-def]
        return ops.mgca_window_attention(q, k, v, mask, 4, 2, backend=backend) + 1

    compiled = torch.compile(attend, backend=count_graphs, fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v, mask), attend(q, k, v, mask))
    assert len(graphs) == 1 and sum("mgca_window_attention" in t for t in graphs[0]) == 1, graphs
