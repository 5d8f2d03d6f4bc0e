"""Among standbys of equal data epoch, the one whose applier made more of the epoch's
synchronous commits durable is fresher (docs/sync-mode.md, "Freshness").

Issue 14: "a standby that missed writes is never elected over one that did not". The
data epoch's withdrawal comes only with the active's verdict; a standby dropped from
the mount's stream stops counting commits at once, so it ranks below the others even
when the active dies before its verdict was sent (the window of ~0.5 s with 3+ nodes)."""

from __future__ import annotations

import dataclasses

from mosqit_failover.actions import SendPeerMessage
from mosqit_failover.core import Core
from mosqit_failover.events import (
    Inventory,
    LinkChanged,
    Role,
    SwitchReachability,
    SyncApplied,
    Tick,
)
from mosqit_failover.sim_scenarios import SETTLED, run, sim_config_n
from tests.unit.transcript import view_of

S = Role.STANDBY


def standby(node: str, data_epoch: int = 3) -> Core:
    core = Core(sim_config_n(3), node, Inventory(epoch=2, data_epoch=data_epoch), 0.0)
    for net in ("a", "b"):
        core.handle(LinkChanged(net, True), 0.0)
        core.handle(SwitchReachability(net, True), 0.0)
    return core


def test_the_commit_shown_is_the_sum_over_the_directories_of_the_data_epochs_stream() -> None:
    core = standby("gamma", data_epoch=3)
    assert core.view(0.1).commit == 0
    core.handle(SyncApplied(((3, 1_000_012), (3, 2_000_005), (2, 9_999_999))), 0.1)
    assert core.view(0.1).commit == 3_000_017  # the epoch 2 stream is older data
    assert core.snapshot(0.1)["commit"] == 3_000_017
    core.handle(SyncApplied(((2, 9_999_999),)), 0.2)
    assert core.view(0.2).commit == 0


def test_a_new_commit_goes_out_in_the_next_heartbeat_not_a_cached_one() -> None:
    core = standby("gamma")
    core.handle(Tick(), 0.1)
    out = core.handle(SyncApplied(((3, 41),)), 0.35)
    out += core.handle(Tick(), core.next_deadline())
    beats = [a.view for a in out if isinstance(a, SendPeerMessage)]
    assert beats and all(b.commit == 41 for b in beats)


def test_the_standby_with_more_commits_ranks_first_among_equal_data_epochs() -> None:
    """beta is first in the order; gamma applied more of epoch 3's stream."""
    beta = standby("beta")
    beta.handle(SyncApplied(((3, 100),)), 0.1)
    gamma_view = dataclasses.replace(view_of("gamma", S, 2), data_epoch=3, commit=130)
    assert beta._outranks_me(gamma_view)
    gamma = standby("gamma")
    gamma.handle(SyncApplied(((3, 130),)), 0.1)
    beta_view = dataclasses.replace(view_of("beta", S, 2), data_epoch=3, commit=100)
    assert not gamma._outranks_me(beta_view)
    assert gamma._election_reason(beta_view) == (
        "both data epoch 3, I applied 30 synchronous commit(s) more than beta"
    )


def test_commits_never_outrank_a_fresher_data_epoch_nor_the_epochs_own_active() -> None:
    gamma = standby("gamma", data_epoch=3)
    gamma.handle(SyncApplied(((3, 10**12),)), 0.1)
    fresher = dataclasses.replace(view_of("beta", S, 2), data_epoch=4, commit=0)
    assert gamma._outranks_me(fresher)
    was_active = dataclasses.replace(view_of("beta", S, 3), data_epoch=3, commit=0)
    assert gamma._outranks_me(was_active)  # it acknowledged every write of epoch 3


def test_equal_commits_leave_it_to_the_order() -> None:
    beta = standby("beta")
    beta.handle(SyncApplied(((3, 100),)), 0.1)
    gamma_view = dataclasses.replace(view_of("gamma", S, 2), data_epoch=3, commit=100)
    assert not beta._outranks_me(gamma_view)


def test_the_window_before_the_verdict_in_the_simulation() -> None:
    """beta (first in the order) is dropped from alpha's stream; alpha dies 0.3 s later,
    before its verdict: gamma promotes. Before, beta won by the order (the scenario fails
    with the commit left out of the rank: checked by hand, see the commit message)."""
    for seed in (1, 2, 3, 4):
        world, problems = run("three-stream-window", seed)
        assert problems == [], "\n".join(line.text for line in world.timeline[-30:])
        assert not [d for d in world.decisions("beta") if d.kind == "data-epoch-withdrawn"]
        promote = next(d.reason for d in world.decisions("gamma") if d.kind == "promote")
        assert "synchronous commit(s) more than beta" in promote
        assert world.nodes["gamma"].applied[1] > world.nodes["beta"].applied[1]
        gamma = world.nodes["gamma"].core
        assert gamma is not None and gamma.view(world.now).commit == 0  # a holder shows none
        promoted = [
            line.time
            for line in world.timeline
            if line.node == "gamma" and line.decision and line.decision.kind == "promote"
        ]
        assert promoted and min(promoted) > SETTLED
