"""N nodes: a standby promotes only once every peer it hears lists it as heard
(`Core._unlisted`), or that peer has left it out for service_timeout."""

from __future__ import annotations

from mosqit_failover.config import parse
from mosqit_failover.events import Command, OperatorCommand, Role
from mosqit_failover.sim_scenarios import sim_config_n, sim_config_text
from mosqit_failover.simulation import World
from tests.unit.worlds import promotions

SETTLED = 10.0


def _three(seed: int, profile: str = "standard") -> World:
    world = World(parse(sim_config_text(3, profile=profile), "<sim>"), seed=seed)
    for name in ("alpha", "beta", "gamma"):
        world.boot(name)
    world.run_until(SETTLED)
    assert world.roles()["alpha"] is Role.ACTIVE
    return world


def _holders(world: World) -> list[str]:
    return [name for name, role in world.roles().items() if role is Role.ACTIVE]


def test_a_standby_whose_stop_ends_as_the_other_takes_over_waits_to_be_listed() -> None:
    """beta and gamma cannot hear each other; alpha hands over to beta, whose agent is
    stopped for 0.6 s, 50 ms later. alpha stops listing beta; gamma, which knows beta
    only through alpha's list, takes over just before beta runs again. beta's newest
    message from alpha still named it successor: it promoted too, 4 of 8 seeds (in the
    others the handover ran before gamma moved). Now it waits until alpha lists it
    again, and by then gamma's takeover has reached it."""
    for seed in range(1, 9):
        world = _three(seed)
        for net in ("a", "b"):
            world.set_link("beta", "gamma", net, False, SETTLED)
        world.command("alpha", OperatorCommand(Command.SWITCHOVER), SETTLED + 2)
        world.freeze("beta", SETTLED + 2.05, 0.6, agent_only=True)
        world.run_until(SETTLED + 9)
        assert world.dual_clients_worst == 0.0, (seed, world.decisions("beta"))
        assert len(_holders(world)) == 1, seed  # gamma, or beta when it took over first


def test_a_holder_that_a_holding_peer_cannot_hear_yields_to_it() -> None:
    """gamma stops hearing beta (one way: beta still hears gamma) as alpha dies. Both
    count alpha gone in the same instant and take over in some seeds, since neither
    can know yet. gamma never hears beta, so never yields to it; beta, first in the
    order, hears gamma holding and did not yield either: two holders to the end of
    the run (6.9 s). Now beta yields once gamma has left it out for the settle time."""
    demoted = 0
    for seed in range(1, 5):
        world = _three(seed)
        for net in ("a", "b"):
            world.set_link_loss("beta", "gamma", net, 1.0, SETTLED + 2)
        world.power_off("alpha", SETTLED + 2)
        world.run_until(SETTLED + 9)
        assert world.dual_clients_worst < 1.0, (seed, world.decisions("beta"))
        assert _holders(world) == ["gamma"], seed
        lines = [d.text for d in world.decisions("beta") if d.kind == "demote-dual-active"]
        demoted += bool(lines)
        assert all("peer gamma holds and does not hear me" in line for line in lines), lines
    assert demoted  # the seeds include the race


def test_a_peer_that_leaves_it_out_for_service_timeout_holds_it_back_no_longer() -> None:
    """As above with gamma in maintenance: it cannot take over. beta waits for gamma to
    list it for service_timeout, then takes over: nobody else could."""
    config = sim_config_n(3)
    for seed in range(1, 5):
        world = _three(seed)
        world.command("gamma", OperatorCommand(Command.MAINTENANCE_ON), SETTLED)
        for net in ("a", "b"):
            world.set_link_loss("beta", "gamma", net, 1.0, SETTLED + 1.9)
        world.power_off("alpha", SETTLED + 2)
        world.run_until(SETTLED + 2 + config.timing.service_timeout + 2)
        taken = promotions(world, SETTLED)
        assert [node for _, node in taken] == ["beta"], (seed, world.decisions("beta"))
        waited = taken[0][0] - (SETTLED + 1.9)
        assert config.timing.service_timeout <= waited < config.timing.service_timeout + 1
        assert _holders(world) == ["beta"]
