"""The core's quiet path changes nothing but the cost.

A steady node takes routine events (a heartbeat with the view the peer sent
before, an echo reply, the switch answering, a Tick for the heartbeat alone)
without running the rules (`Core._quiet`). Every simulated scenario runs here
twice, with the quiet path and with every event running every rule as before
it existed: each node must get the same events at the same times and answer
each with the same actions, and `next_deadline()` must always be the deadline
the full computation gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from mosqit_failover.actions import Action
from mosqit_failover.core import Core
from mosqit_failover.events import Event, PeerMessage, Tick
from mosqit_failover.observations import NEVER
from mosqit_failover.sim_scenarios import SCENARIOS, run, sim_config
from mosqit_failover.simulation import World

Record = tuple[float, str, str, tuple[Action, ...]]


def full_deadline(core: Core) -> float:
    """next_deadline() computed from scratch, as without the quiet path."""
    kept = core._quiet_until
    core._quiet_until = NEVER
    try:
        return core.next_deadline()
    finally:
        core._quiet_until = kept


def recorded(name: str, seed: int, quiet: bool, monkeypatch: pytest.MonkeyPatch) -> list[Record]:
    """Every event each core of the scenario handled, when, and what it answered."""
    records: list[Record] = []
    handle = Core.handle

    def recording(core: Core, event: Event, now: float) -> list[Action]:
        actions = handle(core, event, now)
        records.append((now, core.node, repr(event), tuple(actions)))
        assert core.next_deadline() == full_deadline(core), (now, core.node, event)
        return actions

    with monkeypatch.context() as patch:
        patch.setattr(Core, "handle", recording)
        if not quiet:
            patch.setattr(Core, "_steady", lambda core, now: False)
        run(name, seed)
    return records


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_runs_as_without_the_quiet_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = recorded(name, 1, True, monkeypatch)
    full = recorded(name, 1, False, monkeypatch)
    for i, (a, b) in enumerate(zip(quiet, full, strict=True)):
        assert a == b, f"event {i}: quiet path {a}, full rules {b}"


def test_a_settled_pair_takes_routine_events_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of it: once settled, (almost) no event runs the rules; a new view does."""
    seen: dict[str, Any] = {"quiet": 0, "full": 0, "new_view_full": 0}
    quiet, full = Core._quiet, Core._full

    def counting_quiet(core: Core, event: Event, now: float, out: list[Action]) -> bool:
        taken = quiet(core, event, now, out)
        if taken and now > 25.0:
            seen["quiet"] += 1
        return taken

    def counting_full(core: Core, event: Event, now: float, out: list[Action]) -> None:
        if now > 25.0:
            seen["full"] += 1
            if isinstance(event, PeerMessage):
                tracker = core.peers[event.view.node]
                seen["new_view_full"] += tracker.view != event.view
        full(core, event, now, out)

    monkeypatch.setattr(Core, "_quiet", counting_quiet)
    monkeypatch.setattr(Core, "_full", counting_full)
    # beta powers off at 10 s and boots again at 20 s: counted from 25 s on, settled again
    _, problems = run("standby-failure", 1)
    assert problems == []
    # about 400: from 25 s to the end, each node's probe slots and the peer's calm
    # heartbeats (one a period, the networks in turn), ten a second each
    assert seen["quiet"] > 300
    assert seen["full"] < seen["quiet"] / 10, seen


def steady_pair() -> tuple[World, Core]:
    """A simulated pair run until alpha, the active, is steady (the quiet path on)."""
    world = World(sim_config(), seed=1)
    world.boot("alpha")
    world.boot("beta")
    world.run_until(15.0)
    core = world.nodes["alpha"].core
    assert core is not None and core._quiet_until > core._now, "alpha is steady"
    return world, core


def test_a_tick_for_the_heartbeat_alone_sends_it_quietly() -> None:
    world, core = steady_pair()
    # a moment the heartbeat is due before any rule's deadline (a peer's message late
    # by `echo_on_demand_after` is one: it comes and goes with each message)
    end = 15.0
    while core._heartbeat_at >= core._quiet_until and end < 16.0:
        end += 0.005
        world.run_until(end)
    beat = core._heartbeat_at
    assert beat < core._quiet_until, "the heartbeat is the next deadline"
    out: list[Action] = []
    assert core._quiet(Tick(), beat, out)
    assert [type(a).__name__ for a in out] == ["SendPeerMessage"]


def test_the_quiet_heartbeats_carry_one_view_object_on_every_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The encoder knows an unchanged view by identity (`Sender._body`): the calm
    heartbeats, one network at a time, must not bring an equal copy per network, which
    it would compare field by field on every datagram."""
    from mosqit_failover.events import PeerView
    from mosqit_failover.simulation import SimNode

    world, _ = steady_pair()
    sent: list[tuple[PeerView, str | None]] = []
    send = world._send

    def recording(node: SimNode, view: PeerView, network: str | None) -> None:
        if node.name == "alpha":
            sent.append((view, network))
        send(node, view, network)

    monkeypatch.setattr(world, "_send", recording)
    world.run_until(16.0)
    assert [network for _, network in sent[:4]] in (["a", "b"] * 2, ["b", "a"] * 2), sent
    assert len({id(view) for view, _ in sent}) == 1, "one view while steady"
