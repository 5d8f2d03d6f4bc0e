"""A standby's data epoch: recorded when the active lists it in sync, withdrawn when the
active of that epoch stops listing it (it missed writes), recorded again once caught up.

Issue 14: "a standby that missed writes is not eligible as 'freshest' until it has
caught up" and "is never elected over one that did not" (docs/sync-mode.md, "Data
epoch withheld")."""

from __future__ import annotations

from mosqit_failover.actions import Action, SendPeerMessage
from mosqit_failover.config import Config, parse
from mosqit_failover.core import RERECORD_AFTER, Core
from mosqit_failover.events import (
    Inventory,
    LinkChanged,
    PeerMessage,
    PeerView,
    Role,
    SwitchReachability,
)
from mosqit_failover.sim_scenarios import SETTLED, run, sim_config, sim_config_n, sim_config_text
from mosqit_failover.simulation import World
from tests.unit.transcript import action_text, view_of

A, S, P = Role.ACTIVE, Role.STANDBY, Role.PROMOTING


def started(node: str = "gamma", config: Config | None = None, data_epoch: int = 0) -> Core:
    core = Core(config or sim_config_n(3), node, Inventory(data_epoch=data_epoch), 0.0)
    for net in ("a", "b"):
        core.handle(LinkChanged(net, True), 0.0)
        core.handle(SwitchReachability(net, True), 0.0)
    return core


def three(seed: int) -> World:
    """alpha, beta and gamma booted at once in the simulation (alpha becomes active)."""
    world = World(sim_config_n(3), seed=seed)
    for name in ("alpha", "beta", "gamma"):
        world.boot(name)
    return world


def alpha(role: Role = A, epoch: int = 3, in_sync: tuple[str, ...] = ("gamma",)) -> PeerView:
    return view_of("alpha", role, epoch, in_sync=in_sync)


def told(core: Core, view: PeerView, now: float) -> list[str]:
    """What the core does with `view` at `now` (its switches answering), as text,
    heartbeats left out."""
    out: list[Action] = []
    for net in ("a", "b"):
        out += core.handle(SwitchReachability(net, True), now)
    out += core.handle(PeerMessage("a", view), now)
    return [action_text(a) for a in out if not isinstance(a, SendPeerMessage)]


def persisted(actions: list[str]) -> list[str]:
    return [a for a in actions if a.startswith(("RecordDataEpoch", "WithdrawDataEpoch"))]


def test_a_standby_the_active_stops_listing_withdraws_the_epoch_and_records_it_when_caught_up() -> (
    None
):
    core = started()
    assert told(core, alpha(), 0.1) == [
        "[data-epoch-recorded] gamma STANDBY: data epoch 3: active alpha lists me in sync "
        "[epoch 0]",
        "RecordDataEpoch(3)",
    ]
    assert told(core, alpha(), 0.2) == []  # told once
    assert told(core, alpha(in_sync=("beta",)), 0.3) == [
        "[data-epoch-withdrawn] gamma STANDBY: data epoch 3 withdrawn, now 2: active alpha "
        "no longer lists me in sync (missed writes of epoch 3) [epoch 0]",
        "WithdrawDataEpoch(2, 3)",
    ]
    assert core.view(0.3).data_epoch == 2
    assert core.snapshot(0.3)["data_epoch"] == 2
    assert told(core, alpha(in_sync=("beta",)), 0.4) == []  # said once
    # listed again (a view every heartbeat): recorded once that has lasted RERECORD_AFTER
    said: dict[int, list[str]] = {}
    for beat in range(70):
        if lines := told(core, alpha(), 1.0 + beat / 10):
            said[beat] = lines
    assert said == {
        10 * int(RERECORD_AFTER): [
            "[data-epoch-recorded] gamma STANDBY: data epoch 3: active alpha has listed me "
            "in sync again for 5000ms [epoch 0]",
            "RecordDataEpoch(3)",
        ]
    }
    assert core.view(8.0).data_epoch == 3


def test_a_withdrawal_is_sent_to_the_peers_at_once() -> None:
    core = started()
    core.handle(PeerMessage("a", alpha()), 0.1)
    out = core.handle(PeerMessage("a", alpha(in_sync=())), 0.11)
    beats = [a.view for a in out if isinstance(a, SendPeerMessage)]
    assert beats and beats[-1].data_epoch == 2  # not after the next heartbeat period


def test_a_flapping_sync_persists_a_withdrawal_and_a_record_at_most_every_rerecord_after() -> None:
    core = started()
    core.handle(PeerMessage("a", alpha()), 0.1)
    writes: list[str] = []
    now = 0.1
    for beat in range(200):  # 20 s, the verdict flipping with every heartbeat
        now += 0.1
        writes += persisted(told(core, alpha(in_sync=("gamma",) if beat % 2 else ()), now))
    assert writes == ["WithdrawDataEpoch(2, 3)"]
    assert core.view(now).data_epoch == 2  # never listed RERECORD_AFTER in a row


def test_views_that_say_nothing_about_the_epoch_recorded_lower_nothing() -> None:
    core = started(data_epoch=3)
    assert told(core, alpha(epoch=2, in_sync=()), 0.1) == []  # an older active (old view)
    assert told(core, alpha(role=P, in_sync=()), 0.2) == []  # promoting: has not judged
    assert told(core, alpha(role=S, in_sync=()), 0.3) == []  # a standby lists nobody
    assert told(core, alpha(epoch=4, in_sync=()), 0.4) == []  # never recorded 4
    assert core.view(0.4).data_epoch == 3


def test_without_synced_directories_not_being_listed_withdraws_nothing() -> None:
    """Without [[sync]] the active lists every standby it hears: one it does not hear
    (a one-way path) missed no data."""
    core = started(config=parse(sim_config_text(3, synced=False), "<test>"), data_epoch=3)
    assert not core.config.sync
    assert told(core, alpha(in_sync=("beta",)), 0.1) == []
    assert core.view(0.1).data_epoch == 3


def beta_withdrawals(scenario: str, seed: int) -> tuple[World, list[str]]:
    """The scenario run without a problem; beta's data-epoch withdrawals, their reasons."""
    world, problems = run(scenario, seed)
    assert problems == [], "\n".join(line.text for line in world.timeline[-30:])
    return world, [d.reason for d in world.decisions("beta") if d.kind == "data-epoch-withdrawn"]


def test_three_nodes_the_standby_that_missed_writes_loses_the_election() -> None:
    """beta (first in the order) and gamma both recorded alpha's epoch; beta's sync then
    lags; alpha powers off: gamma, which holds every write, takes over. On main beta kept
    the epoch, tied with gamma, and won by the order."""
    for seed in (1, 2, 3):
        world, withdrawn = beta_withdrawals("three-sync-falls-behind", seed)
        assert withdrawn == [
            "data epoch 1 withdrawn, now 0: active alpha no longer lists me in sync "
            "(missed writes of epoch 1)"
        ]
        promote = next(d.reason for d in world.decisions("gamma") if d.kind == "promote")
        assert promote.endswith(
            "nobody is active; I rank first among the candidates (data epoch 1 vs beta's 0)"
        )


def test_three_nodes_a_standby_caught_up_again_ranks_by_the_order_again() -> None:
    world = three(seed=1)
    world.set_sync_behind("beta", True, SETTLED)
    world.set_sync_behind("beta", False, SETTLED + 2)
    world.power_off("alpha", SETTLED + 2 + RERECORD_AFTER + 1)
    world.run_until(SETTLED + 20)
    assert [d.kind for d in world.decisions("beta") if "data-epoch" in d.kind] == [
        "data-epoch-recorded",
        "data-epoch-withdrawn",
        "data-epoch-recorded",
    ]
    assert world.roles() == {"alpha": None, "beta": A, "gamma": S}


def test_a_pair_standby_that_missed_writes_still_takes_over() -> None:
    """In a pair the data epoch only ranks: the only standby takes over whatever it is."""
    world = World(sim_config(), seed=1)
    world.boot("alpha")
    world.boot("beta")
    world.set_sync_behind("beta", True, SETTLED)
    world.power_off("alpha", SETTLED + 2)
    world.run_until(SETTLED + 15)
    assert "data-epoch-withdrawn" in [d.kind for d in world.decisions("beta")]
    assert world.roles()["beta"] is A


def test_the_active_sends_a_changed_verdict_at_once_so_the_standby_withdraws_within_a_beat() -> (
    None
):
    """The window in which a standby that missed writes still claims the epoch: the
    verdict goes out with the active's next message, not after its heartbeat period
    (0.1 s when calm here: 0.05-0.12 s without this, 0.011 s with it, the simulated sync
    manager reporting the change at once)."""
    for seed in (1, 2, 3):
        world = three(seed)
        world.set_sync_behind("beta", True, SETTLED)
        world.run_until(SETTLED + 2)
        withdrawn = next(line.time for line in world.timeline if "withdrawn" in line.text)
        assert withdrawn - SETTLED < world.config.timing.heartbeat, seed


def test_three_nodes_a_standby_cut_off_from_the_active_withdraws_and_loses() -> None:
    """beta no longer hears alpha (nor gets its writes) while gamma hears both: alpha's
    verdict cannot reach beta, so the partition itself withdraws the epoch. On main beta
    kept it and won by the order when alpha died (5 s of writes lost)."""
    for seed in (1, 2, 3):
        _, withdrawn = beta_withdrawals("three-cut-from-active", seed)
        assert withdrawn == [
            "data epoch 1 withdrawn, now 0: active alpha is not heard here, gamma hears it: "
            "a partition (missed writes of epoch 1)"
        ]


def test_a_partition_between_two_standbys_withdraws_nothing() -> None:
    world = three(seed=1)
    for net in ("a", "b"):
        world.set_link("beta", "gamma", net, False, SETTLED)
    world.run_until(SETTLED + 5)
    for name in ("beta", "gamma"):  # each hears alpha: its verdict, not a cut, decides
        assert "data-epoch-withdrawn" not in [d.kind for d in world.decisions(name)]
        assert world.nodes[name].data_epoch == 1
