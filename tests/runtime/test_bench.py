"""edgerain bench: the rows, their pass/fail logic and the written report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerain.cli import main
from edgerain.runtime.bench import bench, markdown_table


def test_bench_rows_on_pairs(pair_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = bench(pair_folder, model="rdmc-tiny", rows=["ort-fp32", "torch-fused", "trt-fp16"], limit=2, out=out)
    by = {r.row: r for r in res.rows}
    assert list(by) == ["torch-fp32", "ort-fp32", "torch-fused", "trt-fp16"]
    ref, ort = by["torch-fp32"], by["ort-fp32"]
    assert ref.status == "pass" and ref.latency_ms and ref.psnr and ref.ssim and ref.size_mb
    # The bundle is the same network as the torch row (the exporter's seeded weights): near-identical output.
    assert ort.status == "pass" and ort.psnr_vs_fp32 is not None and ort.psnr_vs_fp32 > 60
    assert abs(ort.psnr - ref.psnr) < 0.01 and ort.size_mb and ort.size_mb > 0
    import torch

    if not torch.cuda.is_available():
        assert by["torch-fused"].status == "skip" and "GPU" in by["torch-fused"].note
    rep = json.loads(out.read_text())
    assert rep["pairs"] == 2 and [r["row"] for r in rep["rows"]] == list(by)
    table = markdown_table([rep])
    assert table.count("\n") == 2 + len(by) and "| rdmc-tiny | ort-fp32 | pass |" in table


def test_bench_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--data", str(tmp_path / "missing"), "--model", "rdmc-tiny"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "--data", str(tmp_path), "--model", "rdmc-tiny", "--rows", "onnx-fp64"]) == 2
    assert "unknown bench row" in capsys.readouterr().err
