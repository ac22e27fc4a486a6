"""The benchmark's code path (on the CPU: Triton interpreter, tiny shapes) and `edgerain profile kernels`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgerain.cli import main
from edgerain.ops import benchmark

REPO = Path(__file__).resolve().parents[2]


def test_sdpa_baseline_matches_reference():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 11, 13, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, 1, 11, 13, generator=g, dtype=torch.float64)
    ref = benchmark.backends_for("mgca_window_attention")["eager"](q, k, v, mask, 8, 4)
    torch.testing.assert_close(benchmark.mgca_sdpa(q, k, v, mask, 8, 4), ref)


def test_decoder_cases_follow_the_model_config():
    cases = benchmark.decoder_cases()
    updw = {c.label: c.shape for c in cases if c.op == "updw"}
    assert updw["512x512 L0"] == dict(B=1, cin=64, cout=32, h=256, w=256)
    assert updw["1280x720 L2"] == dict(B=1, cin=256, cout=128, h=90, w=160)
    mgca = {c.label: c.shape for c in cases if c.op == "mgca_window_attention"}
    assert mgca["1280x720 L1 s4"] == dict(B=1, heads=2, d=32, H=360, W=640, window=8, shift=4)


def test_smoke_run_writes_json_and_profile_prints_it(tmp_path, capsys):
    env = {**os.environ, "EDGERAIN_OPS_BACKEND": "auto"}
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "kernels.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (path,) = tmp_path.glob("kernels-*.json")
    data = json.loads(path.read_text())
    assert data["kind"] == "edgerain-kernel-benchmark" and data["commit"] and data["versions"]["torch"]
    rows = {(r["op"], r["backend"]): r for r in data["results"]}
    expected = {"eager", "sdpa_bias", "triton", "extension"}
    try:
        import edgerain._C  # noqa: F401
    except ImportError:
        expected.discard("extension")
    for backend in expected:
        row = rows[("mgca_window_attention", backend)]
        assert row["status"] == "ok", row
        assert row["rel_error_vs_eager"] < 1e-2 and row["speedup_vs_eager"] > 0
    assert rows[("updw", "triton")]["status"] == "ok"

    assert main(["profile", "kernels", "--results", str(tmp_path), "--no-run"]) == 0
    out = capsys.readouterr().out
    assert "sdpa_bias" in out and "triton" in out and "CPU" in out


def test_profile_without_results_says_a_gpu_is_needed(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("with a GPU the command runs the benchmark instead")
    assert main(["profile", "kernels", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no kernel benchmark results") and "GPU" in err
