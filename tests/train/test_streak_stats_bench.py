"""bench/streak_stats.py: residual statistics that tell wide from thin and long from short streaks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from testutil import load_bench_script

from edgerain.data.io import save_image
from edgerain.data.streaks import write_pair_folder
from edgerain.data.synth import RainParams, rain_layer


def _folder(root: Path, width: float, length: float) -> Path:
    """Vertical streaks of one width and length on a flat grey photo."""
    clean = np.full((96, 96, 3), 0.4, np.float32)
    for i in range(3):
        params = RainParams(density=0.004, length=length, angle=0.0, width=width, intensity=0.5, blend="additive")
        streaks = rain_layer(96, 96, params, np.random.default_rng(i))
        save_image(root / "rain" / f"{i:03d}.png", np.clip(clean + streaks[..., None], 0, 1))
        save_image(root / "norain" / f"{i:03d}.png", clean)
    return root


def test_statistics_follow_streak_width_and_length(tmp_path: Path) -> None:
    bench = load_bench_script("streak_stats")
    thin, wide = _folder(tmp_path / "thin", 0.0, 30), _folder(tmp_path / "wide", 2.5, 30)
    short = _folder(tmp_path / "short", 0.0, 6)
    out = tmp_path / "stats.json"
    assert bench.main(["--data", str(thin), "--data", str(wide), "--data", str(short), "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert res[str(thin)]["pairs"] == 3
    assert res[str(wide)]["across_half_width_px"] > res[str(thin)]["across_half_width_px"]
    assert res[str(thin)]["along_half_length_px"] > res[str(short)]["along_half_length_px"]
    assert 0 < res[str(thin)]["mean_residual"] < res[str(wide)]["mean_residual"]
    assert res[str(thin)]["near_white"] < res[str(wide)]["near_white"]


def test_class_filter_and_refusals(train_root: Path, tmp_path: Path, capsys) -> None:
    bench = load_bench_script("streak_stats")
    pairs = write_pair_folder(tmp_path / "pairs", 6, 3, 32, train_root, None, progress=False)
    labels = [row.split(",")[1] for row in (pairs / "labels.csv").read_text().splitlines()[1:]]
    out = tmp_path / "s.json"
    assert bench.main(["--data", f"{pairs}@{labels[0]}", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][f"{pairs}@{labels[0]}"]["pairs"] == labels.count(labels[0])
    plain = _folder(tmp_path / "plain", 0.0, 10)
    assert bench.main(["--data", f"{plain}@heavy", "--out", str(tmp_path / "x.json")]) == 2
    assert bench.main(["--data", f"{pairs}@drizzle", "--out", str(tmp_path / "y.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "needs the labels.csv" in err[0] and "no rain/norain pairs" in err[1]
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
