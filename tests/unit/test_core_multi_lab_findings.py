"""Three-node cases the lab found before the simulation did (tests/lab/test_multi_server_*)."""

from __future__ import annotations

from mosqit_failover.actions import RunPlan, SendPeerMessage
from mosqit_failover.events import ActionDone, Command, OperatorCommand, Role
from mosqit_failover.sim_scenarios import sim_config_n
from mosqit_failover.simulation import World

SETTLED = 10.0


def three(seed: int = 1) -> World:
    world = World(sim_config_n(3), seed=seed)
    for name in ("alpha", "beta", "gamma"):
        world.boot(name)
    world.run_until(SETTLED)
    assert world.roles() == {"alpha": Role.ACTIVE, "beta": Role.STANDBY, "gamma": Role.STANDBY}
    return world


def kinds(world: World, node: str) -> list[str]:
    return [str(d.kind) for d in world.decisions(node)]


def test_a_witness_back_from_a_cut_keeps_the_partition_proven() -> None:
    """beta and gamma cannot hear each other; alpha is cut off (beta, the better, takes
    over) and comes back while the two are still apart. alpha's first messages list
    nobody: gamma must not take that for beta being gone and promote beside beta."""
    for seed in range(1, 9):
        world = three(seed)
        for net in ("a", "b"):
            world.set_link("beta", "gamma", net, False, SETTLED)
            world.set_port("alpha", net, False, SETTLED + 3)
            world.set_port("alpha", net, True, SETTLED + 8)
            world.set_link("beta", "gamma", net, True, SETTLED + 16)
        world.run_until(SETTLED + 25)
        assert "promote" not in kinds(world, "gamma"), (seed, world.decisions("gamma"))
        assert world.roles()["beta"] is Role.ACTIVE, (seed, world.roles())
        assert world.dual_clients_worst == 0.0, seed


def test_a_node_that_starts_late_claims_no_partition() -> None:
    """gamma starts while alpha and beta run: before it hears beta, alpha's messages list
    beta. That is a node that has not listened yet, not a partition."""
    for seed in range(1, 9):
        world = World(sim_config_n(3), seed=seed)
        world.boot("alpha")
        world.boot("beta")
        world.boot("gamma", at=5.0)
        world.run_until(15.0)
        assert "partitioned" not in kinds(world, "gamma"), (seed, world.decisions("gamma"))


def test_a_stopping_active_says_its_last_word_before_it_exits() -> None:
    """The agent exits as soon as it holds nothing: its last message must say so, or the
    standbys take its silence for a hung agent and fence it first (seconds lost)."""
    world = three()
    core = world.nodes["alpha"].core
    assert core is not None
    out = core.handle(OperatorCommand(Command.STOP), world.now)
    plan = next(a for a in out if isinstance(a, RunPlan))
    last: list[object] = []
    for step in plan.steps:
        last = list(core.handle(ActionDone(plan.number, step), world.now))
    assert core.stopped
    sent = [a for a in last if isinstance(a, SendPeerMessage)]
    final = sent[-1].view if sent else None
    assert final is not None and not final.role.may_hold, last
    assert final.yielding and not final.candidate
