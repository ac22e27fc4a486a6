"""edgerain profile run: the report a person reads (JSON + PNG), on a bundle and on a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerain.cli import main
from edgerain.errors import EdgerainError
from edgerain.runtime.profile import parse_shape, profile


def test_profile_bundle_writes_json_and_plot(case, tmp_path: Path) -> None:
    _, bundle = case("rdmc")
    out = tmp_path / "prof"
    res = profile(str(bundle), shape="40x32", iters=4, warmup=1, out=out, targets=["jetson-orin-agx", "x86-cpu"])
    assert res.out_dir == out and (out / "profile.png").stat().st_size > 1000
    rep = json.loads((out / "profile.json").read_text())
    lat = rep["latency"]
    assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert rep["shape"] == {"width": 40, "height": 32}
    assert rep["throughput"]["fps"] > 0 and rep["memory"]["peak_rss_mib"] > 0
    ops = rep["breakdown"][0]["by_op"]
    assert rep["breakdown"][0]["source"].startswith("onnxruntime") and any(r["op"] == "Conv" for r in ops)
    assert rep["cost"]["flops"] > 0 and rep["cost"]["unfused_bytes"] > rep["cost"]["fused_bytes"] > 0
    agx = [p for p in rep["roofline"] if p["target"] == "jetson-orin-agx"]
    assert {p["precision"] for p in agx} == {"fp32", "fp16", "int8"}
    fp16 = next(p for p in agx if p["precision"] == "fp16")
    assert 0 < fp16["best_case_fps"] <= fp16["fused_ideal_fps"]
    cpu = next(p for p in rep["roofline"] if p["target"] == "x86-cpu")
    assert "note" in cpu  # no GPU peak to project onto
    assert rep["commit"] is None or len(rep["commit"]) == 40
    assert rep["versions"]["onnxruntime"]


def test_profile_torch_model(tmp_path: Path) -> None:
    rep = profile("rdmc-tiny", backend="torch", shape="24x16", iters=2, warmup=0, out=tmp_path / "p").report
    assert rep["backend"] == "torch" and rep["cost"]["flops"] > 0
    assert rep["breakdown"][0]["source"].startswith("torch profiler")


def test_profile_cli_errors(case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, bundle = case("rdmc")
    assert parse_shape("1280x720") == (720, 1280)
    with pytest.raises(EdgerainError):
        parse_shape("720p")
    assert main(["profile", "run", str(bundle), "--shape", "12x", "--out", str(tmp_path / "x")]) == 2
    assert main(["profile", "run", str(tmp_path / "nope"), "--shape", "16x16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "not a bundle folder" in err[-1]
    assert not (tmp_path / "x").exists()
