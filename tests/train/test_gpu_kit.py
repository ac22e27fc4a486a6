"""bench/pack_device.py (the data subset that travels to the GPU machine) and bench/gpu_train.sh's refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testutil import load_bench_script

from edgerain.errors import EdgerainError

REPO = Path(__file__).resolve().parents[2]


def _root_with_variants(train_root: Path, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(train_root, tmp_path / "root"))
    layers = root / "streaks_Garg06" / "layers"
    for path in sorted(layers.glob("*-4.png")):  # a second variant of every id
        shutil.copyfile(path, layers / path.name.replace("-4", "-5"))
    return root


def test_subset_keeps_every_streak_id_once_then_an_equal_share_of_every_clean_set(
    train_root: Path, tmp_path: Path
) -> None:
    pack = load_bench_script("pack_device")
    root = _root_with_variants(train_root, tmp_path)
    layers = sorted((root / "streaks_Garg06" / "layers").glob("*.png"))
    streak_bytes = sum(p.stat().st_size for p in layers if p.stem.endswith("-4"))
    bsds = sorted((root / "BSDS500_clean" / "clean").iterdir())
    kodak = sorted((root / "Kodak24_clean" / "clean").iterdir())
    # Room for the streaks and two photos: BSDS's first (position 1/4), then Kodak's only (1/2);
    # BSDS's second (3/4) no longer fits.
    budget = streak_bytes + bsds[0].stat().st_size + kodak[0].stat().st_size
    record = pack.pack_train_subset(root, tmp_path / "out", budget)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "streaks_Garg06" / "layers").iterdir()) == [f"{i}-4.png" for i in range(1, 5)]
    assert sorted(p.name for p in (out / "BSDS500_clean" / "clean").iterdir()) == [bsds[0].name]
    assert sorted(p.name for p in (out / "Kodak24_clean" / "clean").iterdir()) == [kodak[0].name]
    assert record["bytes"] <= budget and record["streak_layers"] == {
        "kept": 4,
        "of": 8,
        "rule": "the first variant of every streak id",
    }
    assert json.loads((out / "SUBSET.json").read_text())["clean"]["BSDS500_clean"] == {"kept": 1, "of": 2}
    # The subset is a training root the synthesiser takes.
    from edgerain.data.streaks import RainSynthesizer

    rainy, clean, _ = RainSynthesizer(out).pair(0, 0, 32)
    assert rainy.shape == clean.shape == (32, 32, 3)
    # Packing again replaces the folder; a budget over everything keeps every photo.
    record = pack.pack_train_subset(root, out, 1 << 30)
    assert record["clean"]["BSDS500_clean"] == {"kept": 2, "of": 2}
    with pytest.raises(EdgerainError, match="streak layers alone"):
        pack.pack_train_subset(root, tmp_path / "small", streak_bytes - 1)
    assert not (tmp_path / "small").exists()


def test_pack_command_gives_one_line_errors(train_root: Path, tmp_path: Path) -> None:
    root = _root_with_variants(train_root, tmp_path)
    script = str(REPO / "bench" / "pack_device.py")
    # The tree alone is over a 1 MiB limit: nothing is left for the data.
    res = subprocess.run(
        [sys.executable, script, "--root", str(root), "--out", str(tmp_path / "out"), "--limit-mib", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: the streak layers alone"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    res = subprocess.run(
        [sys.executable, script, "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "no such training root" in res.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_train_refuses_without_a_cuda_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the refusal cannot be seen here")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    res = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_train.sh"), "--lr", "1e-4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"error: bench/gpu_train.sh trains on a CUDA GPU and {sys.executable}'s torch sees none "
        "(on a CPU, run edgerain train itself)"
    )
    assert not (tmp_path / "out").exists()


FAKE_CUDA_PYTHON = """#!/usr/bin/env bash
# Says torch sees a GPU; 'trains' by writing a 20 MB checkpoint and the run files where --out says.
echo "$*" >> "$CALLS"
[[ $1 == -c ]] && exit 0
out=""; prev=""
for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done
mkdir -p "$out" && head -c 20000000 /dev/urandom > "$out/last.safetensors"
echo '{"step": 1}' > "$out/log.jsonl"; echo '{}' > "$out/run.json"
"""


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("split") is None, reason="needs bash, split")
def test_gpu_train_hands_back_the_checkpoint_in_parts_the_device_tool_returns(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(FAKE_CUDA_PYTHON)
    fake.chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 'Fake GPU, 80 GiB'\n")
    (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    data, out, calls = tmp_path / "data", tmp_path / "out", tmp_path / "calls.txt"
    data.mkdir()
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "PYTHON": str(fake),
        "OUT": str(out),
        "RUN": str(tmp_path / "run"),
        "EDGERAIN_TRAIN_DATA": str(data),
        "MINUTES": "7",
        "CALLS": str(calls),
    }
    res = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_train.sh"), "--lr", "1e-4", "--noise-rain", "0.6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    (train,) = (line for line in calls.read_text().splitlines() if " train " in line)
    assert "--init edgerain/weights/default.safetensors" in train and "--time-budget-minutes 7" in train
    assert train.endswith("--no-progress --lr 1e-4 --noise-rain 0.6")  # the caller's options last: they win
    parts = sorted(out.glob("ckpt.part*"))
    assert len(parts) == 2 and all(p.stat().st_size <= 15 * (1 << 20) for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    assert joined == (tmp_path / "run" / "last.safetensors").read_bytes()
    digest = (out / "ckpt.sha256").read_text().split()[0]
    assert digest == hashlib.sha256(joined).hexdigest()
    assert {p.name for p in out.iterdir()} == {
        "ckpt.part0",
        "ckpt.part1",
        "ckpt.sha256",
        "log.jsonl",
        "run.json",
        "device.txt",
    }
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back
