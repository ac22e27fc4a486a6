"""`edgerain models`, `edgerain doctor`, `edgerain route`, and the CLI's error contract."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgerain.cli import main


def test_models_lists_tiny_networks_with_params_and_flops(capsys):
    assert main(["models", "--tiny", "--size", "64"]) == 0
    out = capsys.readouterr().out
    for name in ("clip-rpn-tiny", "fclip-unet-tiny", "clip-weather-tiny", "rdmc-tiny"):
        assert name in out
    assert "GFLOPs" in out


def test_flops_grow_with_the_pixel_count():
    from edgerain.models.info import count_flops
    from edgerain.models.registry import build_model

    small = count_flops(build_model("rdmc-tiny"), 32, 32)
    large = count_flops(build_model("rdmc-tiny"), 64, 64)
    assert small > 0
    assert large == pytest.approx(4 * small, rel=0.01)


def test_doctor_reports_each_component(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for component in ("torch", "Triton", "ONNX Runtime", "ModelOpt", "TensorRT", "nvcc", "extension"):
        assert component in out


def test_unknown_model_is_one_line_exit_2(capsys):
    assert main(["route", "x.png", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'nope'")


def test_unknown_option_is_a_usage_error(capsys):
    assert main(["models", "--bogus"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_route_prints_scores_and_expert(tmp_path, capsys, png_writer, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich would shorten the long temporary path
    rng = np.random.default_rng(0)
    img = png_writer(tmp_path / "a.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    assert main(["route", str(img), "--model", "clip-rpn-tiny"]) == 0
    out = capsys.readouterr().out
    assert "a.png" in out and "expert" in out
    row = next(line for line in out.splitlines() if "a.png" in line)
    *scores, expert = re.findall(r"\d+(?:\.\d+)?", row.split("a.png")[1])
    assert len(scores) == 3 and abs(sum(float(s) for s in scores) - 1) < 0.01
    assert int(expert) == max(range(3), key=lambda k: float(scores[k]))


def test_route_refuses_a_network_without_router(tmp_path, capsys, png_writer):
    img = png_writer(tmp_path / "a.png", np.zeros((8, 8, 3), dtype=np.uint8))
    assert main(["route", str(img), "--model", "rdmc-tiny"]) == 2
    assert "no CLIP router" in capsys.readouterr().err
