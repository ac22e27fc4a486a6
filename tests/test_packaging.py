"""A wheel (not only an editable checkout) carries everything the commands read at run time."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_targets_weights_and_clip_configs(tmp_path: Path) -> None:
    env = {**os.environ, "EDGERAIN_NO_EXT": "1"}
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("edgerain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    builtin = {Path(n).name for n in names if n.startswith("edgerain/builtin_targets/") and n.endswith(".json")}
    assert builtin == {p.name for p in (ROOT / "targets").glob("*.json")}
    assert "edgerain/weights/default.safetensors" in names and "edgerain/weights/MODEL_CARD.md" in names
    assert any(n.startswith("edgerain/models/clip_configs/") for n in names)
    assert any(n.startswith("edgerain/quant/") for n in names) and any(
        n.startswith("edgerain/triton_kernels/") for n in names
    )
    # Unpacked away from the checkout, the package finds its built-in targets inside itself.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = "import edgerain.targets as t; print(t.BUILTIN_DIR); print(t.get_target('jetson-orin-nx').name)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()  # fmt: skip
    assert Path(out[0]) == site / "edgerain" / "builtin_targets" and out[1] == "jetson-orin-nx"
