"""What the core hears: frozen events, each fed with the time it happened at.

Probes and executors in the shell turn the outside world into these; the
core never reads a clock or a socket itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.Enum):
    """What a node holds and is doing (the core's state)."""

    WAITING = "WAITING"  # holds nothing, has no authority to promote
    STANDBY = "STANDBY"  # holds nothing, sees both networks, may promote
    PROMOTING = "PROMOTING"  # running the promotion plan
    ACTIVE = "ACTIVE"  # holds the VIP, the sync and the services
    DEMOTING = "DEMOTING"  # running the demotion plan (or retrying it)

    @property
    def may_hold(self) -> bool:
        """True when the node may hold resources, so a peer must not promote."""
        return self in (Role.PROMOTING, Role.ACTIVE, Role.DEMOTING)


class Command(enum.Enum):
    """What an operator can ask of one node."""

    SWITCHOVER = "switchover"
    MAINTENANCE_ON = "maintenance-on"
    MAINTENANCE_OFF = "maintenance-off"
    FORCE_ACTIVE = "force-active"
    STOP = "stop"  # the agent is being stopped: release everything, let the peer take over


COMMIT_MAX = 2**64 - 1
"""The largest `PeerView.commit` (a u64 on the wire)."""

EPOCH_MAX = 10**15
"""The largest epoch a peer's view may name: a promotion a second would take 31 million
years to reach it. A key holder's view at the wire's own limit, 2**63-1, made the next
promotion take an epoch the wire cannot send, so the new active fell silent (and the
sync's epochs have at most 18 digits); a view above this bound is MALFORMED, which
counts as a peer failing authentication (a helper's attack). The holder of the key can
still deny service (a view that outranks the active), never make a node mute."""


@dataclass(frozen=True)
class PeerView:
    """What a node tells its peers about itself in every UDP message."""

    node: str
    role: Role
    epoch: int
    uplinks: tuple[tuple[str, bool], ...]  # (network, healthy), in config order
    candidate: bool  # willing to be elected (not yielding, not failed, not in maintenance)
    yielding: bool  # handed over on purpose: wants the peer to take over now
    maintenance: bool
    manual: bool  # automatic switchover is off on the sender (one network lost on both)
    # Multi-server mode (wire version 3; a version-2 datagram leaves the defaults):
    data_epoch: int = 0  # the newest epoch whose data the sender has in full
    heard: tuple[str, ...] = ()  # the nodes the sender heard directly, lately
    in_sync: tuple[str, ...] = ()  # from an active node: the standbys fully synced
    successor: str = ""  # from an active node handing over on purpose: to whom ("" none)
    # a digest of the sender's cluster.order (Config.order_id; "" from a version 2 peer):
    # nodes whose orders differ would each wait for another to go first
    order_id: str = ""
    # wire version 4 (0 from older peers): the synchronous-mode commits the sender applied
    # in its data epoch's stream (`SyncApplied`); among equal data epochs, more is fresher
    commit: int = 0  # at most COMMIT_MAX (the wire's u64)
    # wire version 5 (() from older peers): the peers the sender lost whose host still
    # answers its echo, their agent silent (`Core._hung`): they may hold the VIP
    hung: tuple[str, ...] = ()

    @property
    def freshness(self) -> int:
        """How fresh the sender's data can be: its own epoch or the synced one."""
        return max(self.epoch, self.data_epoch)

    def uplink(self, network: str) -> bool:
        return dict(self.uplinks).get(network, False)

    @property
    def has_all_uplinks(self) -> bool:
        return all(ok for _, ok in self.uplinks)


@dataclass(frozen=True)
class LinkChanged:
    """Carrier of this node's own uplink on one network (from netlink)."""

    network: str
    carrier: bool


@dataclass(frozen=True)
class SwitchReachability:
    """Whether this node's switch on one network answered echo lately."""

    network: str
    reachable: bool


@dataclass(frozen=True)
class EchoResult:
    """One ICMP echo to a peer on one network: answered or missed."""

    network: str
    answered: bool
    peer: str = ""  # the peer probed ("" in a pair: the only peer)


@dataclass(frozen=True)
class PeerMessage:
    """An authenticated, fresh peer message received on one network.

    `waited`: the seconds it had spent in this node's socket when it was handed over
    (by the kernel's receive timestamp; 0 when unknown or under a millisecond). It
    arrived at `now - waited`: after a stop of this agent, a message read at the
    resume may have been sent during the stop, and tells nothing of the time after.
    """

    network: str
    view: PeerView
    waited: float = 0.0


@dataclass(frozen=True)
class PeerUnauthenticated:
    """A datagram from the peer's own address on one network that was dropped.

    It failed authentication (another secret), or a check after it (clock,
    cluster or node name, replay): something on the peer sends on our port,
    so its agent is alive. It says nothing of the peer's state, so it never
    counts as a view, and never as silence either.
    """

    network: str
    reason: str  # the wire's drop reason, e.g. "bad-mac"
    peer: str = ""  # the peer whose address sent it ("" in a pair: the only peer)


@dataclass(frozen=True)
class FenceResult:
    """The fence the core asked for (FencePeer) has finished."""

    epoch: int
    fenced: bool
    detail: str  # each fence tried and its result, as operators read it
    peer: str = ""  # the peer fenced ("" in a pair: the only peer)


@dataclass(frozen=True)
class SyncInSync:
    """The sync manager (on the active node): every synced directory of `peer` caught
    up (in_sync) or one fell behind. Without [[sync]] dirs the core never needs it."""

    peer: str
    in_sync: bool


@dataclass(frozen=True)
class SyncApplied:
    """On a standby: the last commit its synchronous-mode applier made durable, per
    synchronous directory, as (epoch of the stream, commit number), in any order.

    Commit numbers of one epoch's stream only grow (one mount's count, restarted above
    the last on a new mount: docs/sync-mode.md, "Freshness"): a standby dropped from the
    stream stops while the others go on, so among standbys of equal data epoch the one
    that applied more holds every write the active acknowledged without the other. The
    shell sends it when it changed, at most once a heartbeat."""

    applied: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class OperatorCommand:
    command: Command
    target: str = ""  # switchover --to NODE ("" the best candidate)


@dataclass(frozen=True)
class ActionDone:
    """The executor finished one action of the current plan."""

    plan: int
    action: object


@dataclass(frozen=True)
class ActionFailed:
    """The executor failed one action; it dropped the rest of that plan."""

    plan: int
    action: object
    error: str


@dataclass(frozen=True)
class ResourceCheck:
    """What this node held when the shell last looked (timing.monitor_interval).

    `started` is when the look began (the core's clock): a plan that started or
    ended since then may have changed what it saw, and the core ignores it.
    """

    started: float
    vip: bool | None  # the VIP is on its interface; None: could not tell
    running: tuple[str, ...]  # monitored resources whose status check says they run
    unknown: tuple[str, ...] = ()  # monitored resources whose status could not be told
    # on the active: the MACs of other hosts that answer ARP for the VIP
    vip_elsewhere: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tick:
    """Nothing happened; a deadline the core asked for has passed."""


@dataclass(frozen=True)
class Inventory:
    """What the shell found on this node at start, before any decision."""

    epoch: int = 0
    last_role: Role = Role.WAITING
    holds_vip: bool = False
    running: tuple[str, ...] = field(default=())  # names of resources found running
    data_epoch: int = 0  # persisted: the newest epoch whose data this node has in full

    @property
    def holds_anything(self) -> bool:
        return self.holds_vip or bool(self.running)


Event = (
    LinkChanged
    | SwitchReachability
    | EchoResult
    | PeerMessage
    | PeerUnauthenticated
    | FenceResult
    | SyncInSync
    | SyncApplied
    | OperatorCommand
    | ActionDone
    | ActionFailed
    | ResourceCheck
    | Tick
)
