"""The modules marked pure (conftest.PURE_MODULES) need no third-party library: the
second unit pass of `make test`, on PyPI's libraries, leaves them out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.conftest import PURE_MODULES

ROOT = Path(__file__).resolve().parents[2]

# imports every pure module, and runs a three-node scenario with a fence, while any
# import of a library the agent takes from Debian or PyPI fails
BLOCKED = """
import importlib, importlib.abc, sys
LIBRARIES = ("icmplib", "paramiko", "scapy", "prometheus_client", "pyfuse3")

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LIBRARIES:
            raise ImportError(f"{name}: a pure test module must not need it")
        return None

sys.meta_path.insert(0, Refuse())
for name in sys.argv[1:]:
    importlib.import_module(f"tests.unit.{name}")
from mosqit_failover.sim_scenarios import run
world, problems = run("three-hung-cut-off", seed=1)
assert not problems, problems
print("ok")
"""


def test_the_pure_modules_import_no_library_and_the_simulation_runs_without() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, *sorted(PURE_MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_every_pure_module_exists() -> None:
    here = Path(__file__).parent
    missing = [name for name in PURE_MODULES if not (here / f"{name}.py").is_file()]
    assert not missing, missing
