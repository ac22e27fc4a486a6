"""The model card is written from the measured report, number for number."""

from __future__ import annotations

import pytest
import torch

from edgerain.train.report import model_card


def test_model_card_carries_the_measured_numbers() -> None:
    report = {
        "model": "clip-rpn-edge",
        "params": 5_076_950,
        "bytes": 20_429_016,
        "git_commit": "abc123",
        "provenance": {
            "clip_pretrained": False,
            "step": 2400,
            "elapsed_s": 3600,
            "shared_expert_copied": 1700,
            "recipe": {"batch": 4, "patch": 64, "lr": 0.001, "shared_warmup": 0.7, "time_budget_minutes": 60},
            "router": {"method": "fit", "images_per_class": 100, "train_accuracy": 0.5, "heldout_accuracy": 0.48},
        },
        "evaluation": {
            "rain100l": {
                "pairs": 45,
                "model": {"psnr_y": 28.123, "ssim_y": 0.9012},
                "rainy_input": {"psnr_y": 26.44, "ssim_y": 0.84},
                "routing": {"expert 0: light": 30, "expert 2: heavy": 15},
            }
        },
        "cpu_latency_480x320": [
            {"threads": 1, "median_s": 4.2, "min_s": 3.9, "cores": 2, "other_processes_busy_cores": 1.25}
        ],
    }
    card = model_card(report)
    assert "**28.12 dB / 0.901**" in card and "26.44 dB / 0.840" in card and "37.66 dB / 0.980" in card
    assert "**no**" in card and "2400 steps" in card and "median 4.20 s" in card
    assert "other processes kept 1.25 of 2 cores busy meanwhile" in card
    assert "expert 0 x30, expert 2 x15" in card and "`abc123`" in card
    assert "research-use" in card
    assert "--tta" not in card  # no self-ensemble column unless it was measured
    report["evaluation"]["rain100l"]["self_ensemble"] = {"x2": {"psnr_y": 28.456, "ssim_y": 0.9034}}
    card = model_card(report)
    assert "| `--tta x2` (2x time) |" in card
    assert "| **28.12 dB / 0.901** | 28.46 dB / 0.903 | 37.66 dB / 0.980 |" in card


def test_model_card_lists_every_stage_of_a_warm_started_run() -> None:
    stage1 = {
        "file": "default.safetensors",
        "step": 4312,
        "elapsed_s": 3600,
        "shared_expert_copied": 2512,
        "recipe": {"batch": 4, "patch": 64, "lr": 0.001, "shared_warmup": 0.7, "procedural_rain": 0.0},
    }
    report = {
        "model": "clip-rpn-edge",
        "params": 5_076_950,
        "bytes": 20_429_016,
        "git_commit": "def456",
        "provenance": {
            "clip_pretrained": False,
            "step": 9000,
            "elapsed_s": 7380,
            "init_from": stage1,
            "processes": 2,
            "device": "cuda (NVIDIA H100 80GB HBM3)",
            "recipe": {
                "batch": 8,
                "patch": 96,
                "lr": 0.0005,
                "shared_warmup": 0.0,
                "procedural_rain": 0.5,
                "misroute": 0.2,
            },
            "router": {"method": "fit"},
        },
        "evaluation": {
            "rain100l": {
                "pairs": 45,
                "model": {"psnr_y": 38.0, "ssim_y": 0.981},
                "rainy_input": {"psnr_y": 26.44, "ssim_y": 0.84},
            }
        },
        "cpu_latency_480x320": [{"threads": 1, "median_s": 1.0, "min_s": 0.9}],
    }
    card = model_card(report)
    assert "in 2 stage(s)" in card
    assert "load of other processes was not measured" in card  # an older report: no claim
    assert "stage 1: " in card and "4312 steps" in card and "60 min" in card and "until step 2512" in card
    assert "stage 2 (warm start" in card and "9000 steps" in card and "123 min" in card
    assert "--patch 96" in card and "--procedural-rain 0.5" in card and "--misroute 0.2" in card
    # The DDP stage says how it was launched; the single-process stage does not.
    assert card.count("torchrun --nproc-per-node 2") == 1 and "`edgerain train --model" in card
    assert "--misroute" not in card.split("stage 2 (warm start")[0]
    # Stages name their device where the checkpoint recorded it.
    assert "123 min, on cuda (NVIDIA H100 80GB HBM3)" in card and "60 min, device not recorded" in card
    # Above PReNet, the card does not claim a gap.
    assert "gap to PReNet" not in card


def _trained_router(**extra: object) -> dict[str, object]:
    """The router record `edgerain calibrate-router` writes."""
    return {
        "method": "CLIP image tower trained with a linear head",
        "tower_trained": True,
        "steps": 1500,
        "images_per_class": 1500,
        "regret_weight": 0.2,
        "heldout": {"accuracy": 0.74, "mean_regret_db": 0.86},
        **extra,
    }


def _card_with_router(router: dict[str, object]) -> str:
    """The model card of a minimal report whose checkpoint carries this router record."""
    return model_card(
        {
            "model": "clip-rpn-edge",
            "params": 5_076_950,
            "bytes": 20_429_016,
            "git_commit": "0a1",
            "provenance": {"clip_pretrained": False, "step": 10, "recipe": {"batch": 4}, "router": router},
            "evaluation": {},
            "cpu_latency_480x320": [],
        }
    )


def test_model_card_describes_a_trained_router_tower() -> None:
    router = _trained_router(heldout_before={"accuracy": 0.66, "mean_regret_db": 1.33})
    card = _card_with_router(router)
    assert "`edgerain calibrate-router`: 1500 steps" in card and "regret weight 0.2" in card
    assert "accuracy 0.74 (was 0.66" in card and "0.86 dB (was 1.33)" in card
    assert "then trained as the router" in card


def test_model_card_describes_a_feature_stats_head_on_a_trained_tower() -> None:
    router = {
        "method": "linear head fitted by logistic regression on the channel means and standard deviations",
        "head": "feature-stats",
        "features": 1392,
        "images_per_class": 1000,
        "l2": 0.01,
        "heldout_accuracy": 0.81,
        "heldout_accuracy_before": 0.74,
        "tower_trained": True,
    }
    card = _card_with_router(router)
    assert "`edgerain calibrate-router --head feature-stats`: 1000 synthetic views per class" in card
    assert "1392 statistics" in card and "accuracy 0.81 (was 0.74" in card
    assert "then trained as the router" in card  # the tower an earlier calibration trained is kept


def test_model_card_names_a_single_class_stage_and_a_kept_router() -> None:
    router = _trained_router(kept_from_init=True)
    parent = {"file": "routed.safetensors", "step": 479, "recipe": {"batch": 32, "patch": 128, "lr": 0.0002}}
    recipe = {"batch": 8, "patch": 96, "lr": 0.0001, "rain_classes": ["light"], "init": "x", "calibrate_per_class": 0}
    report = {
        "model": "clip-rpn-edge",
        "params": 5_076_950,
        "bytes": 20_429_016,
        "git_commit": "0a2",
        "provenance": {"clip_pretrained": False, "step": 4800, "recipe": recipe, "router": router, "init_from": parent},
        "evaluation": {},
        "cpu_latency_480x320": [],
    }
    card = model_card(report)
    last = card.split("stage 2 (warm start")[1]
    assert "--rain-classes light --calibrate-per-class 0" in last
    assert "--rain-classes" not in card.split("stage 2 (warm start")[0]
    assert "which kept it (`--calibrate-per-class 0`)" in card
    assert "--route-by" not in card  # label routing, the default, goes unsaid
    report["provenance"]["recipe"] = {**recipe, "rain_classes": None, "route_by": "router"}
    last = model_card(report).split("stage 2 (warm start")[1]
    assert "--lr 0.0001 --procedural-rain 0.0 --route-by router --calibrate-per-class 0 ..." in last
    assert "--crossing-rain" not in card
    report["provenance"]["recipe"] = {**recipe, "rain_classes": None, "route_by": "router", "crossing_rain": 0.5}
    last = model_card(report).split("stage 2 (warm start")[1]
    assert "--procedural-rain 0.0 --crossing-rain 0.5 --route-by router" in last
    assert "--noise-rain" not in card
    report["provenance"]["recipe"] = {**recipe, "rain_classes": None, "procedural_rain": 0.5, "noise_rain": 0.6}
    last = model_card(report).split("stage 2 (warm start")[1]
    assert "--procedural-rain 0.5 --noise-rain 0.6 --calibrate-per-class 0" in last
    assert "--noise-heavy" not in card
    report["provenance"]["recipe"] = {**recipe, "rain_classes": None, "procedural_rain": 0.5, "noise_heavy": 0.4}
    last = model_card(report).split("stage 2 (warm start")[1]
    assert "--procedural-rain 0.5 --noise-heavy 0.4 --calibrate-per-class 0" in last


def test_model_card_gives_the_decision_offsets_and_what_they_did() -> None:
    offsets = {
        "offsets": [0.0, -1.25, 0.5],
        "pairs_per_class": 100,
        "cross_validated": {
            "before": {"routed_psnr_y": 30.9},
            "after": {"routed_psnr_y": 31.1234},
            "oracle_psnr_y": 31.6,
        },
    }
    report = {
        "model": "clip-rpn-edge",
        "params": 5_076_950,
        "bytes": 20_429_016,
        "git_commit": "0a3",
        "provenance": {"clip_pretrained": False, "step": 1, "recipe": {}, "router": _trained_router()},
        "evaluation": {},
        "cpu_latency_480x320": [],
    }
    assert "Decision offsets" not in model_card(report)
    report["provenance"]["router"] = _trained_router(decision_offsets=offsets)  # type: ignore[index]
    card = model_card(report)
    assert "Decision offsets [0.0, -1.25, 0.5]" in card and "--offsets-only`, 100 synthetic pairs per class" in card
    assert (
        "routed Y-PSNR on those pairs 30.90 -> 31.12 dB, two-fold cross-validated (best expert per pair 31.60)" in card
    )
    assert "fitted on the final experts" in card
    carried = {**offsets, "carried_over": True}
    report["provenance"]["router"] = _trained_router(decision_offsets=carried)  # type: ignore[index]
    assert "fitted on the experts of an earlier stage and carried over" in model_card(report)


class _Identity(torch.nn.Module):
    """The cheapest network ``cpu_latency`` can time (a copy, so the output is a new tensor)."""

    pad_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0


def test_cpu_latency_measures_what_other_processes_used() -> None:
    from edgerain.train import report

    lat = report.cpu_latency(_Identity(), height=16, width=24, repeats=3)
    assert lat["size"] == "24x16" and lat["repeats"] == 3 and lat["min_s"] <= lat["median_s"]
    # An identity on 16x24 pixels runs for microseconds: far too short to count clock ticks, and
    # not Linux cannot count them at all; either way said so, not guessed.
    assert lat["other_processes_busy_cores"] is None


def test_cpu_latency_gives_no_estimate_from_a_window_of_a_few_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from edgerain.train import report

    # 10 ms of wall time in all, across which /proc/stat moved by one 10 ms tick on each of 4 cores.
    ticks = iter([0.0, 0.001, 0.002, 0.003, 0.004, 0.01])
    clock = types.SimpleNamespace(perf_counter=lambda: next(ticks), process_time=iter([1.0, 1.0]).__next__)
    monkeypatch.setattr(report, "time", clock)
    monkeypatch.setattr(report, "_system_busy_seconds", iter([100.0, 100.04]).__next__)
    monkeypatch.setattr(report.os, "cpu_count", lambda: 4)
    lat = report.cpu_latency(_Identity(), height=8, width=8, repeats=2)
    assert lat["other_processes_busy_cores"] is None


def test_cpu_latency_never_reports_more_busy_cores_than_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from edgerain.train import report

    # A 5 s window in which the counters claim 30 s of other work on 2 cores (clock skew between cores).
    ticks = iter(range(100))
    clock = types.SimpleNamespace(perf_counter=lambda: float(next(ticks)), process_time=iter([0.0, 0.0]).__next__)
    monkeypatch.setattr(report, "time", clock)
    monkeypatch.setattr(report, "_system_busy_seconds", iter([100.0, 130.0]).__next__)
    monkeypatch.setattr(report.os, "cpu_count", lambda: 2)
    lat = report.cpu_latency(_Identity(), height=8, width=8, repeats=2)
    assert lat["other_processes_busy_cores"] == 2.0


def test_cpu_latency_counts_only_the_cpu_time_of_other_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from edgerain.train import report

    # A clock that advances one second per reading; the system was busy 8 s, this process 3 s of them.
    ticks = iter(range(100))
    clock = types.SimpleNamespace(perf_counter=lambda: float(next(ticks)), process_time=iter([10.0, 13.0]).__next__)
    monkeypatch.setattr(report, "time", clock)
    monkeypatch.setattr(report, "_system_busy_seconds", iter([100.0, 108.0]).__next__)

    lat = report.cpu_latency(_Identity(), height=8, width=8, repeats=2)
    # Readings: start 0, two runs (1-2, 3-4), end 5: other processes used (8 - 3) / 5 = 1.0 cores.
    assert lat["other_processes_busy_cores"] == 1.0 and lat["median_s"] == 1.0


def test_model_card_names_the_router_data_and_a_joined_router() -> None:
    data = {"procedural_fraction": 0.5, "noise_fraction": 0.8, "noise_heavy_fraction": 0.6}
    router = _trained_router(data=data, kept_from_init=True, router_from={"file": "router15.safetensors"})
    report = {
        "model": "clip-rpn-edge",
        "params": 5_076_950,
        "bytes": 20_429_016,
        "git_commit": "0a4",
        "provenance": {"clip_pretrained": False, "step": 1, "recipe": {}, "router": router},
        "evaluation": {},
        "cpu_latency_480x320": [],
    }
    card = model_card(report)
    assert "50% procedural streaks, of which 80% of the light and moderate and 60% of the heavy" in card
    assert "`calibrate-router --router-from router15.safetensors`" in card
    assert "which kept it" not in card  # the joined router was not kept from the last stage's init
    report["provenance"]["router"] = _trained_router(data={"procedural_fraction": 0.5})  # type: ignore[index]
    card = model_card(report)
    assert "grown from noise" not in card and "--router-from" not in card
