"""Router calibration without pretrained CLIP: the linear head on the frozen tower, and the trained tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgerain.cli import main
from edgerain.errors import EdgerainError
from edgerain.models.checkpoint import load_checkpoint, read_metadata, save_checkpoint, state_dicts_equal
from edgerain.models.registry import build_model
from edgerain.train.data import open_source
from edgerain.train.router import (
    VIEW_SIZES,
    calibrate_router,
    measure_regret,
    router_pool,
    train_router,
    train_router_checkpoint,
)


def test_router_calibration_fits_a_linear_head_that_survives_a_checkpoint(train_root: Path, tmp_path: Path) -> None:
    from edgerain.models.checkpoint import save_checkpoint
    from edgerain.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    assert model.config.router_head == "prompts" and model.router.head is None
    info = calibrate_router(model, open_source(f"synth:{train_root}", seed=0, procedural=0.5), per_class=12, seed=0)
    assert info["calibrated"] is True and "linear head" in info["method"]
    assert 0.0 <= info["heldout_accuracy"] <= 1.0 and info["train_accuracy"] > 1 / 3
    head = model.router.head
    assert model.config.router_head == "linear" and head is not None
    assert not any(p.requires_grad for p in head.parameters())
    # The router's scores are softmax(W e + b) of the installed head, not the prompt scores.
    x = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        expected = torch.softmax(head(model.router.image(x)), dim=-1)
        torch.testing.assert_close(model.router(x), expected)
        routed = model.route(x).expert
    save_checkpoint(model, tmp_path / "m.safetensors", {"router": info})
    again = load_checkpoint(tmp_path / "m.safetensors").eval()
    assert again.config.router_head == "linear"  # type: ignore[attr-defined]
    assert state_dicts_equal(model, again)
    with torch.no_grad():
        assert torch.equal(again.route(x).expert, routed)  # type: ignore[attr-defined]
    with pytest.raises(EdgerainError, match="synthetic data"):
        calibrate_router(model, object(), per_class=2, seed=0)  # type: ignore[arg-type]


def test_router_pool_is_deterministic_balanced_and_at_the_tower_size(train_root: Path) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    source = open_source(f"synth:{train_root}", seed=0, procedural=0.5)
    per_class = len(VIEW_SIZES) + 1
    x, y = router_pool(model, source, per_class, seed=3)
    size = model.router.image.image_size
    assert x.shape == (3 * per_class, 3, size, size) and x.dtype == torch.float16
    assert y.tolist() == [0] * per_class + [1] * per_class + [2] * per_class
    again, _ = router_pool(model, source, per_class, seed=3)
    assert torch.equal(x, again)
    other, _ = router_pool(model, source, per_class, seed=4)
    assert not torch.equal(x, other)


def test_regret_is_zero_on_the_diagonal_and_reflects_the_experts(train_root: Path) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    source = open_source(f"synth:{train_root}", seed=0)
    with torch.no_grad():  # expert 2 outputs garbage: sending anything to it must cost PSNR
        for p in model.experts[2].parameters():
            p.add_(torch.randn_like(p) * 0.5)
    regret = measure_regret(model, source, per_class=2, seed=0, size=48)
    assert regret.shape == (3, 3) and bool((regret >= 0).all())
    assert torch.equal(torch.diagonal(regret), torch.zeros(3))
    assert float(regret[0, 2]) > 1.0 and float(regret[1, 2]) > 1.0


def test_train_router_trains_the_tower_installs_a_head_and_freezes_again(train_root: Path) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    source = open_source(f"synth:{train_root}", seed=0, procedural=0.5)
    experts_before = {k: v.clone() for k, v in model.experts.state_dict().items()}
    tower_before = {k: v.clone() for k, v in model.router.image.state_dict().items()}
    lines: list[str] = []
    info = train_router(model, source, steps=4, per_class=5, seed=0, batch=8, regret_per_class=1, log=lines.append)
    assert info["tower_trained"] is True and info["steps"] == 4 and info["heldout_before"] is None
    assert len(info["regret_db"]) == 3 and 0.0 <= info["heldout_accuracy"] <= 1.0
    assert sum(map(sum, info["heldout"]["confusion"])) == 3  # max(5 // 5, 1) held-out images per class
    assert any(line.startswith("regret") for line in lines)
    # The tower learned (weights and BatchNorm statistics moved), the experts did not.
    tower_after = model.router.image.state_dict()
    assert any(not torch.equal(tower_before[k], tower_after[k]) for k in tower_before)
    assert all(torch.equal(experts_before[k], v) for k, v in model.experts.state_dict().items())
    assert model.config.router_head == "linear" and model.router.head is not None
    assert not any(p.requires_grad for p in model.router.parameters())
    assert not model.router.image.visual.training
    # Scores are the installed head's on the trained tower's embedding.
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        expected = torch.softmax(model.router.head(model.router.image(x)), dim=-1)
        torch.testing.assert_close(model.router(x), expected)


def test_calibrate_router_command_writes_a_checkpoint_with_only_the_router_changed(
    train_root: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    src = tmp_path / "in.safetensors"
    save_checkpoint(model, src, {"trained": True, "step": 7})
    out = tmp_path / "out.safetensors"
    args = ["calibrate-router", str(src), "--out", str(out), "--data", f"synth:{train_root}", "--regret-per-class", "1"]
    assert main([*args, "--steps", "2", "--per-class", "5"]) == 0
    again = load_checkpoint(out)
    assert again.config.router_head == "linear"  # type: ignore[attr-defined]
    assert state_dicts_equal(again.experts, model.experts)  # type: ignore[attr-defined]
    prov = read_metadata(out)["provenance"]
    assert prov["step"] == 7 and prov["router"]["tower_trained"] is True
    assert prov["router_trained_from"]["file"] == "in.safetensors" and len(prov["router_trained_from"]["sha256"]) == 64
    # The same seed gives the same router.
    twice = tmp_path / "twice.safetensors"
    assert main([*args[:3], str(twice), *args[4:], "--steps", "2", "--per-class", "5"]) == 0
    assert state_dicts_equal(load_checkpoint(twice), again)


def test_calibrate_router_refuses_what_it_cannot_do(train_root: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "unet.safetensors"
    save_checkpoint(build_model("fclip-unet-tiny", quiet_clip=True), other, {})
    out = tmp_path / "out.safetensors"
    assert main(["calibrate-router", str(other), "--out", str(out)]) != 0
    assert "only CLIP-RPN has a router" in capsys.readouterr().err
    assert main(["calibrate-router", str(tmp_path / "missing.safetensors"), "--out", str(out)]) != 0
    assert "no such checkpoint" in capsys.readouterr().err
    rpn = tmp_path / "rpn.safetensors"
    save_checkpoint(build_model("clip-rpn-tiny", quiet_clip=True), rpn, {"clip_pretrained": True})
    with pytest.raises(EdgerainError, match="pretrained CLIP"):
        train_router_checkpoint(rpn, out, data=f"synth:{train_root}", steps=1, per_class=1, regret_per_class=1)
    pairs = tmp_path / "pairs"
    (pairs / "rain").mkdir(parents=True)
    (pairs / "norain").mkdir()
    plain = tmp_path / "plain.safetensors"
    save_checkpoint(build_model("clip-rpn-tiny", quiet_clip=True), plain, {})
    assert main(["calibrate-router", str(plain), "--out", str(out), "--data", str(pairs)]) != 0
    assert "synth" in capsys.readouterr().err
    assert not out.exists()
