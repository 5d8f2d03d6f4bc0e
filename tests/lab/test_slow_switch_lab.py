"""A switch that answers echo slowly, with the fast profile (20 ms probes): real agents,
real ICMP to the lab's switch addresses, answered late by ``lab/slowswitch.py`` (a
switch's policed control plane; the kernel's own replies off in the switch namespace).

- 60 ms late on network a: the switch's replies count (the switch echo timeout is
  100 ms, not the 20 ms interval it was): no MANUAL mode, no handover, the probe's
  round trip shown by ``status``;
- 250 ms late, beyond that timeout: both nodes take the switch for silent after
  ``switch_timeout`` and go MANUAL (the test can tell the two apart), and back to
  automatic once it answers in time again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import control, deploy
from mosqit_failover.lab.slowswitch import SlowSwitch
from mosqit_failover.lab.topology import LabPlan
from tests.lab.multi import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_clean")]

WATCH = 6.0  # three switch_timeouts


@pytest.fixture(scope="module")
def fast_pair(lab: control.Lab, lab_plan: LabPlan) -> Iterator[control.Lab]:
    deploy.install(lab.nodes, lab_plan, timing={"profile": "fast"})
    deploy.start(lab.nodes)
    try:
        deploy.wait_pair(lab.nodes, 40)
        yield lab
    finally:
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


def kinds_since(lab: control.Lab, since: float) -> set[tuple[str, str]]:
    return {
        (name, str(entry.get("DECISION")))
        for name, node in lab.nodes.items()
        for entry in deploy.decisions(node, since)
    }


def test_a_switch_answering_60_ms_late_keeps_the_uplink(fast_pair: control.Lab) -> None:
    roles = deploy.wait_pair(fast_pair.nodes, 40)
    since = time.time()
    with SlowSwitch(fast_pair.plan, {"a": 0.06, "b": 0.0}):
        time.sleep(WATCH)
        probes = {name: deploy.status(node)["probes"] for name, node in fast_pair.nodes.items()}
        kinds = kinds_since(fast_pair, since)
        now = deploy.roles(fast_pair.nodes)
    rtts = {name: probe["switch-a"]["last_rtt_ms"] for name, probe in probes.items()}
    print(f"switch a answering 60 ms late: round trips {rtts}, decisions {sorted(kinds)}")
    assert all(rtt is not None and 55 <= rtt < 100 for rtt in rtts.values()), probes
    assert not {kind for _, kind in kinds} & {"manual", "handover", "promote"}, kinds
    assert now == roles


def test_a_switch_answering_beyond_the_timeout_is_silent(fast_pair: control.Lab) -> None:
    deploy.wait_pair(fast_pair.nodes, 40)
    since = time.time()
    with SlowSwitch(fast_pair.plan, {"a": 0.25, "b": 0.0}):

        def both_manual() -> bool:
            return {n for n, kind in kinds_since(fast_pair, since) if kind == "manual"} == set(
                fast_pair.nodes
            )

        wait_for("both nodes in MANUAL mode", both_manual, WATCH)
        # before leaving: the kernel answers again the moment the responder is stopped,
        # and the next switch probe (every 240 ms) can make a node automatic before the
        # responder's process has been reaped
        back = time.time()
    wait_for(
        "both nodes automatic again",
        lambda: (
            {n for n, kind in kinds_since(fast_pair, back) if kind == "automatic"}
            == set(fast_pair.nodes)
        ),
        WATCH,
    )
