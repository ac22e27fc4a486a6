"""bench/routing.py: routed vs oracle PSNR, with a confusion matrix for labelled synthetic folders."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from testutil import load_bench_script

from edgerain.data.streaks import write_pair_folder
from edgerain.models.checkpoint import save_checkpoint
from edgerain.models.registry import build_model


def test_routing_report_bounds_the_routed_psnr_by_the_oracle(train_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "rpn.safetensors"
    save_checkpoint(build_model("clip-rpn-tiny", quiet_clip=True), weights, {})
    pairs = write_pair_folder(tmp_path / "pairs", 5, 3, 48, train_root, None, procedural=0.5)
    out = tmp_path / "routing.json"
    assert load_bench_script("routing").main(["--weights", str(weights), "--data", str(pairs), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    folder = report["results"][str(weights)]["folders"][pairs.name]
    assert folder["pairs"] == 5 and sum(folder["routing_counts"]) == 5
    assert folder["routed_psnr_y"] <= folder["oracle_psnr_y"] + 1e-9
    assert max(folder["expert_psnr_y"]) <= folder["oracle_psnr_y"] + 1e-9
    assert sum(map(sum, folder["confusion"])) == 5 and 0.0 <= folder["accuracy"] <= 1.0
    assert "machine" in report["environment"]


def test_routing_report_refuses_a_network_without_a_router(train_root: Path, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "unet.safetensors"
    save_checkpoint(build_model("fclip-unet-tiny", quiet_clip=True), weights, {})
    pairs = write_pair_folder(tmp_path / "pairs", 1, 0, 32, train_root, None)
    out = tmp_path / "routing.json"
    assert load_bench_script("routing").main(["--weights", str(weights), "--data", str(pairs), "--out", str(out)]) == 2
    assert "not a CLIP-RPN checkpoint" in capsys.readouterr().err and not out.exists()
