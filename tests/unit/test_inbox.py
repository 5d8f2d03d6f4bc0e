"""The Inbox rule (inbox.py), and what it changes for a standby stopped beside a
takeover, in the simulation (whose stopped agent reads its backlog through it)."""

from __future__ import annotations

import pytest

from mosqit_failover.events import Command, OperatorCommand, Role
from mosqit_failover.inbox import Inbox
from mosqit_failover.sim_scenarios import formed, sim_config_n
from mosqit_failover.simulation import World

SETTLED = 10.0


def test_the_newest_of_each_key_in_the_order_the_newest_came() -> None:
    inbox: Inbox[str, int] = Inbox(max_wait=1.0)
    for key, item in (("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)):
        inbox.add(key, item, waited=0.01)
    assert inbox.take() == [3, 4, 5]
    assert inbox.take() == []
    assert inbox.take_stale() == (0, 0.0)


def test_what_waited_too_long_is_dropped_counted_and_never_displaces_a_fresher() -> None:
    inbox: Inbox[str, int] = Inbox(max_wait=1.0)
    inbox.add("a", 1, waited=0.2)
    inbox.add("a", 2, waited=2.5)  # an older copy read later cannot happen, but is no news
    inbox.add("b", 3, waited=1.5)
    assert inbox.too_old(1.0) is False  # at the limit: still read
    assert inbox.too_old(3.0) is True
    assert inbox.take() == [1]
    assert inbox.take_stale() == (3, 3.0)
    assert inbox.take_stale() == (0, 0.0)


def _switchover_to_a_stopped_standby(
    seed: int, stopped: float, nodes: int = 3, profile: str = "standard"
) -> World:
    """beta and gamma cannot hear each other; alpha hands over to beta, whose agent is
    stopped (SIGSTOP) 50 ms later for `stopped` seconds. alpha, no longer hearing it,
    leaves the takeover to gamma, which promotes."""
    world = formed(nodes, seed, profile)
    assert world.roles()["alpha"] is Role.ACTIVE
    world.set_links("beta", "gamma", False, SETTLED)
    world.command("alpha", OperatorCommand(Command.SWITCHOVER), SETTLED + 2)
    world.freeze("beta", SETTLED + 2.05, stopped, agent_only=True)
    world.run_until(SETTLED + 2.05 + stopped + 6)
    return world


@pytest.mark.parametrize(
    ("stopped", "nodes", "profile"),
    [(0.8, 3, "standard"), (3.0, 3, "standard"), (1.0, 4, "standard"), (1.0, 3, "fast")],
)
def test_a_standby_stopped_after_a_handover_does_not_promote_on_it(
    stopped: float, nodes: int, profile: str
) -> None:
    """When it runs again, the handover is the oldest of alpha's messages that waited.
    Read first, it made beta promote beside gamma: two holders until the cut mended,
    in every simulated run of each case here. Read as an Inbox reads it, the newest of
    alpha's (which no longer names beta) or none at all (past the schedule gap)."""
    for seed in range(1, 4):
        world = _switchover_to_a_stopped_standby(seed, stopped, nodes, profile)
        assert world.dual_clients_worst == 0.0, (seed, world.decisions("beta"))
        holders = [name for name, role in world.roles().items() if role is Role.ACTIVE]
        assert holders == ["gamma"], (seed, holders)


def test_a_short_stop_of_a_standby_in_a_calm_cluster_moves_nothing() -> None:
    """The inbox drops what waited; the next heartbeats bring the present: nothing
    moves, nobody is counted gone for good."""
    world = World(sim_config_n(3), seed=1)
    for name in ("alpha", "beta", "gamma"):
        world.boot(name)
    world.run_until(SETTLED)
    world.freeze("beta", SETTLED, 2.0, agent_only=True)
    world.run_until(SETTLED + 8)
    assert world.roles() == {"alpha": Role.ACTIVE, "beta": Role.STANDBY, "gamma": Role.STANDBY}
    assert [d.kind for d in world.decisions("beta") if d.kind == "resumed"] == ["resumed"]
