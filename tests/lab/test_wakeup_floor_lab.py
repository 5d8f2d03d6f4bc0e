"""The bench's floor (scenarios/wakeup_floor.py) does the agent's idle traffic for real:
heartbeat datagrams between the nodes and ICMP echo to the switches (and, for the fast
profile, to the peer), every reply read; and it leaves no unit behind."""

from __future__ import annotations

import pytest

from mosqit_failover.lab import control
from mosqit_failover.lab.scenarios import wakeup_floor

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_clean")]


@pytest.mark.parametrize("language", wakeup_floor.LANGUAGES)
def test_the_standard_floor_sends_and_receives_the_agents_idle_packets(
    lab: control.Lab, language: str
) -> None:
    floors = wakeup_floor.measure(lab, lab.plan, 0.1, 3.0, peer_echo=False, language=language)
    assert set(floors) == set(lab.nodes)
    for name, floor in floors.items():
        # 10 heartbeats + 2 networks x 2.5 switch probes (an answering switch's calm
        # pace) a second out; as many in (the peer's heartbeats, the switches' replies);
        # the counts include start and stop
        assert 11 <= floor.sent <= 17, (name, floor)
        assert 11 <= floor.received <= 17, (name, floor)
        assert floor.cpu > 0.0, (name, floor)
    # the second node's slot follows the first's heartbeat, as the agent's does while
    # calm: it wakes once a slot (10 a second), the first twice (its slot, then the
    # second's heartbeat)
    assert min(floor.wakeups for floor in floors.values()) <= 15, floors
    for node in lab.nodes.values():
        assert not node.is_active(wakeup_floor.UNIT)


@pytest.mark.parametrize("language", wakeup_floor.LANGUAGES)
def test_the_fast_floor_also_echoes_the_peer_every_slot(lab: control.Lab, language: str) -> None:
    floors = wakeup_floor.measure(lab, lab.plan, 0.02, 3.0, peer_echo=True, language=language)
    for name, floor in floors.items():
        # 50 heartbeats + 2 x 50 peer probes + 2 x ~4 switch probes a second, each answered
        # (without the peer's echo it would be ~60; a loaded host slips a few slots: 116
        # seen beside a unit-test run)
        assert 100 <= floor.sent <= 165, (name, floor)
        assert 100 <= floor.received <= 165, (name, floor)
