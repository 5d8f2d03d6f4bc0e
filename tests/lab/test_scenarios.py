"""The failure scenarios of scenarios/ against the lab (all but loss-10), the agent as units.

The packet-loss scenarios run for MQ_LOSS_SECONDS (30 s here; `mosqit-failover lab
scenario loss-30` runs them for the full 3 minutes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import deploy, sshkeys
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.scenarios import all_scenarios
from mosqit_failover.lab.scenarios.harness import SYNCED, play
from mosqit_failover.lab.topology import LabPlan

pytestmark = pytest.mark.lab
# loss-10 is left to `mosqit-failover lab scenario loss-10`: 30 s of it tests the rules
# loss-30 tests, at a third of the loss, and the suite must stay under 25 minutes
SCENARIOS = {name: s for name, s in all_scenarios().items() if name != "loss-10"}


@pytest.fixture(scope="module")
def running(lab: Lab, lab_plan: LabPlan) -> Iterator[Probe]:
    os.environ.setdefault("MQ_LOSS_SECONDS", "30")
    sshkeys.setup(lab.nodes, lab_plan)
    sshkeys.install_config(lab.nodes, lab_plan, [SYNCED])
    deploy.start(lab.nodes)
    deploy.wait_pair(lab.nodes, timeout=40)
    probe = Probe(lab_plan, duration=3600)
    try:
        yield probe
    finally:
        probe.stop()
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str, lab: Lab, lab_plan: LabPlan, running: Probe) -> None:
    report = play(lab, lab_plan, running, SCENARIOS[name])
    print("\n".join(report.lines()), flush=True)  # the measured outcome, with -s
    assert report.ok, "\n".join(report.lines())
