"""`edgerain eval` and `edgerain demo-data` through the CLI: the table, the CSV and the JSON summary."""

from __future__ import annotations

import csv
import json

import pytest

from edgerain.cli import main
from edgerain.data.io import load_image
from edgerain.data.pairs import find_pairs
from edgerain.eval.metrics import psnr, ssim


def _read(out):
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((out / "summary.json").read_text())


def test_eval_tiny_model(pair_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--model", "rdmc-tiny", "--data", str(pair_folder), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "rainy input" in captured.out and "rdmc-tiny" in captured.out and "UNTRAINED" in captured.out
    rows, summary = _read(out)
    assert [r["name"] for r in rows] == ["001", "002", "003"]
    assert summary["model"] == "rdmc-tiny" and summary["count"] == 3 and summary["trained"] is False
    assert summary["weights"] == "none (random initialisation)"
    for key in ("psnr_y", "ssim_y", "psnr_rgb"):
        assert summary[key] == pytest.approx(sum(float(r[key]) for r in rows) / 3, abs=1e-5)
    # The baseline is the rainy input scored directly.
    pairs = find_pairs(pair_folder)
    first_rainy, first_clean = load_image(pairs[0].rain), load_image(pairs[0].norain)
    assert float(rows[0]["input_psnr_y"]) == pytest.approx(psnr(first_rainy, first_clean), abs=1e-5)
    assert float(rows[0]["input_ssim_y"]) == pytest.approx(ssim(first_rainy, first_clean), abs=1e-5)
    assert f"{summary['input']['psnr_y']:.2f}" in captured.out
    assert not (out / "images").exists() and summary["images"] is None
    assert summary["tta"] == "none"


def test_eval_self_ensemble_is_recorded(pair_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--model", "rdmc-tiny", "--data", str(pair_folder), "--no-progress", "--tta", "x2"]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "self-ensemble x2" in captured.out
    rows, summary = _read(out)
    assert summary["tta"] == "x2"
    assert (
        main(
            [
                "eval",
                "--model",
                "rdmc-tiny",
                "--data",
                str(pair_folder),
                "--no-progress",
                "--out",
                str(tmp_path / "plain"),
            ]
        )
        == 0
    )
    plain, _ = _read(tmp_path / "plain")
    assert [r["psnr_y"] for r in rows] != [r["psnr_y"] for r in plain]


def test_eval_default_model_with_images(pair_folder, tmp_path, capsys):
    from edgerain.models.default import DEFAULT_WEIGHTS

    out = tmp_path / "eval"
    rc = main(["eval", "--data", str(pair_folder), "--out", str(out), "--save-images", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows, summary = _read(out)
    assert len(rows) == 3 and summary["count"] == 3
    assert sorted(p.name for p in (out / "images").iterdir()) == ["001.png", "002.png", "003.png"]
    if not DEFAULT_WEIGHTS.is_file():
        assert summary["trained"] is False and summary["model"] == "clip-rpn-tiny"
        assert "UNTRAINED" in captured.out


def test_eval_with_trained_checkpoint(pair_folder, tmp_path, capsys, tiny_model_factory):
    from edgerain.models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tiny_model_factory("rdmc-tiny"), tmp_path / "w.safetensors", {"trained": True})
    rc = main(
        ["eval", "--weights", str(ckpt), "--data", str(pair_folder), "--out", str(tmp_path / "e"), "--no-progress"]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    _, summary = _read(tmp_path / "e")
    assert summary["weights"] == str(ckpt) and summary["trained"] is True
    assert "UNTRAINED" not in captured.out


def test_demo_data_then_eval(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "pairs"), "--count", "2", "--seed", "5"]) == 0
    assert "wrote 2 pairs" in capsys.readouterr().out
    pairs = find_pairs(tmp_path / "pairs")
    assert [p.size for p in pairs] == [(320, 240), (320, 240)]
    assert (tmp_path / "pairs" / "labels.csv").is_file()
