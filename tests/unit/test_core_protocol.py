"""The core's own consistency: moves outside TRANSITIONS and rules that do not settle
are bugs (ProtocolError), and decision kinds come from one enum."""

from __future__ import annotations

import pytest

from mosqit_failover.actions import Decision
from mosqit_failover.core import MAX_ROUNDS, TRANSITIONS, Core, ProtocolError, Trigger, Verdict
from mosqit_failover.events import Inventory, Role, Tick
from mosqit_failover.kinds import AlertKind, DecisionKind, known_kinds
from mosqit_failover.sim_scenarios import sim_config
from tests.unit.transcript import active


def test_a_move_outside_the_table_is_a_protocol_error_and_changes_nothing() -> None:
    core = Core(sim_config(), "beta", Inventory(), 0.0)
    assert (Role.WAITING, Trigger.PROMOTE) not in TRANSITIONS
    with pytest.raises(ProtocolError, match="no move from WAITING on promote"):
        core._apply(Verdict(Trigger.PROMOTE, DecisionKind.PROMOTE, "test"), 0.0)
    assert (core.role, core.epoch) == (Role.WAITING, 0)


def test_rules_that_never_settle_are_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    core = Core(sim_config(), "beta", Inventory(), 0.0)
    moves = iter([Trigger.RETRY] * 100)

    def flapping(now: float) -> Verdict:
        return Verdict(next(moves), DecisionKind.DEMOTE_RETRY, "again")

    core.role = Role.DEMOTING
    monkeypatch.setattr(core, "_decide", flapping)
    monkeypatch.setattr(core, "_start_plan", lambda now, kind: core._launch([]))
    with pytest.raises(ProtocolError, match=f"did not settle after {MAX_ROUNDS}") as caught:
        core.handle(Tick(), 0.1)
    decisions = [a for a in caught.value.actions if isinstance(a, Decision)]
    assert len(decisions) == MAX_ROUNDS  # what was decided goes with the error


def test_the_reconfiguration_plan_ends_with_its_own_line_and_keeps_the_role() -> None:
    h = active()
    assert TRANSITIONS[(Role.ACTIVE, Trigger.PLAN_DONE)] == (Role.ACTIVE, False)
    start = h.now
    from tests.unit.test_core_rules import _with_resources

    h.feed_actions(h.core.reconfigure(_with_resources("db", "cache"), h.now, stop_removed=False))
    [done] = [d for d in h.decisions(start) if d.kind == DecisionKind.PLAN_DONE]
    assert (done.old_role, done.role, done.reason) == (
        Role.ACTIVE,
        Role.ACTIVE,
        "reconfiguration complete",
    )


def test_decision_kinds_are_checked_when_a_decision_is_made() -> None:
    d = Decision("promote", "beta", Role.STANDBY, Role.PROMOTING, 1, "UNKNOWN", "x")
    assert d.kind is DecisionKind.PROMOTE and str(d.kind) == "promote"
    with pytest.raises(ValueError):
        Decision("promotion", "beta", Role.STANDBY, Role.PROMOTING, 1, "UNKNOWN", "x")


def test_kind_names_priorities_and_alert_kinds_are_those_users_match_on() -> None:
    assert DecisionKind.PLAN_FAILED.priority == 3
    assert DecisionKind.PROMOTE.priority == 4 and DecisionKind.SWITCHOVER.priority == 5
    assert DecisionKind.STANDBY.priority == 6
    assert [k.value for k in AlertKind] == [
        "start-failed",
        "stop-failed",
        "reconfigure-failed",
        "escalate",
        "partitioned",
        "order-mismatch",
        "echo-blocked",
        "sync-degraded",
        "resource-restart",
        "resource-failed",
        "vip-lost",
        "held-astray",
        "vip-conflict",
    ]
    assert known_kinds()[-4:] == ("start-failed", "stop-failed", "escalate", "sync-degraded")
    assert len(known_kinds()) == len(DecisionKind) + 4
