"""Export of each tiny network: graphs, ONNX Runtime parity, fp16, int8, atomicity, reproducibility."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgerain import bundle as fmt
from edgerain.cli import main
from edgerain.errors import EdgerainError
from edgerain.export import export_bundle, verify_bundle
from edgerain.export import graphs as G
from edgerain.export import parity as P
from edgerain.export.onnx_run import OrtBundle

NETWORKS = ["clip-rpn-tiny", "clip-weather-tiny", "fclip-unet-tiny", "rdmc-tiny"]


@pytest.mark.parametrize("name", NETWORKS)
def test_fp32_export_graphs_and_parity(name: str, fp32_bundles: dict[str, Path]) -> None:
    root = fp32_bundles[name]
    m = fmt.read_manifest(root)
    ctx, mains = m["graphs"]["context"], m["graphs"]["main"]
    if name == "clip-rpn-tiny":
        assert ctx["kind"] == "router" and ctx["rule"] == "hard-top1"
        assert len(mains) == 3 and [g["expert"] for g in mains] == [0, 1, 2]
        assert m["routing"]["prompts"] == [g["prompt"] for g in mains]
    elif name == "clip-weather-tiny":
        assert ctx["kind"] == "prior" and [i["name"] for i in mains[0]["inputs"]] == ["image", "context"]
    else:
        assert ctx is None and len(mains) == 1
    for g in mains:
        model = onnx.load(str(root / g["file"]))
        assert model.opset_import[0].version == G.OPSET
        assert g["inputs"][0]["shape"] == [1, 3, "height", "width"]
        assert g["outputs"][0]["shape"] == [1, 3, "height", "width"]
    # Odd sample sizes exercise padding, cropping and the MGCA window grid at sizes other than the trace size.
    sizes = {(s["height"], s["width"]) for s in m["parity"]["samples"]}
    assert set(P.DEFAULT_SAMPLE_SIZES) <= sizes
    assert m["parity"]["passed"]
    for s in m["parity"]["samples"]:
        assert s["max_abs"] < 1e-4 and s["psnr_db"] > 80
    report = verify_bundle(root)
    assert len(report.samples) == len(m["parity"]["samples"])


@pytest.mark.parametrize("name", NETWORKS)
def test_fp16_graphs_keep_parity(name: str, bundle_copy) -> None:
    """Each network's restoration graphs converted to fp16 (I/O float32) run in ORT within the fp16 tolerance."""
    root = bundle_copy(name)
    m = fmt.read_manifest(root)
    for g in m["graphs"]["main"]:
        half = G.to_fp16(onnx.load(str(root / g["file"])), g["file"])
        dtypes = {t.data_type for t in half.graph.initializer if len(t.dims) > 1}
        assert dtypes == {onnx.TensorProto.FLOAT16}, "conv weights must be float16"
        assert {i["dtype"] for i in G.io_spec(half)[0]} == {"float32"}
        (root / g["file"]).write_bytes(G.serialize(half))
    runner = OrtBundle(root, m)
    rows = []
    for s in m["parity"]["samples"]:
        img, _ = _load(root, s["input"]), None
        ref = np.load(root / s["reference"])
        ctx = np.load(root / s["context_reference"]) if "context_reference" in s else None
        rows.append(P.check_sample(runner, img, ref, ctx, s.get("expert")))
    assert P.failures(rows, P.TOLERANCES["fp16"]) == []
    assert max(r["max_abs"] for r in rows) > 0  # it really is another graph


def _load(root: Path, rel: str) -> np.ndarray:
    from PIL import Image

    with Image.open(root / rel) as im:
        return np.asarray(im.convert("RGB"))


def test_cli_fp16_export_for_jetson_then_verify(
    tmp_path: Path, pair_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    args = ["--model", "rdmc-tiny", "--target", "jetson-orin", "--samples", str(pair_folder / "rain")]
    assert main(["export", *args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASSED" in text and "main_0.onnx" in text and "build_engine.sh" in text and "DLA" in text
    m = fmt.read_manifest(out)
    assert m["precision"] == "fp16" and m["target"]["name"] == "jetson-orin-agx"
    assert m["target"]["gpu"]["sm"] == "8.7" and m["target"]["software"]["tensorrt"] == "10.3"
    assert [p["name"] for p in m["shape_profiles"]] == ["720p", "720p-portrait", "1080p", "1080p-portrait"]
    # one sample at the smallest profile size, so verify can run the engines on the device
    assert [[s["height"], s["width"]] for s in m["parity"]["samples"]] == [[40, 56], [40, 56], [256, 256]]
    assert m["graphs"]["main"][0]["precision"] == "fp16"
    assert (out / fmt.DLA_REPORT_NAME).is_file() and m["dla"]["graphs"]["main_0.onnx"]["layers"] > 0
    assert main(["verify", str(out)]) == 0
    assert "bundle verified" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("modelopt") is None, reason="int8 export needs nvidia-modelopt")
def test_int8_export_has_qdq_and_parity(tmp_path: Path) -> None:
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(P.synthetic_rainy(48, 64, rng)).save(calib / f"{i}.png")
    res = export_bundle(tmp_path / "b", "x86-cpu", model="rdmc-tiny", precision="int8", calib=calib)
    m = res.manifest
    graph = onnx.load(str(res.bundle / "main_0.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert m["calibration"]["images"] == 3 and m["calibration"]["quantized_layers"] > 0
    assert m["parity"]["passed"] and m["parity"]["atol"] == P.TOLERANCES["int8"].atol
    verify_bundle(res.bundle)


def test_int8_needs_calibration_images(tmp_path: Path) -> None:
    with pytest.raises(EdgerainError, match="--calib"):
        export_bundle(tmp_path / "b", "x86-cpu", model="rdmc-tiny", precision="int8")
    assert not (tmp_path / "b").exists()


def test_reexport_is_reproducible(tmp_path: Path, fp32_bundles: dict[str, Path]) -> None:
    again = export_bundle(tmp_path / "again", "x86-cpu", model="rdmc-tiny", precision="fp32").bundle
    first = fp32_bundles["rdmc-tiny"]
    assert fmt.hash_tree(again) == fmt.hash_tree(first)
    assert (again / fmt.MANIFEST_NAME).read_bytes() == (first / fmt.MANIFEST_NAME).read_bytes()


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_failed_export_leaves_no_partial_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An injected failure after the graphs and samples are written: nothing appears at --out."""
    impossible = {k: P.Tolerance(atol=0.0, min_psnr_db=1e9, context_atol=0.0) for k in P.TOLERANCES}
    monkeypatch.setattr(P, "TOLERANCES", impossible)
    out = tmp_path / "b"
    with pytest.raises(EdgerainError, match="parity check failed"):
        export_bundle(out, "x86-cpu", model="rdmc-tiny", precision="fp32")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_failed_reexport_keeps_the_old_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fp32_bundles: dict[str, Path]
) -> None:
    out = tmp_path / "b"
    shutil.copytree(fp32_bundles["rdmc-tiny"], out)
    before = fmt.hash_tree(out), (out / fmt.MANIFEST_NAME).read_bytes()

    def boom(*args: object, **kwargs: object) -> str:
        raise RuntimeError("injected failure while writing build_engine.sh")

    from edgerain.export import tensorrt as T

    monkeypatch.setattr(T, "build_script", boom)
    with pytest.raises(RuntimeError, match="injected"):
        export_bundle(out, "x86-cpu", model="rdmc-tiny", precision="fp16")
    assert (fmt.hash_tree(out), (out / fmt.MANIFEST_NAME).read_bytes()) == before
    assert _leftovers(tmp_path) == []
    verify_bundle(out)


def test_bad_user_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--model", "rdmc-tiny", "--target", "jetson-orin", "--precision", "fp8"], "unknown precision"),
        (["--model", "no-such-net", "--target", "jetson-orin"], "unknown model"),
        (["--model", "rdmc-tiny", "--target", "jetson-orn"], "did you mean 'jetson-orin'"),
        (["--model", "rdmc-tiny", "--target", "x86-cpu", "--calib", str(tmp_path)], "only used by --precision int8"),
    ]
    for args, message in cases:
        assert main(["export", *args, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    (tmp_path / "notabundle").mkdir()
    (tmp_path / "notabundle" / "keep.txt").write_text("mine")
    assert main(["export", "--model", "rdmc-tiny", "--target", "x86-cpu", "--out", str(tmp_path / "notabundle")]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "notabundle" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "b").exists()


def test_manifest_records_what_a_device_needs(fp32_bundles: dict[str, Path]) -> None:
    root = fp32_bundles["clip-rpn-tiny"]
    m = json.loads((root / fmt.MANIFEST_NAME).read_text())
    assert m["input"]["pad_multiple"] == 8 and m["input"]["pad_mode"] == fmt.PAD_MODE
    assert m["target"]["name"] == "x86-cpu" and m["providers"] == ["CPUExecutionProvider"]
    assert m["routing"]["rule"] == "hard-top1" and m["routing"]["temperature"] == 100.0
    assert {"edgerain", "torch", "onnx", "onnxruntime", "modelopt"} <= set(m["versions"])
    assert m["model"]["trained"] is False and m["model"]["random_seed"] == 0
    assert set(m["files"]) == set(fmt.hash_tree(root)) and "build_engine.sh" in m["files"]


def test_tracing_leaves_the_network_in_eval_mode(tiny_model_factory, tmp_path: Path) -> None:
    """The int8 path's exporter restores the wrapper's training flag afterwards: the wrappers must
    start in eval mode, or everything computed after an export (the fake-quant references) runs in
    train mode (no output clamp)."""
    quant = pytest.importorskip("edgerain.quant")
    net = tiny_model_factory("rdmc-tiny").eval()
    plan = G.plan_graphs(net)[0]
    with G.exporting():
        quant.export_qdq_onnx(plan.module, plan.example_inputs(net, 32, 48), tmp_path / "g.onnx")
    assert not any(m.training for m in net.modules())


def test_router_with_a_fitted_linear_head_exports_with_it(tiny_model_factory, tmp_path: Path) -> None:
    import torch

    from edgerain.models.checkpoint import save_checkpoint

    model = tiny_model_factory("clip-rpn-tiny", seed=1).eval()
    k, dim = model.router.prompt_embeddings.shape
    g = torch.Generator().manual_seed(0)
    model.router.set_linear_head(torch.randn(k, dim, generator=g) * 5, torch.randn(k, generator=g))
    model.config.router_head = "linear"
    weights = tmp_path / "linear.safetensors"
    save_checkpoint(model, weights, {"router": {"calibrated": True}})
    res = export_bundle(tmp_path / "b", "x86-cpu", model="clip-rpn-tiny", weights=weights, precision="fp32")
    m = fmt.read_manifest(res.bundle)
    assert m["parity"]["passed"]
    x = np.random.default_rng(0).random((1, 3, 40, 56), dtype=np.float32)
    scores = OrtBundle(res.bundle, m).run_context(x)
    with torch.no_grad():
        expected = model.router(torch.from_numpy(x)).numpy()
        prompt_only = torch.softmax(
            model.router.temperature
            * model.router.image(torch.from_numpy(x))
            @ torch.nn.functional.normalize(model.router.prompt_embeddings, dim=-1).t(),
            dim=-1,
        ).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert not np.allclose(scores, prompt_only, atol=1e-3)  # the head, not the prompts, made the scores


def test_router_with_a_feature_stats_head_exports_with_it(tiny_model_factory, tmp_path: Path) -> None:
    """The feature-stats head reads the tower's taps at the image's own size: the router graph must
    keep the spatial reductions dynamic, so one graph routes every size as the network does."""
    import torch

    from edgerain.models.checkpoint import save_checkpoint
    from edgerain.models.clip_rpn import feature_stats_dim

    model = tiny_model_factory("clip-rpn-tiny", seed=1).eval()
    k = model.router.prompt_embeddings.shape[0]
    g = torch.Generator().manual_seed(0)
    n = feature_stats_dim(model.router.image)
    model.set_router_head(torch.randn(k, n, generator=g), torch.randn(k, generator=g), kind="feature-stats")
    weights = tmp_path / "stats.safetensors"
    save_checkpoint(model, weights, {"router": {"calibrated": True}})
    res = export_bundle(tmp_path / "b", "x86-cpu", model="clip-rpn-tiny", weights=weights, precision="fp32")
    m = fmt.read_manifest(res.bundle)
    assert m["parity"]["passed"]
    assert m["input"]["min_side"] == 16  # the taps pool by 2 four times: the runtimes refuse smaller images
    bundle = OrtBundle(res.bundle, m)
    for shape in ((1, 3, 40, 56), (1, 3, 72, 48)):
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        with torch.no_grad():
            expected = model.router(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(bundle.run_context(x), expected, atol=1e-5)
