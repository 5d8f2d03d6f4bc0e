"""The core with three nodes, fed by hand: per-peer state, data epoch, operator."""

from __future__ import annotations

from typing import Any

from mosqit_failover.actions import Decision, RecordDataEpoch, RunPlan
from mosqit_failover.core import Core
from mosqit_failover.events import (
    ActionDone,
    Command,
    Event,
    Inventory,
    LinkChanged,
    OperatorCommand,
    PeerMessage,
    PeerView,
    Role,
    SwitchReachability,
    Tick,
)
from mosqit_failover.sim_scenarios import sim_config, sim_config_n
from tests.unit.transcript import view_of


def view(node: str, role: Role, epoch: int = 1, **extra: object) -> PeerView:
    return view_of(node, role, epoch, **extra)


def started(node: str, inventory: Inventory | None = None) -> Core:
    core = Core(sim_config_n(3), node, inventory or Inventory(), 0.0)
    for net in ("a", "b"):
        core.handle(LinkChanged(net, True), 0.0)
        core.handle(SwitchReachability(net, True), 0.0)
    return core


def test_a_standby_learns_its_data_epoch_when_the_active_lists_it_in_sync() -> None:
    core = started("gamma")
    out = core.handle(PeerMessage("a", view("alpha", Role.ACTIVE, 3, in_sync=("gamma",))), 0.1)
    assert RecordDataEpoch(3) in out and core.view(0.1).data_epoch == 3
    again = core.handle(PeerMessage("a", view("alpha", Role.ACTIVE, 3, in_sync=("gamma",))), 0.2)
    assert not any(isinstance(a, RecordDataEpoch) for a in again)  # told once


def test_the_snapshot_keeps_peer_and_adds_every_peer_in_order() -> None:
    core = started("beta", Inventory(data_epoch=2))
    core.handle(PeerMessage("a", view("gamma", Role.STANDBY, 0)), 0.1)
    snap: dict[str, Any] = core.snapshot(0.15)
    assert snap["data_epoch"] == 2
    assert list(snap["peers"]) == ["alpha", "gamma"]
    assert snap["peer"]["node"] == "gamma"  # the first one present
    assert snap["peers"]["gamma"]["rank"] == 2 and snap["peers"]["gamma"]["heard"]
    pair: dict[str, Any] = Core(sim_config(), "alpha", Inventory(), 0.0).snapshot(0.0)
    assert list(pair["peers"]) == ["beta"]
    assert set(pair["peers"]["beta"]) - set(pair["peer"]) == {
        "data_epoch",
        "commit",
        "heard",
        "in_sync",
        "rank",
    }


def test_switchover_to_a_node_that_cannot_take_over_is_refused() -> None:
    core = started("alpha", Inventory(epoch=1, last_role=Role.ACTIVE, holds_vip=True))
    now = 0.0
    for _ in range(20):  # reclaim after peer_gone_after, the standbys present
        now += 0.05
        events: list[Event] = [
            PeerMessage("a", view("beta", Role.STANDBY, 0)),
            PeerMessage("a", view("gamma", Role.WAITING, 0, candidate=False)),
            SwitchReachability("a", True),
            SwitchReachability("b", True),
            Tick(),
        ]
        for event in events:
            for action in core.handle(event, now):
                if isinstance(action, RunPlan):  # a healthy executor
                    for step in action.steps:
                        core.handle(ActionDone(action.number, step), now)
    assert core.role is Role.ACTIVE
    out = core.handle(OperatorCommand(Command.SWITCHOVER, "gamma"), now)
    refused = [a for a in out if isinstance(a, Decision)]
    assert (
        refused and refused[0].kind == "refused" and "gamma cannot take over" in refused[0].reason
    )
    out = core.handle(OperatorCommand(Command.SWITCHOVER, "beta"), now)
    assert any(isinstance(a, Decision) and a.kind == "switchover" for a in out)
    assert core.view(now).successor == "beta"


def test_force_active_is_refused_while_any_peer_is_alive() -> None:
    core = started("gamma")
    core.handle(PeerMessage("a", view("beta", Role.STANDBY, 0)), 0.1)
    out = core.handle(OperatorCommand(Command.FORCE_ACTIVE), 0.2)
    decisions = [a for a in out if isinstance(a, Decision)]
    assert decisions[-1].kind == "refused" and "peer beta is alive" in decisions[-1].reason
