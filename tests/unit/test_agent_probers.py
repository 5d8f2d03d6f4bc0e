"""The agent's echo probers as the timing says: the wiring between config.Timing and the
probes (an EchoProber made with other values than the core and the docs assume went
unnoticed before: the switch's retries, its timeout)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.authkeys import generate_secret_text, parse_secret_text
from mosqit_failover.daemon import Agent
from mosqit_failover.events import PeerView, Role
from mosqit_failover.journal import DecisionLog
from tests.unit.loopback_pair import LOOPBACK_PAIR


def agent(tmp_path: Path, timing: str, node: str = "alpha") -> Agent:
    text = LOOPBACK_PAIR.format(tmp=tmp_path).replace(
        'subnet = "127.0.1.0/24"\n', 'subnet = "127.0.1.0/24"\nswitch = "127.0.1.1"\n'
    )
    cfg = configuration.parse(text + f"[timing]\n{timing}\n")
    keyring = parse_secret_text(generate_secret_text())
    return Agent(cfg, node, keyring, DecisionLog(use_journal=False))


@pytest.mark.parametrize(
    ("timing", "interval", "echo_timeout", "echo_retries", "switch_every", "switch_timeout"),
    [
        # a missed probe re-sent at once as often as the core may ask misses under loss
        ("", 0.1, 0.02, 9, 2, 0.1),
        ('profile = "fast"', 0.02, 0.005, 9, 12, 0.1),
        ('interval = "1s"\nheartbeat = "500ms"\nswitch_timeout = "10s"', 1.0, 0.02, 9, 1, 1.0),
        ("misses = 6", 0.1, 0.02, 11, 2, 0.1),
    ],
)
def test_each_probe_runs_with_the_timing_the_core_assumes(
    tmp_path: Path,
    timing: str,
    interval: float,
    echo_timeout: float,
    echo_retries: int,
    switch_every: int,
    switch_timeout: float,
) -> None:
    built = agent(tmp_path, timing)
    probers = {p.name: p for p in built._make_probers()}
    # network b names no switch: no switch probe there
    assert set(probers) == {"peer-a", "peer-b", "switch-a"} == set(built.probes)
    for name in ("peer-a", "peer-b"):
        peer = probers[name]
        assert (peer.interval, peer.timeout, peer.retries) == (interval, echo_timeout, echo_retries)
        assert (peer.every, peer.retry_each_slot) == (1, False)
    assert probers["peer-a"].target == "127.0.1.12"
    switch = probers["switch-a"]
    assert (switch.target, switch.source) == ("127.0.1.1", "127.0.1.11")
    assert (switch.interval, switch.every, switch.timeout) == (
        interval,
        switch_every,
        switch_timeout,
    )
    # an answering switch half as often where the timing allows it (standard), on slots
    # of the full pace too
    assert switch.calm_every == built.config.timing.switch_calm_every
    assert switch.calm_every == (4 if timing in ("", "misses = 6") else switch_every)
    assert (peer.calm_every, probers["peer-b"].calm_every) == (1, 1)
    # every slot's probe gets its two re-sent probes (b893a36: under 30 % loss the
    # switch went silent for 2 s about every 5 minutes when only the first slot had them)
    assert (switch.retries, switch.retry_each_slot) == (2, True)
    # one slot hook for all of them: one Tick per slot, the heartbeat in its wake-up
    assert len({id(p.on_slot) for p in probers.values()}) == 1
    assert built._probe_targets["switch-a"] == ("a", "")


def test_a_switch_the_interval_cannot_probe_often_enough_gets_its_own_cadence(
    tmp_path: Path,
) -> None:
    """interval 1 s, switch_timeout 2 s: eight probes in it do not fit in the interval's
    slots; the switch is probed every 250 ms on its own (no slot hook: the slot Tick
    stays with the peers' probes, once an interval)."""
    built = agent(tmp_path, 'interval = "1s"\nheartbeat = "500ms"')
    probers = {p.name: p for p in built._make_probers()}
    switch = probers["switch-a"]
    assert (switch.interval, switch.every, switch.on_slot) == (0.25, 1, None)
    assert switch.calm_every == 1  # on a cadence of its own: the full pace always
    assert switch.timeout == pytest.approx(2 / 6)  # a probe and its two re-sent ones: a third
    assert (switch.retries, switch.retry_each_slot) == (2, True)
    assert probers["peer-a"].interval == 1.0 and probers["peer-a"].on_slot is not None


class _Core:
    """What _peer_message reads of the core: whether it stopped, whether it is calm."""

    stopped = False

    def __init__(self, calm: bool) -> None:
        self._calm = calm

    def calm(self, now: float) -> bool:
        return self._calm


@pytest.mark.parametrize(
    ("me", "sender", "calm", "follows"),
    [
        ("beta", "alpha", True, 1),  # the first node's heartbeat, calm: the slot follows
        ("beta", "alpha", False, 0),  # troubled: the slots keep their own time
        ("alpha", "beta", True, 0),  # the first node follows nobody (no pulling each other)
    ],
)
def test_only_the_first_nodes_calm_heartbeat_moves_the_probe_slot(
    tmp_path: Path, me: str, sender: str, calm: bool, follows: int
) -> None:
    """docs/timing.md, "Following the peer's heartbeat": the daemon hands the cadence
    follow() for the heartbeats of the first node in cluster.order, while calm only."""
    built = agent(tmp_path, "", node=me)
    assert built.config.order[0] == "alpha"
    built._make_probers()
    slot_prober = built._slot_prober
    assert slot_prober is not None
    calls: list[str] = []
    slot_prober.follow = lambda: calls.append("follow")  # type: ignore[method-assign]
    built._feed = types.SimpleNamespace(feed=lambda event: None)  # type: ignore[assignment]
    built._core = _Core(calm)  # type: ignore[assignment]
    built._loop = types.SimpleNamespace(time=lambda: 100.0)  # type: ignore[assignment]
    view = PeerView(sender, Role.ACTIVE, 1, (("a", True), ("b", True)), False, False, False, False)
    built._peer_message("a", view, 0.0)
    assert len(calls) == follows
