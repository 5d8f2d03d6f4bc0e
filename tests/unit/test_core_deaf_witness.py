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
    operator decides (`force-active` on gamma). The rule chooses this over two holders."""
    world = deaf_active_dies(0)
    world.power_off("beta", DEAF_AT + 0.3)
    world.run_until(DEAF_AT + 10.0)
    assert world.active_nodes() == []
    assert world.roles()["gamma"] is not Role.ACTIVE
