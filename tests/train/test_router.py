"""Router calibration without pretrained CLIP: the linear head on the frozen tower, and the trained tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgerain.cli import main
from edgerain.errors import EdgerainError
from edgerain.models.checkpoint import load_checkpoint, read_metadata, save_checkpoint, state_dicts_equal
from edgerain.models.clip_rpn import ClipRPN, ClipRPNConfig
from edgerain.models.registry import build_model
from edgerain.train.data import open_source
from edgerain.train.router import (
    DEFAULT_OFFSETS_PER_CLASS,
    VIEW_SIZES,
    best_offsets,
    calibrate_router,
    fit_feature_stats_head,
    fit_router_offsets,
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
    args += ["--offsets-per-class", "0"]
    assert main([*args, "--steps", "2", "--per-class", "5"]) == 0
    again = load_checkpoint(out)
    assert again.config.router_head == "linear"  # type: ignore[attr-defined]
    assert state_dicts_equal(again.experts, model.experts)  # type: ignore[attr-defined]
    prov = read_metadata(out)["provenance"]
    assert prov["step"] == 7 and prov["router"]["tower_trained"] is True
    assert prov["router_trained_from"]["file"] == "in.safetensors" and len(prov["router_trained_from"]["sha256"]) == 64
    # With offsets (the default), the tower is trained and then the offsets fitted on its experts.
    offset = tmp_path / "offset.safetensors"
    full = [*args[:3], str(offset), *args[4:-2], "--steps", "2", "--per-class", "5", "--offsets-per-class", "2"]
    assert main(full) == 0
    router = read_metadata(offset)["provenance"]["router"]
    assert router["tower_trained"] is True and router["decision_offsets"]["pairs_per_class"] == 2
    assert main([*full[:-1], "-1"]) != 0
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


def test_best_offsets_move_decisions_to_the_expert_that_loses_least() -> None:
    # Six images the router calls class 1 with growing confidence; expert 0 is better on the first four.
    log_p = np.log(
        np.array([[0.45, 0.55, 0.0], [0.4, 0.6, 0.0], [0.35, 0.65, 0.0], [0.3, 0.7, 0.0]] + [[0.1, 0.9, 0.0]] * 2)
        + 1e-9
    )
    psnr = np.array([[30.0, 28.0, 20.0]] * 4 + [[25.0, 29.0, 20.0]] * 2)
    off = best_offsets(log_p, psnr)
    assert off[0] == 0.0
    picks = (log_p + off).argmax(1)
    assert picks.tolist() == [0, 0, 0, 0, 1, 1]
    # The smallest offsets that do it: the threshold lies between 0.7/0.3 and 0.9/0.1 in odds.
    assert off[1] < 0 and abs(off[1]) <= np.log(9.0) and abs(off[1]) >= np.log(0.7 / 0.3)
    # A router that is already right keeps zero offsets (ties go to the smallest).
    assert best_offsets(log_p, np.array([[20.0, 30.0, 10.0]] * 6)).tolist() == [0.0, 0.0, 0.0]


def test_fit_router_offsets_shift_only_the_head_bias(train_root: Path) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    source = open_source(f"synth:{train_root}", 0)
    with pytest.raises(EdgerainError, match="linear routing head"):
        fit_router_offsets(model, source, per_class=2, seed=1)
    calibrate_router(model, source, 4, 3)
    weight, bias = model.router.head.weight.clone(), model.router.head.bias.clone()
    tower = {k: v.clone() for k, v in model.router.image.state_dict().items()}
    info = fit_router_offsets(model, source, per_class=4, seed=5)
    off = torch.tensor(info["offsets"])
    assert off[0] == 0 and len(off) == 3
    torch.testing.assert_close(model.router.head.weight, weight)
    torch.testing.assert_close(model.router.head.bias, bias + off, atol=1e-4, rtol=0)
    assert all(torch.equal(v, model.router.image.state_dict()[k]) for k, v in tower.items())
    ins, cv = info["in_sample"], info["cross_validated"]
    assert ins["before"]["pairs"] == ins["after"]["pairs"] == 12
    # In sample the installed offsets never lose; cross-validated they may, but the pool is the same.
    assert ins["after"]["routed_psnr_y"] >= ins["before"]["routed_psnr_y"] - 1e-9
    assert ins["before"]["routed_psnr_y"] == pytest.approx(cv["before"]["routed_psnr_y"], abs=1e-3)
    assert len(cv["fold_offsets"]) == 2 and all(o[0] == 0 for o in cv["fold_offsets"])
    for s in (ins["before"], ins["after"], cv["before"], cv["after"]):
        assert s["routed_psnr_y"] <= ins["before"]["oracle_psnr_y"] + 1e-9
    assert sum(ins["after"]["routing_counts"]) == 12


def test_calibrate_router_offsets_only_keeps_the_router_and_accumulates(
    train_root: Path, tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    src = tmp_path / "in.safetensors"
    save_checkpoint(model, src, {"step": 3})
    out = tmp_path / "out.safetensors"
    data = ["--data", f"synth:{train_root}"]
    # A prompt router has no head to shift: a one-line refusal, nothing written.
    assert main(["calibrate-router", str(src), "--out", str(out), *data, "--offsets-only"]) != 0
    assert "--offsets-only needs a router with a fitted linear head" in capsys.readouterr().err
    assert not out.exists()
    calibrate_router(model, open_source(f"synth:{train_root}", 0), 4, 3)
    save_checkpoint(model, src, {"step": 3, "router": {"calibrated": True, "kept_from_init": True}})
    assert (
        main(["calibrate-router", str(src), "--out", str(out), *data, "--offsets-only", "--offsets-per-class", "0"])
        != 0
    )
    assert "would change nothing" in capsys.readouterr().err
    once = ["calibrate-router", str(src), "--out", str(out), *data, "--offsets-only", "--offsets-per-class", "3"]
    assert main(once) == 0
    assert "decision offsets" in capsys.readouterr().out
    again = load_checkpoint(out)
    assert state_dicts_equal(again.experts, model.experts)  # type: ignore[attr-defined]
    assert state_dicts_equal(again.router.image, model.router.image)  # type: ignore[attr-defined]
    torch.testing.assert_close(again.router.head.weight, model.router.head.weight)  # type: ignore[attr-defined]
    router = read_metadata(out)["provenance"]["router"]
    assert router["kept_from_init"] is True and router["calibrated"] is True
    first = router["decision_offsets"]["offsets"]
    assert router["decision_offsets"]["fitted_on"]["file"] == "in.safetensors"
    torch.testing.assert_close(
        again.router.head.bias,  # type: ignore[attr-defined]
        model.router.head.bias + torch.tensor(first),
        atol=1e-4,
        rtol=0,
    )
    # Fitting again on top records the sum, which is what the head now carries.
    twice = tmp_path / "twice.safetensors"
    assert (
        main(["calibrate-router", str(out), "--out", str(twice), *data, "--offsets-only", "--offsets-per-class", "3"])
        == 0
    )
    rec = read_metadata(twice)["provenance"]["router"]["decision_offsets"]
    assert rec["offsets"] == pytest.approx([a + b for a, b in zip(first, rec["offsets_added"], strict=True)], abs=1e-3)
    torch.testing.assert_close(
        load_checkpoint(twice).router.head.bias,  # type: ignore[attr-defined]
        model.router.head.bias + torch.tensor(rec["offsets"]),
        atol=1e-3,
        rtol=0,
    )


def test_cli_and_api_share_the_offsets_default() -> None:
    import inspect

    from edgerain.cli.train import calibrate_router as cli_command

    assert inspect.signature(cli_command).parameters["offsets_per_class"].default == DEFAULT_OFFSETS_PER_CLASS
    assert (
        inspect.signature(train_router_checkpoint).parameters["offsets_per_class"].default == DEFAULT_OFFSETS_PER_CLASS
    )


def test_calibrate_router_router_from_joins_a_router_to_other_experts(train_root: Path, tmp_path: Path, capsys) -> None:
    import dataclasses

    torch.manual_seed(0)
    data = ["--data", f"synth:{train_root}"]
    # The donor: a calibrated router on one set of experts; the target: other experts, a prompt router.
    donor_model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    calibrate_router(donor_model, open_source(f"synth:{train_root}", 0), 4, 3)
    donor = tmp_path / "donor.safetensors"
    save_checkpoint(donor_model, donor, {"step": 5, "router": {"calibrated": True, "tower_trained": True}})
    target_model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    target = tmp_path / "target.safetensors"
    save_checkpoint(target_model, target, {"step": 9, "recipe": {"seed": 1}})
    assert not state_dicts_equal(donor_model.experts, target_model.experts)  # type: ignore[attr-defined]

    out = tmp_path / "joined.safetensors"
    take = ["calibrate-router", str(target), "--out", str(out), *data, "--router-from", str(donor)]
    assert main([*take, "--offsets-per-class", "0"]) == 0
    assert "router taken from" in capsys.readouterr().out
    joined = load_checkpoint(out)
    assert state_dicts_equal(joined.experts, target_model.experts)  # type: ignore[attr-defined]
    assert state_dicts_equal(joined.router, donor_model.router)  # type: ignore[attr-defined]
    prov = read_metadata(out)["provenance"]
    assert prov["step"] == 9 and prov["recipe"] == {"seed": 1}  # the experts' record stays
    assert prov["router"]["tower_trained"] is True and prov["router"]["router_from"]["file"] == "donor.safetensors"
    assert "decision_offsets" not in prov["router"]

    # With offsets: fitted on the target's experts, on top of the donor's head.
    with_offsets = tmp_path / "joined_offsets.safetensors"
    assert main([*take[:3], str(with_offsets), *take[4:], "--offsets-per-class", "3"]) == 0
    rec = read_metadata(with_offsets)["provenance"]["router"]
    assert rec["decision_offsets"]["fitted_on"]["file"] == "target.safetensors"
    torch.testing.assert_close(
        load_checkpoint(with_offsets).router.head.bias,  # type: ignore[attr-defined]
        donor_model.router.head.bias + torch.tensor(rec["decision_offsets"]["offsets"]),  # type: ignore[attr-defined]
        atol=1e-4,
        rtol=0,
    )

    # A prompt router joins too, replacing a fitted head (nothing to shift, so no offsets).
    prompts = tmp_path / "prompts.safetensors"
    join = ["calibrate-router", str(out), "--out", str(prompts), *data, "--router-from", str(target)]
    assert main([*join, "--offsets-per-class", "0"]) == 0
    back = load_checkpoint(prompts)
    assert back.config.router_head == "prompts" and back.router.head is None  # type: ignore[attr-defined]
    assert state_dicts_equal(back.router, target_model.router)  # type: ignore[attr-defined]
    capsys.readouterr()

    # Refusals: a missing donor, a donor with a prompt router to shift, another configuration.
    bad = tmp_path / "bad.safetensors"
    assert main([*take[:3], str(bad), *data, "--router-from", str(tmp_path / "nope.safetensors")]) != 0
    assert "no such checkpoint file" in capsys.readouterr().err
    assert main([*take[:3], str(bad), *data, "--router-from", str(target), "--offsets-per-class", "3"]) != 0
    assert "no fitted linear head" in capsys.readouterr().err
    other_cfg = dataclasses.replace(target_model.config, temperature=50.0)  # type: ignore[attr-defined]
    other = tmp_path / "other.safetensors"
    save_checkpoint(build_model("clip-rpn-tiny", config=other_cfg, quiet_clip=True), other, {})
    assert main([*take[:3], str(bad), *data, "--router-from", str(other)]) != 0
    assert "configured otherwise" in capsys.readouterr().err
    assert not bad.exists()


def test_feature_stats_are_the_channel_mean_and_spread_of_each_tap_at_the_images_own_size() -> None:
    from edgerain.models.clip_rpn import feature_stats, feature_stats_dim

    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    image = model.router.image
    x = torch.rand(2, 3, 48, 80)  # oblong, not the tower's input size: no resize happens
    with torch.no_grad():
        stats = feature_stats(image, x)
        taps = [t.double() for t in image.resnet_taps(x, upto=3)]
    assert stats.shape == (2, feature_stats_dim(image))
    expected = torch.cat([s for t in taps for s in (t.mean((2, 3)), t.std((2, 3), correction=0))], 1)
    torch.testing.assert_close(stats.double(), expected, rtol=1e-4, atol=1e-5)
    # Four poolings by 2 before the deepest tap: smaller images get a clear error, not a pooling crash.
    with pytest.raises(EdgerainError, match="at least 16x16 pixels"):
        feature_stats(image, torch.rand(1, 3, 15, 40))
    assert feature_stats(image, torch.rand(1, 3, 16, 16)).isfinite().all()
    vit = ClipRPN(ClipRPNConfig(clip_model="edgerain-tiny-vit"), quiet_clip=True)
    with pytest.raises(EdgerainError, match="ResNet"):
        feature_stats_dim(vit.router.image)
    with pytest.raises(EdgerainError, match="ResNet"):
        ClipRPN(ClipRPNConfig(clip_model="edgerain-tiny-vit", router_head="feature-stats"), quiet_clip=True)


def test_feature_stats_head_is_fitted_installed_and_survives_a_checkpoint_and_offsets(
    train_root: Path, tmp_path: Path
) -> None:
    from edgerain.models.clip_rpn import feature_stats, feature_stats_dim

    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    tower = {k: v.clone() for k, v in model.router.image.state_dict().items()}
    source = open_source(f"synth:{train_root}", seed=0, procedural=0.5)
    info = fit_feature_stats_head(model, source, per_class=6, seed=0)
    assert info["head"] == "feature-stats" and info["features"] == feature_stats_dim(model.router.image)
    assert info["heldout_accuracy_before"] is None  # the tiny model routed by its prompts before
    assert 0.0 <= info["heldout_accuracy"] <= 1.0 and info["train_accuracy"] > 1 / 3
    assert model.config.router_head == "feature-stats" and model.router.head is not None
    assert all(torch.equal(v, model.router.image.state_dict()[k]) for k, v in tower.items())  # tower kept
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        expected = torch.softmax(model.router.head(feature_stats(model.router.image, x)), dim=-1)
        torch.testing.assert_close(model.router(x), expected)
        routed = model.route(x).expert
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, {"router": info})
    again = load_checkpoint(path).eval()
    assert again.config.router_head == "feature-stats"  # type: ignore[attr-defined]
    assert state_dicts_equal(model, again)
    with torch.no_grad():
        assert torch.equal(again.route(x).expert, routed)  # type: ignore[attr-defined]
    # Decision offsets shift the bias of the head there is, of the kind it is.
    weight = model.router.head.weight.clone()
    fit_router_offsets(model, source, per_class=2, seed=1)
    assert model.config.router_head == "feature-stats" and torch.equal(model.router.head.weight, weight)
    # A fitted head of the wrong width is refused, not silently reshaped.
    with pytest.raises(ValueError, match="reads"):
        model.router.set_linear_head(torch.zeros(3, 5), torch.zeros(3), kind="feature-stats")


def test_calibrate_router_head_feature_stats_keeps_the_tower_and_the_experts(
    train_root: Path, tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    model = build_model("clip-rpn-tiny", quiet_clip=True).eval()
    src = tmp_path / "in.safetensors"
    save_checkpoint(model, src, {"trained": True, "step": 3})
    out = tmp_path / "out.safetensors"
    args = ["calibrate-router", str(src), "--out", str(out), "--data", f"synth:{train_root}"]
    assert main([*args, "--head", "feature-stats", "--per-class", "4", "--offsets-per-class", "2"]) == 0
    assert "feature-stats head, held-out routing accuracy" in capsys.readouterr().out
    again = load_checkpoint(out)
    assert again.config.router_head == "feature-stats"  # type: ignore[attr-defined]
    assert state_dicts_equal(again.experts, model.experts)  # type: ignore[attr-defined]
    assert state_dicts_equal(again.router.image, model.router.image)  # type: ignore[attr-defined]
    router = read_metadata(out)["provenance"]["router"]
    assert router["head"] == "feature-stats" and router["images_per_class"] == 4
    assert router["decision_offsets"]["pairs_per_class"] == 2 and router["data"]["procedural_fraction"] == 0.5
    assert router["tower_trained"] is False and router["fitted_on"]["file"] == "in.safetensors"
    assert "router_trained_from" not in read_metadata(out)["provenance"]  # the tower was not trained here
    bad = tmp_path / "bad.safetensors"
    assert main([*args[:3], str(bad), *args[4:], "--head", "pixels"]) != 0
    assert "--head pixels: choose one of embedding, feature-stats" in capsys.readouterr().err
    assert main([*args[:3], str(bad), *args[4:], "--head", "feature-stats", "--offsets-only"]) != 0
    assert "keep the router there is" in capsys.readouterr().err
    assert not bad.exists()
