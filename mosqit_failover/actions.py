"""What the core asks the shell to do: frozen actions.

Every action is idempotent in the shell (claiming a VIP that is already
there, stopping a stopped service are no-ops), so a plan can be replayed or
superseded safely after a crash or a change of mind.
"""

from __future__ import annotations

from dataclasses import dataclass

from mosqit_failover.events import PeerView, Role
from mosqit_failover.kinds import AlertKind, DecisionKind


@dataclass(frozen=True)
class PersistState:
    """Write epoch and role to disk (atomically, fsynced) before anything else."""

    epoch: int
    role: Role


@dataclass(frozen=True)
class ClaimVip:
    pass


@dataclass(frozen=True)
class ReleaseVip:
    pass


@dataclass(frozen=True)
class SendGarp:
    """Announce the VIP's new owner with gratuitous ARP."""


@dataclass(frozen=True)
class StartSync:
    """Start pushing the synced directories to the peer.

    wait_for_connection: the peer may be unreachable; keep what is dirty and
    retry until it answers instead of failing.
    synchronous: the synchronous directories to mount (or adopt) now, before the services
    start: a promotion's; a reload's StartSync mounts none (services run already).
    """

    epoch: int
    wait_for_connection: bool
    synchronous: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopSync:
    """Push what is pending, then stop. `planned`: a handover the operator asked for
    (switchover, failback, the agent's stop) with a peer to take over, whose services
    are stopped already: the pending changes may take as long as the sync needs (up to
    sync.manager.PLANNED_DRAIN), since the peer's first sync as the new active replaces
    what was not pushed. `abort_if_left`: the step fails when changes for `successor`
    (the node taking over) are left, and the core serves on instead (a switchover, a
    failback; the agent's stop goes on); another standby's are only alerted."""

    planned: bool = False
    abort_if_left: bool = False
    successor: str = ""


@dataclass(frozen=True)
class StartResource:
    name: str


@dataclass(frozen=True)
class StopResource:
    name: str


@dataclass(frozen=True)
class SendPeerMessage:
    """Send this view to every peer on `network`, or on every network (None); not part
    of a plan. A calm node's heartbeats take the networks in turn
    (Timing.calm_heartbeat_networks); anything else goes on every network."""

    view: PeerView
    network: str | None = None


@dataclass(frozen=True)
class ProbePeer:
    """Echo probes to `peer` on every network: `on` (one at once unless one is in
    flight, then every interval, a timed-out one re-sent at once as always) or off
    (none), for `reason` (not part of a plan). Probing starts on for every peer; the
    core asks for a change, and for one more probe at once (on while on) before a
    silent peer's echo window ends.

    Echo on demand, as BFD's demand mode: while the peer's heartbeats arrive on time
    they prove more than its echo replies would, so a calm pair does not probe it.
    """

    peer: str
    on: bool
    reason: str


@dataclass(frozen=True)
class FencePeer:
    """Fence `peer` before promoting in `epoch` (not a plan step).

    The shell tries every configured fence (ssh through the sync key's forced
    command, a power fence command) and answers with FenceResult; it never
    claims anything itself.
    """

    epoch: int
    peer: str


@dataclass(frozen=True)
class RecordDataEpoch:
    """Persist the data epoch (not a plan step): the active node, in `epoch`, reported
    this standby's synced directories all caught up."""

    epoch: int


@dataclass(frozen=True)
class WithdrawDataEpoch:
    """Persist a lower data epoch (not a plan step): the active node of epoch `missed`,
    which had listed this standby in sync, no longer does, so the standby missed writes
    of that epoch; `epoch` (missed - 1) is what its data still counts as."""

    epoch: int
    missed: int


@dataclass(frozen=True)
class Alert:
    """Tell the operator (hooks, mail); never blocks the agent."""

    kind: AlertKind
    text: str


@dataclass(frozen=True)
class Escalate:
    """Stopping resources kept failing: the configured last resort (e.g. reboot)."""

    how: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """One line saying what the core decided and why (logged, asserted on in tests).

    kind names the sort of decision; the journal's MESSAGE_ID is derived from
    it. The other fields become the journal's structured fields.

    kind is checked at construction and stored as its `DecisionKind` member (a
    str: it equals the kind's name), so an unknown kind fails here, before it
    reaches the journal, the catalog, the metrics or an alert hook.
    """

    kind: str
    node: str
    old_role: Role
    role: Role
    epoch: int
    peer_role: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DecisionKind(self.kind))  # ValueError if unknown

    @property
    def text(self) -> str:
        if self.old_role is self.role:
            return f"{self.node} {self.role.value}: {self.reason} [epoch {self.epoch}]"
        moved = f"{self.old_role.value} -> {self.role.value}"
        return f"{self.node} {moved}: {self.reason} [epoch {self.epoch}]"


@dataclass(frozen=True)
class RunPlan:
    """Ordered steps the executor runs one after another.

    The executor reports ActionDone/ActionFailed with this plan's number; on
    the first failure it drops the rest. A newer plan supersedes an older one:
    the step in flight finishes, the rest of the old plan is dropped; unless the
    old plan is `interruptible` (the monitor's, a reload's: they keep the role),
    whose step in flight is cancelled (its command killed), so that a demotion or
    an operator's maintenance never waits on a service's slow start.
    """

    number: int
    steps: tuple[PlanStep, ...]
    interruptible: bool = False


def step_name(step: object) -> str:
    """A step as operators read it: its kind, and the resource it is about."""
    resource = getattr(step, "name", None)
    return f"{type(step).__name__}({resource})" if resource else type(step).__name__


PlanStep = (
    PersistState
    | ClaimVip
    | ReleaseVip
    | SendGarp
    | StartSync
    | StopSync
    | StartResource
    | StopResource
)
Action = (
    PlanStep
    | SendPeerMessage
    | ProbePeer
    | FencePeer
    | RecordDataEpoch
    | WithdrawDataEpoch
    | Alert
    | Escalate
    | Decision
    | RunPlan
)
