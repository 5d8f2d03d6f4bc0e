"""Attacks on calm heartbeats on one network at a time (`calm_heartbeat_networks =
"alternate"`), each against `"all"` with the same seed and faults (docs/timing.md).

One-way loss from the active to its standby on the path between them (the switch
probes do not cross it, so nothing else looks wrong): the active hears its standby
well, stays calm and sent one heartbeat a period on one network to a standby that
missed them; two lost in a row (one on each network) were as much silence as four
are with every network. The standby, troubled, sends fast: the active now takes
that pace for a sign and sends on every network until it ends.
"""

from __future__ import annotations

import random

from mosqit_failover.actions import SendPeerMessage
from mosqit_failover.core import CALM_AFTER
from mosqit_failover.events import Role
from mosqit_failover.simulation import World
from tests.unit.transcript import active
from tests.unit.worlds import promotions, sim_world


def _one_way_loss(mode: str, seed: int, loss: float) -> World:
    world = sim_world(seed, calm_heartbeat_networks=mode)
    for network in ("a", "b"):
        world.set_link_loss("alpha", "beta", network, loss, 15.0)
    world.run_until(80.0)
    return world


def test_one_way_loss_from_the_active_fails_over_no_more_than_with_every_network() -> None:
    """30 % loss from alpha (active) to beta on both networks, 65 s, seeds 0-19:
    "all" 0 false failovers; "alternate" had 3 (seeds 0, 1 and 3)."""
    promoted: dict[str, list[tuple[int, float, str]]] = {"all": [], "alternate": []}
    for seed in (0, 1, 3):
        for mode in promoted:
            world = _one_way_loss(mode, seed, 0.3)
            promoted[mode] += [(seed, *p) for p in promotions(world, 14.0)]
    assert promoted["all"] == []
    assert promoted["alternate"] == [], "one-way loss: false failover only in turn"


def test_a_peer_at_the_fast_pace_gets_every_heartbeat_on_every_network() -> None:
    """A calm node whose peer sends fast (troubled: maybe our heartbeats are lost
    on the way to it) sends on every network; once the peer slows down to the calm
    pace, in turn again."""
    h = active()
    calm = 1.0 + CALM_AFTER + 0.5
    h.run_until(calm + 1.0)  # the harness's peer sends every `heartbeat` on both networks
    fast = [a.network for t, a in h.outputs if t >= calm and isinstance(a, SendPeerMessage)]
    assert fast and set(fast) == {None}, fast
    h.peer_pace = h.config.timing.calm_heartbeat
    h.run_until(calm + 2.0)
    slow = [a.network for t, a in h.outputs if t >= calm + 1.5 and isinstance(a, SendPeerMessage)]
    assert set(slow) == {"a", "b"}, slow
    assert h.core.role is Role.ACTIVE


def test_the_simulations_one_way_loss_drops_one_direction_on_one_network_only() -> None:
    world = sim_world(5)
    world.set_link_loss("alpha", "beta", "a", 1.0, 12.0)
    world.run_until(14.0)
    alpha, beta = world.nodes["alpha"].core, world.nodes["beta"].core
    assert alpha is not None and beta is not None
    assert world.now - beta.peers["alpha"].heard_on["a"] > 1.5  # nothing from alpha on a
    assert world.now - beta.peers["alpha"].heard_on["b"] < 0.2
    assert world.now - alpha.peers["beta"].heard_on["a"] < 0.2  # the other way is fine
    assert promotions(world, 10.0) == []


def _partitions_after_the_actives_death(mode: str, seed: int) -> int:
    """Three nodes, the path between the standbys beta and gamma broken on network b
    (both still reach its switch), then alpha (active) powered off: the partition
    lines after the death (beta still promotes)."""
    world = sim_world(seed, nodes=3, calm_heartbeat_networks=mode)
    world.set_link("beta", "gamma", "b", False, 13.0)
    died = 20.0 + random.Random(seed).random() * 0.3
    world.power_off("alpha", died)
    world.run_until(died + 1.0)
    assert [node for _, node in promotions(world, died)] == ["beta"], (mode, seed)
    return sum(1 for line in world.timeline if line.time >= died and "partition among" in line.text)


def test_the_actives_death_is_no_partition_when_a_standby_path_is_broken() -> None:
    """The break is seen, so beta and gamma send fast; gamma drops alpha from its
    heard list when alpha has been silent for peer_gone_after, and beta's heartbeat
    still listing alpha arrived a fraction of a millisecond past that: gamma took it
    for proof that beta heard alpha later (a partition among the nodes, an alert,
    "not taking over past it"). The proof now allows an echo timeout for the
    heartbeat's way and alpha's heartbeat reaching the two at different moments.
    Seeds 0-29: "all" 0 partition lines, "alternate" 6 (seeds 2, 7, 8, 9 here)."""
    lines = {mode: 0 for mode in ("all", "alternate")}
    for seed in (2, 7, 8, 9):
        for mode in lines:
            lines[mode] += _partitions_after_the_actives_death(mode, seed)
    assert lines == {"all": 0, "alternate": 0}, lines
