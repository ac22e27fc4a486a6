"""What machine and which commit a measurement came from: recorded with every report and benchmark.

Leaf module (stdlib only): the runtime, training, evaluation, kernel benchmarks and ``quant`` all
import it, so a report names its CPU and commit the same way wherever it is written.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

# The repository a source checkout of edgerain lives in (the package's parent folder).
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) Processor", ...).

    Read from ``cpuinfo`` on Linux, because ``platform.processor()`` is empty there (reports then
    said only "x86_64"); elsewhere ``platform.processor()``, else the architecture.
    """
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            # x86 kernels write "model name"; ARM kernels often write no such line (then: below).
            if sep and key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit(repo: str | Path | None = None) -> str | None:
    """The commit checked out in ``repo`` (default: edgerain's source checkout), None outside git.

    ``EDGERAIN_COMMIT`` overrides it: on the lent GPU machine the working tree arrives without
    ``.git``, so the launching side passes the commit it copied.
    """
    if os.environ.get("EDGERAIN_COMMIT"):
        return os.environ["EDGERAIN_COMMIT"]
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or _SOURCE_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None
