"""A lab tool's command line (the benchmarks, the profiler) says a LabError in one line
and exits 1: `python -m mosqit_failover.lab.scenarios.bench` with a stale package
printed a traceback ending in "run make deb"."""

from __future__ import annotations

import pytest

from mosqit_failover.lab.control import run_tool
from mosqit_failover.lab.netns import LabError


def test_a_lab_error_is_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    def stale() -> int:
        raise LabError("dist/mosqit-failover_0.1.0_all.deb is older than x.py: run make deb")

    assert run_tool("bench", stale) == 1
    err = capsys.readouterr().err
    assert err == "bench: dist/mosqit-failover_0.1.0_all.deb is older than x.py: run make deb\n"
    assert run_tool("bench", lambda: 0) == 0


def test_other_errors_are_not_hidden() -> None:
    def broken() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_tool("bench", broken)
