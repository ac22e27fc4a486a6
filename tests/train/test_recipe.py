"""scripts/train_default.sh wires its stages together: run with stand-ins for edgerain and torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "scripts" / "train_default.sh"

# Records each call (one line, arguments separated by spaces) and writes what the real command would.
FAKE_EDGERAIN = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    echo "edgerain $*" >> "$CALLS"
    out=""; prev=""
    for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done
    case $1 in
      synth) mkdir -p "$out" ;;
      train) mkdir -p "$out" && touch "$out/last.safetensors" ;;
      calibrate-router) [[ -f $2 ]] || { echo "missing $2" >&2; exit 2; }; touch "$out" ;;
      *) echo "unexpected $1" >&2; exit 2 ;;
    esac
    """
)
FAKE_TORCHRUN = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    while [[ $1 != -m ]]; do shift; done
    shift 2  # -m edgerain.cli
    echo -n "torchrun " >> "$CALLS"
    exec "$(dirname "$0")/edgerain" "$@"
    """
)
# The recipe asks ${EDGERAIN%edgerain}python whether torch sees a CUDA GPU: here it never does.
FAKE_PYTHON = "#!/usr/bin/env bash\nexit 1\n"

# The last training stage of the recipe: stage 13 and its repeats, one per `light_minutes` budget,
# end here. Pinned, not read from the script, so that a dropped budget fails the test.
LAST_STAGE = 25


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_recipe_runs_every_stage_from_the_one_before(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("edgerain", FAKE_EDGERAIN), ("torchrun", FAKE_TORCHRUN), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    run, calls = tmp_path / "run", tmp_path / "calls.txt"
    env = {
        **os.environ,
        "RUN": str(run),
        "EDGERAIN": str(bin_dir / "edgerain"),
        "TORCHRUN": str(bin_dir / "torchrun"),
        "CALLS": str(calls),
    }
    res = subprocess.run(["bash", str(RECIPE)], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "skipping GPU stages 6-7" in res.stderr
    lines = calls.read_text().splitlines()
    trains = [line for line in lines if " train " in f" {line} "]
    outs = [line.split("--out ")[1].split()[0] for line in trains]
    assert [Path(o).name for o in outs] == [
        f"stage{i}" for i in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12, *range(13, LAST_STAGE + 1))
    ]
    # Every warm start names the checkpoint its predecessor wrote; the router is fitted on stage 5
    # (no GPU here) before the single-class stages, which keep it.
    inits = [line.split("--init ")[1].split()[0] for line in trains[1:]]
    assert inits[:4] == [f"{run}/stage{i}/last.safetensors" for i in (1, 2, 3, 4)]
    router, final = (line for line in lines if "calibrate-router" in line)
    assert f"calibrate-router {run}/stage5/last.safetensors --out {run}/routed.safetensors" in router
    assert "--offsets-per-class 0" in router  # the experts change after it
    assert lines.index(router) < lines.index(trains[5])
    assert inits[4:] == [f"{run}/routed.safetensors"] + [
        f"{run}/stage{i}/last.safetensors" for i in range(8, LAST_STAGE)
    ]
    assert trains[5].startswith("torchrun ") and "--rain-classes light --calibrate-per-class 0" in trains[5]
    # Stages 9-12 train every expert on the kept router's choices, on crops the views can hold;
    # stage 10 restarts the schedule at a lower peak, stage 11 grows part of the lighter rain from noise.
    for train, lr in ((trains[6], "1e-4"), (trains[7], "7e-5"), (trains[8], "1e-4"), (trains[9], "1e-4")):
        assert train.startswith("torchrun ") and "--route-by router --calibrate-per-class 0" in train
        assert "--patch 128" in train and f"--lr {lr} " in train and "--misroute" not in train
    assert "--noise-rain" not in " ".join(trains[:8]) and "--procedural-rain 0.5 --noise-rain 0.6" in trains[8]
    # Stage 12 grows more of it from noise, heavy rain included.
    assert "--noise-heavy" not in " ".join(trains[:9]) and "--noise-rain 0.8 --noise-heavy 0.6" in trains[9]
    # Stage 13 trains the light-rain expert alone again (pairs sent by label), more of it noise-grown.
    # Stages 14 to LAST_STAGE (one per light_minutes budget) repeat it with other seeds.
    for train, stage in zip(trains[10:], range(13, LAST_STAGE + 1), strict=True):
        seed = 141 + 10 * (stage - 13)
        assert train.startswith("torchrun ") and "--route-by" not in train and f"--seed {seed} " in train
        assert "--procedural-rain 0.6 --noise-rain 0.8 --rain-classes light --calibrate-per-class 0" in train
    # Last, on the final experts: the router's head refitted on feature statistics (the tower kept),
    # then the decision offsets; this writes the default.
    assert lines.index(final) > lines.index(trains[-1])
    assert f"calibrate-router {run}/stage{LAST_STAGE}/last.safetensors --out {run}/default.safetensors" in final
    assert "--head feature-stats --per-class 1000 --offsets-per-class 300" in final and "--noise-heavy 0.6" in final
    assert "--offsets-only" not in final
    assert (run / "default.safetensors").is_file()
    # Every stage finished: a second run does nothing but say where the result is.
    calls.unlink()
    res = subprocess.run(["bash", str(RECIPE)], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 0 and not calls.exists(), res.stderr
