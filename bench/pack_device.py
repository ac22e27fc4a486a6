"""Pack what a training run on the lent GPU machine needs and the working tree lacks.

The device tool sends the working tree plus the ignored paths named in ``carry``, 64 MiB in all.
The training root (../shared/data/train, about 117 MB) does not fit beside the tree, so this writes
a deterministic subset of it to ``--out`` (default ``.gl/train``, ignored by git): the first of the
five variants of every one of the 165 Garg-Nayar streak ids, then the same share of every clean set
(photos taken in name order, each set's k-th of n at position k/n, the lowest positions first) while
they fit the budget, so that the mix of sets stays what the full root draws. The budget is the limit minus the tree, the wheels
already in ``.whl/`` and a margin. ``SUBSET.json`` there says what was kept; a training run's
provenance records the counts it saw.

With ``--wheels`` it first downloads, for the device's Python 3.12, the wheels of the packages
edgerain needs that the device image lacks (open_clip_torch and its text-side dependencies), at the
versions installed here; bench/gpu_train.sh installs them there.

    .venv/bin/python bench/pack_device.py --wheels            # then: run(..., carry=[".gl", ".whl"])
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20
# Needed by edgerain, missing from the device image (.library/device/KINDS.md lists what it holds).
DEVICE_WHEELS = ("open_clip_torch", "ftfy", "wcwidth")


def tree_bytes(repo: Path) -> int:
    """Bytes of what the device tool sends without ``carry``: tracked and untracked-not-ignored files."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def download_wheels(dest: Path) -> list[str]:
    """Wheels of DEVICE_WHEELS at this environment's versions, for CPython 3.12 on manylinux x86-64."""
    from importlib.metadata import version

    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in DEVICE_WHEELS]
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "any")]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version=3.12"]
    subprocess.run([*cmd, "--implementation=cp", *platforms, "-d", str(dest), *pins], check=True)
    return pins


def pack_train_subset(root: Path, out: Path, budget: int) -> dict[str, Any]:
    """Copy every streak id's first variant, then an equal share of every clean set, within ``budget`` bytes."""
    from edgerain.data.streaks import CLEAN_SETS, STREAK_SET
    from edgerain.errors import EdgerainError
    from edgerain.utils import atomic_path

    layers = sorted((root / STREAK_SET / "layers").glob("*.png"))
    if not layers:
        raise EdgerainError(f"{root}: no {STREAK_SET}/layers/*.png (not a training root)")
    first: dict[str, Path] = {}
    for path in layers:  # "<id>-<variant>.png"; sorted, so the first seen is the lowest variant
        first.setdefault(path.stem.split("-")[0], path)
    streaks = list(first.values())
    used = sum(p.stat().st_size for p in streaks)
    if used > budget:
        raise EdgerainError(
            f"the streak layers alone take {used / MIB:.1f} MiB, over the {budget / MIB:.1f} MiB left for data"
        )
    photos = {s: sorted((root / s / "clean").glob("*")) for s in CLEAN_SETS}
    # Each set's k-th photo of n at (k + 0.5) / n: taking the lowest positions first keeps the same
    # share of every set, whatever their sizes.
    order = sorted(((k + 0.5) / len(paths), s, path) for s, paths in photos.items() for k, path in enumerate(paths))
    kept: dict[str, list[Path]] = {s: [] for s in CLEAN_SETS}
    for _, s, path in order:
        if used + path.stat().st_size <= budget:
            kept[s].append(path)
            used += path.stat().st_size
    if not any(kept.values()):
        raise EdgerainError(f"no clean photo fits the {budget / MIB:.1f} MiB left for data")
    record = {
        "source": str(root),
        "budget_bytes": budget,
        "bytes": used,
        "streak_layers": {"kept": len(streaks), "of": len(layers), "rule": "the first variant of every streak id"},
        "clean": {s: {"kept": len(kept[s]), "of": len(photos[s])} for s in CLEAN_SETS},
    }
    with atomic_path(out) as tmp:
        for path in streaks:
            (tmp / STREAK_SET / "layers").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / STREAK_SET / "layers" / path.name)
        for s, paths in kept.items():
            for path in paths:
                (tmp / s / "clean").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp / s / "clean" / path.name)
        (tmp / "SUBSET.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="training root (default: $EDGERAIN_TRAIN_DATA or ../shared/data/train)")
    ap.add_argument("--out", type=Path, default=REPO / ".gl" / "train", help="subset folder (replaced)")
    ap.add_argument("--limit-mib", type=float, default=64.0, help="what the device tool sends at most")
    ap.add_argument("--margin-mib", type=float, default=2.0, help="kept free for files written before the call")
    ap.add_argument("--wheels", action="store_true", help=f"download the wheels of {', '.join(DEVICE_WHEELS)} first")
    args = ap.parse_args(argv)

    from edgerain.data.streaks import default_train_root
    from edgerain.errors import EdgerainError

    try:
        if args.wheels:
            print("wheels:", ", ".join(download_wheels(REPO / ".whl")))
        fixed = tree_bytes(REPO) + folder_bytes(REPO / ".whl")
        budget = int((args.limit_mib - args.margin_mib) * MIB) - fixed
        root = args.root or default_train_root()
        if not root.is_dir():
            raise EdgerainError(f"{root}: no such training root")
        record = pack_train_subset(root, args.out, budget)
    except (EdgerainError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    clean = ", ".join(f"{s} {v['kept']}/{v['of']}" for s, v in record["clean"].items())
    print(
        f"{args.out}: {record['bytes'] / MIB:.1f} MiB (tree and wheels {fixed / MIB:.1f} MiB); "
        f"streak layers {record['streak_layers']['kept']}/{record['streak_layers']['of']}; clean {clean}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
