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


def test_routing_report_scores_another_checkpoints_router_on_the_same_expert_runs(
    train_root: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True)
    weights, same, other = tmp_path / "rpn.safetensors", tmp_path / "same.safetensors", tmp_path / "other.safetensors"
    save_checkpoint(model, weights, {})
    save_checkpoint(model, same, {})
    k, dim = model.router.prompt_embeddings.shape
    model.set_router_head(torch.zeros(k, dim), torch.tensor([0.0, 0.0, 50.0]))  # always the last expert
    save_checkpoint(model, other, {})
    pairs = write_pair_folder(tmp_path / "pairs", 4, 3, 48, train_root, None, procedural=0.5)
    out = tmp_path / "routing.json"
    args = ["--weights", str(weights), "--data", str(pairs), "--out", str(out), "--router", str(same)]
    assert load_bench_script("routing").main([*args, "--router", str(other)]) == 0
    entry = json.loads(out.read_text())["results"][str(weights)]
    folder = entry["folders"][pairs.name]
    assert entry["other_routers"][str(same)][pairs.name]["routed_psnr_y"] == folder["routed_psnr_y"]
    forced = entry["other_routers"][str(other)][pairs.name]
    assert forced["routing_counts"] == [0, 0, 4] and forced["routed_psnr_y"] == folder["expert_psnr_y"][2]


def test_routing_report_refuses_a_network_without_a_router(train_root: Path, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "unet.safetensors"
    save_checkpoint(build_model("fclip-unet-tiny", quiet_clip=True), weights, {})
    pairs = write_pair_folder(tmp_path / "pairs", 1, 0, 32, train_root, None)
    out = tmp_path / "routing.json"
    assert load_bench_script("routing").main(["--weights", str(weights), "--data", str(pairs), "--out", str(out)]) == 2
    assert "not a CLIP-RPN checkpoint" in capsys.readouterr().err and not out.exists()
