"""The simulated world's two-holder metrics count a span still open when they are read:
a run that ends with two VIP holders reports them, it does not read 0."""

from __future__ import annotations

import pytest

from mosqit_failover.sim_scenarios import SETTLED, sim_config
from mosqit_failover.simulation import World


def test_two_actives_cut_apart_until_the_end_of_the_run_are_reported() -> None:
    """Every path between the pair cut, both still on the switches: beta promotes beside
    alpha and both stay active (and on the clients' network) until the run ends."""
    world = World(sim_config(), seed=1)
    world.boot("alpha", 0.0)
    world.boot("beta", 1.0)
    for net in ("a", "b"):
        world.set_peer_link(net, False, SETTLED)
    end = SETTLED + 10
    world.run_until(end)
    assert sorted(world.active_nodes()) == ["alpha", "beta"]
    assert all(node.holds_vip for node in world.nodes.values())
    # beta took over within a second of the cut, and the span lasts to the end
    assert end - SETTLED - 1 < world.dual_clients_worst <= end - SETTLED
    assert world.dual_holders_worst == 0.0 and world.dual_vip_seconds == 0.0  # no path


def grab_at(world: World, at: float, holds: bool) -> None:
    def change() -> None:
        for node in world.nodes.values():
            node.holds_vip = holds

    world.at(at, change)


def test_an_open_span_counts_up_to_now_and_keeps_counting_across_runs() -> None:
    """No agents run: the test hands both nodes the VIP, takes it back, hands it again."""
    world = World(sim_config(), seed=1)
    grab_at(world, 1.0, True)
    grab_at(world, 3.0, False)  # a closed span of 2 s
    grab_at(world, 4.0, True)  # open from 4 s on
    world.run_until(10.0)
    assert world.dual_vip_seconds == pytest.approx(2 + 6)
    assert world.dual_vip_worst == pytest.approx(6)
    assert world.dual_holders_worst == pytest.approx(6)
    assert world.dual_clients_worst == pytest.approx(6)
    world.run_until(12.5)
    assert world.dual_vip_seconds == pytest.approx(2 + 8.5)
    assert world.dual_vip_worst == world.dual_holders_worst == pytest.approx(8.5)
    grab_at(world, 13.0, False)
    world.run_until(20.0)  # closed at 13 s: the span is 9 s and no longer grows
    assert world.dual_vip_seconds == pytest.approx(2 + 9)
    assert world.dual_vip_worst == world.dual_clients_worst == pytest.approx(9)


def test_a_closed_span_longer_than_the_open_one_stays_the_worst() -> None:
    world = World(sim_config(), seed=1)
    grab_at(world, 1.0, True)
    grab_at(world, 6.0, False)
    grab_at(world, 9.0, True)
    world.run_until(10.0)
    assert world.dual_vip_worst == world.dual_clients_worst == pytest.approx(5)
    assert world.dual_vip_seconds == pytest.approx(6)
