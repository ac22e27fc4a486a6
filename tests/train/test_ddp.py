"""``edgerain train`` under torchrun: two CPU processes (gloo) match one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgerain.cli import main
from edgerain.models.checkpoint import load_checkpoint, read_metadata


def _edgerain_script() -> str:
    script = Path(sys.executable).parent / "edgerain"
    if not script.is_file():
        pytest.skip("the edgerain console script is not installed beside this Python")
    return str(script)


@pytest.mark.parametrize(
    "routing",
    [
        # Misrouting is drawn per sample index, so both ranks' slices agree with the single process.
        ["--misroute", "0.5"],
        # Routed by the router that rank 0 calibrated and broadcast: every rank must route alike.
        ["--route-by", "router"],
    ],
    ids=["misroute", "route-by-router"],
)
def test_two_gloo_processes_match_one(train_root: Path, tmp_path: Path, routing: list[str]) -> None:
    args = [
        "train",
        "--model",
        "clip-rpn-tiny",
        "--data",
        f"synth:{train_root}",
        "--iters",
        "2",
        "--batch",
        "2",
        "--patch",
        "16",
        "--warmup-iters",
        "1",
        "--calibrate-per-class",
        "2",
        "--threads",
        "1",
        "--no-progress",
        *routing,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            _edgerain_script(),
            *args,
            "--out",
            str(tmp_path / "ddp"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2
    # The single-process reference runs in this process (saves a second interpreter start-up).
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    assert read_metadata(tmp_path / "ddp" / "last.safetensors")["provenance"]["processes"] == 2
    a = load_checkpoint(tmp_path / "ddp" / "last.safetensors").state_dict()
    b = load_checkpoint(tmp_path / "single" / "last.safetensors").state_dict()
    assert a.keys() == b.keys()
    # Same samples, gradients averaged over the ranks: the same weights up to float reordering.
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-5, worst
