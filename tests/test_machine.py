"""edgerain.machine: the CPU name and commit that every report records."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess

import pytest

from edgerain.machine import cpu_name, git_commit

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2

processor\t: 1
model name\t: AMD EPYC
"""

# What an aarch64 kernel (Jetson Orin's among them) writes: no model name line.
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
"""


def test_cpu_name_reads_the_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(X86_CPUINFO)
    assert cpu_name(info) == "AMD EPYC"


@pytest.mark.parametrize("text", [ARM_CPUINFO, None], ids=["no-model-name", "unreadable"])
def test_cpu_name_falls_back_to_the_platform(tmp_path, text):
    info = tmp_path / "cpuinfo"
    if text is not None:
        info.write_text(text)
    assert cpu_name(info) == (platform.processor() or platform.machine() or "unknown")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_of_a_repository_and_outside_one(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGERAIN_COMMIT", raising=False)
    assert git_commit(tmp_path) is None
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git_commit(tmp_path)
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
    assert commit == head.stdout.strip()


def test_edgerain_commit_overrides_git(tmp_path, monkeypatch):
    # The lent GPU machine gets the working tree without .git: the launcher passes the commit.
    monkeypatch.setenv("EDGERAIN_COMMIT", "0123abc")
    assert git_commit(tmp_path) == "0123abc"
