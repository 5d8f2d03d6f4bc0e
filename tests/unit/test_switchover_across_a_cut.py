"""`switchover --to` a standby that a better standby cannot hear (N nodes, simulated).

beta and gamma are cut apart on both networks. beta knows gamma only by name, through
alpha's lists, and still as the standby it last heard: handed over to, gamma did not
take over and beta did, seeing nobody active and itself first (made to defer, it took
over beside gamma once alpha died). With beta in maintenance nobody took over: gamma
does not take over past a better node it cannot hear. The active now refuses, naming
the cut and the fix; a handover to beta, which gamma defers to, goes ahead as before.
"""

from __future__ import annotations

from mosqit_failover.events import Command, OperatorCommand, Role
from mosqit_failover.sim_scenarios import SETTLED, formed
from mosqit_failover.simulation import World

CUT = SETTLED + 1.0


def _three_cut(seed: int, nodes: int = 3) -> World:
    """alpha active, beta and gamma (and the rest) standing by; beta and gamma cut apart."""
    world = formed(nodes, seed)
    assert world.roles()["alpha"] is Role.ACTIVE
    world.set_links("beta", "gamma", False, SETTLED)
    world.run_until(CUT)
    return world


def _alpha_says(world: World) -> list[tuple[str, str]]:
    kinds = {"refused", "switchover"}
    return [(d.kind, d.reason) for d in world.decisions("alpha") if d.kind in kinds]


REFUSED = (
    "refused",
    "switchover refused: gamma and beta do not both hear each other (their lists of "
    "nodes heard): gamma would not take over past beta, ranked before it, or beta would "
    "take over beside it. Mend the path between them first",
)


def test_a_switchover_to_a_node_a_better_standby_cannot_hear_is_refused() -> None:
    for seed in (1, 2, 3):
        world = _three_cut(seed)
        world.command("alpha", OperatorCommand(Command.SWITCHOVER, "gamma"), CUT)
        world.run_until(CUT + 5)
        said = _alpha_says(world)
        assert said == [REFUSED], (seed, said)
        assert world.active_nodes() == ["alpha"], seed
        assert world.dual_holders_worst == 0.0


def test_the_handover_goes_to_the_better_standby_without_a_target_and_stays_single() -> None:
    """gamma, cut from beta, defers to it as the better candidate; alpha then dies."""
    for seed in (1, 2, 3):
        world = _three_cut(seed)
        world.command("alpha", OperatorCommand(Command.SWITCHOVER), CUT)
        world.run_until(CUT + 3)
        assert world.active_nodes() == ["beta"], seed
        world.power_off("alpha", CUT + 3)
        world.run_until(CUT + 10)
        assert world.active_nodes() == ["beta"], (seed, world.decisions("gamma")[-3:])
        assert world.dual_holders_worst == 0.0 and world.dual_clients_worst == 0.0


def test_with_the_better_standby_in_maintenance_no_switchover_leaves_the_service_down() -> None:
    """gamma would not take over past beta, whatever beta's mode: before, alpha handed
    over and nobody held the VIP (30 s and more). Both switchovers are refused now."""
    for seed in (1, 2):
        world = _three_cut(seed)
        world.command("beta", OperatorCommand(Command.MAINTENANCE_ON), CUT)
        world.command("alpha", OperatorCommand(Command.SWITCHOVER, "gamma"), CUT + 1)
        world.command("alpha", OperatorCommand(Command.SWITCHOVER), CUT + 2)
        world.run_until(CUT + 5)
        assert _alpha_says(world) == [REFUSED, REFUSED], seed
        assert world.active_nodes() == ["alpha"], seed


def test_a_one_way_cut_is_a_cut() -> None:
    """gamma no longer hears beta, beta still hears gamma."""
    world = _three_cut(1)
    world.set_links("beta", "gamma", True, CUT)
    for net in ("a", "b"):
        world.set_link_loss("beta", "gamma", net, 1.0, CUT)
    world.command("alpha", OperatorCommand(Command.SWITCHOVER, "gamma"), CUT + 2)
    world.run_until(CUT + 5)
    assert _alpha_says(world) == [REFUSED]
    assert world.active_nodes() == ["alpha"]


def test_without_the_cut_the_switchover_to_gamma_goes_ahead() -> None:
    world = formed(3, 1)
    world.command("alpha", OperatorCommand(Command.SWITCHOVER, "gamma"), SETTLED)
    world.run_until(SETTLED + 3)
    assert world.active_nodes() == ["gamma"]
    assert [k for k, _ in _alpha_says(world)] == ["switchover"]


def test_a_successor_cut_from_two_better_nodes_is_refused_naming_both() -> None:
    """Four nodes, delta cut from beta and gamma: the refusal read "delta and beta, gamma
    do not both hear each other"."""
    world = formed(4, 1)
    world.set_links("beta", "delta", False, SETTLED)
    world.set_links("gamma", "delta", False, SETTLED)
    world.command("alpha", OperatorCommand(Command.SWITCHOVER, "delta"), CUT)
    world.run_until(CUT + 3)
    assert _alpha_says(world) == [
        (
            "refused",
            "switchover refused: delta and each of beta and gamma do not both hear each "
            "other (their lists of nodes heard): delta would not take over past them, "
            "ranked before it, or they would take over beside it. Mend the paths between "
            "them first",
        )
    ]
    assert world.active_nodes() == ["alpha"]
