"""The kinds of decisions and alerts: one enum each, the one source of their names.

A decision kind's value is its name everywhere: the journal's DECISION field
and MESSAGE_ID (`journal.message_id`), the catalog entry (`catalog.ENTRIES`),
the metric label (`mosqit_failover_decisions_total{kind}`), the alert event
(MOSQIT_EVENT) and the names `alerts.events` accepts. Users match on these
strings: never change a value. Both enums are `StrEnum`s, so a member equals
its string (`DecisionKind.PROMOTE == "promote"`).

This module imports nothing of the package, so the config's checks can ask it
for the known kinds without importing the alerts.
"""

from __future__ import annotations

import enum

# journal priorities (syslog levels)
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6


class DecisionKind(enum.StrEnum):
    """What sort of decision a `Decision` line is (see the catalog for each)."""

    PROMOTE = "promote"
    FORCE_ACTIVE = "force-active"
    RECLAIM = "reclaim"
    ADOPT = "adopt"
    PLAN_DONE = "plan-done"
    PLAN_FAILED = "plan-failed"
    DEMOTE_RETRY = "demote-retry"
    STANDBY = "standby"
    WAITING = "waiting"
    HANDOVER = "handover"
    SWITCHOVER = "switchover"
    FAILBACK = "failback"
    HANDOVER_ABORTED = "handover-aborted"
    DEMOTE_DUAL_ACTIVE = "demote-dual-active"
    DEMOTE_ISOLATED = "demote-isolated"
    MANUAL = "manual"
    AUTOMATIC = "automatic"
    MANUAL_PEER_LOST = "manual-peer-lost"
    PEER_AUTH_FAILED = "peer-auth-failed"
    PEER_AUTH_OK = "peer-auth-ok"
    FENCE = "fence"
    FENCE_FAILED = "fence-failed"
    MAINTENANCE = "maintenance"
    REFUSED = "refused"
    AGENT_STOP = "agent-stop"
    RECONFIGURE = "reconfigure"
    RECONFIGURE_FAILED = "reconfigure-failed"
    PEER_BACK = "peer-back"
    RESUMED = "resumed"
    PARTITIONED = "partitioned"
    ORDER_MISMATCH = "order-mismatch"
    ECHO_BLOCKED = "echo-blocked"
    DATA_EPOCH_RECORDED = "data-epoch-recorded"
    DATA_EPOCH_WITHDRAWN = "data-epoch-withdrawn"
    # resource monitoring (timing.monitor_interval)
    RESOURCE_RESTART = "resource-restart"  # a monitored resource stopped on the active
    RESOURCE_FAILED = "resource-failed"  # ...more often than it may be restarted: hand over
    VIP_LOST = "vip-lost"  # the VIP went from the active's interface: added again
    HELD_ASTRAY = "held-astray"  # VIP or a resource on a node that must not hold it
    VIP_CONFLICT = "vip-conflict"  # another host answers ARP for the active's VIP

    @property
    def priority(self) -> int:
        """The journal priority of its lines: operators must see the warnings."""
        return _PRIORITY.get(self, INFO)


_PRIORITY: dict[DecisionKind, int] = {
    DecisionKind.PROMOTE: WARNING,
    DecisionKind.FORCE_ACTIVE: WARNING,
    DecisionKind.HANDOVER: WARNING,
    DecisionKind.SWITCHOVER: NOTICE,
    DecisionKind.FAILBACK: NOTICE,
    DecisionKind.HANDOVER_ABORTED: WARNING,
    DecisionKind.DEMOTE_DUAL_ACTIVE: WARNING,
    DecisionKind.DEMOTE_ISOLATED: WARNING,
    DecisionKind.PLAN_FAILED: ERR,
    DecisionKind.MANUAL: WARNING,
    DecisionKind.REFUSED: NOTICE,
    DecisionKind.RESUMED: WARNING,
    DecisionKind.ADOPT: NOTICE,
    DecisionKind.RECLAIM: NOTICE,
    DecisionKind.PARTITIONED: WARNING,
    DecisionKind.ORDER_MISMATCH: WARNING,
    DecisionKind.ECHO_BLOCKED: WARNING,
    DecisionKind.DATA_EPOCH_WITHDRAWN: NOTICE,
    DecisionKind.RESOURCE_RESTART: WARNING,
    DecisionKind.RESOURCE_FAILED: WARNING,
    DecisionKind.VIP_LOST: WARNING,
    DecisionKind.HELD_ASTRAY: WARNING,
    DecisionKind.VIP_CONFLICT: WARNING,
}


class AlertKind(enum.StrEnum):
    """What an `Alert` action (or an escalation) is about: MOSQIT_EVENT of its alert."""

    START_FAILED = "start-failed"
    STOP_FAILED = "stop-failed"
    RECONFIGURE_FAILED = DecisionKind.RECONFIGURE_FAILED.value  # a decision line and an alert
    ESCALATE = "escalate"
    PARTITIONED = DecisionKind.PARTITIONED.value  # a decision line and an alert
    ORDER_MISMATCH = DecisionKind.ORDER_MISMATCH.value  # a decision line and an alert
    ECHO_BLOCKED = DecisionKind.ECHO_BLOCKED.value  # a decision line and an alert
    SYNC_DEGRADED = "sync-degraded"  # a synchronous directory lost a standby or its mount
    # decision lines and alerts of resource monitoring
    RESOURCE_RESTART = DecisionKind.RESOURCE_RESTART.value
    RESOURCE_FAILED = DecisionKind.RESOURCE_FAILED.value
    VIP_LOST = DecisionKind.VIP_LOST.value
    HELD_ASTRAY = DecisionKind.HELD_ASTRAY.value
    VIP_CONFLICT = DecisionKind.VIP_CONFLICT.value


def known_kinds() -> tuple[str, ...]:
    """Every event kind a filter (`alerts.events`) may name: decision kinds, then alert kinds."""
    decisions = sorted(k.value for k in DecisionKind)
    return (*decisions, *(k.value for k in AlertKind if k.value not in decisions))
