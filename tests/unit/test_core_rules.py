"""Golden transcripts: one rule of the reference design each, events in, exact lines out."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from mosqit_failover.actions import SendPeerMessage
from mosqit_failover.config import Config, parse
from mosqit_failover.core import CALM_AFTER
from mosqit_failover.events import (
    EPOCH_MAX,
    Command,
    Inventory,
    OperatorCommand,
    PeerMessage,
    Role,
    SyncInSync,
    Tick,
)
from mosqit_failover.sim_scenarios import SIM_CONFIG
from tests.unit.transcript import Harness, active, standby

PROMOTION_PLAN = (
    "plan 1: PersistState(2, ACTIVE), ClaimVip, SendGarp, StartSync(2, True, ()), "
    "StartResource(db), StartResource(app)"
)


def test_standby_promotes_after_the_third_missed_echo_on_every_network() -> None:
    h = standby()
    h.peer = None  # alpha's agent and kernel gone: no message, no echo reply
    h.echo_answers = {"a": False, "b": False}
    start = h.now
    h.run_until(start + 0.15)  # a probe and its first retry missed: not yet
    assert h.kinds(start) == []
    h.run_until(start + 1.0)
    assert h.transcript(start) == [
        "[promote] beta STANDBY -> PROMOTING: peer alpha gone: echo replies missed "
        "(a: 3, b: 3), no message for 220ms [epoch 2]",
        PROMOTION_PLAN,
        "[plan-done] beta PROMOTING -> ACTIVE: promotion complete: VIP, ARP, sync and "
        "services are up [epoch 2]",
    ]


def test_the_peer_is_gone_once_three_echoes_missed_and_udp_was_silent_an_echo_window() -> None:
    h = standby()
    h.peer = None  # last message at 0.95
    h.echo_answers = {"a": False, "b": False}
    h.run_until(2.0)
    at = min(t for t, d in h.outputs if getattr(d, "kind", "") == "promote")
    t = h.config.timing
    # the probe at 1.1 and its two retries time out by 1.16: three misses on each
    # network; the UDP silence reaches (misses-1) x interval + echo_timeout at 1.17,
    # well before misses x interval (1.25)
    assert at == pytest.approx(0.95 + t.echo_window)
    assert at < 0.95 + t.peer_gone_after


def test_a_message_while_the_echoes_are_missed_keeps_the_peer_for_a_whole_echo_window() -> None:
    h = standby()
    h.echo_answers = {"a": False, "b": False}  # ICMP filtered, the agent still talks
    start = h.now
    h.run_until(start + 0.5)
    assert h.kinds(start) == []
    h.peer = None  # now the agent goes quiet too
    last = max(t for t, a in h.outputs if t <= start + 0.5)
    h.run_until(start + 1.5)
    at = min(t for t, d in h.outputs if t > start + 0.5 and getattr(d, "kind", "") == "promote")
    assert at >= last + h.config.timing.echo_window - 0.05  # last message came before `last`


def test_echo_missed_on_one_network_only_is_no_reason_to_promote() -> None:
    h = standby()
    h.echo_answers = {"a": False, "b": True}
    h.peer_networks = ("b",)
    h.run_until(10.0)
    assert h.role() is Role.STANDBY
    assert h.kinds(1.0) == []


def test_os_problem_udp_silent_while_icmp_answers_promotes_after_service_timeout() -> None:
    h = standby()
    h.peer = None  # the agent died, the kernel still answers echo
    start = h.now
    h.run_until(start + 2.9)
    assert h.role() is Role.STANDBY
    h.run_until(start + 3.4)  # the fence (test_core_safety) answers after 0.3 s
    promote = next(line for line in h.transcript(start) if line.startswith("[promote]"))
    assert promote.startswith("[promote] beta STANDBY -> PROMOTING: peer alpha's failover service")
    assert "while ICMP answers (OS problem); fenced:" in promote


def test_a_node_without_both_networks_never_promotes_on_its_own() -> None:
    h = standby()
    h.set_carrier("b", False)
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(30.0)
    assert h.role() is Role.WAITING
    assert "promote" not in h.kinds()
    assert h.decisions(1.0)[0].text == (
        "beta STANDBY -> WAITING: lost uplink b (no carrier): no authority [epoch 0]"
    )


def test_a_switch_that_stops_answering_counts_as_a_lost_uplink() -> None:
    h = standby()
    h.switch_answers["a"] = False
    h.run_until(1.0 + 2.2)
    assert h.role() is Role.WAITING
    assert "switch silent for over 2s" in h.decisions(1.0)[0].text


def test_start_up_grace_a_node_alone_waits_before_promoting() -> None:
    h = Harness()
    h.echo_answers = {"a": False, "b": False}
    h.run_until(4.9)
    assert h.role() is Role.STANDBY
    h.run_until(5.3)
    assert h.role() is Role.ACTIVE
    assert "peer alpha gone" in h.decisions()[1].reason


def test_both_present_at_start_the_higher_epoch_wins_even_if_it_is_slower() -> None:
    h = Harness(inventory=Inventory(epoch=3))
    # alpha (epoch 5, fresher data) is still bringing its links up
    h.peer = h.peer_view(Role.WAITING, 5, uplinks=(("a", False), ("b", True)), candidate=False)
    h.run_until(2.0)
    assert h.role() is Role.STANDBY
    h.peer = h.peer_view(Role.STANDBY, 5)
    h.run_until(4.0)
    assert h.role() is Role.STANDBY
    assert h.kinds() == ["standby"]


def test_election_loser_with_equal_epochs_is_the_node_that_is_not_preferred() -> None:
    h = Harness()
    h.peer = h.peer_view(Role.STANDBY, 0)
    h.run_until(3.0)
    assert h.role() is Role.STANDBY  # alpha is preferred


def test_two_actives_meet_the_lower_epoch_demotes_at_once() -> None:
    h = active()
    h.peer = h.peer_view(Role.ACTIVE, 2)
    start = h.now
    h.run_until(start + 0.06)
    assert h.transcript(start)[:2] == [
        "[demote-dual-active] alpha ACTIVE -> DEMOTING: two active nodes: peer beta outranks "
        "me (epoch 2 vs mine 1) [epoch 1]",
        "plan 2: PersistState(1, DEMOTING), ReleaseVip, StopResource(app), StopResource(db), "
        "StopSync(False, False, ), PersistState(1, WAITING)",
    ]  # the VIP first: the peer serves already (the lab saw 2-7 s of two holders otherwise)


def test_two_actives_with_equal_epochs_the_preferred_node_stays() -> None:
    h = active()
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(3.0)
    assert h.role() is Role.ACTIVE


def test_active_that_lost_an_uplink_its_peer_still_has_hands_over() -> None:
    h = active()
    start = h.now
    h.set_carrier("a", False)
    h.run_until(start + 0.55)  # link_fall 0.2 s + settle 0.4 s
    assert h.role() is Role.ACTIVE
    h.run_until(start + 1.0)
    assert h.transcript(start)[:2] == [
        "[handover] alpha ACTIVE -> DEMOTING: lost uplink a which peer beta still has: "
        "handing over [epoch 1]",
        "plan 2: PersistState(1, DEMOTING), StopResource(app), StopResource(db), "
        "StopSync(False, False, ), "
        "ReleaseVip, PersistState(1, WAITING)",
    ]
    assert h.role() is Role.WAITING
    assert h.last_view().yielding


def test_standby_takes_over_from_a_yielding_peer_at_once() -> None:
    h = standby()
    h.peer = h.peer_view(
        Role.WAITING, 1, uplinks=(("a", False), ("b", True)), candidate=False, yielding=True
    )
    start = h.now
    h.run_until(start + 0.1)
    assert h.kinds(start) == ["promote", "plan-done"]
    assert "peer alpha lacks a network (WAITING)" in h.decisions(start)[0].reason


def test_one_switch_lost_by_both_nodes_is_manual_mode_and_the_active_keeps_serving() -> None:
    h = active()
    start = h.now
    h.set_carrier("a", False)
    h.peer = h.peer_view(Role.STANDBY, 0, uplinks=(("a", False), ("b", True)), candidate=False)
    h.peer_networks = ("b",)
    h.run_until(start + 10)
    assert h.role() is Role.ACTIVE
    assert h.transcript(start) == [
        "[manual] alpha ACTIVE: MANUAL mode: network a lost on both nodes; automatic "
        "switchover off, the active node keeps serving [epoch 1]"
    ]
    assert h.last_view().manual
    h.set_carrier("a", True)
    h.peer = h.peer_view(Role.STANDBY, 0)
    h.peer_networks = ("a", "b")
    back = h.now
    h.run_until(back + 3)
    assert h.transcript(back) == [
        "[automatic] alpha ACTIVE: automatic mode: peer beta has network a again [epoch 1]"
    ]  # our own link is still rising (link_rise): recovering is no reason to hand over
    assert h.role() is Role.ACTIVE


def test_both_networks_lost_the_active_releases_the_vip_then_stops_the_rest() -> None:
    h = active()
    start = h.now
    h.set_carrier("a", False)
    h.set_carrier("b", False)
    h.peer = None
    h.run_until(start + 1)
    assert h.transcript(start) == [
        "[demote-isolated] alpha ACTIVE -> DEMOTING: lost every network (split brain or cut "
        "off): releasing the VIP, then stopping services and sync [epoch 1]",
        "plan 2: PersistState(1, DEMOTING), ReleaseVip, StopResource(app), StopResource(db), "
        "StopSync(False, False, ), PersistState(1, WAITING)",
        "[plan-done] alpha DEMOTING -> WAITING: demotion complete: services, sync and VIP "
        "released [epoch 1]",
    ]


def test_recovery_after_split_brain_alone_waits_the_grace_then_promotes() -> None:
    h = active()
    h.set_carrier("a", False)
    h.set_carrier("b", False)
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(5.0)
    h.set_carrier("a", True)
    h.set_carrier("b", True)
    h.run_until(5.0 + 2.0 + 4.8)  # link_rise 2 s, then grace 5 s
    assert h.role() is Role.STANDBY
    h.run_until(5.0 + 2.0 + 5.3)
    assert h.role() is Role.ACTIVE
    assert h.core.epoch == 2


def test_link_debounce_a_flap_shorter_than_link_fall_changes_nothing() -> None:
    h = active()
    start = h.now
    for _ in range(10):
        h.set_carrier("a", False)
        h.run_until(h.now + 0.1)
        h.set_carrier("a", True)
        h.run_until(h.now + 0.1)
    h.run_until(start + 5)
    assert h.transcript(start) == []


def test_link_debounce_a_returning_link_counts_only_after_link_rise() -> None:
    h = Harness()
    h.set_carrier("a", False)
    h.run_until(3.0)
    assert h.role() is Role.WAITING
    h.set_carrier("a", True)
    h.run_until(4.9)
    assert h.role() is Role.WAITING
    h.run_until(5.1)
    assert h.role() is Role.STANDBY


def test_operator_switchover_hands_over_and_yields() -> None:
    h = active()
    start = h.now
    h.feed(OperatorCommand(Command.SWITCHOVER))
    h.run_until(start + 1)
    assert h.kinds(start) == ["switchover", "plan-done", "standby"]
    assert h.decisions(start)[0].reason == "operator switchover: handing over to beta"
    # planned: the sync pushes what is pending in full, and what it cannot push aborts
    # the handover (a fault's demotion: StopSync(False, False, ))
    assert h.transcript(start)[1] == (
        "plan 2: PersistState(1, DEMOTING), StopResource(app), StopResource(db), "
        "StopSync(True, True, beta), ReleaseVip, PersistState(1, WAITING)"
    )
    assert h.last_view().yielding and not h.last_view().candidate
    h.peer = h.peer_view(Role.ACTIVE, 2)
    h.run_until(start + 2)
    assert h.last_view().candidate  # the peer took over: back to a normal standby


@pytest.mark.parametrize(
    ("peer_there", "planned"), [(True, "True, False, "), (False, "False, False, ")]
)
def test_an_agent_stop_drains_in_full_only_with_a_peer_to_push_to(
    peer_there: bool, planned: str
) -> None:
    """A planned drain retries for up to a minute: beside a dead peer, a stop would
    wait that long for nobody."""
    h = active()
    if not peer_there:
        h.peer = None
        h.echo_answers = {"a": False, "b": False}
        h.run_until(h.now + 5)
    start = h.now
    h.feed(OperatorCommand(Command.STOP))
    h.run_until(start + 1)
    plan = next(line for line in h.transcript(start) if line.startswith("plan"))
    assert f"StopSync({planned})" in plan, plan


def test_a_switchover_whose_sync_cannot_push_everything_serves_on() -> None:
    """A helper's switchover right after a 150 MB write at 2 MB/s: the drain ran out,
    the handover went on, and the new active's first sync replaced the file on both
    nodes. Now the node restarts its services in the same epoch (it never let go of
    the VIP) and the peer stays standby."""
    h = active(fail_step="StopSync(True, True, beta)")
    start = h.now
    h.feed(OperatorCommand(Command.SWITCHOVER))
    h.run_until(start + 1)
    assert h.transcript(start)[2:5] == [
        "[handover-aborted] alpha DEMOTING -> PROMOTING: handover aborted, serving on: "
        "exit status 1; hand over again once `mosqit-failover status` shows the "
        "directories in sync [epoch 1]",
        "plan 3: PersistState(1, ACTIVE), ClaimVip, SendGarp, StartSync(1, True, ()), "
        "StartResource(db), StartResource(app)",
        "[plan-done] alpha PROMOTING -> ACTIVE: promotion complete: VIP, ARP, sync and "
        "services are up [epoch 1]",
    ]
    assert h.role() is Role.ACTIVE and h.core.epoch == 1
    assert not h.last_view().yielding


def _switchover_until_its_drain_fails(h: Harness) -> float:
    """Start a switchover whose plan stops before its StopSync; the caller adds what
    happens during the drain, then `_drain_fails`."""
    h.auto_complete = False
    start = h.now
    h.feed(OperatorCommand(Command.SWITCHOVER))
    return start


def _drain_fails(h: Harness, end: float) -> None:
    h.fail_step = "StopSync(True, True, beta)"
    h.auto_complete = True
    h._complete_steps()
    h.fail_step = None
    h.run_until(end)


def test_an_agent_stop_during_a_switchover_s_drain_is_no_abort() -> None:
    """A helper's `systemctl stop` during a switchover's drain: the abort restarted the
    services, and the agent exited holding the VIP and the service: two holders."""
    h = active()
    start = _switchover_until_its_drain_fails(h)
    h.feed(OperatorCommand(Command.STOP))
    _drain_fails(h, start + 1)
    assert "handover-aborted" not in h.kinds(start)
    assert [d.reason for d in h.decisions(start) if d.kind == "demote-retry"] == [
        "exit status 1; the agent is stopping: demoting all the same, the sync's last changes lost"
    ]
    plans = [line for line in h.transcript(start) if line.startswith("plan")]
    assert plans[-1] == (
        "plan 3: PersistState(1, DEMOTING), StopResource(app), StopResource(db), "
        "StopSync(False, False, ), ReleaseVip, PersistState(1, WAITING)"
    )
    assert not h.role().may_hold


def test_a_switchover_s_drain_that_fails_once_the_peer_holds_releases_the_vip_first() -> None:
    """A helper cut both links during the drain: the peer took over, and the demoting
    node kept the VIP for the rest of the minute; an abort would restart its services
    beside the new active's."""
    h = active()
    start = _switchover_until_its_drain_fails(h)
    h.peer = h.peer_view(Role.ACTIVE, 2)
    h.run_until(start + 0.3)
    _drain_fails(h, start + 1)
    assert "handover-aborted" not in h.kinds(start)
    plans = [line for line in h.transcript(start) if line.startswith("plan")]
    assert plans[-1].startswith("plan 3: PersistState(1, DEMOTING), ReleaseVip, ")


def test_no_failback_after_an_aborted_one_until_the_preferred_node_caught_up() -> None:
    """A helper's failback aborted (its sync could not push everything), then fired
    again 0.4 s after the node served on, and the second one went on: the data lost."""
    text = SIM_CONFIG.replace('preferred = "alpha"', 'preferred = "alpha"\nfailback = true')
    h = standby(config=parse(text))  # beta
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(h.now + 1)  # beta takes over from a dead alpha
    assert h.role() is Role.ACTIVE
    h.echo_answers = {"a": True, "b": True}
    h.peer = h.peer_view(Role.STANDBY, 0)
    start = h.now
    h.fail_step = "StopSync(True, True, alpha)"
    h.run_until(start + 2)
    handovers = ("failback", "handover-aborted")
    assert [k for k in h.kinds(start) if k in handovers] == list(handovers)
    h.fail_step = None
    h.run_until(start + 10)
    assert h.kinds(start).count("failback") == 1 and h.role() is Role.ACTIVE
    h.feed(SyncInSync("alpha", True))  # now alpha has everything
    h.run_until(start + 12)
    assert h.kinds(start).count("failback") == 2


def test_an_agent_stop_whose_sync_cannot_push_everything_goes_on() -> None:
    h = active(fail_step="StopSync(True, False, )")
    start = h.now
    h.feed(OperatorCommand(Command.STOP))
    h.run_until(start + 1)
    assert "handover-aborted" not in h.kinds(start)


def test_operator_switchover_refused_when_the_peer_cannot_take_over() -> None:
    h = active()
    h.peer = h.peer_view(Role.STANDBY, 0, candidate=False, maintenance=True)
    h.run_until(2.0)
    start = h.now
    h.feed(OperatorCommand(Command.SWITCHOVER))
    assert h.role() is Role.ACTIVE
    assert h.transcript(start) == [
        "[refused] alpha ACTIVE: switchover refused: peer beta cannot take over (STANDBY, "
        "it is in maintenance) [epoch 1]"
    ]


def test_a_switchover_to_this_node_itself_is_refused_as_such() -> None:
    """It said "alpha is not a node of this cluster" (a helper's finding)."""
    h = active()
    h.run_until(2.0)
    start = h.now
    h.feed(OperatorCommand(Command.SWITCHOVER, "alpha"))
    assert h.transcript(start) == [
        "[refused] alpha ACTIVE: switchover refused: alpha is this node: name the node to "
        "hand over to (beta) [epoch 1]"
    ]


def test_maintenance_mode_suspends_automatic_promotion() -> None:
    h = standby()
    h.feed(OperatorCommand(Command.MAINTENANCE_ON))
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(10.0)
    assert h.role() is Role.STANDBY
    h.feed(OperatorCommand(Command.MAINTENANCE_OFF))
    h.run_until(10.1)
    assert h.role() is Role.ACTIVE
    assert h.kinds(1.0) == ["maintenance", "maintenance", "promote", "plan-done"]


def test_force_active_is_refused_while_the_peer_is_seen() -> None:
    h = standby()
    start = h.now
    h.feed(OperatorCommand(Command.FORCE_ACTIVE))
    assert h.role() is Role.STANDBY
    assert "force-active refused: peer alpha is alive" in h.transcript(start)[0]


def test_force_active_alone_says_the_data_may_be_stale() -> None:
    h = standby()
    h.set_carrier("b", False)  # one network only: no automatic promotion
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(5.0)
    assert h.role() is Role.WAITING
    h.feed(OperatorCommand(Command.FORCE_ACTIVE))
    h.run_until(5.1)
    assert h.role() is Role.ACTIVE
    forced = h.decisions(5.0)[0]
    assert forced.kind == "force-active"
    assert "DATA MAY BE STALE (my epoch 0, peer's last known 1)" in forced.reason
    assert h.core.epoch == 2


def test_a_new_epoch_is_above_the_data_epoch_a_peer_reported_too() -> None:
    """A standby refuses pushes older than the data it holds (sync/receive.py): a node
    that promotes must take an epoch above the peers' data epochs as well, or it would
    push in vain to a standby synced in an epoch it never saw itself."""
    h = standby()
    assert h.peer is not None
    h.peer = replace(h.peer, data_epoch=7)  # alpha's view: its data is of epoch 7
    h.run_until(h.now + 0.2)
    start = _peer_dies(h)
    assert h.role() is Role.ACTIVE
    assert h.transcript(start)[0].endswith("[epoch 8]")


def _peer_dies(h: Harness) -> float:
    """Alpha falls silent and stops answering echo; one second on. When it died."""
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    start = h.now
    h.run_until(start + 1.0)
    return start


def test_a_new_epoch_is_above_every_epoch_a_peer_named_not_only_its_last() -> None:
    """A later view that names less (a peer whose state was reset, or another cluster's
    datagrams standing in for it: a helper's attack) moved the next epoch back, to
    one an active had already used."""
    h = standby()
    assert h.peer is not None
    h.peer = replace(h.peer, epoch=7)
    h.run_until(h.now + 0.2)
    h.peer = h.peer_view(Role.STANDBY, 0)  # then it names epoch 0
    h.run_until(h.now + 0.2)
    start = _peer_dies(h)
    assert h.role() is Role.ACTIVE
    assert h.transcript(start)[0].endswith("[epoch 8]"), h.transcript(start)


def test_a_new_epoch_never_passes_the_largest_a_peer_takes() -> None:
    """A key holder's view at EPOCH_MAX made the next promotion EPOCH_MAX + 1, which
    every peer drops as malformed: the new active was mute to them for good (a helper's
    finding). At the bound it stays there; ties go by the order."""
    h = standby(auto_complete=False)  # a tie with alpha's last view: no plan finishes
    assert h.peer is not None
    h.peer = replace(h.peer, epoch=EPOCH_MAX, data_epoch=EPOCH_MAX)
    h.run_until(h.now + 0.2)
    start = _peer_dies(h)
    assert h.transcript(start)[0].startswith("[promote] beta STANDBY -> PROMOTING")
    assert h.transcript(start)[1].startswith(f"plan 1: PersistState({EPOCH_MAX}, ACTIVE)")
    view = h.last_view()
    assert view.epoch == EPOCH_MAX  # which every peer decodes (test_wire: the bound)


def test_a_failed_start_rolls_back_alerts_and_lets_the_peer_take_over() -> None:
    h = standby(fail_step="StartResource(app)")
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    start = h.now
    h.run_until(start + 1)
    assert h.transcript(start)[2:5] == [
        "[plan-failed] beta PROMOTING -> DEMOTING: StartResource(app) failed: exit status 1 "
        "[epoch 2]",
        "Alert(start-failed, beta: promotion failed, rolling back: StartResource(app) failed: "
        "exit status 1)",
        "plan 2: PersistState(2, DEMOTING), StopResource(app), StopResource(db), "
        "StopSync(False, False, ), "
        "ReleaseVip, PersistState(2, WAITING)",
    ]
    assert h.role() is Role.STANDBY
    assert not h.last_view().candidate  # start_failure_backoff: the peer goes first


def test_a_failed_stop_is_retried_with_backoff_then_escalated() -> None:
    cfg = parse(
        SIM_CONFIG.replace(
            "[vip]", '[timing]\non_stop_failure = "reboot"\nstop_retries = 1\n\n[vip]'
        )
    )
    h = active(config=cfg, fail_step="StopResource(db)")
    h.feed(OperatorCommand(Command.SWITCHOVER))
    h.run_until(h.now + 10)
    text = h.transcript(1.0)
    assert sum(t.startswith("Alert(stop-failed") for t in text) >= 2
    assert any(t.startswith("Escalate(reboot, stopping failed 2 times") for t in text)
    assert h.role() is Role.DEMOTING  # never claims to be clean while the stop fails
    assert h.last_view().role is Role.DEMOTING


def test_restarted_agent_holding_the_vip_reclaims_when_the_peer_is_standby() -> None:
    inventory = Inventory(epoch=4, last_role=Role.ACTIVE, holds_vip=True, running=("db",))
    h = Harness(node="alpha", inventory=inventory)
    h.peer = h.peer_view(Role.STANDBY, 3)
    h.run_until(1.0)
    assert h.kinds() == ["adopt", "reclaim", "plan-done"]
    assert h.transcript()[2].startswith("plan 1: PersistState(4, ACTIVE), ClaimVip")
    assert h.core.epoch == 4


def test_restarted_agent_holding_the_vip_releases_when_a_fresher_peer_is_active() -> None:
    inventory = Inventory(epoch=4, last_role=Role.ACTIVE, holds_vip=True)
    h = Harness(node="alpha", inventory=inventory)
    h.peer = h.peer_view(Role.ACTIVE, 5)
    h.run_until(1.0)
    assert h.kinds()[:2] == ["adopt", "demote-dual-active"]
    assert h.role() is Role.STANDBY


def test_restarted_agent_holding_the_vip_after_a_demotion_releases_it() -> None:
    inventory = Inventory(epoch=4, last_role=Role.DEMOTING, holds_vip=True)
    h = Harness(node="alpha", inventory=inventory)
    h.run_until(0.5)
    assert h.kinds()[:3] == ["adopt", "demote-retry", "plan-done"]


def test_after_a_freeze_timeouts_restart_instead_of_concluding_the_world_is_gone() -> None:
    h = active()
    h.now += 5.0  # the process was stopped: no probe, no message for 5 s
    h.feed(Tick())
    assert h.kinds(h.now) == ["resumed"]
    assert h.role() is Role.ACTIVE


def test_messages_from_a_node_that_is_not_the_peer_are_ignored() -> None:
    h = standby()
    h.peer = None
    h.feed(PeerMessage("a", replace(h.peer_view(Role.ACTIVE, 9), node="gamma")))
    assert h.core.peer.view is not None and h.core.peer.view.node == "alpha"


def _with_resources(*names: str) -> Config:
    text = SIM_CONFIG.split("[[resources]]")[0]
    for name in names:
        text += f'[[resources]]\nname = "{name}"\nkind = "systemd"\nunit = "{name}.service"\n\n'
    return parse(text + '[[sync]]\npath = "/srv/data"\n')


def test_reload_on_the_active_starts_added_resources_and_leaves_removed_ones_running() -> None:
    h = active()
    start = h.now
    h.feed_actions(h.core.reconfigure(_with_resources("db", "cache"), h.now, stop_removed=False))
    assert h.transcript(start) == [
        "[reconfigure] alpha ACTIVE: config reloaded: added cache; removed app (left running, "
        "no longer managed) [epoch 1]",
        "plan 2: StartResource(cache)",
        # (ACTIVE, plan-done) is a move of the table: it used to be dropped unsaid
        "[plan-done] alpha ACTIVE: reconfiguration complete [epoch 1]",
    ]
    assert h.role() is Role.ACTIVE


def test_reload_can_stop_removed_resources_and_the_standby_only_takes_the_config() -> None:
    h = active()
    start = h.now
    h.feed_actions(h.core.reconfigure(_with_resources("db"), h.now, stop_removed=True))
    assert h.transcript(start)[1] == "plan 2: StopResource(app)"
    s = standby()
    s.feed_actions(s.core.reconfigure(_with_resources("db", "cache"), s.now, stop_removed=False))
    assert [a for a in s.transcript(1.0) if a.startswith("plan")] == []


def test_a_failed_start_after_a_reload_alerts_but_keeps_the_service_up() -> None:
    h = active(fail_step="StartResource(cache)")
    start = h.now
    h.feed_actions(h.core.reconfigure(_with_resources("db", "app", "cache"), h.now, False))
    assert h.kinds(start) == ["reconfigure", "reconfigure-failed"]
    assert h.role() is Role.ACTIVE


def test_udp_and_echo_both_silent_is_named_for_what_it_is_not_an_os_problem() -> None:
    cfg = parse(
        SIM_CONFIG.replace(
            "[vip]",
            '[timing]\ninterval = "1s"\nheartbeat = "500ms"\necho_timeout = "900ms"\n\n[vip]',
        )
    )
    # no retries and slow echo timeouts: only two misses when UDP reaches service_timeout
    h = standby(config=cfg, echo_retries=False)
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    start = h.now
    h.run_until(start + 3.2)
    promote = h.decisions(start)[0]
    assert promote.kind == "promote"
    assert promote.reason == (
        "peer alpha silent: no message for 3000ms, no echo reply for 3000ms (a: 2, b: 2)"
    )


def _beats(h: Harness, since: float) -> list[float]:
    return [t for t, a in h.outputs if t >= since and isinstance(a, SendPeerMessage)]


def _always_echo() -> Config:
    config = parse(SIM_CONFIG)
    return replace(config, timing=replace(config.timing, peer_echo="always"))


def test_heartbeats_slow_down_when_calm_and_speed_up_at_the_first_sign_of_loss() -> None:
    # with echo every interval (peer_echo "always"): an echo miss is the first sign
    h = active(config=_always_echo())
    t = h.config.timing
    h.run_until(1.0 + CALM_AFTER + 1.0)
    calm = _beats(h, 1.0 + CALM_AFTER + 0.2)
    gaps = [b - a for a, b in itertools.pairwise(calm)]
    # never later than a period; up to a quarter early to go out with our echo results
    assert gaps and all(0.75 * t.calm_heartbeat - 1e-9 <= g for g in gaps), gaps
    assert all(g <= t.calm_heartbeat + 1e-9 for g in gaps), gaps
    assert h.core.snapshot(h.now)["heartbeat_ms"] == 100  # what `status` shows
    last = calm[-1]
    h.echo_answers = {"a": False, "b": True}  # loss on a: the peer must hear us more often
    h.run_until(last + 1.0)
    # probes at x.x0, the first one after `last` misses at 7.12: a heartbeat goes out then,
    # not at the calm one's time, and at most a heartbeat period apart after it
    beats = _beats(h, last)
    first_miss = 7.1 + t.echo_timeout
    assert any(b == pytest.approx(first_miss) for b in beats), beats
    after = [b for b in beats if b >= first_miss - 1e-9]
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert all(0.75 * t.heartbeat - 1e-9 <= g <= t.heartbeat + 1e-9 for g in gaps), gaps
    assert h.core.snapshot(h.now)["heartbeat_ms"] == 50


def test_on_demand_a_late_heartbeat_is_the_first_sign_of_loss() -> None:
    """Echo on demand: a calm pair does not probe the peer; a heartbeat of the peer late
    by echo_on_demand_after turns the probes on at once, with a fast heartbeat; calm
    again for CALM_AFTER, they stop."""
    h = active()
    t = h.config.timing
    after = t.echo_on_demand_after
    assert after is not None and after == pytest.approx(0.11)
    h.run_until(1.0 + CALM_AFTER + 1.0)
    assert h.probes(1.0) == ["ProbePeer(beta, False, calm for 5000ms, heartbeats on time)"]
    assert not h.echo_on
    calm = _beats(h, h.now - 0.5)
    peer, h.peer = h.peer, None  # its heartbeats get lost
    heard = h.core.peers["beta"].heard_at
    h.run_until(heard + 0.5)
    h.peer = peer
    assert h.probes(heard) == [
        "ProbePeer(beta, True, no message for 110ms)",
        "ProbePeer(beta, True, the last probe before its echo window ends (no message for 190ms))",
    ]
    beats = _beats(h, heard + after - 1e-9)
    assert beats[0] == pytest.approx(heard + after), (calm, beats)
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert all(g <= t.heartbeat + 1e-9 for g in gaps), gaps
    assert h.role() is Role.ACTIVE, "its echo answered: not gone"
    h.run_until(heard + after + CALM_AFTER + 0.5)
    assert h.probes(heard + 1) == ["ProbePeer(beta, False, calm for 5000ms, heartbeats on time)"]


def test_on_demand_a_dead_peer_is_declared_gone_after_echo_window() -> None:
    """Probes that start when the peer's silence reaches echo_on_demand_after leave
    time for every miss: the standby promotes at echo_window, as with echo always."""
    results = {}
    for config in (parse(SIM_CONFIG), _always_echo()):
        h = standby(config=config)
        h.run_until(1.0 + CALM_AFTER + 1.0)
        assert h.echo_on is (config.timing.peer_echo == "always")
        h.peer = None
        h.echo_answers = {"a": False, "b": False}
        heard = h.core.peers["alpha"].heard_at
        h.run_until(heard + 1.0)
        promote = next(t for t, a in h.outputs if getattr(a, "kind", "") == "promote")
        results[config.timing.peer_echo] = promote - heard
    assert results["auto"] == pytest.approx(h.config.timing.echo_window), results
    assert results["auto"] <= results["always"] + 1e-9, results
