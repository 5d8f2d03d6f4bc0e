"""A peer whose messages cross a network where its ICMP echo does not (`echo-blocked`).

A firewall that lets the cluster's UDP through but drops ICMP echo on one network
left the verdict on a hung agent to the other network's echo alone (in the
simulation at 30 % loss, 7 hangs of 100 taken for dead) and kept the pair troubled
for good (every miss is trouble), with nothing in the journal saying why.
"""

from __future__ import annotations

import re

import pytest

from mosqit_failover.actions import Alert
from mosqit_failover.kinds import AlertKind
from mosqit_failover.observations import ECHO_FILTER_RUN, ECHO_FILTER_SECONDS
from tests.unit.transcript import Harness, active, standby


def blocked_lines(h: Harness, since: float) -> list[str]:
    return [d.text for d in h.decisions(since) if d.kind == "echo-blocked"]


@pytest.mark.parametrize("make", [standby, active], ids=["standby", "active"])
def test_filtered_echo_on_one_network_is_said_once_and_its_end_too(make: object) -> None:
    h: Harness = make()  # type: ignore[operator]
    start = h.now
    h.echo_answers = {"a": True, "b": False}
    h.run_until(start + 30)
    lines = blocked_lines(h, start)
    assert len(lines) == 1, h.transcript(start)
    peer = h.peer_name
    assert lines[0].startswith(f"{h.node} {h.role().value}: peer {peer}'s messages arrive on ")
    misses = re.search(r"network b but no echo reply \((\d+) misses in a row\)", lines[0])
    assert misses and int(misses[1]) >= ECHO_FILTER_RUN, lines[0]
    assert "let ICMP echo requests and replies pass between the nodes on b" in lines[0]
    alerts = [a for _, a in h.outputs if isinstance(a, Alert)]
    assert [a.kind for a in alerts] == [AlertKind.ECHO_BLOCKED]
    assert not h.core.calm(h.now)  # every miss is trouble: what the line warns of
    assert h.kinds(start) == ["echo-blocked"]  # and nothing else moved
    assert h.core.snapshot(h.now)["peers"][peer]["echo_blocked"] == ["b"]  # type: ignore[index]

    back = h.now
    h.echo_answers = {"a": True, "b": True}
    h.run_until(back + 1)
    again = f"{h.node} {h.role().value}: peer {peer} answers echo on network b again ["
    assert [line.startswith(again) for line in blocked_lines(h, back)] == [True]
    assert h.core.snapshot(h.now)["peers"][peer]["echo_blocked"] == []  # type: ignore[index]


def test_a_path_cut_on_one_network_is_no_filter() -> None:
    """Neither the messages nor the echo cross b: a cable or a VLAN, not ICMP."""
    h = standby()
    start = h.now
    h.peer_networks = ("a",)
    h.echo_answers = {"a": True, "b": False}
    h.run_until(start + 10)
    assert blocked_lines(h, start) == []


def test_a_hung_agent_is_no_filter() -> None:
    """The agent silent, its host answering on a only: fence first, as before."""
    h = standby()
    start = h.now
    h.peer = None
    h.echo_answers = {"a": True, "b": False}
    h.run_until(start + 4)
    assert blocked_lines(h, start) == []
    assert h.kinds(start)[:2] == ["fence", "promote"], h.transcript(start)


def test_a_long_run_of_misses_under_loss_is_not_yet_a_filter() -> None:
    """Misses in a row while the peer speaks on b, many but for under ECHO_FILTER_SECONDS:
    heavy loss gives runs of forty now and then (a round trip lost 75 % of the time at
    50 % loss a packet: about every quarter of an hour in the simulation, when the count
    alone decided), which the line must not call a filter."""
    h = standby()
    start = h.now
    h.echo_answers = {"a": True, "b": False}
    h.run_until(start + ECHO_FILTER_SECONDS - 0.5)
    assert h.core.peers[h.peer_name].misses["b"] > ECHO_FILTER_RUN
    h.echo_answers = {"a": True, "b": True}
    h.run_until(h.now + 5)
    assert blocked_lines(h, start) == []


def _one_message_into_a_run(h: Harness) -> None:
    """Echo on b fails until a heartbeat of the peer has come on b after a miss: the run
    has had a message cross it (the breaker's start of a false alarm)."""
    h.echo_answers = {"a": True, "b": False}
    tracker = h.core.peers[h.peer_name]
    while tracker._spoke_at_miss["b"] is None:
        h.run_until(h.now + 0.005)


def test_a_network_cut_after_a_message_crossed_the_run_is_no_filter() -> None:
    """The breaker's false alarm: one heartbeat crossed b early in the run of misses,
    then b was cut for good. Ten seconds later b read as filtered, its messages said to
    arrive on a network nothing crossed any more."""
    h = standby()
    start = h.now
    _one_message_into_a_run(h)
    h.peer_networks = ("a",)  # b cut between the nodes
    h.run_until(start + 20)
    assert blocked_lines(h, start) == []


def test_a_peer_dead_after_a_message_crossed_the_run_is_no_filter() -> None:
    h = standby()
    start = h.now
    _one_message_into_a_run(h)
    h.peer = None
    h.echo_answers = {"a": False, "b": False}  # powered off
    h.run_until(start + 20)
    assert blocked_lines(h, start) == []
    assert h.kinds(start)[:1] == ["promote"], h.transcript(start)
