"""INT8 quantization on tiny networks: quantizers, calibration methods, gate, sensitivity, ONNX, save/restore."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("modelopt.torch.quantization")

from testutil import write_png

from edgerain.cli import main
from edgerain.errors import EdgerainError
from edgerain.models import build_model
from edgerain.quant import (
    deployment_graphs,
    export_qdq_onnx,
    load_quantized,
    onnx_parity,
    qdq_summary,
    quantize_model,
    save_quantized,
)
from edgerain.quant.calibrate import layer_quantizers, quantized_layer_count
from edgerain.quant.gate import EvalRun, compare, load_eval_pairs, run_eval
from edgerain.quant.sensitivity import exclude_until_gate, layer_sensitivity


def tiny(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(name, quiet_clip=True)


def calib_images(n: int = 2, size: tuple[int, int] = (32, 48), seed: int = 0, scale: float = 1.0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, *size, generator=gen) * scale for _ in range(n)]


@pytest.fixture(scope="module")
def rpn():
    """A quantized clip-rpn-tiny and its float original."""
    torch.set_num_threads(1)
    model = tiny("clip-rpn-tiny")
    return model, quantize_model(model, calib_images(), progress=False)


def teacher_pairs(model: nn.Module, root: Path, n: int = 2, size: tuple[int, int] = (40, 56)) -> Path:
    """Pairs whose clean image is the float network's own output: float PSNR is ~55 dB (8-bit
    rounding only), so any INT8 error costs PSNR and a tight gate fails deterministically."""
    from edgerain.data.io import save_image

    gen = torch.Generator().manual_seed(11)
    for i in range(n):
        rainy = torch.rand(1, 3, *size, generator=gen)
        with torch.no_grad():
            clean = model(rainy)
        save_image(root / "rain" / f"{i:03d}.png", rainy)
        save_image(root / "norain" / f"{i:03d}.png", clean)
    return root


def _enabled(q) -> bool:
    return q.is_enabled and q.amax is not None


# ---------------------------------------------------------------------------------------------
# Quantizers where expected


def test_clip_rpn_quantizers_cover_clip_tower_and_every_expert(rpn):
    model, result = rpn
    counts = result.counts
    assert counts["router.image (CLIP image tower)"] > 0  # despite ModelOpt's default *visual* rule
    for i in range(len(model.experts)):
        assert counts[f"experts.{i}"] > 0
    q = result.model
    conv1 = q.get_submodule("router.image.visual.conv1")
    assert _enabled(conv1.input_quantizer) and _enabled(conv1.weight_quantizer)
    assert conv1.weight_quantizer.amax.numel() == conv1.out_channels  # per-channel weights
    assert conv1.input_quantizer.amax.numel() == 1  # per-tensor activations
    # Functional uses of weights never run their quantizers: listed and left float.
    assert "router.image.visual.attnpool.q_proj" in result.never_run
    assert "experts.0.up.0.pw" in result.never_run
    assert not any(_enabled(qq) for qq in layer_quantizers(q)["experts.0.up.0.pw"])
    # The float model is untouched.
    assert not any("quantizer" in name for name, _ in model.named_modules())


@pytest.mark.parametrize(
    ("name", "clip_group", "other_groups"),
    [
        ("fclip-unet-tiny", "encoder (CLIP image tower)", ["stages", "fuse", "head"]),
        ("clip-weather-tiny", "clip (CLIP image tower)", ["backbone", "sar", "prior_mlp", "prior_attn"]),
        ("rdmc-tiny", None, ["enc", "dec", "up", "out"]),
    ],
)
def test_every_network_gets_quantizers(name, clip_group, other_groups):
    result = quantize_model(tiny(name), calib_images(1), progress=False)
    groups = [clip_group, *other_groups] if clip_group else other_groups
    for group in groups:
        assert result.counts.get(group, 0) > 0, (group, result.counts)


def test_calibration_methods_give_different_ranges():
    # A small conv stack: ModelOpt's entropy search costs seconds per activation quantizer.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    images = calib_images(2)
    amax = {}
    for method in ("max", "percentile", "entropy"):
        q = quantize_model(model, images, method=method, percentile=99.0, progress=False).model
        amax[method] = float(q[2].input_quantizer.amax)
    assert amax["percentile"] < amax["max"]
    assert 0 < amax["entropy"] <= amax["max"]
    with pytest.raises(EdgerainError, match="calibration method"):
        quantize_model(model, images, method="minmax", progress=False)


def test_ort_placement_quantizes_conv_outputs():
    q = quantize_model(tiny("rdmc-tiny"), calib_images(1), placement="ort", progress=False).model
    conv = q.get_submodule("out")
    assert _enabled(conv.output_quantizer)
    q2 = quantize_model(tiny("rdmc-tiny"), calib_images(1), progress=False).model
    assert not q2.get_submodule("out").output_quantizer.is_enabled


def test_exclude_keeps_layers_float_and_rejects_unknown_names():
    model = tiny("rdmc-tiny")
    q = quantize_model(model, calib_images(1), exclude=["out"], progress=False).model
    assert not any(x.is_enabled for x in layer_quantizers(q)["out"])
    assert any(x.is_enabled for x in layer_quantizers(q)["dec.0.0"])
    with pytest.raises(EdgerainError, match="unknown layers"):
        quantize_model(model, calib_images(1), exclude=["no.such.layer"], progress=False)


def test_batchnorm_folding_keeps_the_float_output():
    import copy

    from edgerain.quant.fold import fold_batchnorm

    model = tiny("fclip-unet-tiny")
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
    folded = copy.deepcopy(model)
    names = fold_batchnorm(folded)
    assert "encoder.visual.bn1" in names and "encoder.visual.layer1.0.downsample.1" in names
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 48, 64, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Gate logic


def test_gate_conditions():
    ref = EvalRun([30.0, 32.0], [0, 1])
    assert compare(ref, EvalRun([29.95, 31.95], [0, 1])).passed
    dropped = compare(ref, EvalRun([29.8, 31.8], [0, 1]))
    assert not dropped.passed and not dropped.psnr_ok and dropped.router_ok
    assert "PSNR drop 0.200 dB" in dropped.failures()[0]
    flipped = compare(ref, EvalRun([30.0, 32.0], [0, 2]))
    assert not flipped.passed and flipped.router_agreement == 0.5 and "agreement" in flipped.failures()[0]
    assert compare(ref, EvalRun([29.8, 31.8], [0, 2]), max_drop=0.5, min_agreement=0.5).passed
    assert compare(EvalRun([30.0], None), EvalRun([30.0], None)).router_agreement is None


def test_sensitivity_ranks_layers_and_exclusion_restores_the_gate(tmp_path):
    model = tiny("rdmc-tiny")
    # Calibrated on near-black images: real inputs clip at the first layers.
    result = quantize_model(model, calib_images(1, scale=0.02), progress=False)
    q = result.model
    pairs = load_eval_pairs(teacher_pairs(model, tmp_path / "pairs"))
    reference = run_eval(model, pairs)
    first = compare(reference, run_eval(q, pairs), 0.1, 0.99)
    assert not first.passed and first.psnr_drop > 0.1
    sens = layer_sensitivity(q, pairs[:1], result.layers, size=(32, 32), progress=False)
    assert {s.layer for s in sens} == set(result.layers)
    assert all(s.output_psnr is not None and s.psnr_cost is not None for s in sens)
    most = min(sens, key=lambda s: s.output_psnr)
    gate, kept, trail = exclude_until_gate(q, pairs, reference, sens, 0.1, 0.99, max_float_layers=len(sens))
    assert gate.passed  # with every layer float the outputs are the float outputs
    assert kept[0].layer == most.layer and "PSNR drop" in kept[0].reason
    assert len(trail) >= 2 and trail[0]["passed"] is False
    assert quantized_layer_count(q) == len(result.layers) - len(kept)


# ---------------------------------------------------------------------------------------------
# ONNX: Q/DQ structure and ORT parity


def test_onnx_qdq_structure_and_parity(rpn, tmp_path):
    _, result = rpn
    q = result.model
    specs = {s.name: s for s in deployment_graphs(q, 32, 48)}
    assert set(specs) == {"context", "main_0", "main_1", "main_2"}
    for name, prefix in (("context", "router."), ("main_0", "experts.0.")):
        spec = specs[name]
        path = export_qdq_onnx(
            spec.module,
            spec.example_inputs,
            tmp_path / f"{name}.onnx",
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes,
        )
        summary = qdq_summary(path)
        assert summary["quantize_linear"] > 0 and summary["dequantize_linear"] >= summary["quantize_linear"]
        # Every quantized conv of this part is a Conv fed by DequantizeLinear on data and weight.
        quantized_convs = [
            layer
            for layer, qs in layer_quantizers(q).items()
            if layer.startswith(prefix)
            and isinstance(q.get_submodule(layer), nn.Conv2d)
            and any(_enabled(x) for x in qs)
        ]
        assert summary["ops"]["Conv"] >= summary["int8_compute_nodes"] >= len(quantized_convs) > 0
        exact = onnx_parity(spec.module, path, spec.example_inputs, optimize=False)
        optimized = onnx_parity(spec.module, path, spec.example_inputs, optimize=True)
        assert exact.psnr_db >= 45.0 and optimized.psnr_db >= 45.0, (name, exact, optimized)
    # The router graph is dynamic in H/W and exact to float rounding.
    router = specs["context"]
    other = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    assert onnx_parity(router.module, tmp_path / "context.onnx", other).max_abs < 1e-4


# ---------------------------------------------------------------------------------------------
# Save / restore


def test_save_restore_round_trip(rpn, tmp_path):
    _, result = rpn
    assert result.folded_batchnorm  # the RN tower's BatchNorms were folded: loading must fold them too
    path = save_quantized(
        result.model, tmp_path / "q.safetensors", provenance={"test": True}, folded_batchnorm=result.folded_batchnorm
    )
    restored = load_quantized(path)
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(restored(x), result.model(x))
    assert quantized_layer_count(restored) == quantized_layer_count(result.model)
    assert restored.provenance == {"test": True}
    # The file is plain safetensors (no pickle): the float checkpoint loader reads its tensors.
    from safetensors.torch import load_file

    assert any(k.endswith("input_quantizer._amax") for k in load_file(str(path)))


def test_load_quantized_rejects_other_files(tmp_path):
    from edgerain.models.checkpoint import save_checkpoint

    float_ckpt = save_checkpoint(tiny("rdmc-tiny"), tmp_path / "float.safetensors")
    with pytest.raises(EdgerainError, match="not an edgerain quantized model"):
        load_quantized(float_ckpt)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EdgerainError):
        load_quantized(tmp_path / "junk.safetensors")


# ---------------------------------------------------------------------------------------------
# CLI end to end


def _quantize_argv(calib: Path, pairs: Path, out: Path, *extra: str) -> list[str]:
    return [
        "quantize",
        "--model",
        "rdmc-tiny",
        "--calib",
        str(calib),
        "--eval",
        str(pairs),
        "--out",
        str(out),
        "--calib-size",
        "32x48",
        "--no-progress",
        *extra,
    ]


def test_cli_quantize_passes_and_writes_artefacts(tmp_path, pair_folder, capsys):
    torch.manual_seed(0)
    out = tmp_path / "out"
    rc = main(_quantize_argv(pair_folder, pair_folder, out))
    text = capsys.readouterr().out
    assert rc == 0, text
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "passed" and report["gate"]["passed"]
    assert (out / "quantized.safetensors").is_file() and (out / "onnx" / "main_0.onnx").is_file()
    assert report["graphs"][0]["parity_ok"] and report["graphs"][0]["int8_compute_nodes"] > 0
    assert "accuracy gate" in text and "passed" in text
    assert not math.isnan(report["gate"]["psnr_drop"])


def test_cli_forced_gate_failure_exits_nonzero_without_artefacts(tmp_path, pair_folder, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "quantized.safetensors").write_text("stale artefact from an earlier run")
    (out / "report.json").write_text("{}")
    pairs = teacher_pairs(tiny("rdmc-tiny", seed=0), tmp_path / "teacher")
    dark = tmp_path / "dark"
    for i in range(2):  # near-black calibration images: real inputs clip at the first layers
        write_png(dark / f"{i}.png", np.full((40, 56, 3), 3, dtype=np.uint8))
    torch.manual_seed(0)  # the CLI builds the same random rdmc-tiny
    rc = main(_quantize_argv(dark, pairs, out, "--max-float-layers", "0", "--sensitivity", "always"))
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 1, text
    assert captured.err.strip().startswith("error: INT8 gate failed (PSNR drop")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]  # nothing that looks like a pass
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and report["artefacts"] == []
    assert report["failures"] and report["failures"][0].startswith("PSNR drop")
    assert len(report["sensitivity"]) == report["quantized_layers"]
    assert "FAILED" in text


def test_cli_bad_input_is_one_line_error(tmp_path, pair_folder, capsys):
    rc = main(_quantize_argv(tmp_path / "missing", pair_folder, tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "missing" in err[0]
    assert not (tmp_path / "out").exists()
    rc = main([*_quantize_argv(pair_folder, pair_folder, tmp_path / "out"), "--method", "minmax"])
    assert rc == 2 and "calibration method" in capsys.readouterr().err
    precious = tmp_path / "precious"
    (precious / "notes.txt").parent.mkdir()
    (precious / "notes.txt").write_text("not ours")
    rc = main(_quantize_argv(pair_folder, pair_folder, precious))
    assert rc == 2 and "not an earlier quantize output" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "not ours"


def test_graph_that_ort_refuses_fails_the_run_without_artefacts(tmp_path, pair_folder, monkeypatch):
    import edgerain.quant.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Incompatible dimensions")

    monkeypatch.setattr(pipeline, "onnx_parity", refuse)
    out = tmp_path / "out"
    opts = pipeline.QuantizeOptions(calib_size=(32, 48), sensitivity="never")
    report = pipeline.quantize_and_gate(tiny("rdmc-tiny"), pair_folder, pair_folder, out, opts, progress=False)
    assert report.gate.passed and not report.passed
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["status"] == "failed" and "Incompatible dimensions" in saved["failures"][0]
