"""The decision core: every rule of the failover protocol, and no I/O.

    core = Core(config, "alpha", inventory, now)
    actions = core.handle(event, now)      # decisions, plans, messages, alerts
    wake_at = core.next_deadline()         # call handle(Tick(), t) by then

Inputs carry `now` (a monotonic clock in seconds); the core never reads a
clock, a socket or a file. Each change of role follows `TRANSITIONS` (data,
below) and yields one `Decision` line saying what was decided and why.

The rules, as docs/design.md states them, and where they live:
- standby promotes when it sees both networks and the peer is gone (echo
  missed `misses` times on every network, no message) or its failover service
  is silent while ICMP answers (OS problem): `_peer_lost`, `_decide_standby`;
- a node alone waits `startup_grace` before promoting: `_peer_lost`;
- both nodes present and nobody active: the freshest data (highest epoch)
  wins, then the preferred node: `_wins_election`; among standbys of equal data
  epoch, the one that applied more synchronous commits (`_commit`);
- two active nodes that see each other: the lower epoch demotes at once, a tie
  goes to the preferred node: `_peer_outranks`;
- the active that lost an uplink its peer still has hands over; a network lost
  by both nodes is MANUAL mode (no automatic switchover): `_decide_active`;
- a node without any network (split brain) stands down: `_decide_active`;
- a node without both networks never promotes on its own: `_candidate`.

With 2 to 8 nodes (docs/multi-server.md) every peer has its own `PeerTracker`:
loss and the OS-problem fence are per peer; a standby promotes only when no peer
heard holds anything and it ranks first (freshness, then active in that epoch,
then `cluster.order`) among the candidates not gone: `_decide_standby`,
`_wins_election`; a peer not heard here but heard by a witness is present, not
gone: `_update_partitions`, `_note_partition`. A pair follows exactly the rules
above.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from mosqit_failover.actions import (
    Action,
    Alert,
    ClaimVip,
    Decision,
    Escalate,
    FencePeer,
    PersistState,
    PlanStep,
    ProbePeer,
    RecordDataEpoch,
    ReleaseVip,
    RunPlan,
    SendGarp,
    SendPeerMessage,
    StartResource,
    StartSync,
    StopResource,
    StopSync,
    WithdrawDataEpoch,
    step_name,
)
from mosqit_failover.config import Config, format_duration
from mosqit_failover.events import (
    COMMIT_MAX,
    EPOCH_MAX,
    ActionDone,
    ActionFailed,
    Command,
    EchoResult,
    Event,
    FenceResult,
    Inventory,
    LinkChanged,
    OperatorCommand,
    PeerMessage,
    PeerUnauthenticated,
    PeerView,
    ResourceCheck,
    Role,
    SwitchReachability,
    SyncApplied,
    SyncInSync,
    Tick,
)
from mosqit_failover.failures import FailureCounts
from mosqit_failover.kinds import AlertKind, DecisionKind
from mosqit_failover.observations import NEVER, PeerTracker, Uplink


class ProtocolError(Exception):
    """A bug in the core: a move outside `TRANSITIONS`, or a `handle` that did not settle.

    Never a fault of the network, the peer or the operator: the core's rules asked
    for something its own table does not allow. `actions` holds what the core had
    decided in that `handle` call before it failed (moves already made), so the
    shell can still carry them out and stay in step with the core's role.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.actions: list[Action] = []


class Trigger(enum.Enum):
    ELIGIBLE = "eligible"  # sees both networks again
    INELIGIBLE = "ineligible"  # lost a network
    PROMOTE = "promote"  # automatic promotion (new epoch)
    FORCE = "force"  # operator's force-active (new epoch)
    RECLAIM = "reclaim"  # restarted agent found itself holding: claim again, same epoch
    STAND_DOWN = "stand-down"
    PLAN_DONE = "plan-done"
    PLAN_FAILED = "plan-failed"
    RETRY = "retry"  # run the demotion plan again after a failed stop
    RESUME = "resume"  # a planned handover whose sync could not push everything: serve on
    FENCE = "fence"  # fence the peer first: its kernel answers, its agent does not


W, S, P, A, D = Role.WAITING, Role.STANDBY, Role.PROMOTING, Role.ACTIVE, Role.DEMOTING

# (role, trigger) -> (next role, whether a plan starts now). The table is the whole
# protocol: a verdict for a move that is not in it is a bug (`ProtocolError`).
TRANSITIONS: Mapping[tuple[Role, Trigger], tuple[Role, bool]] = {
    (W, Trigger.ELIGIBLE): (S, False),
    (S, Trigger.INELIGIBLE): (W, False),
    (S, Trigger.FENCE): (S, False),
    (A, Trigger.FENCE): (A, False),  # a holder taken for dead turned out hung
    (S, Trigger.PROMOTE): (P, True),
    (W, Trigger.FORCE): (P, True),
    (S, Trigger.FORCE): (P, True),
    (A, Trigger.RECLAIM): (P, True),
    (P, Trigger.PLAN_DONE): (A, False),
    (P, Trigger.PLAN_FAILED): (D, True),  # roll back at once
    (P, Trigger.STAND_DOWN): (D, True),
    (A, Trigger.STAND_DOWN): (D, True),
    (A, Trigger.PLAN_DONE): (A, False),  # a reload's plan, or a monitor's restart, finished
    # the monitor found the VIP or a resource on a node that must hold nothing: released
    (S, Trigger.PLAN_DONE): (S, False),
    (W, Trigger.PLAN_DONE): (W, False),
    (D, Trigger.PLAN_DONE): (W, False),
    (D, Trigger.PLAN_FAILED): (D, False),  # retry later, with backoff
    (D, Trigger.RETRY): (D, True),
    # the VIP is still held (a planned demotion releases it after the sync's drain) and
    # the peer waited for the DEMOTING holder: the same epoch, a promotion's plan
    (D, Trigger.RESUME): (P, True),
}
# Heartbeats go out every `calm_heartbeat` only after this long without any sign of
# trouble; the first sign brings back `heartbeat` at once.
CALM_AFTER = 5.0

# How unlikely the runs of echo misses must be as the recent loss alone before a
# silent peer counts as gone (`PeerTracker.misses_beat_loss`): under heavy loss a
# hung agent's live host misses `misses` in a row on every network every few seconds,
# and a standby took it for dead about once in twenty hangs (two VIP holders until
# the late fence); at 30 % loss this asks `kernel_silent_misses` a network (the
# quick re-sends bring them in ~200 ms), at 10 % about five, without loss `misses`.
DEATH_DOUBT = 1e-6

NEW_EPOCH = frozenset({Trigger.PROMOTE, Trigger.FORCE})

# Moves one `handle` call may make before it must have settled (`_decide` finds
# nothing more to do). The longest chain is a few moves, e.g. DEMOTING -> WAITING
# -> STANDBY; more than this means two rules undo each other: a bug.
MAX_ROUNDS = 16

# A standby that withdrew an epoch's data records it again only once the active has
# listed it in sync this long without a break: an engine that keeps failing and
# recovering (a flapping link) then costs a state-file write every few seconds at most,
# not one per flip; the standby counts as less fresh meanwhile, the safe side.
RERECORD_AFTER = 5.0

# Datagrams from the peer's address that fail authentication for this long (and no
# authentic one among them) are a misconfiguration, not the restart handshake.
AUTH_GRACE = 1.0

# This agent's last stops (schedule gaps) remembered for `Core._vouches`: a witness's
# word older than all of them vouches for nothing (a stop may have been forgotten).
STOPS_KEPT = 16

# What each drop reason of the wire most likely means, and the fix.
AUTH_HINTS: Mapping[str, str] = {
    "bad-mac": (
        "the secrets differ, or the configs give the nodes other addresses (the MAC covers "
        "them), or the peer was downgraded to a version before that: copy "
        "cluster.secret_file and the config from one node to the other"
    ),
    "unknown-key": "the secrets differ (key ids): copy cluster.secret_file to both nodes",
    "stale": "the clocks differ by more than 30 s: run NTP (chrony) on both nodes",
    "wrong-cluster": "the cluster names differ: make cluster.name equal on both nodes",
    "unknown-sender": "the node names differ: use one identical config on both nodes",
    "from-self": "both agents run as the same node: check --node and the host names",
    "unknown-version": "the agents speak different protocol versions: upgrade both",
    "unconfirmed": (
        "the peer does not acknowledge this agent's start (one-way traffic, or the peer "
        "drops ours: see its log)"
    ),
    # a peer whose clock was stepped back as its agent restarted looks the same for as
    # long as the step (a helper's finding: the hint named only an attack)
    "replayed": (
        "replayed datagrams: the peer's clock stepped back as its agent restarted (it "
        "passes in as many seconds; run NTP on both nodes), a duplicate node, or someone "
        "replaying captures"
    ),
}


# Handovers an operator asked for: the sync may drain its pending changes in full,
# where a fault's demotion gives it seconds (a helper's finding: a switchover 0.3 s
# after an 800 MB write lost the file on both nodes, the new active's first sync
# replacing the old active's newer copy with its own)
_PLANNED_HANDOVERS = frozenset(
    (
        DecisionKind.SWITCHOVER,
        DecisionKind.FAILBACK,
        DecisionKind.AGENT_STOP,
        DecisionKind.RESOURCE_FAILED,
    )
)

# What a plan that keeps the node's role is for (`Core._launch`): its end's decision
# line, and what a failed step of it means. A role's own plan (promotion, demotion) has
# none.
RELOAD, RESTART, VIP_BACK, RELEASE_ASTRAY = "reload", "restart", "vip", "astray"


@dataclass(frozen=True)
class _Purpose:
    done: str  # the decision line when the plan finished
    running: str  # the plan, named while it runs (a reload refused, maintenance on)
    by_monitor: bool  # cancelled by maintenance on (the operator's hands)


_PURPOSES: Mapping[str, _Purpose] = {
    RELOAD: _Purpose("reconfiguration complete", "the last reload's", False),
    RESTART: _Purpose(
        "restart complete: the monitored resources run again",
        "the monitor's restart of a stopped resource",
        True,
    ),
    VIP_BACK: _Purpose(
        "the VIP is back on its interface and announced",
        "the monitor's claim of the lost VIP",
        True,
    ),
    RELEASE_ASTRAY: _Purpose(
        "released what this node held astray",
        "the monitor's release of what this node held astray",
        True,
    ),
}

# The longest a node waits before it tries again to release what it holds astray,
# after the release failed (doubling from the monitor's interval)
ASTRAY_RETRY_MAX = 300.0


@dataclass
class FenceAttempt:
    """The fence asked for before an OS-problem promotion, and how it ended."""

    epoch: int  # the epoch this node will promote in
    peer: str = ""
    done: bool = False
    fenced: bool = False
    detail: str = ""
    retry_at: float = NEVER

    def status(self) -> dict[str, object]:
        state = "fenced" if self.fenced else "failed" if self.done else "running"
        return {"epoch": self.epoch, "state": state, "detail": self.detail}


@dataclass(frozen=True)
class Loss:
    """Why the peer counts as gone; an OS problem needs a fence before promoting."""

    reason: str
    os_problem: bool
    # a witness saw it holding (`Core._hung_reporters`), whatever this node last saw
    seen_holding: bool = False


@dataclass(frozen=True)
class Verdict:
    trigger: Trigger
    kind: DecisionKind  # becomes the MESSAGE_ID
    reason: str
    peer: str = ""  # the peer a FENCE verdict fences


_MULTI_KEYS = ("data_epoch", "commit", "heard", "in_sync", "rank")  # in "peers" only, not in "peer"


def _mode(maintenance: bool, manual: bool) -> str:
    """A node's mode as status shows it."""
    return "MAINTENANCE" if maintenance else "MANUAL" if manual else "AUTO"


def _os_problem(peer: str, silent: float, detail: str = "") -> str:
    """Why a peer whose kernel answers while its agent is silent is fenced first."""
    return (
        f"peer {peer}'s failover service silent for {_ms(silent)} "
        f"while ICMP answers (OS problem{detail})"
    )


def _not_a_candidate(view: PeerView) -> str:
    """Why a peer is no candidate, as "it ..." ends: a switchover refused for a peer in
    maintenance said only "not a candidate" (a helper's finding)."""
    if view.maintenance:
        return "is in maintenance"
    if not view.has_all_uplinks:
        return "lacks a network"
    if view.role.may_hold:
        return f"is {view.role.value}"
    return "is not a candidate (it failed to start the services lately, or hands over)"


def _cut_refusal(successor: str, cut: list[str]) -> str:
    """Why a handover to `successor` is refused: the better nodes `cut` from it."""
    if len(cut) == 1:
        pair, them, they, paths = f"{successor} and {cut[0]}", cut[0], cut[0], "path"
    else:
        pair = f"{successor} and each of {', '.join(cut[:-1])} and {cut[-1]}"
        them, they, paths = "them", "they", "paths"
    return (
        f"{pair} do not both hear each other (their lists of nodes heard): {successor} "
        f"would not take over past {them}, ranked before it, or {they} would take over "
        f"beside it. Mend the {paths} between them first"
    )


def _ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "ever"
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


class Core:
    def __init__(self, config: Config, node: str, inventory: Inventory, now: float) -> None:
        self.config = config
        self.node = node
        self.peer_names = tuple(n.name for n in config.peers_of(node))
        self.peer_name = self.peer_names[0]  # a pair's peer; for N the first in order
        self.timing = config.timing
        self.role = W
        self.epoch = inventory.epoch
        self.maintenance = False
        self.manual = False
        self.uplinks = {
            n.name: Uplink(
                self.timing.link_rise,
                self.timing.link_fall,
                self.timing.switch_timeout,
                n.switch is not None,
            )
            for n in config.networks
        }
        outage = config.timing.kernel_silent_misses  # a run that long is no loss
        self.peers = {p: PeerTracker(config.network_names, outage) for p in self.peer_names}
        self.peer = self.peers[self.peer_name]  # a pair's only peer
        self.data_epoch = inventory.data_epoch
        self._sync_state: dict[str, bool] = {}  # SyncInSync per standby
        self._withdrawn_from = 0  # the epoch whose data this node withdrew (not persisted)
        self._relisted_since: float | None = None  # listed in sync again since, after it
        self._applied: tuple[tuple[int, int], ...] = ()  # SyncApplied: (epoch, commit) each
        self._applied_at = NEVER  # when this node's own count last went up
        self._commit_moved: dict[str, tuple[int, float]] = {}  # peer -> (count, went up at)
        # the synchronous directories mounted at the last promotion, kept until demotion:
        # a reload never mounts or unmounts one under the running services
        self._mounted: tuple[str, ...] = ()
        self._successor = ""  # handing over on purpose to this node
        # peers not heard here that a node heard here reports as heard: node -> witnesses
        self._partitioned: dict[str, set[str]] = {}
        self._partition_said: set[str] = set()
        # partitioned peers that may have counted this node gone, and may hold; and
        # since when it has looked so (it sticks once that lasts, `_update_doubts`)
        self._doubted: set[str] = set()
        self._doubt_since: dict[str, float] = {}
        self._present_since: dict[str, float] = {}  # peer -> heard without a break since
        # (witness, peer) -> when the witness's last message listing the peer came
        self._listed_at: dict[tuple[str, str], float] = {}
        # peers whose proven partition ended with the witnesses no longer listing them,
        # not heard here since: this node knows nothing of their fate (`_unknown_fate`)
        self._fate_unknown: dict[str, str] = {}  # peer -> the witnesses that had it
        # present peers whose messages do not list this node as heard: peer -> since
        self._unlisted_since: dict[str, float] = {}
        self._proven_since: dict[str, float] = {}  # peer -> its partition proven since
        # peers not heard here that a witness which hears this node has lost since
        self._lost_by_hearing: set[str] = set()
        self._order_differs: dict[str, float] = {}  # peer -> last heard with another order
        self._order_said: set[str] = set()
        # (peer, network) said to answer no echo while its messages arrive there: when
        self._echo_blocked_said: dict[tuple[str, str], float] = {}
        # this agent's start and its last stops (schedule gaps), oldest first: (stopped
        # at, ran again at); the start is (-inf, now): it heard nothing before
        self._stops: deque[tuple[float, float]] = deque([(-math.inf, now)], maxlen=STOPS_KEPT)
        self._now = now
        self._all_since: float | None = None  # own uplinks all healthy since
        self._held_since: dict[str, float] = {}  # conditions that must hold a while
        self._plan_number = 0
        self._pending: list[PlanStep] = []
        self._plan_live = False
        self._plan_purpose = ""  # a plan that keeps the role: what for (RELOAD, RESTART...)
        self._plan_moved_at = now  # a plan started or ended: a look begun before is stale
        self._failures = FailureCounts()  # the monitored resources' failures here
        self._astray_failed = 0  # releases of what was held astray that failed in a row
        self._look_after = -math.inf  # no look at what is held counts before this
        self._vip_conflict: tuple[str, ...] = ()  # other hosts' MACs answering for the VIP
        self._held_astray = False  # found holding at start, last role not holding
        # handed over for a resource past its restarts: a candidate until then only when
        # no other node can serve (`_candidate`)
        self._kept_back_until = -math.inf
        self._yielding = False  # handed over: not a candidate while the peer is
        self._handover_aborted = False  # since this node last became ACTIVE
        self._failed_until = NEVER  # start failed: not a candidate until then
        self._stop_failures = 0
        self._retry_at = NEVER
        self._reclaim_by: float | None = None
        self._stopping = False  # the agent is shutting down: never promote again
        self._heartbeat_at = now
        self._last_beat = NEVER
        self._calm_beats = 0  # calm heartbeats sent: the next one's network, in turn
        self._trouble_at = now
        # echo to each peer: the shell starts probing every peer, the core turns it
        # off while the pair is calm (`_note_echo`, Timing.echo_on_demand_after)
        self._echo_on = {p: True for p in self.peer_names}
        self._last_probed: dict[str, float] = {}  # per peer: the silence's last probe, sent
        self._peer_was_present = {p: False for p in self.peer_names}
        # the drop reason while a peer's datagrams fail authentication
        self._auth_failing = {p: "" for p in self.peer_names}
        self._fences: dict[str, FenceAttempt] = {}  # per peer
        self._manual_heard: set[str] = set()  # peers heard while MANUAL
        self._manual_lost: set[str] = set()  # said that they vanished while MANUAL
        self._startup: Decision | None = self._adopt(inventory, now)
        # The quiet path (`_quiet`): while the node is steady (`_steady`), the rules'
        # next deadline kept in parts, and the time until which a routine event can
        # change nothing but an arrival time (NEVER: not steady, every event runs them)
        self._quiet_until = NEVER
        self._deadline_rest = math.inf  # heartbeat, retries, grace, held conditions...
        self._deadline_peer: dict[str, float] = {}  # per peer: its silence's deadlines
        self._deadline_uplink: dict[str, float] = {}  # per network: the switch's timeout
        # the heartbeats a steady node sends (per network, None: every network): its
        # view cannot change before a full run
        self._quiet_beats: dict[str | None, SendPeerMessage] = {}
        # the peers listed in the last message: (heard, hung)
        self._told: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    # ---- the interface -------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Take one event at `now`; the decisions and actions it leads to, in order.

        Raises ProtocolError (a bug in the core) for a move outside `TRANSITIONS`
        or when the rules do not settle within MAX_ROUNDS moves; the error carries
        the actions decided before it.
        """
        out: list[Action] = []
        try:
            self._handle(event, now, out)
        except ProtocolError as error:
            error.actions = out
            raise
        return out

    def _handle(self, event: Event, now: float, out: list[Action]) -> None:
        if now < self._quiet_until and self._quiet(event, now, out):
            return
        self._quiet_until = NEVER
        self._quiet_beats.clear()
        self._full(event, now, out)
        if self._steady(now):
            self._quiet_until = self._split_deadline()

    def _full(self, event: Event, now: float, out: list[Action]) -> None:
        """Every rule, in order: observe, decide until settled, notes, heartbeat."""
        if self._startup is not None:
            out.append(self._startup)
            self._startup = None
        self._check_schedule_gap(now, out)
        self._now = now
        verdict = self._observe(event, now, out)
        self._end_keep_back(now, out)
        for _ in range(MAX_ROUNDS):  # as many moves as it takes: DEMOTING -> WAITING -> STANDBY
            verdict = verdict or self._decide(now)
            if verdict is None:
                break
            out += self._apply(verdict, now)
            verdict = None
        else:
            raise ProtocolError(
                f"did not settle after {MAX_ROUNDS} moves on {event!r}: "
                f"{self.role.value}, last {out[-1] if out else None!r}"
            )
        self._note_mode(now, out)
        self._note_auth(now, out)
        self._note_partition(now, out)
        self._note_cut_from_active(now, out)
        self._note_order(now, out)
        self._note_echo_blocked(now, out)
        self._note_peer_return(now, out)
        if self._troubled(event, now):
            self._trouble_at = now
            # the next heartbeat no later than a fast period after the last one
            self._heartbeat_at = min(self._heartbeat_at, self._last_beat + self.timing.heartbeat)
        self._note_echo(now, out)
        # a stopping agent's last word (released, WAITING) must reach the peers before it
        # exits, or they take its silence for a hung agent and fence it (seconds lost)
        # and a standby's sync verdict (it records or withdraws its data epoch on it), a
        # data epoch recorded or withdrawn count in the election at once
        now_too = (
            self.stopped
            or isinstance(event, SyncInSync)
            or any(isinstance(a, (RunPlan, RecordDataEpoch, WithdrawDataEpoch)) for a in out)
            # a peer this node stopped (or started) vouching for: the standbys that wait
            # for every witness to drop a lost holder (`_witnessed`) hear it now; so
            # with a holder found hung (`_hung`), before any of them takes over
            or (self.config.multi_server and self._listed(now) != self._told)
        )
        self._beat_when_due(now, out, lambda network: self._message(now, network), now_too)

    def _message(self, now: float, network: str | None) -> SendPeerMessage:
        view = self.view(now)
        self._told = (view.heard, view.hung)
        return SendPeerMessage(view, network)

    def _beat_when_due(
        self,
        now: float,
        out: list[Action],
        message: Callable[[str | None], SendPeerMessage],
        now_too: bool = False,
    ) -> None:
        """The heartbeat, if it is due (or ``now_too``)."""
        # a heartbeat due soon goes out with whatever woke the agent (the probes' slot
        # Tick, an echo result, the peer's heartbeat), sharing its wake-up instead of
        # costing one of its own
        period = self._beat_period(now)
        if now >= self._heartbeat_at - period / 4 or now_too:
            out.append(message(None if now_too else self._beat_network(now)))
            self._last_beat = now
            self._heartbeat_at = now + period

    def _beat_network(self, now: float) -> str | None:
        """The network of a heartbeat: while calm, each in turn (None: every network).

        No decision reads on which network a peer was heard: its silence counts on
        all of them, and each network's health is told by the echo and the switch
        probes. So one calm heartbeat per period keeps a peer's silence as short as
        two did, at half the datagrams. A heartbeat lost on the way leaves a silence
        of two periods: late (echo on demand), which is trouble, and trouble sends
        every heartbeat on every network, fast, as before.

        In turn only while every peer was heard on every network within two calm
        periods and an echo timeout: a network whose datagrams between the two are
        lost makes the peer's calm heartbeats late on it, so the peer, troubled,
        probes and sends on every network; we, no longer hearing it on that network,
        send on every network too, and each keeps hearing the other every period.

        And only while no peer sends at the fast pace: a peer troubled by our lost
        heartbeats cannot tell us (we hear it well when the loss is one way, from us
        to it), but its fast heartbeats do. Without this, we went on sending one
        heartbeat a period on one network to a peer that missed them, and two lost
        in a row (one on each network) were as much silence as four are with every
        network: false failovers under one-way loss that "all" did not have.
        """
        networks = self.config.network_names
        t = self.timing
        if t.calm_heartbeat_networks != "alternate" or len(networks) < 2 or not self.calm(now):
            return None
        since = now - 2 * t.calm_heartbeat - t.echo_timeout
        # between the fast pace (every `heartbeat`) and the calm one (every calm
        # heartbeat, one sent up to a quarter period early, on one network or all)
        hurried = (t.heartbeat + 0.75 * t.calm_heartbeat) / 2
        for tracker in self.peers.values():
            if any(tracker.heard_on[n] < since for n in networks):
                return None
            if any(tracker.gap_on[n] < hurried for n in networks):
                return None  # it sends fast: troubled, maybe by our lost heartbeats
        self._calm_beats += 1
        return networks[self._calm_beats % len(networks)]

    def _troubled(self, event: Event, now: float) -> bool:
        """Anything a faster heartbeat helps with: loss, a link change, a pair not settled.

        Loss is what makes the fast rate matter: the peer tells a dead node from a
        lossy link by the heartbeats that still get through.
        """
        match event:
            case (
                EchoResult(answered=False)
                | SwitchReachability(reachable=False)
                | PeerUnauthenticated()
            ):
                return True
            case LinkChanged():
                return True
        if self.role not in (A, S) or self._plan_live or self.manual or not self._own_all(now):
            return True
        for name in self.peer_names:
            peer = self._present(name, now)
            if peer is None or not peer.has_all_uplinks:
                return True
            if self._late(name, now):
                return True  # its heartbeats are late: lost on the way, or it is dying
        return False

    def _late(self, name: str, now: float) -> bool:
        """Echo on demand: this peer's heartbeat is late by `echo_on_demand_after`
        (compared as the deadline is computed, so a wake-up at that deadline acts)."""
        late = self.timing.echo_on_demand_after
        return late is not None and now >= self.peers[name].silent_since + late

    def _note_echo(self, now: float, out: list[Action]) -> None:
        """Echo on demand: probe a peer while anything looks wrong, and stop once calm.

        On: within CALM_AFTER of any trouble (a peer's heartbeat late by
        `echo_on_demand_after` is trouble), or while an echo miss is not answered
        yet. Off: calm, the peer heard within `echo_on_demand_after`, no miss. A
        dead peer is declared gone as soon as with probes every interval (see
        Timing.echo_on_demand_after); an agent that hangs while its host answers
        ICMP is still told apart, since its silence turns the probes on.

        A last probe (`ProbePeer` on again) goes out 1.5 echo timeouts before a
        silent peer's `echo_window` ends: the first probes and their quick retries
        went out soon after the heartbeat was late, so a short blackout (both
        networks, under two calm heartbeats) could hold every one of them; with
        probes every interval one of them tends to fall after it. Answered, it
        clears the misses; a dead peer is gone at the same moment as without it.
        """
        # compared as the deadline is computed, so a wake-up at that deadline acts
        on_demand = self.timing.echo_on_demand_after is not None
        calm = on_demand and now >= self._trouble_at + CALM_AFTER
        for name in self.peer_names:
            peer = self.peers[name]
            last = self._last_probe_at(name)
            due = last is not None and last <= now < last + 1.5 * self.timing.echo_timeout
            if due and self._last_probed.get(name) != last:
                assert last is not None
                self._last_probed[name] = last
                silent = _ms(peer.silent_for(now))
                why = f"the last probe before its echo window ends (no message for {silent})"
                out.append(ProbePeer(name, True, why))
            wanted = not calm or any(peer.misses.values())
            if wanted is self._echo_on[name]:
                continue
            self._echo_on[name] = wanted
            if wanted:
                why = "not calm (see the decisions around it)"
                if self._late(name, now):
                    why = f"no message for {_ms(peer.silent_for(now))}"
                elif any(peer.misses.values()):
                    why = f"echo replies missed ({peer.miss_summary()})"
            else:
                why = f"calm for {_ms(now - self._trouble_at)}, heartbeats on time"
            out.append(ProbePeer(name, wanted, why))

    def _last_probe_at(self, name: str) -> float | None:
        """When a silent peer gets its last probe (None: echo is not on demand)."""
        t = self.timing
        silent_since = self.peers[name].silent_since
        if t.echo_on_demand_after is None or math.isinf(silent_since):
            return None
        return silent_since + t.echo_window - 1.5 * t.echo_timeout

    def _beat_period(self, now: float) -> float:
        return self.timing.calm_heartbeat if self.calm(now) else self.timing.heartbeat

    def calm(self, now: float) -> bool:
        """No sign of trouble for CALM_AFTER: the heartbeats go at the calm pace (and the
        shell lets its probe slots follow the peers' heartbeats)."""
        return now - self._trouble_at >= CALM_AFTER

    def next_deadline(self) -> float:
        if self._quiet_until > self._now:  # steady: the quiet path keeps it up to date
            return min(self._heartbeat_at, self._quiet_until)
        rest, peers, uplinks = self._deadline_parts()
        # always later than the last handle's `now`: a deadline already due was acted
        # on there (every rule compares `now >= deadline`, as computed here)
        beat = self._upcoming([self._heartbeat_at])
        future = min(beat, rest, *peers.values(), *uplinks.values())
        return future if not math.isinf(future) else self._now + self.timing.heartbeat

    def _deadline_parts(self) -> tuple[float, dict[str, float], dict[str, float]]:
        """The next deadline in parts, each the earliest of its times still to come
        (after the last handle's `now`), inf when none: (the node's own but the
        heartbeat: retries, grace, conditions held; each peer's silence; each uplink's)."""
        t = self.timing
        times = [self._failed_until, self._kept_back_until, self._retry_at]
        times += [fence.retry_at for fence in self._fences.values()]
        times += [since + t.settle for since in self._held_since.values()]
        times += [since + t.listed_again_within for since in self._unlisted_since.values()]
        times += [since + t.peer_gone_after for since in self._doubt_since.values()]
        if self._all_since is not None:
            times.append(self._all_since + t.startup_grace)
        if self._reclaim_by is not None:
            times.append(self._reclaim_by)
        if t.echo_on_demand_after is not None and any(self._echo_on.values()):
            times.append(self._trouble_at + CALM_AFTER)  # calm from then on: echo off
        peers = {name: self._peer_deadline(name) for name in self.peers}
        uplinks = {name: self._upcoming(u.deadlines()) for name, u in self.uplinks.items()}
        return self._upcoming(times), peers, uplinks

    def _upcoming(self, times: list[float]) -> float:
        """The earliest of `times` after the last handle's `now` (inf: none)."""
        return min((x for x in times if x > self._now), default=math.inf)

    def _peer_deadline(self, name: str) -> float:
        """When this peer's silence (or its failing authentication) next means more."""
        t = self.timing
        peer = self.peers[name]
        heard = peer.silent_since
        times = [heard + t.echo_window, heard + t.peer_gone_after, heard + t.service_timeout]
        times.append(peer.echo_blocked_due())  # `_note_echo_blocked` on time, not quietly late
        last_probe = self._last_probe_at(name)
        if t.echo_on_demand_after is not None and last_probe is not None:
            times.append(heard + t.echo_on_demand_after)  # late: trouble (and echo on)
            times.append(last_probe)
        if peer.unauth_at > peer.heard_at:
            times += [
                peer.unauth_since + AUTH_GRACE,
                peer.unauth_reason_since + AUTH_GRACE,
                peer.unauth_at + t.peer_gone_after,
            ]
        return self._upcoming(times)

    def _split_deadline(self) -> float:
        """next_deadline() from its parts, kept for the quiet path to update one part
        (only after a handle: the heartbeat is then always still to come)."""
        self._deadline_rest, self._deadline_peer, self._deadline_uplink = self._deadline_parts()
        return self._quiet_deadline()

    def _quiet_deadline(self) -> float:
        """The next deadline of a rule (the heartbeat's is not one: `_quiet` sends it)."""
        return min(
            self._deadline_rest, *self._deadline_peer.values(), *self._deadline_uplink.values()
        )

    # ---- the quiet path --------------------------------------------------
    #
    # Most events change nothing: at idle every node hears each peer's heartbeat on
    # both networks and its echo replies many times a second, each only saying "still
    # here, as before". Running every rule for each (and the notes) was most of the
    # agent's idle CPU. While the node is steady (`_steady`), such an event only
    # records its arrival time, keeps the heartbeat going and moves the one deadline
    # it concerns: every rule's answer is the one the last full run gave, because
    # nothing it reads has changed but these times, and every time at which a rule's
    # answer can change by itself is a deadline (a Tick runs the rules there).

    def _steady(self, now: float) -> bool:
        """Whether, until the next deadline, a routine event can change no rule's answer.

        Everything settled (ACTIVE or STANDBY, no plan, no held condition, no
        handover, stop, maintenance, MANUAL mode, partition or order mismatch), every
        own uplink healthy and stable, every peer heard lately (before any of its
        silence deadlines, nothing unauthenticated since) with every uplink, so that
        nothing is trouble. Each of these changes only with an event that is not
        routine, or at a deadline.
        """
        if self.role not in (A, S) or self._plan_live or self._stopping or self._yielding:
            return False
        if self.maintenance or self.manual or self._successor or self._held_since:
            return False
        if self._reclaim_by is not None or self._startup is not None:
            return False
        if self._partitioned or self._order_differs or self._order_said:
            return False
        if any(not u.healthy(now) or u.raw is not u.stable for u in self.uplinks.values()):
            return False
        t = self.timing
        within = min(t.echo_window, t.peer_gone_after, t.service_timeout)
        if t.echo_on_demand_after is not None:  # a peer that late is trouble
            within = min(within, t.echo_on_demand_after)
        for peer in self.peers.values():
            view = peer.view
            if view is None or not view.has_all_uplinks:
                return False
            if peer.unauth_at > peer.heard_at or peer.timers_from > peer.heard_at:
                return False
            if now >= peer.heard_at + within:
                return False
        return True

    def _quiet(self, event: Event, now: float, out: list[Action]) -> bool:
        """Take a routine event of a steady node; False (nothing done) for any other.

        Routine: a peer's message with the view it sent before (nothing new to learn
        from it), an echo reply from a peer whose echo had no miss on that network,
        the switch answering while the uplink is healthy. The full run of `_full`
        would find the same: no move, no note, no trouble; what remains is the
        heartbeat, as `_full` sends it.
        """
        if now - self._now > self.timing.schedule_gap:
            return False  # a schedule gap: `_check_schedule_gap` restarts the timeouts
        kind = type(event)
        if kind is PeerMessage:
            assert isinstance(event, PeerMessage)
            view = event.view
            tracker = self.peers.get(view.node)
            if tracker is None or (view is not tracker.view and view != tracker.view):
                return False
            if view.order_id and view.order_id != self.config.order_id:
                return False
            if self._data_epoch_news(view):
                return False  # the data epoch to learn or withdraw (`_learn_data_epoch`)
            if tracker.misses.get(event.network):
                return False  # it may make `echo-blocked` true (`_note_echo_blocked`)
            self._now = now
            tracker.message(event.network, view, now, event.waited)
            self._deadline_peer[view.node] = self._peer_deadline(view.node)
        elif kind is EchoResult:
            assert isinstance(event, EchoResult)
            tracker = self.peers.get(event.peer or self.peer_name)
            if not event.answered or tracker is None or event.network not in self.uplinks:
                return False
            if tracker.misses.get(event.network) != 0:
                return False
            self._now = now
            tracker.echo(event.network, True, now, self.timing.kernel_proof_after)
        elif kind is SwitchReachability:
            assert isinstance(event, SwitchReachability)
            uplink = self.uplinks.get(event.network)
            if uplink is None or not event.reachable:
                return False
            self._now = now
            uplink.switch_answer(True, now)
            self._deadline_uplink[event.network] = self._upcoming(uplink.deadlines())
        elif kind is Tick:  # before any rule's deadline: the heartbeat's
            self._now = now
        else:
            return False
        self._beat_when_due(now, out, self._steady_beat)  # nothing here is trouble
        self._quiet_until = self._quiet_deadline()
        return True

    def _steady_beat(self, network: str | None) -> SendPeerMessage:
        """Every input of the view is steady too: the same view until a full run, and
        the same object on every network (the encoder knows it by identity, not by
        comparing fifteen fields)."""
        beat = self._quiet_beats.get(network)
        if beat is None:
            made = next(iter(self._quiet_beats.values()), None)
            beat = (
                self._message(self._now, network)
                if made is None
                else SendPeerMessage(made.view, network)
            )
            self._quiet_beats[network] = beat
        return beat

    def view(self, now: float) -> PeerView:
        heard, hung = self._listed(now)
        return PeerView(
            node=self.node,
            role=self.role,
            epoch=self.epoch,
            uplinks=tuple((n, u.healthy(now)) for n, u in self.uplinks.items()),
            candidate=self._candidate(now),
            yielding=self._yielding,
            maintenance=self.maintenance,
            manual=self.manual,
            data_epoch=self._shown_data_epoch,
            heard=heard,
            in_sync=self._in_sync(now) if self.role is A else (),
            successor=self._successor,
            order_id=self.config.order_id,
            commit=self._commit,
            hung=hung,
        )

    def _listed(self, now: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The peer lists of this node's messages: (`_heard`, `_hung`)."""
        heard = self._heard(now)
        return heard, self._hung(now, heard)

    def _hung(self, now: float, heard: tuple[str, ...]) -> tuple[str, ...]:
        """The holders this node lost whose host still answers its echo, their agent
        silent (`_kernel_outlived_agent`), and whom nobody heard here has taken over
        from: they may hold the VIP. A node that cannot hear such a peer itself, and so
        would take its silence for death, fences it first (`_unknown_fate`). Without
        this a standby cut off from a hung active, whose agent restarted and so had
        never heard it, promoted beside it after startup_grace (8 of 8 simulated runs;
        the witness in maintenance). Multi-server mode only: a pair has no witness."""
        if not self.config.multi_server:
            return ()
        return tuple(
            name
            for name in self.peer_names
            if name not in heard
            and (last := self.peers[name].view) is not None
            and last.role.may_hold
            and self._kernel_outlived_agent(name, now)
            and not self._taken_over_from(name, now)
        )

    def _heard(self, now: float) -> tuple[str, ...]:
        """The peers this node vouches for in its messages: present and not lost here.

        A peer lost here is dropped at once, not at the end of the present window
        (`peer_gone_after`): a standby that lost the holder waits for every witness to
        stop listing it (`_witnessed`), and a listing that outlived this node's own
        verdict by up to a window and a heartbeat made three nodes fail over about
        100 ms later than two."""
        return tuple(
            p
            for p in self.peer_names
            if self._present(p, now) is not None and self._peer_lost(p, now) is None
        )

    @property
    def _shown_data_epoch(self) -> int:
        """The epoch of this node's data as it tells others: the running epoch while
        promoting or active, else the last one it held."""
        return self.epoch if self.role in (P, A) else self.data_epoch

    @property
    def _commit(self) -> int:
        """How far this standby got in its data epoch's synchronous stream: the commits
        applied in that epoch, summed over the synchronous directories (0 while holding:
        the epoch's own active ranks above its standbys whatever they applied).

        A standby the active's mount dropped stops counting while the others go on, so
        it ranks below them at once, before it hears the active's verdict (the window
        of `_learn_data_epoch`); docs/sync-mode.md, "Freshness"."""
        if self.role in (P, A):
            return 0
        total = 0
        for epoch, commit in self._applied:
            if epoch > self.data_epoch:
                # in a newer active's stream before its verdict recorded that epoch here:
                # this node holds that active's data, more than any count of our epoch
                return COMMIT_MAX
            if epoch == self.data_epoch:
                total += commit
        return min(COMMIT_MAX, total)

    def _in_sync(self, now: float) -> tuple[str, ...]:
        """The standbys whose synced directories all caught up (every present one when
        nothing is synced)."""
        if self.config.sync:
            return tuple(p for p in self.peer_names if self._sync_state.get(p, False))
        return tuple(
            p
            for p in self.peer_names
            if (v := self._present(p, now)) is not None and not v.role.may_hold
        )

    @property
    def stopped(self) -> bool:
        """The agent was asked to stop and holds nothing any more."""
        return self._stopping and not self.role.may_hold

    def reconfigure(self, config: Config, now: float, stop_removed: bool) -> list[Action]:
        """Take a new config with other resources (or sync dirs, timings), in place.

        An active node starts the resources that were added (and starts the sync if
        there was none); resources removed from the config are stopped only when
        the operator asks (`stop_removed`), else they are left running unmanaged.
        What identifies the pair (cluster, nodes, networks, VIP) cannot change
        here: the caller restarts the agent for that.
        """
        self._now = now
        self._quiet_until = NEVER  # other timings: every deadline anew
        if self._plan_live:
            purpose = _PURPOSES.get(self._plan_purpose)
            running = purpose.running if purpose else f"the {self.role.value} role's"
            text = f"reload refused: a plan is running ({running}); try again in a moment"
            return [self._decision(DecisionKind.REFUSED, text)]
        self._plan_moved_at = now  # what a look began to check may have changed
        old = {r.name for r in self.config.resources}
        new = {r.name for r in config.resources}
        added = [r.name for r in config.resources if r.name not in old]
        removed = [r.name for r in reversed(self.config.resources) if r.name not in new]
        had_sync = bool(self.config.sync or self._mounted)
        old_dirs = {d.path for d in self.config.sync}  # before the new config replaces it
        self.config, self.timing = config, config.timing
        out: list[Action] = []
        parts = [f"added {', '.join(added)}" if added else "", ""]
        if removed:
            parts[1] = f"removed {', '.join(removed)}" + (
                " (stopping them)" if stop_removed else " (left running, no longer managed)"
            )
        new_dirs = {d.path for d in config.sync}
        if new_dirs - old_dirs:
            parts.append(f"sync added {', '.join(sorted(new_dirs - old_dirs))}")
        if old_dirs - new_dirs:
            parts.append(f"sync removed {', '.join(sorted(old_dirs - new_dirs))}")
        summary = "; ".join(p for p in parts if p) or "no resource or synced directory changed"
        steps: list[PlanStep] = []
        out.append(self._decision(DecisionKind.RECONFIGURE, f"config reloaded: {summary}"))
        if self.role is A:
            has_sync = bool(config.sync or self._mounted)
            if has_sync and not had_sync:
                steps.append(StartSync(self.epoch, True, synchronous=self._mounted))
            steps += [StartResource(name) for name in added]
            steps += [StopResource(name) for name in removed] if stop_removed else []
            if had_sync and not has_sync:
                steps.append(StopSync())
            out += self._synchronous_changes(config)
        if steps:
            out.append(self._launch(steps, RELOAD))
        return out

    def _synchronous_changes(self, config: Config) -> list[Action]:
        """A reload on the ACTIVE node that changes which directories are synchronous
        (added, removed, async <-> synchronous) takes effect at the next promotion: a
        mount put under the running services misses every descriptor they hold open, and
        one taken away under them fails their open files with ENOTCONN."""
        wanted = {d.path for d in config.sync if d.synchronous}
        out: list[Action] = []
        for path in sorted(wanted.symmetric_difference(self._mounted)):
            kept = (
                "its synchronous mount"
                if path in self._mounted
                else "the plain directory, synced asynchronously"
                if any(d.path == path for d in config.sync)
                else "the plain directory"
            )
            reason = (
                f"reload: synchronous mode of {path} changes at the next promotion; the "
                f"running services keep {kept} until then (a switchover applies it)"
            )
            out.append(self._decision(DecisionKind.RECONFIGURE, reason))
        return out

    def snapshot(self, now: float) -> dict[str, object]:
        """What this node knows, for `mosqit-failover status` (JSON-ready)."""
        peers = {name: self._peer_status(name, now) for name in self.peer_names}
        shown = next(
            (p for p in self.peer_names if self._present(p, now) is not None), self.peer_name
        )
        first = {k: v for k, v in peers[shown].items() if k not in _MULTI_KEYS}
        return {
            "node": self.node,
            "role": self.role.value,
            "epoch": self.epoch,
            "data_epoch": self._shown_data_epoch,
            "commit": self._commit,
            "mode": _mode(self.maintenance, self.manual),
            "candidate": self._candidate(now),
            "uplinks": {n: u.why_not(now) for n, u in self.uplinks.items()},
            "plan_running": self._plan_live,
            "resource_failures": self._failure_counts(now),
            "heartbeat_ms": round(1000 * self._beat_period(now)),
            "peer": first,
            "peers": peers,
        }

    def _failure_counts(self, now: float) -> dict[str, int]:
        """The monitor's failures that still count, of the resources the config names."""
        names = {r.name for r in self.config.resources}
        counts = self._failures.counts(now, self.timing.failure_timeout)
        return {name: count for name, count in counts.items() if name in names}

    def _peer_status(self, name: str, now: float) -> dict[str, object]:
        tracker = self.peers[name]
        peer = tracker.view
        fence = self._fences.get(name)
        return {
            "node": name,
            "role": peer.role.value if peer else "UNKNOWN",
            "epoch": peer.epoch if peer else None,
            "mode": _mode(peer.maintenance, peer.manual) if peer else None,
            "uplinks": dict(peer.uplinks) if peer else {},
            "candidate": peer.candidate if peer else None,
            "heard_ago": None if math.isinf(tracker.heard_at) else now - tracker.heard_at,
            "heard_ago_by_network": {
                n: None if math.isinf(t) else now - t for n, t in tracker.heard_on.items()
            },
            "echo_misses": dict(tracker.misses),
            # the share of echo round trips lost lately, which the misses must outweigh
            "echo_loss": {n: round(loss.rate(now), 3) for n, loss in tracker.loss.items()},
            # networks its messages cross and its echo does not (`echo-blocked`)
            "echo_blocked": sorted(n for p, n in self._echo_blocked_said if p == name),
            "unauthenticated": self._auth_text(name) if self._auth_failing[name] else None,
            "fence": None if fence is None else fence.status(),
            "data_epoch": peer.data_epoch if peer else None,
            "commit": peer.commit if peer else None,
            "heard": self._present(name, now) is not None,
            "in_sync": name in self._in_sync(now) if self.role is A else None,
            "rank": self.config.rank(name),
            "order_differs": name in self._order_said,
        }

    # ---- observing -----------------------------------------------------

    def _check_schedule_gap(self, now: float, out: list[Action]) -> None:
        """After a freeze (SIGSTOP, suspend) our own probes' silence means nothing:
        restart every timeout from now rather than conclude the world is gone."""
        gap = now - self._now
        if gap <= self.timing.schedule_gap:
            return
        self._stops.append((self._now, now))  # `_listening_since` too
        for uplink in self.uplinks.values():
            uplink.timers_from = now
        for peer in self.peers.values():
            peer.restart_timers(now)
        out.append(
            self._decision(
                DecisionKind.RESUMED,
                f"was not scheduled for {_ms(gap)} (frozen or suspended): timeouts restart now",
            )
        )

    def _observe(self, event: Event, now: float, out: list[Action]) -> Verdict | None:
        match event:
            case LinkChanged(network, carrier) if network in self.uplinks:
                self.uplinks[network].carrier(carrier, now)
            case SwitchReachability(network, reachable) if network in self.uplinks:
                self.uplinks[network].switch_answer(reachable, now)
            case EchoResult(network, answered, peer) if network in self.uplinks:
                if tracker := self.peers.get(peer or self.peer_name):
                    tracker.echo(network, answered, now, self.timing.kernel_proof_after)
            case PeerMessage(network, view, waited) if view.node in self.peers:
                self._note_unlisted(view, now)
                self.peers[view.node].message(network, view, now, waited)
                self._note_commit(view, now)
                if view.order_id and view.order_id != self.config.order_id:
                    self._order_differs[view.node] = now
                else:
                    self._order_differs.pop(view.node, None)
                self._learn_data_epoch(view, now, out)
            case PeerUnauthenticated(network, reason, peer) if network in self.uplinks:
                if tracker := self.peers.get(peer or self.peer_name):
                    tracker.unauthenticated(reason, now, self.timing.peer_gone_after)
            case FenceResult(epoch, fenced, detail, peer):
                self._fence_done(epoch, fenced, detail, peer, now, out)
            case SyncInSync(peer, in_sync) if peer in self.peers:
                self._sync_state[peer] = in_sync
            case SyncApplied(applied):
                before, was = self._commit, self._applied
                self._applied = applied
                # the first record after a start is no move: it may be hours old, and a
                # count taken for moving could outrank one that went further (`_stream`)
                if was and self._commit > before:
                    self._applied_at = now
            case OperatorCommand(command, target):
                return self._operator(command, target, now, out)
            case ActionDone(plan, action) if self._is_next_step(plan, action):
                self._pending.pop(0)
                if not self._pending:
                    self._plan_live = False
                    self._plan_moved_at = now
                    if self._plan_purpose == RELEASE_ASTRAY:
                        self._astray_failed = 0
                    return Verdict(Trigger.PLAN_DONE, DecisionKind.PLAN_DONE, self._done_reason())
            case ActionFailed(plan, action, error) if plan == self._plan_number and self._plan_live:
                self._plan_live = False
                self._pending = []
                self._plan_moved_at = now
                if isinstance(action, StopSync) and action.abort_if_left and self.role is D:
                    return self._sync_left(error, now)
                if self._plan_purpose:  # the role's own resources stay as they are
                    self._purpose_failed(step_name(action), error, now, out)
                    return None
                return Verdict(
                    Trigger.PLAN_FAILED,
                    DecisionKind.PLAN_FAILED,
                    f"{step_name(action)} failed: {error}",
                )
            case ResourceCheck() as check:
                return self._monitored(check, now, out)
            case Tick():
                pass
        for uplink in self.uplinks.values():
            uplink.settle(now)
        return None

    def _note_commit(self, view: PeerView, now: float) -> None:
        """When a peer's commit count last went up (`_stream`). One first seen above 0
        counts as just moved: taking a stopped stream for a live one only makes this
        node wait for the other a moment, the reverse could make both take over."""
        seen = self._commit_moved.get(view.node)
        if seen is None:
            if view.commit:
                self._commit_moved[view.node] = (view.commit, now)
        elif view.commit != seen[0]:
            self._commit_moved[view.node] = (view.commit, now if view.commit > seen[0] else seen[1])

    def _data_epoch_news(self, view: PeerView) -> bool:
        """Whether `view` may change this node's data epoch (`_learn_data_epoch`)."""
        if view.role is not A or self.role.may_hold:
            return False
        if self.node in view.in_sync:
            return view.epoch > self.data_epoch
        return view.epoch == self.data_epoch and bool(self.config.sync)

    def _learn_data_epoch(self, view: PeerView, now: float, out: list[Action]) -> None:
        """The active node's word on this standby's data (docs/sync-mode.md, "Data epoch
        withheld").

        Listed in sync: its data is of the active's epoch (recorded). Not listed by the
        active of the very epoch recorded: it missed writes of that epoch (a lost
        channel, a push that failed or lags), so it must not tie with a standby that
        holds them all: the data epoch drops to N - 1. That is still the highest it
        may claim: being listed in epoch N, it caught up with what N's active started
        with, which puts it above any standby that never caught up in N (the epoch
        it held before N could be lower and rank it below those). Only the active of
        the epoch recorded lowers it: an older active's view says nothing about N, a
        promoting one lists nobody yet, and a newer one's epoch was never recorded.
        Without [[sync]] the active lists every standby it hears: not being heard
        misses no data, so nothing is withdrawn. Only ranks: a node with a lower data
        epoch is still a candidate (`_wins_election`), the only standby of a pair too.
        """
        if not self._data_epoch_news(view):
            if view.role is A and self.node not in view.in_sync:
                self._relisted_since = None
            return
        epoch = view.epoch
        if self.node not in view.in_sync:
            self._withdraw(epoch, f"active {view.node} no longer lists me in sync", out)
            return
        why = f"active {view.node} lists me in sync"
        if epoch == self._withdrawn_from:
            if self._relisted_since is None:
                self._relisted_since = now
            since = self._relisted_since
            if now < since + RERECORD_AFTER:
                return  # listed again: recorded once that has lasted (RERECORD_AFTER)
            why = f"active {view.node} has listed me in sync again for {_ms(now - since)}"
        self.data_epoch = epoch
        self._withdrawn_from, self._relisted_since = 0, None
        out.append(self._decision(DecisionKind.DATA_EPOCH_RECORDED, f"data epoch {epoch}: {why}"))
        out.append(RecordDataEpoch(epoch))

    def _withdraw(self, epoch: int, why: str, out: list[Action]) -> None:
        """Lower the data epoch to epoch - 1: this node missed writes of `epoch`."""
        self.data_epoch = epoch - 1
        self._withdrawn_from, self._relisted_since = epoch, None
        # without [[sync]] the agent moves no data, but a service's own replication
        # (a database's stream) goes over the same cut networks
        missed = "missed writes" if self.config.sync else "out of touch with the active"
        text = f"data epoch {epoch} withdrawn, now {epoch - 1}: {why} ({missed} of epoch {epoch})"
        out.append(self._decision(DecisionKind.DATA_EPOCH_WITHDRAWN, text))
        out.append(WithdrawDataEpoch(epoch - 1, epoch))

    def _note_cut_from_active(self, now: float, out: list[Action]) -> None:
        """A standby cut off from the active of its recorded epoch while a witness still
        hears that active (a partition, `_update_partitions`) hears no verdict from it,
        and the active's writes (pushed or streamed over the same networks) do not reach
        it either: it withdraws the epoch as if the active had said so, or it would tie
        with a standby that holds them and could win by the order when the active dies.
        Only once the partition has held for the settle time: when the active dies, a
        witness's last message may still list it for a moment (that is no partition).

        Also without [[sync]]: a witness that hears the active then ranks first and
        decides on the active's death with its own echo (a hung agent: fence first),
        where this node could only take the witness's silence for death. Before, with
        nothing synced, this node won by the order and promoted beside a hung active
        (10 of 10 simulated runs); `_unknown_fate` covers a witness that is no
        candidate."""
        if self.role.may_hold:
            return
        for name in self.peer_names:
            view = self.peers[name].view
            cut = (
                name in self._partitioned
                and view is not None
                and view.role is A
                and view.epoch == self.data_epoch
            )
            if self._held(f"cut-from-{name}", cut, now):
                self._held_since.pop(f"cut-from-{name}", None)
                who = ", ".join(sorted(self._partitioned[name]))
                why = f"active {name} is not heard here, {who} hears it: a partition"
                self._withdraw(self.data_epoch, why, out)

    def _is_next_step(self, plan: int, action: object) -> bool:
        return plan == self._plan_number and self._plan_live and self._pending[:1] == [action]

    def _done_reason(self) -> str:
        if self._plan_purpose:
            return _PURPOSES[self._plan_purpose].done
        if self.role is P:
            return "promotion complete: VIP, ARP, sync and services are up"
        if self.role is D:
            return "demotion complete: services, sync and VIP released"
        return "reconfiguration complete"

    # ---- derived facts -------------------------------------------------

    def _own_all(self, now: float) -> bool:
        return all(u.healthy(now) for u in self.uplinks.values())

    def _own_none(self, now: float) -> bool:
        return all(u.known_down(now) for u in self.uplinks.values())

    def _lacking(self, now: float) -> list[str]:
        """Networks this node knows it lost (not those it cannot judge yet)."""
        return [n for n, u in self.uplinks.items() if u.known_down(now)]

    def _candidate(self, now: float) -> bool:
        # a carrier that just dropped may be our own cable pulled at the moment the
        # peer went silent: no promotion until the debounce has decided
        return (
            self._own_all(now)
            and not any(u.falling() for u in self.uplinks.values())
            and not self.maintenance
            and not self._yielding
            and now >= self._failed_until
            and now >= self._kept_back_until
        )

    def _end_keep_back(self, now: float, out: list[Action]) -> None:
        """A node kept back after handing over for a failing resource takes part in
        elections again, for good, once no present peer holds or could be elected (its
        successor failed to start: nobody served for start_failure_backoff, a helper's
        finding). For good: two kept-back nodes that each waited for the other to be
        no candidate would flip together at every message."""
        if now >= self._kept_back_until or self.role not in (W, S):
            return
        if any(v.role.may_hold or v.candidate for v in self._present_views(now)):
            return
        self._kept_back_until = -math.inf
        text = "no other node can serve: a candidate again, its resource's failures still counting"
        out.append(self._decision(DecisionKind.RESOURCE_FAILED, text))

    def _blocking(self, name: str, now: float) -> PeerView | None:
        """A peer's view while it may still hold anything: heard within service_timeout.

        The long window. A peer heard this lately blocks a promotion (its last word
        says what it holds) and is the peer role the decision lines name.
        """
        return self.peers[name].fresh(now, self.timing.service_timeout)

    def _present(self, name: str, now: float) -> PeerView | None:
        """A peer's view while it is present: heard within peer_gone_after.

        The short window. Only a peer heard this lately is acted on: an election, a
        handover or failback to it, a switchover, the ARP when it comes back.
        """
        return self.peers[name].fresh(now, self.timing.peer_gone_after)

    def _blocking_views(self, now: float) -> list[PeerView]:
        return [v for p in self.peer_names if (v := self._blocking(p, now)) is not None]

    def _present_views(self, now: float) -> list[PeerView]:
        return [v for p in self.peer_names if (v := self._present(p, now)) is not None]

    def _peer_blocking_promotion(self, now: float) -> PeerView | None:
        """The peer the decision lines name: a pair's peer heard within service_timeout;
        for N nodes the first one heard that holds anything, else the first one heard."""
        views = self._blocking_views(now)
        return next((v for v in views if v.role.may_hold), views[0] if views else None)

    def _held(self, name: str, condition: bool, now: float) -> bool:
        """True once `condition` has held for the settle time."""
        if not condition:
            self._held_since.pop(name, None)
            return False
        since = self._held_since.setdefault(name, now)
        return now >= since + self.timing.settle  # as next_deadline() computes it

    def _by_name(self) -> bool:
        """A peer heard lately runs another cluster.order: rank by node name instead,
        which every node that notices agrees on (each node's own order would make it
        wait for another, or make two go first)."""
        within = self.timing.service_timeout
        return any(self._now - t <= within for t in self._order_differs.values())

    def _place(self, name: str) -> int:
        """The node's place among equals: cluster.order, or the name when orders differ."""
        if self._by_name():
            return sorted((self.node, *self.peer_names)).index(name)
        return self.config.rank(name)

    def _peer_outranks(self, peer: PeerView) -> bool:
        """Between two holders: the higher epoch, then the earlier place in the order."""
        if peer.epoch != self.epoch:
            return peer.epoch > self.epoch
        return self._place(peer.node) < self._place(self.node)

    def _rank_reason(self, peer: PeerView) -> str:
        if peer.epoch != self.epoch:
            return f"epoch {peer.epoch} vs mine {self.epoch}"
        if self.config.multi_server:
            return f"equal epochs {self.epoch}, {peer.node} is earlier in the order"
        return f"equal epochs {self.epoch}, preferred node is {self.config.preferred}"

    def _stream(self, commit: int, moved_at: float, heard: bool, live: bool) -> tuple[bool, int]:
        """The synchronous stream's part of a rank: (moving, commit).

        When the holder is dead its mount is too: every count is final, and the higher
        one holds every commit the other has (a standby dropped by the mount stopped
        counting while the others went on). When the holder is hung but its kernel
        answers (`live`: the OS-problem case, its mount may serve on), every count that
        still goes up moves: each node's own, newer than the other's last heartbeat,
        would look higher to itself and both would take over. So then a count that went
        up within `_stream_live` is moving and outranks a stopped one, two moving ones
        are equal, and only two stopped ones compare counts. A peer not heard here (a
        partition, its last view however old) is compared without the stream at all:
        its count stopped only in our eyes (docs/sync-mode.md, "Freshness")."""
        if not heard:
            return (False, 0)
        if live and self._now - moved_at < self._stream_live:
            return (True, 0)
        return (False, commit)

    @property
    def _stream_live(self) -> float:
        """How long a commit count that went up counts as moving: a few probe slots and
        heartbeats, the time a standby's new count takes to reach the others."""
        return 3 * (self.timing.interval + self.timing.heartbeat)

    def _my_key(
        self, heard: bool = True, live: bool = False
    ) -> tuple[int, bool, tuple[bool, int], int]:
        fresh = max(self.epoch, self.data_epoch)
        stream = self._stream(self._commit, self._applied_at, heard, live)
        return (fresh, self.epoch == fresh, stream, -self._place(self.node))

    def _key(
        self, view: PeerView, heard: bool = True, live: bool = False
    ) -> tuple[int, bool, tuple[bool, int], int]:
        """A candidate's rank: the freshest data, then active in that epoch, then its
        synchronous stream (`_stream`), then order."""
        fresh = view.freshness
        moved_at = self._commit_moved.get(view.node, (0, NEVER))[1]
        stream = self._stream(view.commit, moved_at, heard, live)
        return (fresh, view.epoch == fresh, stream, -self._place(view.node))

    def _outranks_me(self, view: PeerView, heard: bool = True, live: bool = False) -> bool:
        """Whether `view`'s node ranks above this one (`heard`: its view is fresh; a
        partitioned peer's last view is compared without the streams; `live`: the
        holder is hung, its mount may serve on, `_stream`)."""
        return self._key(view, heard, live) > self._my_key(heard, live)

    def _election_reason(self, peer: PeerView, live: bool = False) -> str:
        if not self.config.multi_server:
            return self._rank_reason(peer)
        mine, theirs = self._my_key(live=live), self._key(peer, live=live)
        if mine[0] != theirs[0]:
            return f"data epoch {mine[0]} vs {peer.node}'s {theirs[0]}"
        if mine[1] != theirs[1]:
            return f"both data epoch {mine[0]}, I was active in it"
        if mine[2] != theirs[2]:
            if mine[2][0]:
                return (
                    f"both data epoch {mine[0]}, my synchronous commits went on lately, "
                    f"{peer.node}'s had stopped (it missed commits)"
                )
            return (
                f"both data epoch {mine[0]}, I applied more of its synchronous commits "
                f"than {peer.node} ({mine[2][1]} vs {theirs[2][1]})"
            )
        return f"both data epoch {mine[0]}, I am earlier in the order than {peer.node}"

    def _best(self, views: list[PeerView], live: bool = False) -> PeerView | None:
        return max(views, key=lambda view: self._key(view, live=live), default=None)

    def _wins_election(
        self, rivals: list[PeerView], now: float, live: bool = False
    ) -> Verdict | None:
        """Nobody holds; the peers not gone are `rivals`: should this node become active?
        (`live`: the holder gone is hung, its mount may serve on: `_stream`)"""
        if not self._candidate(now):
            return None
        if self._unlisted(now):
            return None  # it counts this node gone: the others may be taking over
        # a node handing over on purpose names its successor: the others leave it to that one
        for view in self._present_views(now):
            if view.successor == self.node:
                return Verdict(
                    Trigger.PROMOTE,
                    DecisionKind.PROMOTE,
                    f"nobody is active and {view.node} hands over to me: taking over",
                )
            if view.successor and view.successor in self.peers:
                successor = self._present(view.successor, now)
                if successor is not None and successor.candidate:
                    return None
        since = self._all_since if self._all_since is not None else now
        for peer in rivals:
            if peer.candidate and not peer.role.may_hold:
                if self._outranks_me(peer, live=live):
                    return None  # a better candidate is here: it goes first
                continue
            recovering = not peer.has_all_uplinks and not peer.yielding and not peer.maintenance
            if (
                recovering
                and self._outranks_me(peer, live=live)
                and now < since + self.timing.startup_grace
            ):
                return None  # it has fresher data and may get its networks back: give it time
        if len(rivals) == 1 and not self.config.multi_server:
            peer = rivals[0]
            if peer.candidate:
                return Verdict(
                    Trigger.PROMOTE,
                    DecisionKind.PROMOTE,
                    f"nobody is active; both present, I win the election "
                    f"({self._election_reason(peer, live)})",
                )
            why = _not_a_candidate(peer)
            return Verdict(
                Trigger.PROMOTE,
                DecisionKind.PROMOTE,
                f"nobody is active and peer {peer.node} {why} ({peer.role.value}): taking over",
            )
        candidates = [p for p in rivals if p.candidate and not p.role.may_hold]
        best = self._best(candidates, live)
        if best is None:
            why = "no other candidate is present"
        else:
            why = f"I rank first among the candidates ({self._election_reason(best, live)})"
        return Verdict(Trigger.PROMOTE, DecisionKind.PROMOTE, f"nobody is active; {why}")

    def _peer_lost(self, name: str, now: float) -> Loss | None:
        """Why a peer counts as gone, or None. Applies the alone-grace."""
        t = self.timing
        peer = self.peers[name]
        silent = peer.silent_for(now)
        # compared as next_deadline() computes it, so a wake-up at that deadline acts
        gone = now >= peer.silent_since + t.echo_window
        os_problem = False
        if self._kernel_outlived_agent(name, now):
            if silent < t.service_timeout:
                return None  # a live host whose agent paused: not gone before service_timeout
            os_problem = True
            since = ""
            if now - peer.echo_at >= t.peer_gone_after:  # say why the misses did not decide
                since = (
                    f"; its kernel answered {_ms(peer.echo_at - peer.silent_since)} into "
                    f"the silence, echo replies missed since: {peer.miss_summary()}"
                )
            reason = _os_problem(name, silent, since)
        elif peer.echo_missed_everywhere(t.misses) and gone and self._misses_decide(peer, now):
            loss = peer.loss_summary(now)
            reason = (
                f"peer {name} gone: echo replies missed ({peer.miss_summary()}"
                f"{f'; recent loss {loss}' if loss else ''}), no message for {_ms(silent)}"
            )
        elif silent >= t.service_timeout:
            echo_silent = now - max(peer.echo_at, peer.timers_from)
            if echo_silent < t.peer_gone_after:
                # its kernel answers, and no proof says so (the replies paused for
                # service_timeout: a rebooted host, or this node's own uplinks were
                # down): it may still hold the VIP, fence first. Taking the first reply
                # for silence promoted a node started beside a hung holder 38 ms after
                # that reply, and a standby cut off while the holder hung (two holders)
                os_problem = True
                reason = _os_problem(name, silent)
            else:  # echo failing too, but fewer than `misses` probes have timed out yet
                reason = (
                    f"peer {name} silent: no message for {_ms(silent)}, no echo "
                    f"reply for {_ms(echo_silent)} ({peer.miss_summary()})"
                )
        else:
            return None
        alone_since = self._all_since if self._all_since is not None else now
        if peer.silent_since < alone_since and now < alone_since + t.startup_grace:
            return None  # alone since start or since the networks came back: grace first
        return Loss(reason, os_problem)

    def _misses_decide(self, peer: PeerTracker, now: float) -> bool:
        """The echo misses in a row are too many to be the recent loss alone, or as
        many as end the proof of a live host (`_kernel_outlived_agent`)."""
        return peer.misses_beat_loss(now, DEATH_DOUBT) or peer.echo_missed_everywhere(
            self.timing.kernel_silent_misses
        )

    def _kernel_outlived_agent(self, name: str, now: float) -> bool:
        """The peer's kernel answered an echo although its agent had already been silent
        for `kernel_proof_after`, and has not been silent itself for
        service_timeout since: its host is alive, its agent hung or dead, and it may
        still hold the VIP. Echo misses in a row prove nothing then: at 30 % loss on
        both networks a streak of `misses` comes every few seconds, and taking it for
        death promoted without a fence while the hung node kept the VIP (two holders for
        as long as the hang lasted, in the simulation). A dead host answers nothing after
        its last heartbeat; only heartbeats lost just before it died make it look so, and
        then this holds until `kernel_silent_misses` echo misses in a row on every network
        (a live host at 30 % loss: about once in 10^6 such windows), after which the
        misses decide. A host whose echo paused for service_timeout since the agent fell
        silent died or rebooted: a booting host answers ICMP before its agent runs, and
        is no hung holder (the late fence stood the new active down for it)."""
        t = self.timing
        peer = self.peers[name]
        if peer.echo_at - peer.silent_since <= t.kernel_proof_after:
            return False
        if peer.echo_pause >= t.service_timeout or now - peer.echo_at >= t.service_timeout:
            return False  # it went silent too since: it died or rebooted, hung or not before
        return not peer.echo_missed_everywhere(t.kernel_silent_misses)

    def _update_partitions(self, now: float) -> None:
        """A peer not heard here that a node heard here reports as heard is present, not
        gone (a partition among the standbys). Proof: the witness's message came more
        than peer_gone_after after this node last heard the peer, so the witness heard
        it later. It stays so, even once the witness is gone, until this node hears the
        peer again or every witness still heard stops listing it for peer_gone_after
        (a witness drops a peer the moment its own rules count it gone, and lists it
        again with its next heartbeat after a short break). "Later" by more than an
        echo timeout: a heartbeat's way between the nodes takes time.

        A witness that has just come back (its agent restarted, its cable plugged in)
        lists nobody yet: its silence about the peer counts only once it has been heard
        for `service_timeout` without a break (a lab run promoted a second node while
        the first one served, when such a witness dropped the proof). And nothing that
        happened before this node started listening proves anything: a node that has
        just started has heard nobody yet, which is no partition."""
        within = self.timing.peer_gone_after
        for name in self.peer_names:
            if self._present(name, now) is not None:
                self._present_since.setdefault(name, now)
            else:
                self._present_since.pop(name, None)
        for name in self.peer_names:
            if name in self._present_since:
                self._lost_by_hearing.discard(name)
                self._partitioned.pop(name, None)
                self._fate_unknown.pop(name, None)
                self._proven_since.pop(name, None)
                continue
            witnesses = self._partitioned.get(name, set())
            had = sorted(witnesses)
            listing = False  # a present peer lists it now
            deaf: list[str] = []  # present peers that list neither it nor this node
            last = max(self.peers[name].heard_at, self._listening_since)
            for other in self.peer_names:
                view = self._present(other, now)
                if other == name or view is None:
                    continue
                said_at = self.peers[other].heard_at
                if name not in view.heard and self.node not in view.heard:
                    # a witness that does not hear this node either, which is alive and
                    # talks to it, is deaf (a one-way loss toward it, or it is dying):
                    # its silence about the peer says nothing by itself. Counted, it
                    # ended both standbys' proofs of each other when everything they
                    # sent a dying active was lost while they were cut apart, and both
                    # took over (36 of 36 simulated runs, two holders until the cut was
                    # mended). A witness that hears this node and lost the peer settles
                    # it (below); without one, should the peer die too meanwhile, this
                    # node waits for it (no holder) rather than promote on a silence
                    deaf.append(other)
                    continue
                if name not in view.heard:
                    if other in witnesses and self._stopped_listing(other, name, now):
                        witnesses.discard(other)
                        self._lost_by_hearing.add(name)
                    continue
                listing = True
                self._listed_at[(other, name)] = said_at
                # an echo timeout for the witness's message on its way and the peer's
                # last heartbeat reaching the two a little apart: without it, a
                # witness's heartbeat sent just before it too stopped listing a dead
                # peer was proof of a partition (breaker5, seen with a standby path
                # broken: the standbys then send at the fast pace)
                if said_at > last + within + self.timing.echo_timeout:
                    witnesses.add(other)
            if name in self._lost_by_hearing and not listing:
                # a witness that hears this node lost the peer, and nobody lists it:
                # the deaf witnesses' silence about it counts again, as any witness's
                # (four nodes and more: without this, a standby deaf to the active
                # waited for ever for a peer that had died, and the others for it)
                witnesses.difference_update(
                    other for other in deaf if self._stopped_listing(other, name, now)
                )
            if witnesses:
                self._partitioned[name] = witnesses
                self._proven_since.setdefault(name, now)
                self._fate_unknown.pop(name, None)
            elif self._partitioned.pop(name, None) is not None:
                # a cut, not a few heartbeats lost here: the peer was alive and listed
                # for the settle time after the proof (a witness goes on listing a
                # peer that fell silent, dead or hung, for up to peer_gone_after)
                listed = max((self._listed_at.get((w, name), NEVER) for w in had), default=NEVER)
                proven = self._proven_since.pop(name, now)
                if listed - proven >= self.timing.settle + within:
                    self._fate_unknown[name] = ", ".join(had)
        for name in [n for n in self._fate_unknown if self._taken_over_from(n, now)]:
            del self._fate_unknown[name]
        self._update_doubts(now)

    def _stopped_listing(self, witness: str, name: str, now: float) -> bool:
        """Whether `witness` no longer lists `name`, for good as far as a proof goes.

        A witness drops a peer the moment its own rules count it gone, and lists it
        again with its next heartbeat: a proven partition ends only when the witness,
        heard here for `service_timeout` without a break, has listed it no more for a
        present window (breaker of 2026-12-06: a 0.2 s break between the active and the
        one witness ended the proof, and a standby cut from the active promoted beside
        it)."""
        settled = now - self._present_since[witness] >= self.timing.service_timeout
        listed = self._listed_at.get((witness, name), NEVER)
        return settled and now - listed >= self.timing.peer_gone_after

    def _update_doubts(self, now: float) -> None:
        """A peer known here only through witnesses that may have counted this node gone
        (`_counted_me_gone`) may have taken over then, and nothing a witness lists later
        says it did not: the lists name no holder. So the doubt stays until the peer is
        heard here or no longer known through witnesses, or a holder heard here lists
        both it and this node for the settle time (two holders that hear each other do
        not last that long). Without it, three nodes, beta and gamma cut apart, beta's
        agent stopped for 1 s as alpha's hung: gamma fenced alpha and took over, and
        beta did too once alpha's restarted agent listed it again (2 of 4 simulated
        runs, until the end).

        It sticks once it has looked so for peer_gone_after with no active node heard
        here listing the peer: the peer drops its proof of this node only once a
        witness has left it out that long, and takes over only with no active node
        heard. Without that, a glitch made this node wait for a peer that waited for
        it, for ever (a helper's attack: beta's packets to alpha lost for half a second,
        alpha, active all along, dying just after it listed beta again). Right after
        this agent's own stop it looks so until the words that waited in the socket
        are read."""
        if not self._partitioned and not self._doubted and not self._doubt_since:
            return  # every node hears every other: the pair's path, every decision
        # not one counted gone here: the peer counts it gone at the same time, and may
        # take over at once (a word read late, 50 % loss: two holders)
        heard = [self.peers[p].view for p in self._heard(now)]  # present, not lost here
        actives = [v for v in heard if v is not None and v.role is A]
        for name in self._partitioned:
            if name in self._doubted:
                continue
            held = any(name in v.heard for v in actives)
            if held or not self._counted_me_gone(name):
                self._doubt_since.pop(name, None)
            elif now - self._doubt_since.setdefault(name, now) >= self.timing.peer_gone_after:
                self._doubted.add(name)
                del self._doubt_since[name]
        for name in [n for n in self._doubt_since if n not in self._partitioned]:
            del self._doubt_since[name]
        for name in list(self._doubted):
            listed = any({name, self.node} <= set(v.heard) for v in actives)
            if name not in self._partitioned or self._held(f"doubt-{name}", listed, now):
                self._doubted.discard(name)
                self._held_since.pop(f"doubt-{name}", None)

    def _may_have_counted_me_gone(self, name: str) -> bool:
        """Whether a peer known here only through witnesses may hold, having counted this
        node gone (now, or since: `_update_doubts`)."""
        return name in self._doubted or name in self._doubt_since

    def _counted_me_gone(self, name: str) -> bool:
        """A peer known here only through witnesses (a partition) may have counted this
        node gone, and taken over, unless a witness vouches for this node (`_vouches`).
        Not a peer whose last view could not be elected (maintenance, a network missing).

        Without this, three nodes, beta and gamma cut apart, beta's agent stopped for
        1 s and alpha dying 0.3 s into the stop: gamma took over, and so did beta once
        it ran again, still knowing gamma as a standby it outranks (5 of 8 simulated
        runs; a 3 s stop, 8 of 8)."""
        last = self.peers[name].view
        witnesses = self._partitioned.get(name, set())
        if last is None or not last.candidate or not witnesses:
            return False
        return not any(self._vouches(witness, name) for witness in witnesses)

    def _vouches(self, witness: str, name: str) -> bool:
        """Whether `witness`'s newest message here tells that the peer `name` has not
        counted this node gone. It lists this node, and arrived after this agent's last
        stop (what it said during the stop is not known here: what waited too long in
        the socket was dropped) or long before a stop (`_gone_before_a_stop`); or it
        arrived after the stop and lists neither (it lost the peer too, and told it
        nothing of this node). One that leaves only this node out may have ended the
        peer's proof of it. Arrived, not read: a word read at the resume may have
        waited through the stop (`PeerMessage.waited`)."""
        tracker = self.peers[witness]
        view = tracker.view
        if view is None:
            return False
        fresh = tracker.heard_at >= self._listening_since
        if self.node not in view.heard:
            return fresh and name not in view.heard
        return fresh or self._gone_before_a_stop(tracker.heard_at)

    @property
    def _listening_since(self) -> float:
        """Nothing unheard before this means anything: the start, or the end of the
        last stop."""
        return self._stops[-1][1]

    def _gone_before_a_stop(self, arrived: float) -> bool:
        """Whether a witness whose newest word arrived at `arrived` fell silent for
        peer_gone_after while this agent still ran, before its first stop after that
        word: a witness gone by then, through which the peer keeps its proof of this
        node (`_update_partitions`). Measured against that first stop, not the latest:
        a later one moved the mark past the witness's word, and an old word, from before
        a stop whose words were dropped, vouched again (a helper's finding: two holders
        in 8 of 8 runs, a 1.5 s stop and then another)."""
        if arrived < self._stops[0][0]:
            return False  # the first stop after it is forgotten (the start: -inf)
        for stopped, resumed in self._stops:
            if resumed > arrived:
                return arrived < stopped - self.timing.peer_gone_after
        return False

    def _taken_over_from(self, name: str, now: float) -> bool:
        """A node heard here holds, or held, an epoch newer than `name` was last seen
        in: a node took over since, one that heard `name` and judged it (fenced it if
        it was hung). Its fate no longer needs a fence from here: kept, the entry made
        every later takeover through this node fence a long-dead peer for ever (a
        breaker: a switchover after a witness took over left nobody holding the VIP)."""
        last = self.peers[name].view
        for other in self.peer_names:
            view = self._present(other, now)
            if other == name or view is None:
                continue
            if view.role.may_hold if last is None else view.epoch > last.epoch:
                return True
        return False

    def _unknown_fate(self, name: str, lost: Loss, now: float) -> Loss:
        """A peer this node knew of only through witnesses (a partition proven, and the
        peer listed for the settle time after), which stopped listing it: its own
        misses here date from the cut and say nothing, and the witnesses' silence says
        only that they lost it, not how (a hung agent is dropped like a dead host). It
        may still hold the VIP: an OS problem, fenced before a takeover. Without this,
        a standby cut from the active promoted beside it when the active's agent hung
        for 6 s (10 of 10 simulated runs, nothing synced). A shorter proof is a few
        heartbeats lost here, no cut, and a peer that died meanwhile cannot be fenced
        over ssh: this node's own misses count, as before."""
        witnesses = self._fate_unknown.get(name)
        if lost.os_problem:
            return lost
        if witnesses is not None:
            reason = (
                f"{lost.reason}; known here only through {witnesses}, no longer listed "
                "there: its fate is unknown here, it may still hold the VIP"
            )
            return Loss(reason, os_problem=True)
        reporters = self._hung_reporters(name, now)
        if reporters:
            sees = "sees" if len(reporters) == 1 else "see"
            reason = (
                f"{lost.reason}; {', '.join(reporters)} {sees} its host answer while its "
                "agent is silent: it may still hold the VIP"
            )
            return Loss(reason, os_problem=True, seen_holding=True)
        return lost

    def _hung_reporters(self, name: str, now: float) -> list[str]:
        """The peers that list `name` as a hung holder (`_hung`) lately (`_listers`),
        unless a node heard here took over from it since."""
        reporters = self._listers(name, now, hung=True)
        return reporters if reporters and not self._taken_over_from(name, now) else []

    def _listers(self, name: str, now: float, *, hung: bool = False) -> list[str]:
        """The present peers whose view lists `name` as heard (or, `hung`, as a hung
        holder) in a message newer than this node's last from `name`."""
        last = self.peers[name].heard_at
        return [
            other
            for other in self.peer_names
            if other != name
            and (view := self._present(other, now)) is not None
            and name in (view.hung if hung else view.heard)
            and self.peers[other].heard_at > last
        ]

    def _note_unlisted(self, view: PeerView, now: float) -> None:
        """Since when a peer's messages leave this node out of their `heard` (N nodes)."""
        if not self.config.multi_server or self.node in view.heard:
            self._unlisted_since.pop(view.node, None)
        else:  # from its first such message on: under loss it comes and goes, and a
            # restart at each return kept a standby waiting for 22 s (a helper's finding)
            self._unlisted_since.setdefault(view.node, now)

    def _unlisted(self, now: float) -> bool:
        """Whether a present peer has not listed this node as heard, for less than
        `listed_again_within`. Such a peer counts this node gone, and so does every
        node that knows this node only through its list: one of them may be taking
        over right now. A standby stopped for 0.6 s after a switchover handed over to
        it read, running again, the handover from the old active (which no longer
        listed it) and promoted, while the third node, cut from it, had just taken
        over (4 of 8 simulated runs). Waiting until that peer lists it again (a
        heartbeat's round trip) lets the takeover reach it first. A peer that leaves
        it out for longer hears nothing from it (a one-way cut): no reason to wait."""
        return any(
            (since := self._unlisted_since.get(view.node)) is not None
            and now - since < self.timing.listed_again_within
            for view in self._present_views(now)
        )

    def _witnessed(self, name: str, now: float) -> bool:
        """A peer this node lost that a witness heard here, not lost itself, listed as
        heard in a message newer than this node's last from it: maybe heard there
        after here. Not gone until that is proven (`_update_partitions`) or the
        witness stops listing it."""
        return any(self._peer_lost(other, now) is None for other in self._listers(name, now))

    # ---- deciding ------------------------------------------------------

    def _decide(self, now: float) -> Verdict | None:
        own_all = self._own_all(now)
        if own_all and self._all_since is None:
            self._all_since = now
        elif not own_all:
            self._all_since = None
        self._update_partitions(now)
        self._update_yield(now)
        match self.role:
            case Role.WAITING:
                if own_all:
                    return Verdict(
                        Trigger.ELIGIBLE, DecisionKind.STANDBY, "sees both networks: standing by"
                    )
                return None
            case Role.STANDBY:
                return self._decide_standby(now)
            case Role.PROMOTING:
                return self._decide_holding(now)
            case Role.ACTIVE:
                return self._decide_holding(now) or self._decide_active(now)
            case Role.DEMOTING:
                if not self._plan_live and now >= self._retry_at:
                    return Verdict(
                        Trigger.RETRY, DecisionKind.DEMOTE_RETRY, "retrying the demotion plan"
                    )
                return None

    def _decide_standby(self, now: float) -> Verdict | None:
        if not self._own_all(now):
            down = [
                f"{n} ({u.why_not(now)})" for n, u in self.uplinks.items() if not u.healthy(now)
            ]
            reason = f"lost uplink {', '.join(down)}: no authority"
            return Verdict(Trigger.INELIGIBLE, DecisionKind.WAITING, reason)
        if self.maintenance or not self._candidate(now):
            return None
        gone: dict[str, Loss] = {}
        unheard = set(self._partitioned)  # heard elsewhere, not here: not gone
        for name in self.peer_names:
            lost = self._peer_lost(name, now)
            if lost is not None and self._witnessed(name, now):
                unheard.add(name)
            if lost is None or name in unheard:
                self._fences.pop(name, None)  # back (or never went): a fence is asked anew
            else:
                gone[name] = self._unknown_fate(name, lost, now)
        rivals: list[PeerView] = []
        for name in self.peer_names:
            if name in gone:
                continue
            if name in unheard:
                view = self.peers[name].view  # not heard here: its last word, however old
                if view is None or view.role.may_hold or self._outranks_me(view, heard=False):
                    return None  # a better candidate (or a holder) we merely cannot hear
                if self._may_have_counted_me_gone(name):
                    return None  # and may have taken over since (`_note_partition` says)
                rivals.append(view)
                continue
            blocking = self._blocking(name, now)
            if blocking is not None and blocking.role.may_hold:
                return None
            present = self._present(name, now)
            if present is None:
                return None  # neither heard lately nor gone yet: wait for one or the other
            rivals.append(present)
        if rivals:
            # a holder gone with its kernel still answering may have a mount serving on
            live = any(
                lost.os_problem and (last := self.peers[name].view) is not None
                and last.role.may_hold
                for name, lost in gone.items()
            )  # fmt: skip
            verdict = self._wins_election(rivals, now, live)
        else:
            if not gone:
                return None
            reasons = [g.reason for g in gone.values()]
            verdict = Verdict(Trigger.PROMOTE, DecisionKind.PROMOTE, "; ".join(reasons))
        if verdict is None:
            return None
        # taking over: a peer whose agent is hung but whose kernel answers may still hold
        # the VIP and the services; it is fenced first
        for name, lost in gone.items():
            last = self.peers[name].view
            relevant = (
                not self.config.multi_server
                or last is None
                or last.role.may_hold
                or lost.seen_holding
            )
            if lost.os_problem and relevant:
                fenced = self._fence_first(name, lost.reason, now)
                if fenced is None or fenced.trigger is not Trigger.PROMOTE:
                    return fenced
                if len(gone) == 1 and not rivals:
                    return fenced
            else:  # gone for good now: a fence still running is not waited for
                self._fences.pop(name, None)
        if self.config.multi_server and gone and rivals:
            held = [
                g.reason
                for name, g in gone.items()
                if (v := self.peers[name].view) is not None and v.role.may_hold
            ]
            if held:
                return replace(verdict, reason=f"{'; '.join(held)}; {verdict.reason}")
        return verdict

    def _fence_first(self, name: str, reason: str, now: float) -> Verdict | None:
        """The OS-problem rule: the peer's kernel answers, so it may still hold the VIP
        and the services. Promote only once a fence has made sure it does not."""
        fence = self._fences.get(name)
        fence_now = Verdict(
            Trigger.FENCE, DecisionKind.FENCE, f"{reason}: fencing it before taking over", name
        )
        if fence is None:
            return fence_now
        if not fence.done:
            return None
        if fence.fenced:
            return Verdict(
                Trigger.PROMOTE, DecisionKind.PROMOTE, f"{reason}; fenced: {fence.detail}"
            )
        if self.config.fencing.on_failure == "promote":
            return Verdict(
                Trigger.PROMOTE,
                DecisionKind.PROMOTE,
                f"{reason}; FENCING FAILED ({fence.detail}), taking over anyway as "
                "fencing.on_failure = promote says: the peer may still hold the VIP",
            )
        return fence_now if now >= fence.retry_at else None

    def _fence_done(
        self, epoch: int, fenced: bool, detail: str, peer: str, now: float, out: list[Action]
    ) -> None:
        name = peer or next(
            (p for p, f in self._fences.items() if f.epoch == epoch), self.peer_name
        )
        fence = self._fences.get(name)
        if fence is None or fence.done or fence.epoch != epoch:
            return  # an answer to a fence no longer asked for (the peer came back)
        fence.done, fence.fenced, fence.detail = True, fenced, detail
        if fenced:
            return
        fence.retry_at = now + self.config.fencing.retry
        if self.role is A:
            then = (
                "staying active: its agent may only be slow to speak (then it stands down "
                "when it hears this node), or hung with the VIP up: check it, power it off "
                "if it is hung"
            )
        elif self.config.fencing.on_failure == "promote":
            then = "taking over anyway (fencing.on_failure = promote)"
        else:
            if name in self._fate_unknown:  # force-active is refused: the witnesses live
                helps = (
                    f"a node that hears {name} judges it once it is a candidate: end "
                    f"maintenance on {self._fate_unknown[name]} or give it both networks "
                    f"back; or mend the path between {self.node} and {name}, or configure "
                    "a power fence"
                )
            else:
                helps = (
                    "fix the fence, or power the peer off and run "
                    f"`mosqit-failover force-active` on {self.node}"
                )
            then = (
                f"not taking over while the peer may hold the VIP; retrying in "
                f"{_ms(self.config.fencing.retry)} ({helps})"
            )
        out.append(
            self._decision(
                DecisionKind.FENCE_FAILED, f"fencing peer {name} failed: {detail}; {then}"
            )
        )

    def _decide_holding(self, now: float) -> Verdict | None:
        """Rules that apply while promoting or active."""
        for rival in self._blocking_views(now):
            if rival.role in (P, A) and self._peer_outranks(rival):
                return Verdict(
                    Trigger.STAND_DOWN,
                    DecisionKind.DEMOTE_DUAL_ACTIVE,
                    f"two active nodes: peer {rival.node} outranks me ({self._rank_reason(rival)})",
                )
        deaf = self._deaf_holder(now)
        if self._held("deaf-holder", deaf is not None, now) and deaf is not None:
            return Verdict(
                Trigger.STAND_DOWN,
                DecisionKind.DEMOTE_DUAL_ACTIVE,
                f"two active nodes: peer {deaf} holds and does not hear me (its messages have "
                "not listed me for the settle time), so it cannot yield to me: I yield",
            )
        if self.maintenance:
            return None
        if self._own_none(now):
            return Verdict(
                Trigger.STAND_DOWN,
                DecisionKind.DEMOTE_ISOLATED,
                "lost every network (split brain or cut off): releasing the VIP, then stopping "
                "services and sync",
            )
        return None

    def _deaf_holder(self, now: float) -> str | None:
        """A present peer (N nodes) that holds in this node's epoch or a later one and
        leaves this node out of its `heard`.

        It does not hear this node (a one-way cut: a filter, a half-dead link) and so
        never yields to it, however the two rank: only this node can end the two
        holders. Seen in the simulation: gamma stopped hearing beta as the active
        died; both took over in the same instant, and beta, first in the order and
        hearing gamma, stayed active beside it until the end of the run."""
        if not self.config.multi_server:
            return None
        for view in self._present_views(now):
            # never to an older epoch: a stale holder whose way back here healed first
            # would keep serving for good, and the data written since would be lost
            if view.role in (P, A) and self.node not in view.heard and view.epoch >= self.epoch:
                return view.node
        return None

    def _cut_from_better(self, successor: PeerView, now: float) -> list[str]:
        """The other present peers ranked before `successor` that it does not hear, or
        that do not hear it (N nodes). A handover to it would fail or go twice: the
        successor does not take over past a better node it cannot hear (the partition
        rule, whatever that node's mode), and a better node that cannot hear it knows it
        only by name, still as the standby it last heard, sees nobody active once this
        node stands down, and takes over too. In the simulation (beta and gamma cut
        apart, `switchover --to gamma`) beta took over instead of gamma, and with beta
        in maintenance nobody did. Ranked as across a partition: without the streams."""
        if not self.config.multi_server:
            return []
        better = []
        for view in self._present_views(now):
            if view.node == successor.node:
                continue
            apart = successor.node not in view.heard or view.node not in successor.heard
            if apart and self._key(view, heard=False) > self._key(successor, heard=False):
                better.append(view.node)
        return better

    def _takers(self, now: float) -> list[PeerView]:
        """Present peers that could take over from this node now."""
        return [v for v in self._present_views(now) if v.candidate and not v.role.may_hold]

    def _decide_active(self, now: float) -> Verdict | None:
        if self._reclaim_by is not None:
            if not self._present_views(now) and now < self._reclaim_by:
                return None
            self._reclaim_by = None
            return Verdict(
                Trigger.RECLAIM,
                DecisionKind.RECLAIM,
                f"found VIP/services held after a restart (epoch {self.epoch}) and no active "
                "peer outranks me: claiming them again",
            )
        if self.maintenance:
            return None
        unfenced = self._fence_taken_over(now)
        if unfenced is not None:
            return unfenced
        best = self._best(self._takers(now))
        weaker = best is not None and any(not self.uplinks[n].rising() for n in self._lacking(now))
        if self._held("weaker", weaker, now) and best is not None:
            lost = ", ".join(self._lacking(now))
            self._hand_over(best.node)
            return Verdict(
                Trigger.STAND_DOWN,
                DecisionKind.HANDOVER,
                f"lost uplink {lost} which peer {best.node} still has: handing over",
            )
        preferred = (
            self._present(self.config.preferred, now)
            if self.node != self.config.preferred
            else None
        )
        failback = (
            self.config.failback
            and preferred is not None
            and preferred.candidate
            and preferred.role is S
            # after an aborted handover, only to a node that caught up: the failback
            # fired again 0.4 s after a helper's abort, and the second one went on
            and (
                not (self.config.multi_server or self._handover_aborted)
                or preferred.node in self._in_sync(now)
            )
        )
        if self._held("failback", failback, now):
            self._hand_over(self.config.preferred)
            return Verdict(
                Trigger.STAND_DOWN,
                DecisionKind.FAILBACK,
                f"failback: preferred node {self.config.preferred} is back and healthy",
            )
        return None

    def _sync_left(self, error: str, now: float) -> Verdict:
        """A switchover's or failback's drain ended with changes the peer lacks: serve on
        rather than have the new active's first sync replace them here (a helper's
        switchover after a 150 MB write at 2 MB/s lost it on both nodes). Not when the
        agent is stopping (it would exit holding everything: two holders, a helper's
        finding), nor once a holder is heard (the peer took over meanwhile: restarting
        the services would make two): then the demotion goes on, the drain cut short."""
        holder = next((v for v in self._blocking_views(now) if v.role.may_hold), None)
        if holder is not None or self._stopping:
            # with a holder the VIP goes first, as when two actives meet
            kind = DecisionKind.DEMOTE_RETRY if holder is None else DecisionKind.DEMOTE_DUAL_ACTIVE
            why = "the agent is stopping" if holder is None else f"{holder.node} holds already"
            return Verdict(
                Trigger.RETRY,
                kind,
                f"{error}; {why}: demoting all the same, the sync's last changes lost",
            )
        self._yielding = False
        self._successor = ""
        self._handover_aborted = True
        return Verdict(
            Trigger.RESUME,
            DecisionKind.HANDOVER_ABORTED,
            f"handover aborted, serving on: {error}; hand over again once "
            "`mosqit-failover status` shows the directories in sync",
        )

    def _fence_taken_over(self, now: float) -> Verdict | None:
        """A holder this node took over from as dead whose host answers ICMP while its
        agent stays silent: it was hung, not dead, and may still hold the VIP and run
        the services. Under heavy loss the echo misses can come in a row right after
        the hang, before any reply proves the host alive (`_kernel_outlived_agent`),
        most of all with the fast profile's short window; this closes what that leaves.

        Fence it now. A failed fence leaves this node active and says so: standing down
        on it stood down for a healthy old active whose agent was only slow to speak
        after a cut (its fence refused: the agent answers), in a lab run."""
        for name in self.peer_names:
            peer = self.peers[name]
            last = peer.view
            taken_over = last is not None and last.role.may_hold and last.epoch < self.epoch
            if not taken_over or not self._kernel_outlived_agent(name, now):
                # heard again (it stands down by itself), or its host too is silent now: a
                # fence still running is no longer wanted, its answer is ignored
                self._fences.pop(name, None)
                continue
            # a host that was silent a while (a short partition healing) answers echo a
            # moment before its agent's first heartbeat arrives: not hung (yet)
            settled = now - peer.echo_run_from >= self.timing.kernel_proof_after
            if name not in self._fences and settled:
                silent = _ms(peer.silent_for(now))
                return Verdict(
                    Trigger.FENCE,
                    DecisionKind.FENCE,
                    f"peer {name}, taken over from as dead, answers ICMP while its failover "
                    f"service is silent ({silent}): hung, not dead, and it may still hold the "
                    "VIP: fencing it",
                    name,
                )
        return None

    def _hand_over(self, to: str) -> None:
        """Yield on purpose; with N nodes the view names the successor."""
        self._yielding = True
        self._successor = to if self.config.multi_server else ""

    def _update_yield(self, now: float) -> None:
        """A yielding node stops yielding once a peer took over or none can."""
        if not self._yielding or self._stopping:
            return
        views = self._blocking_views(now)
        if any(v.role.may_hold for v in views):
            done = True
        elif self._successor:
            successor = self._blocking(self._successor, now)
            done = successor is None or not successor.candidate
        else:
            done = not any(v.candidate for v in views)
        if done:
            self._yielding = False
            self._successor = ""

    # ---- monitoring (timing.monitor_interval) ------------------------------

    def monitoring(self, now: float) -> bool:
        """Whether a look at what this node holds (`ResourceCheck`) could lead anywhere
        now; the shell runs no status command otherwise. Not while a plan runs (it
        changes what is held), in maintenance (the operator's hands), while stopping or
        handing over, nor in a role between two (PROMOTING, DEMOTING)."""
        return (
            self.timing.monitor_interval > 0
            and self.role in (A, S, W)
            and not (self._plan_live or self.maintenance or self._stopping or self._yielding)
            and self._reclaim_by is None
            and now >= self._look_after
        )

    def _monitored(self, check: ResourceCheck, now: float, out: list[Action]) -> Verdict | None:
        if check.started < self._plan_moved_at or not self.monitoring(now):
            return None  # a plan moved things since the look began, or no longer wanted
        if self.role is A:
            return self._check_active(check, now, out)
        self._check_idle(check, out)
        return None

    def _check_active(self, check: ResourceCheck, now: float, out: list[Action]) -> Verdict | None:
        """The active node must hold the VIP and run every monitored resource: a stopped
        one is restarted with the resources after it (a group starts in order), up to
        its `restarts` within timing.failure_timeout; past them, the node hands over."""
        vip_gone = check.vip is False
        vip = f"the VIP {self.config.vip.address} on {self.config.node(self.node).vip_interface}"
        self._note_vip_conflict(check.vip_elsewhere, vip, out)
        stopped = [
            r
            for r in self.config.resources
            if r.monitor and r.name not in check.running and r.name not in check.unknown
        ]
        if not stopped:
            if vip_gone:
                text = f"{vip} is gone from the active node: adding it again and announcing it"
                self._warn(DecisionKind.VIP_LOST, AlertKind.VIP_LOST, text, out)
                out.append(self._launch([ClaimVip(), SendGarp()], VIP_BACK))
            return None
        first = stopped[0]
        count = self._failures.add(first.name, now, self.timing.failure_timeout)
        names = ", ".join(r.name for r in stopped)
        what = f"resource{'s' if len(stopped) > 1 else ''} {names} not running on the active node"
        within = (
            f"in {format_duration(self.timing.failure_timeout)}"
            if self.timing.failure_timeout > 0
            else "since the agent started"
        )
        tally = f"{first.name}'s failure {count} {within}"
        if count > first.restarts:
            best = self._best(self._takers(now))
            behind = (
                best is not None and self._handover_aborted and best.node not in self._in_sync(now)
            )
            if best is not None and not behind and not self._cut_from_better(best, now):
                self._hand_over(best.node)
                # not elected back while its failures count (Pacemaker's ban for the
                # failure-timeout): no failback to it, no rotation of a service broken
                # everywhere; but a candidate still when no other node can serve (a
                # helper's finding: its successor failed to start, and nobody served
                # for start_failure_backoff, each time)
                timeout = self.timing.failure_timeout
                keep = max(timeout, self.timing.start_failure_backoff) if timeout else math.inf
                self._kept_back_until = now + keep
                reason = (
                    f"{what} ({tally}, past its {first.restarts} restarts): "
                    f"handing over to {best.node}"
                )
                out.append(Alert(AlertKind.RESOURCE_FAILED, f"{self.node}: {reason}"))
                return Verdict(Trigger.STAND_DOWN, DecisionKind.RESOURCE_FAILED, reason)
            if behind and best is not None:
                # its drain failed: again would stop everything for up to a minute per
                # failure, where a restart takes a second (a helper's finding)
                tally += (
                    f", past its {first.restarts} restarts, but {best.node} still lacks "
                    "changes (the last handover was aborted)"
                )
            else:
                tally += f", past its {first.restarts} restarts, but no standby can take over"
        else:
            tally += f"; {first.restarts} restarts before a handover"
        later = self.config.resources[self.config.resources.index(first) + 1 :]
        self._warn(
            DecisionKind.RESOURCE_RESTART,
            AlertKind.RESOURCE_RESTART,
            f"{what} ({tally}): restarting {first.name}"
            + (" and what starts after it" if later else "")
            + (f"; {vip} is gone too: adding it again" if vip_gone else ""),
            out,
        )
        steps: list[PlanStep] = [ClaimVip(), SendGarp()] if vip_gone else []
        steps += [StopResource(r.name) for r in reversed(later)]
        steps += [StopResource(first.name), StartResource(first.name)]
        steps += [StartResource(r.name) for r in later]
        out.append(self._launch(steps, RESTART))
        return None

    def _note_vip_conflict(self, others: tuple[str, ...], vip: str, out: list[Action]) -> None:
        """Another host answers ARP for the VIP: clients that learned its MAC send there
        (for hours, on some routers). Announce the VIP at each look while it answers,
        and once more when it stopped: a node that held the VIP astray and let it go
        left them with its MAC (a helper's finding: 36 s without answers)."""
        if others:
            if others != self._vip_conflict:
                text = (
                    f"{vip} is answered by another host too (MAC {', '.join(others)}): "
                    "announcing it with gratuitous ARP at each look until that stops; "
                    "find that host and take the address off it"
                )
                self._warn(DecisionKind.VIP_CONFLICT, AlertKind.VIP_CONFLICT, text, out)
            out.append(SendGarp())
        elif self._vip_conflict:
            text = f"no other host answers for {vip} any more: announcing it again"
            out.append(self._decision(DecisionKind.VIP_CONFLICT, text))
            out.append(SendGarp())
        self._vip_conflict = others

    def _check_idle(self, check: ResourceCheck, out: list[Action]) -> None:
        """A node that is not active must hold nothing: never the service on two nodes
        (an operator's `systemctl start` on the standby, a unit enabled at boot, a VIP
        in /etc/network/interfaces). What it holds is released, the VIP first: the
        active answers for it already, and a stop that fails must not keep a second
        holder of the address (a helper's finding)."""
        astray = [r.name for r in self.config.resources if r.monitor and r.name in check.running]
        vip_here = check.vip is True
        if not astray and not vip_here:
            self._astray_failed = 0
            return
        held = [f"the VIP {self.config.vip.address}"] if vip_here else []
        held += [f"resource {name}" for name in astray]
        text = (
            f"{', '.join(held)} found on this {self.role.value} node, which must hold "
            "nothing (only the active node does): stopping " + ("them" if len(held) > 1 else "it")
        )
        self._warn(DecisionKind.HELD_ASTRAY, AlertKind.HELD_ASTRAY, text, out)
        steps: list[PlanStep] = [ReleaseVip()] if vip_here else []
        steps += [StopResource(name) for name in reversed(astray)]
        out.append(self._launch(steps, RELEASE_ASTRAY))

    def _purpose_failed(self, step: str, error: str, now: float, out: list[Action]) -> None:
        """A step of a plan that keeps the role failed: what the role holds stays."""
        purpose = self._plan_purpose
        what = f"{step} failed: {error}"
        if purpose == RELOAD:  # the service itself stays up
            text = f"{step} failed after a reload: {error}"
            self._warn(DecisionKind.RECONFIGURE_FAILED, AlertKind.RECONFIGURE_FAILED, text, out)
        elif purpose == RELEASE_ASTRAY:
            self._astray_failed = min(self._astray_failed + 1, 16)  # 2**16 x 1 s > the cap
            wait = min(self.timing.monitor_interval * 2**self._astray_failed, ASTRAY_RETRY_MAX)
            self._look_after = now + wait
            again = format_duration(wait)
            text = f"releasing what this node holds astray: {what}; trying again in {again}"
            self._warn(DecisionKind.HELD_ASTRAY, AlertKind.STOP_FAILED, text, out)
        else:  # the next look counts the resource as failed again
            text = f"{'restarting' if purpose == RESTART else 'adding the VIP again'}: {what}"
            kind = DecisionKind.RESOURCE_RESTART if purpose == RESTART else DecisionKind.VIP_LOST
            self._warn(kind, AlertKind.START_FAILED, text, out)

    # ---- operator ------------------------------------------------------

    def _operator(
        self, command: Command, target: str, now: float, out: list[Action]
    ) -> Verdict | None:
        def refuse(reason: str) -> None:
            out.append(self._decision(DecisionKind.REFUSED, f"{command.value} refused: {reason}"))

        match command:
            case Command.MAINTENANCE_ON | Command.MAINTENANCE_OFF:
                self.maintenance = command is Command.MAINTENANCE_ON
                self._plan_moved_at = now  # the operator's hands: a look begun before is stale
                what = "on: no automatic action" if self.maintenance else "off: automatic again"
                purpose = _PURPOSES.get(self._plan_purpose)
                if self.maintenance and self._plan_live and purpose and purpose.by_monitor:
                    # the operator stops a service by hand in maintenance: a restart the
                    # monitor began before must not start it under them (a helper's)
                    what += (
                        f"; {purpose.running} was stopped halfway: "
                        "check what runs (mosqit-failover status, systemctl status)"
                    )
                    out.append(self._launch([], self._plan_purpose))
                    self._plan_live = False
                out.append(self._decision(DecisionKind.MAINTENANCE, f"maintenance mode {what}"))
            case Command.SWITCHOVER:
                takers = self._takers(now)
                chosen = self._best(takers)
                if target:
                    chosen = next((v for v in takers if v.node == target), None)
                if self.role is not A:
                    refuse(f"this node is {self.role.value}; run it on the active node")
                elif target == self.node:
                    others = ", ".join(self.peer_names)
                    refuse(f"{target} is this node: name the node to hand over to ({others})")
                elif target and target not in self.peers:
                    refuse(f"{target} is not a node of this cluster")
                elif chosen is None and not self.config.multi_server and not target:
                    present = self._present(self.peer_name, now)
                    state = "not heard" if present is None else present.role.value
                    why = "" if present is None else f", it {_not_a_candidate(present)}"
                    refuse(f"peer {self.peer_name} cannot take over ({state}{why})")
                elif chosen is None:
                    name = target or "no peer"
                    present = self._present(target, now) if target else None
                    state = "not heard" if present is None else present.role.value
                    why = "not a present candidate standby"
                    if present is not None and not present.candidate:
                        why = f"it {_not_a_candidate(present)}"
                    refuse(f"{name} cannot take over ({state}, {why})")
                elif cut := self._cut_from_better(chosen, now):
                    refuse(_cut_refusal(chosen.node, cut))
                else:
                    self._yielding = True
                    self._successor = chosen.node if (target or self.config.multi_server) else ""
                    return Verdict(
                        Trigger.STAND_DOWN,
                        DecisionKind.SWITCHOVER,
                        f"operator switchover: handing over to {chosen.node}",
                    )
            case Command.STOP:
                self._yielding = True
                self.maintenance = False
                self._stopping = True
                if self.role in (P, A):
                    return Verdict(
                        Trigger.STAND_DOWN,
                        DecisionKind.AGENT_STOP,
                        "agent stopping: releasing services, sync and VIP for the peer",
                    )
                out.append(self._decision(DecisionKind.AGENT_STOP, "agent stopping"))
            case Command.FORCE_ACTIVE:
                last = max(self.peer_names, key=lambda p: self.peers[p].last_sign())
                silent = now - self.peers[last].last_sign()
                if self.role.may_hold:
                    refuse(f"this node is already {self.role.value}")
                elif silent < self.timing.peer_gone_after:
                    refuse(
                        f"peer {last} is alive (last sign {_ms(silent)} ago); "
                        "use switchover on the active node"
                    )
                else:
                    self._failed_until = NEVER
                    self._yielding = False
                    self._successor = ""
                    if self.config.multi_server:
                        epochs = [t.view.epoch for t in self.peers.values() if t.view]
                        known = max(epochs) if epochs else "unknown"
                        seen = f"no peer seen for {_ms(silent)}"
                        theirs = "peers' last known"
                    else:
                        known = self.peer.view.epoch if self.peer.view else "unknown"
                        seen = f"peer not seen for {_ms(silent)}"
                        theirs = "peer's last known"
                    return Verdict(
                        Trigger.FORCE,
                        DecisionKind.FORCE_ACTIVE,
                        f"operator forced this node active; {seen}; "
                        f"DATA MAY BE STALE (my epoch {self.epoch}, {theirs} {known})",
                    )
        return None

    # ---- acting --------------------------------------------------------

    def _apply(self, verdict: Verdict, now: float) -> list[Action]:
        move = TRANSITIONS.get((self.role, verdict.trigger))
        if move is None:  # checked before anything changes: the role stays as it was
            raise ProtocolError(
                f"no move from {self.role.value} on {verdict.trigger.value} "
                f"({verdict.kind}: {verdict.reason})"
            )
        new_role, runs_plan = move
        out: list[Action] = []
        if verdict.trigger in NEW_EPOCH:
            self.epoch = self._next_epoch()
        old = self.role
        self.role = new_role
        if verdict.trigger is Trigger.FENCE:
            # the epoch this node serves in, or the one it would promote with
            epoch = self.epoch if old is A else self._next_epoch()
            fence = FenceAttempt(epoch, verdict.peer)
            self._fences[verdict.peer] = fence
            out.append(self._decision(verdict.kind, verdict.reason, old))
            out.append(FencePeer(fence.epoch, verdict.peer))
            return out
        if old is new_role and verdict.trigger is Trigger.PLAN_DONE:
            # a plan that keeps the role (a reload's, a monitor's) finished: nothing else
            out.append(self._decision(verdict.kind, verdict.reason, old))
            return out
        self._held_since.clear()
        self._reclaim_by = None
        # a release astray that failed in another role says nothing of this one: an
        # active taking over must look at once (a helper's finding: 300 s unwatched)
        self._astray_failed, self._look_after = 0, -math.inf
        out.append(self._decision(verdict.kind, verdict.reason, old))
        if verdict.trigger is Trigger.PLAN_FAILED:
            out += self._after_failure(old, verdict.reason, now)
        if verdict.trigger is Trigger.PLAN_DONE and new_role is W:
            self._stop_failures = 0
            self._handover_aborted = False
            self._held_astray = False
        if runs_plan:
            out.append(self._start_plan(now, verdict.kind))
        return out

    def _next_epoch(self) -> int:
        """The epoch of a new promotion: above every epoch this node knows of, the peers'
        data epochs too (a standby refuses pushes older than the data it holds: a node
        forced active beside a standby synced in a later epoch than it knew of would
        push to it in vain), and above every one a peer named since this agent started,
        not only in its last view."""
        known = [t.highest_epoch for t in self.peers.values()]
        # never past what a peer takes from a view: a key holder's view at EPOCH_MAX made
        # the next promotion one its peers drop as malformed, for good (a helper's
        # finding); at the bound, ties go by the order
        return min(max(self.epoch, self.data_epoch, *known) + 1, EPOCH_MAX)

    def _after_failure(self, old: Role, reason: str, now: float) -> list[Action]:
        if old is P:
            self._failed_until = now + self.timing.start_failure_backoff
            return [
                Alert(
                    AlertKind.START_FAILED, f"{self.node}: promotion failed, rolling back: {reason}"
                )
            ]
        self._stop_failures += 1
        out: list[Action] = [
            Alert(AlertKind.STOP_FAILED, f"{self.node}: demotion failed: {reason}")
        ]
        if (
            self._stop_failures > self.timing.stop_retries
            and self.timing.on_stop_failure == "reboot"
        ):
            out.append(Escalate("reboot", f"stopping failed {self._stop_failures} times: {reason}"))
        self._retry_at = now + min(2.0**self._stop_failures, 30.0)
        return out

    def _start_plan(self, now: float, kind: DecisionKind) -> RunPlan:
        if self.role is P:
            self._mounted = tuple(d.path for d in self.config.sync if d.synchronous)
            steps: list[PlanStep] = [PersistState(self.epoch, A), ClaimVip(), SendGarp()]
            sync = StartSync(self.epoch, True, synchronous=self._mounted)
            steps += [sync] if self.config.sync else []
            steps += [StartResource(r.name) for r in self.config.resources]
        else:
            stop: list[PlanStep] = [StopResource(r.name) for r in reversed(self.config.resources)]
            # with a peer there to take over: an agent stopped beside a dead one has
            # nobody to push to
            planned = kind in _PLANNED_HANDOVERS and bool(self._present_views(now))
            abort = planned and kind is not DecisionKind.AGENT_STOP  # that one goes on
            # only what the node taking over lacks aborts: a helper's switchover to a
            # synced beta aborted for a bystander gamma whose sync was broken
            taker = (self._successor or self.peer_name) if abort else ""
            if self.config.sync or self._mounted:
                stop.append(StopSync(planned, abort, taker))
            self._mounted = ()
            # The VIP goes first when the peer serves already (it outranks us) or is about to
            # (we are cut off from every network): clients must never see two holders while
            # our services stop and our sync drains, which can last seconds when the peer
            # cannot be reached (a lab run kept the VIP 3.5-4.7 s past a cut this way, and
            # both nodes showed it once the cables were back).
            # So too when a peer serves already and this node only found the VIP on
            # itself (an agent restarted beside it, a VIP in the network config at boot):
            # a resource whose stop fails kept a second holder of the address beside the
            # active's (a helper's finding)
            vip_first = (
                self._held_astray
                or kind
                in (
                    DecisionKind.DEMOTE_DUAL_ACTIVE,
                    DecisionKind.DEMOTE_ISOLATED,
                )
                or any(
                    (view := peer.fresh(now, self.timing.echo_window)) is not None
                    and view.role in (P, A)
                    for peer in self.peers.values()
                )
            )
            steps = [PersistState(self.epoch, D)]
            steps += [ReleaseVip(), *stop] if vip_first else [*stop, ReleaseVip()]
            steps += [PersistState(self.epoch, W)]
        self._retry_at = NEVER
        return self._launch(steps)

    def _launch(self, steps: list[PlanStep], purpose: str = "") -> RunPlan:
        """Hand the executor a new plan; it supersedes any plan still running.
        `purpose`: for a plan that keeps the role (RELOAD, RESTART...), what it is for."""
        self._plan_number += 1
        self._pending = list(steps)
        self._plan_live = True
        self._plan_purpose = purpose
        self._plan_moved_at = self._now
        # a plan that keeps the role gives way at once to the next (its step in flight
        # is cancelled): a demotion waited 120 s on a restart's slow start (a helper's)
        return RunPlan(self._plan_number, tuple(steps), interruptible=bool(purpose))

    def _decision(self, kind: DecisionKind, reason: str, old: Role | None = None) -> Decision:
        peer = self._peer_blocking_promotion(self._now)
        peer_role = peer.role.value if peer else "UNKNOWN"
        old_role = self.role if old is None else old
        return Decision(kind, self.node, old_role, self.role, self.epoch, peer_role, reason)

    def _note_mode(self, now: float, out: list[Action]) -> None:
        """MANUAL mode: a network lost here and by every node heard; log when it starts
        and ends.

        It ends only when the shared loss does: the network is back here, or a peer
        is heard with it again. A peer that vanishes meanwhile ends nothing: this
        node cannot tell a dead peer from its own half cut-off, so it says so and
        leaves the takeover to the operator.
        """
        heard = self._blocking_views(now)
        lacking = self._lacking(now)
        both = "every node heard" if self.config.multi_server else "both nodes"
        if not self.manual:
            shared_loss = (
                bool(heard)
                and 0 < len(lacking) < len(self.uplinks)
                and all(not view.uplink(n) for view in heard for n in lacking)
            )
            # on only once it holds (networks coming back one after the other are no
            # switch failure)
            if self._held("manual", shared_loss, now):
                self.manual = True
                self._manual_heard = {v.node for v in heard}
                self._manual_lost = set()
                text = f"MANUAL mode: network {', '.join(lacking)} lost on {both}; "
                text += "automatic switchover off, the active node keeps serving"
                out.append(self._decision(DecisionKind.MANUAL, text))
            return
        back = next((v for v in heard if lacking and all(v.uplink(n) for n in lacking)), None)
        if self._own_all(now):
            text = "automatic mode: both networks back"
        elif back is not None:
            text = f"automatic mode: peer {back.node} has network {', '.join(lacking)} again"
        else:
            self._note_manual_peer(heard, now, out)
            return
        self.manual = False
        out.append(self._decision(DecisionKind.AUTOMATIC, text))

    def _note_manual_peer(self, heard: list[PeerView], now: float, out: list[Action]) -> None:
        """Say once that a peer vanished during MANUAL mode, and what the operator can do."""
        names = {v.node for v in heard}
        self._manual_heard |= names
        self._manual_lost -= names
        if self._own_none(now):
            return  # it is this node that is cut off (demote-isolated says so)
        for name in self.peer_names:
            if name not in self._manual_heard or name in names or name in self._manual_lost:
                continue
            self._manual_lost.add(name)
            tracker = self.peers[name]
            last = tracker.view.role if tracker.view else None
            if self.role.may_hold:
                text = (
                    f"peer {name} lost while in MANUAL mode: this node keeps serving; "
                    "no standby until both networks are back"
                )
            else:
                was = f" (it was {last.value})" if last is not None else ""
                text = (
                    f"peer {name} lost while in MANUAL mode{was}: no automatic "
                    f"switchover; `mosqit-failover force-active` on {self.node} takes over"
                )
            out.append(self._decision(DecisionKind.MANUAL_PEER_LOST, text))

    def _note_order(self, now: float, out: list[Action]) -> None:
        """Say once per peer that its cluster.order differs, and when it agrees again."""
        within = self.timing.service_timeout
        differing = {n for n, t in self._order_differs.items() if now - t <= within}
        mine = self.config.order_id
        for name in sorted(differing - self._order_said):
            self._order_said.add(name)
            theirs = self.peers[name].view
            text = (
                f"peer {name} runs another cluster.order (digest "
                f"{theirs.order_id if theirs else '?'} vs mine {mine}, mine is "
                f"{', '.join(self.config.order)}): ranking equal candidates by node name "
                "until the configs agree; copy one config to every node"
            )
            self._warn(DecisionKind.ORDER_MISMATCH, AlertKind.ORDER_MISMATCH, text, out)
        for name in sorted(self._order_said - differing):
            self._order_said.discard(name)
            heard = self._present(name, now)
            if heard is not None and heard.order_id == mine:  # not merely gone quiet
                text = f"peer {name}'s cluster.order agrees with mine again"
                out.append(self._decision(DecisionKind.ORDER_MISMATCH, text))

    def _warn(self, kind: DecisionKind, alert: AlertKind, text: str, out: list[Action]) -> None:
        """A decision line that operators must also hear of through the alert hooks."""
        out.append(self._decision(kind, text))
        out.append(Alert(alert, f"{self.node}: {text}"))

    @property
    def _echo_blocked_within(self) -> float:
        """A message on the network this recent, when `echo-blocked` is said: a network
        cut or a peer dead after the run began is no filter. Each network hears a calm
        peer every two calm heartbeats (they alternate), a little late."""
        return 2 * self.timing.calm_heartbeat + self.timing.echo_timeout

    def _note_echo_blocked(self, now: float, out: list[Action]) -> None:
        """Say once per peer and network that its messages come through where its echo
        does not, and when it answers there again. The verdict on a silent peer then
        rests on the other networks' echo alone (`PeerTracker.misses_beat_loss`), and
        every miss is trouble: the pair never calms down."""
        for name in self.peer_names:
            tracker = self.peers[name]
            for network, misses in tracker.echo_blocked(now, self._echo_blocked_within).items():
                if (name, network) in self._echo_blocked_said:
                    continue
                self._echo_blocked_said[name, network] = now
                text = (
                    f"peer {name}'s messages arrive on network {network} but no echo reply "
                    f"({misses} misses in a row): ICMP echo looks filtered between {self.node} "
                    f"and {name} there (a firewall, an ACL, net.ipv4.icmp_echo_ignore_all), "
                    f"or nothing of {self.node}'s reaches {name} on {network} (a path broken "
                    f"one way). Under loss a hung agent on {name} may be taken for dead, and "
                    f"the pair sends fast heartbeats and probes while it lasts: let ICMP echo "
                    f"requests and replies pass between the nodes on {network}"
                )
                self._warn(DecisionKind.ECHO_BLOCKED, AlertKind.ECHO_BLOCKED, text, out)
        for (name, network), said in list(self._echo_blocked_said.items()):
            if self.peers[name].answered_on[network] > said:
                del self._echo_blocked_said[name, network]
                text = f"peer {name} answers echo on network {network} again"
                out.append(self._decision(DecisionKind.ECHO_BLOCKED, text))

    def _note_partition(self, now: float, out: list[Action]) -> None:
        """Say once per peer that a partition among the standbys keeps this node from
        taking over past a better candidate it cannot hear."""
        for name in list(self._partition_said):
            if name not in self._partitioned:
                self._partition_said.discard(name)
        if self.role is not S or not self._candidate(now):
            return
        for name, witnesses in self._partitioned.items():
            view = self.peers[name].view
            if name in self._partition_said:
                continue
            holds = view is not None and view.role.may_hold
            # said when it matters: with no holder heard, it keeps this node from a takeover
            stale = (
                not holds
                and not any(v.role.may_hold for v in self._present_views(now))
                and self._may_have_counted_me_gone(name)
            )
            better = view is None or holds or self._outranks_me(view, heard=False)
            if not better and not stale:
                continue
            self._partition_said.add(name)
            who = ", ".join(sorted(witnesses))
            why = f"which {who} heard after this node lost it (a partition among the nodes):"
            last = (
                f"If {name} and the active node are both down, "
                f"run `mosqit-failover force-active` on {self.node}"
            )
            if stale:
                why = (
                    f"known here only through {who}, whose words left this node out "
                    f"(or came before this agent stopped): {name} may have counted "
                    "this node gone and taken over;"
                )
                last = f"If {name} is down, run `mosqit-failover force-active` on {self.node}"
            elif holds:  # the unheard one is the active
                last = (
                    f"If {name} goes down, a node that hears it takes over: keep {who} a "
                    "candidate (out of maintenance, both networks)"
                )
            text = (
                f"cannot hear {name}, {why} not taking over past it; fix the path between "
                f"{self.node} and {name} (cables, VLANs, firewall). {last}"
            )
            self._warn(DecisionKind.PARTITIONED, AlertKind.PARTITIONED, text, out)

    def _note_auth(self, now: float, out: list[Action]) -> None:
        """Say when a peer's datagrams start and stop failing authentication."""
        within = self.timing.peer_gone_after
        for name in self.peer_names:
            peer = self.peers[name]
            reason = peer.unauth_reason
            failing = peer.failing_auth_for(now, within) >= AUTH_GRACE
            # a new reason is told only once it lasts: after a fixed secret the peer's
            # first datagrams are `unconfirmed` for one round trip, no new failure
            settled = now - peer.unauth_reason_since >= AUTH_GRACE
            told = self._auth_failing[name]
            if failing and (not told or (reason != told and settled)):
                self._auth_failing[name] = reason
                if self.role.may_hold:
                    then = "its agent is alive, so this node keeps serving"
                else:
                    then = "its agent is alive, so this node will not take over"
                text = f"{self._auth_text(name)}; {then} until they authenticate"
                out.append(self._decision(DecisionKind.PEER_AUTH_FAILED, text))
            elif not failing and told:
                self._auth_failing[name] = ""
                if peer.heard_at >= peer.unauth_at:
                    text = f"messages from peer {name} authenticate again"
                else:
                    text = f"no more datagrams from peer {name} (authentic or not)"
                out.append(self._decision(DecisionKind.PEER_AUTH_OK, text))

    def _auth_text(self, name: str) -> str:
        reason = self._auth_failing[name] or self.peers[name].unauth_reason
        hint = AUTH_HINTS.get(reason, "check that both nodes run the same config and secret")
        return f"messages from peer {name} fail authentication ({reason}): {hint}"

    def _note_peer_return(self, now: float, out: list[Action]) -> None:
        """An active node re-announces the VIP when a peer comes back."""
        for name in self.peer_names:
            present = self._present(name, now) is not None
            was = self._peer_was_present[name]
            if present and not was and self.role is A and not self._plan_live:
                out.append(
                    self._decision(DecisionKind.PEER_BACK, f"peer {name} is back: re-sending ARP")
                )
                out.append(SendGarp())
            self._peer_was_present[name] = present

    def _adopt(self, inventory: Inventory, now: float) -> Decision | None:
        """Start from what the shell found on the node (a restarted agent)."""
        if not inventory.holds_anything:
            return None
        held = "VIP" if inventory.holds_vip else ""
        held = ", ".join(x for x in (held, *inventory.running) if x)
        if inventory.last_role in (P, A):
            self.role = A
            self._reclaim_by = now + self.timing.peer_gone_after
            return self._decision(
                DecisionKind.ADOPT,
                f"restarted holding {held} (last role {inventory.last_role.value}): "
                "checking the peer before claiming them again",
            )
        self.role = D
        self._retry_at = now
        self._held_astray = True  # not this node's to hold: the VIP goes first
        return self._decision(
            DecisionKind.ADOPT,
            f"restarted holding {held} but last role was {inventory.last_role.value}: "
            "releasing them",
        )
