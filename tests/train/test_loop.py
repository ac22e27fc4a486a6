"""The training loop: every tiny network learns, frozen CLIP stays frozen, runs resume exactly, CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgerain.cli import main
from edgerain.errors import EdgerainError
from edgerain.models.checkpoint import load_checkpoint, read_metadata, state_dicts_equal
from edgerain.train import loop
from edgerain.train.data import make_batch, open_source
from edgerain.train.loop import (
    TrainConfig,
    TrainStep,
    _contrastive_features,
    _copy_expert,
    family_of,
    load_optimizer,
    lr_at,
    misroute_labels,
    train,
)

TINY = ["clip-rpn-tiny", "fclip-unet-tiny", "clip-weather-tiny", "rdmc-tiny"]


def _frozen_clip(model: torch.nn.Module) -> torch.nn.Module:
    for name in ("router", "encoder", "clip"):
        if hasattr(model, name):
            sub = getattr(model, name)
            return sub.image if name == "router" else sub
    raise AssertionError("no CLIP part")


@pytest.mark.parametrize("name", TINY)
def test_steps_reduce_the_loss_on_a_fixed_batch(name: str, tiny_model_factory, train_root: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model_factory(name, seed=0)
    family = family_of(name)
    feature_net = _contrastive_features(None) if family == "rdmc" else None
    step = TrainStep(model, family, feature_net)
    source = open_source(f"synth:{train_root}", seed=0)
    rainy, clean, labels = make_batch(source, [0, 1], 32)
    clip_part = _frozen_clip(model) if family != "rdmc" else None
    frozen_before = {k: v.clone() for k, v in clip_part.state_dict().items()} if clip_part is not None else {}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3)
    model.train()
    if family == "fclip-unet":
        model.config.ldfps_sigma = (0.0, 0.0, 0.0, 0.0)  # a fixed batch needs a deterministic loss
    first = None
    for _ in range(12):
        loss = step(rainy, clean, labels, 0.5)["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = step(rainy, clean, labels, 0.5)["loss"].item()
    assert final < 0.9 * first, (first, final)
    if clip_part is not None:
        assert not clip_part.training, "the frozen CLIP tower must stay in eval mode while the model trains"
        after = clip_part.state_dict()
        assert all(torch.equal(frozen_before[k], after[k]) for k in frozen_before), "frozen CLIP changed"
    if feature_net is not None:
        assert not any(p.requires_grad for p in feature_net.parameters()) and not feature_net.training


def test_lr_schedule() -> None:
    cfg = TrainConfig(model="clip-rpn-tiny", data="synth", out="x", iters=100, lr=1e-3, warmup_iters=10)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 10, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 100, 1.0) == pytest.approx(1e-3 * cfg.min_lr_ratio)
    assert lr_at(cfg, 50, 0.5) == pytest.approx(1e-3 * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5))


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        model="clip-rpn-tiny",
        data=f"synth:{root}",
        out=str(out),
        iters=4,
        batch=2,
        patch=16,
        warmup_iters=1,
        calibrate_per_class=3,
        shared_warmup=0.5,
        log_every=1,
        ckpt_every=2,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_resume_reproduces_an_uninterrupted_run(train_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    train(_cfg(train_root, tmp_path / "full"))
    torch.manual_seed(0)
    train(_cfg(train_root, tmp_path / "split", stop_after=3))
    assert read_metadata(tmp_path / "split" / "last.safetensors")["provenance"]["step"] == 3
    train(_cfg(train_root, tmp_path / "split", resume=True))
    full = load_checkpoint(tmp_path / "full" / "last.safetensors")
    split = load_checkpoint(tmp_path / "split" / "last.safetensors")
    assert state_dicts_equal(full, split)
    prov = full.provenance  # type: ignore[attr-defined]
    assert prov["trained"] is True and prov["step"] == 4 and prov["router"]["calibrated"] is True
    assert prov["shared_expert_copied"] == 2 and prov["clip_pretrained"] is False
    # The optimizer state is safetensors + JSON: it loads into a fresh AdamW without executing code.
    opt = torch.optim.AdamW([p for p in split.parameters() if p.requires_grad], lr=1.0)
    assert load_optimizer(opt, tmp_path / "split" / "last.optim.safetensors")["step"] == 4
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert (tmp_path / "split" / "curve.png").stat().st_size > 0


def test_a_failed_save_keeps_the_previous_checkpoint_pair(
    train_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves = []
    real_save = loop.save_optimizer

    def second_save_fails(opt, path, extra):
        saves.append(extra["step"])
        if len(saves) == 2:
            raise OSError("No space left on device")
        real_save(opt, path, extra)

    monkeypatch.setattr(loop, "save_optimizer", second_save_fails)
    with pytest.raises(OSError, match="No space"):
        train(_cfg(train_root, tmp_path / "run"))  # saves at steps 2 and 4
    run = tmp_path / "run"
    # The model file of step 4 was complete when the optimizer's failed: neither replaced the pair.
    assert read_metadata(run / "last.safetensors")["provenance"]["step"] == 2
    monkeypatch.setattr(loop, "save_optimizer", real_save)
    model = load_checkpoint(run / "last.safetensors")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1.0)
    assert load_optimizer(opt, run / "last.optim.safetensors")["step"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    train(_cfg(train_root, run, resume=True))
    assert read_metadata(run / "last.safetensors")["provenance"]["step"] == 4


def test_resume_refuses_a_model_and_optimizer_of_different_steps(train_root: Path, tmp_path: Path) -> None:
    from edgerain.models.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train(_cfg(train_root, run, stop_after=3))
    model = load_checkpoint(run / "last.safetensors")
    save_checkpoint(model, run / "last.safetensors", {**model.provenance, "step": 2})  # type: ignore[attr-defined]
    with pytest.raises(EdgerainError, match=r"at step 2 but last\.optim\.safetensors at step 3"):
        train(_cfg(train_root, run, resume=True))


def test_batches_from_worker_processes_equal_in_process_batches(train_root: Path) -> None:
    from edgerain.train.data import StepBatches

    source = open_source(f"synth:{train_root}", seed=3, procedural=0.5)
    batches = StepBatches(source, batch=4, per_rank=2, rank=1, patch=16)
    assert batches.indices(5) == [22, 23]  # step 5, rank 1's half of samples 20..23
    inline = list(batches.iterate(2, 6, workers=0, device=torch.device("cpu")))
    pooled = list(batches.iterate(2, 6, workers=2, device=torch.device("cpu")))
    assert len(inline) == len(pooled) == 4
    for a, b in zip(inline, pooled, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(inline[0][0], inline[1][0])  # consecutive steps draw different crops


def test_workers_change_the_speed_not_the_run(train_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    train(_cfg(train_root, tmp_path / "inline"))
    torch.manual_seed(0)
    train(_cfg(train_root, tmp_path / "pooled", workers=2))
    inline = load_checkpoint(tmp_path / "inline" / "last.safetensors")
    pooled = load_checkpoint(tmp_path / "pooled" / "last.safetensors")
    assert state_dicts_equal(inline, pooled)
    with pytest.raises(EdgerainError, match="--workers"):
        train(_cfg(train_root, tmp_path / "bad", workers=-1))


def test_shared_phase_checkpoints_are_complete_models(train_root: Path, tmp_path: Path) -> None:
    train(_cfg(train_root, tmp_path / "run", iters=4, shared_warmup=0.75, stop_after=2))
    model = load_checkpoint(tmp_path / "run" / "last.safetensors")
    e = model.experts  # type: ignore[attr-defined]
    assert "shared_expert_copied" not in model.provenance  # type: ignore[attr-defined]
    for other in (1, 2):
        for p0, p1 in zip(e[0].parameters(), e[other].parameters(), strict=True):
            assert torch.equal(p0, p1)


def test_shared_expert_is_copied_with_its_optimizer_state(tiny_model_factory) -> None:
    model = tiny_model_factory("clip-rpn-tiny", seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    x = torch.rand(2, 3, 16, 16)
    step = TrainStep(model, "clip-rpn", None)
    step(x, x, torch.zeros(2, dtype=torch.long), 0.0)["loss"].backward()
    opt.step()
    e = model.experts
    assert not torch.equal(e[0].embed.weight, e[1].embed.weight)
    _copy_expert(model, opt, 0)
    for other in (1, 2):
        for p0, p1 in zip(e[0].parameters(), e[other].parameters(), strict=True):
            assert torch.equal(p0, p1)
            if p0 in opt.state:
                assert torch.equal(opt.state[p0]["exp_avg"], opt.state[p1]["exp_avg"])
                assert opt.state[p0]["exp_avg"] is not opt.state[p1]["exp_avg"]


def test_validation_and_best_checkpoint(train_root: Path, tmp_path: Path) -> None:
    assert (
        main(["synth", "--out", str(tmp_path / "val"), "--count", "2", "--size", "24", "--train-root", str(train_root)])
        == 0
    )
    train(_cfg(train_root, tmp_path / "run", iters=2, val=(str(tmp_path / "val"),), val_every=1))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    vals = [r["val_psnr_y"]["val"] for r in log if "val_psnr_y" in r]
    assert len(vals) == 2 and all(math.isfinite(v) and 5 < v < 80 for v in vals)
    best = read_metadata(tmp_path / "run" / "best.safetensors")["provenance"]
    assert best["val"]["val"] == pytest.approx(max(vals))


def test_train_command_errors(train_root: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--model", "clip-rpn-tiny", "--data", f"synth:{train_root}", "--iters", "1", "--batch", "2"]
    assert main([*base, "--patch", "16", "--out", str(tmp_path / "a"), "--resume"]) == 2  # nothing to resume
    assert main([*base, "--patch", "16", "--out", str(tmp_path / "b"), "--model", "nope"]) == 2
    assert main([*base, "--patch", "16", "--out", str(tmp_path / "c"), "--data", str(tmp_path / "missing")]) == 2
    assert main([*base, "--patch", "16", "--out", str(tmp_path / "d"), "--shared-warmup", "1.5"]) == 2
    assert main([*base, "--patch", "16", "--out", str(tmp_path / "f"), "--rain-classes", "light,drizzle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.startswith("error: ") for line in err] == [True] * 5, err
    assert not (tmp_path / "f").exists()
    assert not (tmp_path / "a").exists()
    # A finished run is not overwritten by accident.
    assert (
        main([*base, "--patch", "16", "--out", str(tmp_path / "e"), "--calibrate-per-class", "2", "--no-progress"]) == 0
    )
    assert main([*base, "--patch", "16", "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_init_warm_starts_from_a_checkpoint(train_root: Path, tmp_path: Path) -> None:
    train(_cfg(train_root, tmp_path / "first", iters=2, shared_warmup=0.0))
    first = tmp_path / "first" / "last.safetensors"
    # iters=0 steps is refused, so stop before the first step: the weights must be the init's.
    train(_cfg(train_root, tmp_path / "warm", iters=3, shared_warmup=0.0, init=str(first), stop_after=0))
    warm = load_checkpoint(tmp_path / "warm" / "last.safetensors")
    # Everything but the router head (recalibrated on the new run's stream) is the init's.
    sa, sb = load_checkpoint(first).state_dict(), warm.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("router.head."))
    prov = warm.provenance  # type: ignore[attr-defined]
    assert prov["init_from"]["file"] == "last.safetensors" and len(prov["init_from"]["sha256"]) == 64
    assert prov["init_from"]["step"] == 2 and prov["step"] == 0
    # Each stage records the device it ran on, and a warm start keeps its parent's.
    assert prov["device"].startswith("cpu (") and prov["init_from"]["device"] == prov["device"]
    # The run goes on with a fresh schedule and the mixed synthetic stream.
    train(_cfg(train_root, tmp_path / "mix", iters=2, shared_warmup=0.0, init=str(first), procedural_rain=0.5))
    mix = read_metadata(tmp_path / "mix" / "last.safetensors")["provenance"]
    assert mix["step"] == 2 and mix["data"]["procedural_fraction"] == 0.5
    with pytest.raises(EdgerainError, match="--init"):
        train(_cfg(train_root, tmp_path / "mix", init=str(first), resume=True))
    with pytest.raises(EdgerainError, match="no such checkpoint"):
        train(_cfg(train_root, tmp_path / "x", init=str(tmp_path / "missing.safetensors")))


def test_init_without_calibration_keeps_the_init_router(train_root: Path, tmp_path: Path) -> None:
    train(_cfg(train_root, tmp_path / "first", iters=2, shared_warmup=0.0))
    first = tmp_path / "first" / "last.safetensors"
    # One expert trained further on its rain class, the router left as the parent fitted it.
    cfg = _cfg(train_root, tmp_path / "light", iters=2, shared_warmup=0.0, init=str(first))
    cfg.calibrate_per_class, cfg.rain_classes = 0, ("light",)
    train(cfg)
    parent, child = load_checkpoint(first), load_checkpoint(tmp_path / "light" / "last.safetensors")
    sa, sb = parent.state_dict(), child.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("router."))
    prov = child.provenance  # type: ignore[attr-defined]
    assert prov["router"] == {**parent.provenance["router"], "kept_from_init": True}  # type: ignore[attr-defined]
    assert prov["data"]["rain_classes"] == ["light"] and prov["recipe"]["rain_classes"] == ["light"]
    # Only the light-rain expert learnt.
    changed = {k.split(".")[1] for k in sa if k.startswith("experts.") and not torch.equal(sa[k], sb[k])}
    assert changed == {"0"}
    # Decision offsets fitted on the parent's experts are carried over, marked as such.
    from edgerain.models.checkpoint import save_checkpoint

    offsets = {"offsets": [0.0, 0.5, 0.0], "pairs_per_class": 10}
    save_checkpoint(
        parent, tmp_path / "offsets.safetensors", {"router": {"calibrated": True, "decision_offsets": offsets}}
    )
    cfg = _cfg(train_root, tmp_path / "again", iters=1, shared_warmup=0.0, init=str(tmp_path / "offsets.safetensors"))
    cfg.calibrate_per_class = 0
    train(cfg)
    router = load_checkpoint(tmp_path / "again" / "last.safetensors").provenance["router"]  # type: ignore[attr-defined]
    assert router["decision_offsets"] == {**offsets, "carried_over": True} and router["kept_from_init"] is True


def test_misroute_sends_lighter_rain_to_heavier_experts() -> None:
    labels = torch.tensor([0, 1, 2] * 3000)
    indices = list(range(10_000, 19_000))
    out = misroute_labels(labels, indices, 0.2, seed=3, num_experts=3)
    assert torch.equal(out, misroute_labels(labels, indices, 0.2, seed=3, num_experts=3))  # deterministic
    assert not torch.equal(out, misroute_labels(labels, indices, 0.2, seed=4, num_experts=3))
    assert torch.all(out >= labels)  # never to an expert for lighter rain
    assert torch.equal(out[labels == 2], labels[labels == 2])  # the heaviest class keeps its expert
    for c in (0, 1):
        moved = (out[labels == c] != c).float().mean().item()
        assert abs(moved - 0.2) < 0.03, (c, moved)
    light = out[labels == 0]
    assert (light == 1).sum() > 200 and (light == 2).sum() > 200  # both heavier experts get light rain
    assert torch.equal(misroute_labels(labels, indices, 0.0, seed=3, num_experts=3), labels)
    # A sample's fate depends on its index, not on its batch: slices agree with the whole.
    assert torch.equal(misroute_labels(labels[5:9], indices[5:9], 0.2, seed=3, num_experts=3), out[5:9])


def test_train_routes_through_misroute(train_root: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = loop.misroute_labels

    def spy(labels, indices, fraction, seed, num_experts):
        calls.append((list(indices), fraction, seed, num_experts))
        return real(labels, indices, fraction, seed, num_experts)

    monkeypatch.setattr(loop, "misroute_labels", spy)
    train(_cfg(train_root, tmp_path / "run", iters=2, shared_warmup=0.0, misroute=0.3, seed=7))
    assert calls == [([0, 1], 0.3, 7, 3), ([2, 3], 0.3, 7, 3)]
    prov = read_metadata(tmp_path / "run" / "last.safetensors")["provenance"]
    assert prov["recipe"]["misroute"] == 0.3 and prov["processes"] == 1
    with pytest.raises(EdgerainError, match="--misroute must be in"):
        train(_cfg(train_root, tmp_path / "bad", misroute=1.0))
    with pytest.raises(EdgerainError, match="--misroute is for CLIP-RPN"):
        train(_cfg(train_root, tmp_path / "bad", model="rdmc-tiny", misroute=0.2))


class _BrightnessRouter:
    """A stand-in router: the expert is the mean brightness of the whole image in thirds; records its inputs."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        k = min(2, int(x.mean().item() * 3))
        return torch.nn.functional.one_hot(torch.tensor([k]), 3).float()


def test_router_routed_source_labels_crops_by_the_whole_view(train_root: Path) -> None:
    from numpy.lib.stride_tricks import sliding_window_view

    from edgerain.train.data import ROUTED_MAX_PATCH, VIEW_SIZES, RouterRoutedSource

    base = open_source(f"synth:{train_root}", seed=4)
    router = _BrightnessRouter()
    source = RouterRoutedSource(base, router)
    shapes = set()
    for index in range(12):
        rainy, clean, label = source.sample(index, 16)
        view = router.seen[-1][0].permute(1, 2, 0).numpy()
        shapes.add(view.shape[:2])
        # The router saw a whole view (one of the sizes it is trained on), not the crop ...
        assert max(view.shape[:2]) in VIEW_SIZES and min(view.shape[:2]) in {s * 2 // 3 for s in VIEW_SIZES} | set(
            VIEW_SIZES
        )
        assert label == min(2, int(float(view.mean()) * 3))
        # ... and the crop is a window of that view.
        windows = sliding_window_view(view, (16, 16, 3))[:, :, 0]
        assert (np.abs(windows - rainy).reshape(*windows.shape[:2], -1).max(-1) == 0).any()
        assert rainy.shape == clean.shape == (16, 16, 3)
        again = source.sample(index, 16)  # a pure function of (seed, index)
        assert np.array_equal(again[0], rainy) and np.array_equal(again[1], clean) and again[2] == label
    assert len(shapes) > 2  # several sizes and aspects are drawn
    assert source.describe()["route_by"] == "router" and source.synth is base.synth
    with pytest.raises(EdgerainError, match=f"--patch {ROUTED_MAX_PATCH} at most"):
        source.sample(0, ROUTED_MAX_PATCH + 1)


def test_train_route_by_router_sends_each_pair_to_the_routers_choice(
    train_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from edgerain.train.data import RouterRoutedSource

    routed: list[int] = []
    real_sample = RouterRoutedSource.sample

    def spy_sample(self, index, patch):
        out = real_sample(self, index, patch)
        routed.append(out[2])
        return out

    stepped: list[int] = []
    real_forward = TrainStep.forward

    def spy_forward(self, rainy, clean, labels, progress):
        stepped.extend(labels.tolist())
        return real_forward(self, rainy, clean, labels, progress)

    monkeypatch.setattr(RouterRoutedSource, "sample", spy_sample)
    monkeypatch.setattr(TrainStep, "forward", spy_forward)
    train(_cfg(train_root, tmp_path / "run", iters=3, shared_warmup=0.0, route_by="router", seed=2))
    assert len(routed) == 6 and stepped == routed  # the experts got the router's choices as labels
    prov = read_metadata(tmp_path / "run" / "last.safetensors")["provenance"]
    assert prov["recipe"]["route_by"] == "router" and prov["data"]["route_by"] == "router"
    # The decisions are the trained router's: its CPU copy agrees with the model's own routing.
    model = load_checkpoint(tmp_path / "run" / "last.safetensors")
    source = RouterRoutedSource(open_source(f"synth:{train_root}", seed=2), model.router)  # type: ignore[arg-type]
    assert [real_sample(source, i, 16)[2] for i in range(6)] == routed


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"route_by": "oracle"}, "--route-by must be one of labels, router"),
        ({"route_by": "router", "model": "rdmc-tiny", "shared_warmup": 0.0}, "--route-by router is for CLIP-RPN"),
        ({"route_by": "router", "misroute": 0.2, "shared_warmup": 0.0}, "replaces --misroute and --shared-warmup"),
        ({"route_by": "router"}, "replaces --misroute and --shared-warmup"),  # _cfg's shared warm-up
        ({"route_by": "router", "shared_warmup": 0.0, "patch": 171}, "--patch 170 at most"),
        ({"route_by": "router", "shared_warmup": 0.0, "rain_classes": ("light",)}, "forget their own"),
    ],
)
def test_route_by_refusals(train_root: Path, tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(EdgerainError, match=message):
        train(_cfg(train_root, tmp_path / "run", **kw))
    assert not (tmp_path / "run").exists()


def test_route_by_router_needs_synthetic_data(pair_folder: Path, tmp_path: Path, capsys) -> None:
    args = ["train", "--model", "clip-rpn-tiny", "--data", str(pair_folder), "--route-by", "router"]
    assert main([*args, "--iters", "1", "--out", str(tmp_path / "run")]) == 2
    assert "--route-by router needs synthetic data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "synth_value", "synth_error"),
    [
        ("--crossing-rain", "1.5", "crossing-rain fraction must be in [0, 1]"),
        ("--noise-rain", "0.5", "give --procedural-rain above 0 too"),  # noise rain is procedural rain
        ("--noise-heavy", "0.5", "give --procedural-rain above 0 too"),
    ],
)
def test_streak_option_refusals(
    pair_folder: Path, train_root: Path, tmp_path: Path, capsys, flag: str, synth_value: str, synth_error: str
) -> None:
    base = ["train", "--model", "clip-rpn-tiny", "--iters", "1", "--out", str(tmp_path / "run")]
    assert main([*base, "--data", str(pair_folder), flag, "0.5"]) == 2
    assert main([*base, "--data", f"synth:{train_root}", flag, synth_value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{flag} is for synthetic data" in err[0] and synth_error in err[1]
    assert not (tmp_path / "run").exists()
