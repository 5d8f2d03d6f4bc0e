"""Run an agent-side script in a private mount namespace (``unshare -m``), where it may
mount and unmount freely; what it prints last (one JSON line) is what it saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role

REPOSITORY = Path(__file__).resolve().parents[2]

needs_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
    reason="mounting in a private mount namespace needs root and /dev/fuse",
)

OPERATORS_DISK = r"""
import asyncio, json, os, subprocess, sys
from pathlib import Path
directory, standby, state, runtime = sys.argv[1:5]
subprocess.run(["mount", "-t", "tmpfs", "operators-disk", directory], check=True)
Path(directory, "precious").write_text("on the operator's own file system")
"""
"""A script's start: the synced directory is the operator's own disk (a tmpfs) with a
file on it."""


def run_in_mount_namespace(tmp_path: Path, script: str, *extra: str) -> dict[str, Any]:
    """``script`` gets argv DIRECTORY STANDBY STATE RUNTIME *extra: the synced directory,
    the standby's copy, its state file (epoch 7, STANDBY) and the agent's runtime
    directory, each made fresh under ``tmp_path``."""
    directory, standby, runtime = tmp_path / "data", tmp_path / "standby", tmp_path / "run"
    for path in (directory, standby, runtime):
        path.mkdir()
    state = StateFile(tmp_path / "state.json")
    state.save(7, Role.STANDBY)
    argv = ["unshare", "-m", "--propagation", "private", "--", sys.executable, "-c", script]
    argv += [str(directory), str(standby), str(state.path), str(runtime), *extra]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=90, check=False, cwd=REPOSITORY
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return seen
