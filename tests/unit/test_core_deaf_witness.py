"""A witness deaf to this node says nothing by not listing another peer.

Three nodes: the standbys beta and gamma cut apart (each hears alpha, not the other),
then everything they send the active alpha is lost, one way, and alpha dies. alpha, deaf
to both, had stopped listing either; counted as evidence, that ended each standby's
proof that the other was alive beyond the cut, and both promoted: two holders until the
cut was mended (36 of 36 simulated runs before the rule).
"""

from __future__ import annotations

import pytest

from mosqit_failover.events import Role
from mosqit_failover.sim_scenarios import SETTLED, formed, no_dual_clients
from mosqit_failover.simulation import World

DEAF_AT = SETTLED + 2.0


def deaf_active_dies(seed: int) -> World:
    world = formed(3, seed)
    assert world.roles()["alpha"] is Role.ACTIVE
    world.set_links("beta", "gamma", False, SETTLED)
    for sender in ("beta", "gamma"):
        for network in world.networks:
            world.set_link_loss(sender, "alpha", network, 1.0, DEAF_AT)
    world.power_off("alpha", DEAF_AT + 0.3)
    return world


@pytest.mark.parametrize("seed", range(4))
def test_one_standby_takes_over_from_a_deaf_active_across_a_cut(seed: int) -> None:
    world = deaf_active_dies(seed)
    world.run_until(DEAF_AT + 10.0)
    assert no_dual_clients(world) == []
    assert world.active_nodes() == ["beta"], world.roles()  # first in the order
    assert world.roles()["gamma"] is Role.STANDBY


def test_the_price_a_second_death_behind_the_cut_leaves_no_holder() -> None:
    """beta dies with alpha: gamma never heard beta go (the cut), and alpha's silence
    about it proves nothing, so gamma waits for it rather than guess: no holder, the
    operator decides (`force-active` on gamma). The rule chooses this over two holders
    where nothing else can tell the two cases apart: three nodes."""
    world = deaf_active_dies(0)
    world.power_off("beta", DEAF_AT + 0.3)
    world.run_until(DEAF_AT + 10.0)
    assert world.active_nodes() == []
    assert world.roles()["gamma"] is not Role.ACTIVE


@pytest.mark.parametrize(("count", "seed"), [(4, 0), (4, 1), (5, 0)])
def test_a_witness_that_hears_this_node_settles_what_a_deaf_one_leaves_open(
    count: int, seed: int
) -> None:
    """A helper's attack on the first version: gamma alone unheard by alpha, cut from
    beta; beta dies, alpha 30 s later. The deaf alpha's silence about beta kept gamma's
    proof of beta for ever, and the standbys that hear everyone waited for gamma: no
    holder at four and five nodes (8 of 8; gamma took over before the rule). delta hears
    gamma and lost beta: that settles it."""
    world = formed(count, seed)
    world.set_links("beta", "gamma", False, SETTLED)
    for network in world.networks:
        world.set_link_loss("gamma", "alpha", network, 1.0, SETTLED + 2)
    world.power_off("beta", SETTLED + 5)
    world.power_off("alpha", SETTLED + 35)
    world.run_until(SETTLED + 37)
    assert world.active_nodes() == ["gamma"], world.roles()
    assert no_dual_clients(world) == []
