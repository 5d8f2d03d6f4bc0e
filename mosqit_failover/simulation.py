"""Two to eight cores wired through an in-memory world: fake clock, lossy fake network.

The world models what the real shell would observe: carrier per switch port,
echo to the switch and to the peer on each network, UDP messages, and an
executor that runs plans step by step and reports back. Faults are scheduled
at simulated times. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

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
from mosqit_failover.config import SWITCH_RETRIES, Config
from mosqit_failover.core import Core
from mosqit_failover.events import (
    ActionDone,
    ActionFailed,
    EchoResult,
    Event,
    FenceResult,
    Inventory,
    LinkChanged,
    OperatorCommand,
    PeerMessage,
    PeerUnauthenticated,
    Role,
    SwitchReachability,
    SyncApplied,
    SyncInSync,
    Tick,
)
from mosqit_failover.inbox import Inbox

LATENCY = 0.001
STEP_TIME = {StartResource: 0.05, StopResource: 0.05}
FENCE_TIME = 0.3  # an ssh login and the stops on the fenced node
AGENT_RESTART = 0.1  # systemd's RestartSec after the fence killed the agent
COMMIT_PERIOD = 0.05  # a synchronous mount's commits, from a steady writer


@dataclass
class Line:
    """One timeline entry: a decision or an action, at simulated time."""

    time: float
    node: str
    text: str
    decision: Decision | None = None


@dataclass
class SimNode:
    name: str
    ports: dict[str, bool]
    powered: bool = True  # the kernel answers ICMP
    agent: bool = True  # the agent process runs
    frozen: bool = False  # the agent stopped (SIGSTOP); the kernel still answers
    sshd_frozen: bool = False  # every process stopped, sshd too: no ssh fence
    holds_vip: bool = False
    running: set[str] = field(default_factory=set)
    epoch: int = 0
    data_epoch: int = 0  # persisted by RecordDataEpoch and WithdrawDataEpoch
    last_role: Role = Role.WAITING
    fail_start: set[str] = field(default_factory=set)
    fail_stop: set[str] = field(default_factory=set)
    core: Core | None = None
    tick_generation: int = 0
    plan: RunPlan | None = None
    # delivered while frozen, with the time each arrived
    backlog: list[tuple[float, Event]] = field(default_factory=list)
    sync_behind: bool = False  # its synced directories lag behind the active's
    sync_told: dict[str, bool] = field(default_factory=dict)  # SyncInSync last fed, per peer
    # synchronous mode: the commits of the active's mount (its node's count), and on a
    # standby the last one its applier made durable, of which epoch's stream, and what
    # its agent last fed its core (SyncApplied, once a slot as the shell does)
    commits: int = 0
    applied: tuple[int, int] = (0, 0)
    applied_told: tuple[tuple[int, int], ...] = ()
    dropped: bool = False  # the active's mount dropped it from the stream
    # per peer: echo probes on (ProbePeer), and the probing of each network, to send one
    # at once when the core turns them on
    echo_on: dict[str, bool] = field(default_factory=dict)
    echo_now: dict[str, Callable[[str], None]] = field(default_factory=dict)

    @property
    def listening(self) -> bool:
        return self.powered and self.agent and not self.frozen


class World:
    def __init__(
        self, config: Config, seed: int = 0, node_configs: dict[str, Config] | None = None
    ) -> None:
        self.config = config
        # an operator's mistake to model: a node running another config than the rest
        self.node_configs = node_configs or {}
        self.now = 0.0
        self.rng = random.Random(seed)
        self.networks = config.network_names
        self.switch_up = {n: True for n in self.networks}
        # how much longer than a server the switch takes to answer echo (its CPU)
        self.switch_delay = {n: 0.0 for n in self.networks}
        self.loss = {n: 0.0 for n in self.networks}
        self.peer_link_up = {n: True for n in self.networks}  # between the nodes only
        self.echo_filtered: set[str] = set()  # networks whose ICMP echo a firewall drops
        # between two nodes on one network (a VLAN filter): (frozenset of names, network)
        self.link_up: dict[tuple[frozenset[str], str], bool] = {}
        # random loss from one node to another on one network, on top of the network's
        # (a congested path between two switches; the switch probes do not cross it)
        self.link_loss: dict[tuple[str, str, str], float] = {}
        self.nodes = {
            n.name: SimNode(n.name, {net: True for net in self.networks}) for n in config.nodes
        }
        self.timeline: list[Line] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        # the spans of two VIP holders: the closed ones here, an open one from its
        # `_since` (the properties below count it up to now, so a run that ends with
        # two holders reports them). Both hold the VIP while they can hear each other:
        self._dual_vip_seconds = 0.0
        self._dual_vip_worst = 0.0
        self._dual_since: float | None = None
        # both hold the VIP while a cable connects them, whether their agents run or
        # not: what a client sees of a hung or a misconfigured node
        self._dual_holders_worst = 0.0
        self._holders_since: float | None = None
        vip = config.vip
        self.client_network = next(
            (n.name for n in config.networks if vip is not None and vip.address.ip in n.subnet),
            self.networks[0],
        )
        self._dual_clients_worst = 0.0  # two holders on the clients' network, heard or not
        self._clients_since: float | None = None
        self.secrets_differ = False  # every datagram fails authentication
        self.violations: list[str] = []  # safety rules broken, found while running
        if any(s.synchronous for s in config.sync):
            self.at(COMMIT_PERIOD, self._commit)

    # ---- scheduling ----------------------------------------------------

    def at(self, time: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (time, next(self._order), callback))

    def run_until(self, end: float) -> None:
        while self._queue and self._queue[0][0] <= end:
            time, _, callback = heapq.heappop(self._queue)
            self.now = max(self.now, time)
            callback()
            self._watch_dual_vip()
        self.now = end
        self._watch_dual_vip()

    # ---- the network ---------------------------------------------------

    def carrier(self, node: SimNode, network: str) -> bool:
        return node.ports[network] and self.switch_up[network]

    def _through(self, network: str) -> bool:
        return self.rng.random() >= self.loss[network]

    def _crosses(self, a: SimNode, b: SimNode, network: str) -> bool:
        """One datagram from a to b on this network survives the network's random loss
        and that of the path from a to b (drawn only where that path has any, so
        that a seed's other runs stay as they were)."""
        loss = self.link_loss.get((a.name, b.name, network), 0.0)
        return self._through(network) and (loss == 0.0 or self.rng.random() >= loss)

    def path(self, a: SimNode, b: SimNode, network: str) -> bool:
        """Can a packet go from a to b on this network right now (before loss)?"""
        return (
            self.carrier(a, network)
            and self.carrier(b, network)
            and self.peer_link_up[network]
            and self.link_up.get((frozenset((a.name, b.name)), network), True)
        )

    def can_hear(self, a: SimNode | None = None, b: SimNode | None = None) -> bool:
        """Both agents run and can exchange authenticated messages on some network."""
        if a is None or b is None:
            a, b = list(self.nodes.values())[:2]
        return (
            not self.secrets_differ
            and a.listening
            and b.listening
            and any(self.path(a, b, n) and self.loss[n] < 1.0 for n in self.networks)
        )

    def peer_of(self, node: SimNode) -> SimNode:
        return next(n for n in self.nodes.values() if n is not node)

    def others(self, node: SimNode) -> list[SimNode]:
        return [n for n in self.nodes.values() if n is not node]

    # ---- node life -----------------------------------------------------

    def boot(self, name: str, at: float = 0.0) -> None:
        def start() -> None:
            node = self.nodes[name]
            if self.now > 0:
                self._fault(f"{name} agent starts")
            node.powered, node.agent, node.frozen = True, True, False
            node.core = Core(
                self.node_configs.get(name, self.config),
                name,
                Inventory(
                    node.epoch,
                    node.last_role,
                    node.holds_vip,
                    tuple(sorted(node.running)),
                    node.data_epoch,
                ),
                self.now,
            )
            node.plan = None
            node.applied_told = ()  # a new agent has told its core nothing yet
            node.echo_on = {p.name: True for p in self.others(node)}
            node.echo_now = {}
            for network in self.networks:
                self.deliver(node, LinkChanged(network, self.carrier(node, network)))
            for network in self.networks:
                self._probe_loop(node, network, node.core)
            self._tick(node)

        self.at(at, start)

    def _probe_loop(self, node: SimNode, network: str, core: Core) -> None:
        """Echo to every peer every interval, and to the switch as the shell's switch
        prober does, while this agent lives."""
        interval = self.config.timing.interval
        every = core.timing.switch_probe_every  # 0: the switch on a cadence of its own
        calm_every = core.timing.switch_calm_every  # in slots of that pace, while answered
        peers = self.others(node)
        slot = 0

        def probe() -> None:
            nonlocal slot
            if node.core is not core or not node.agent:
                return
            if node.frozen:
                self.at(self.now + interval, probe)
                return
            if every and slot % pace(every) == 0:
                switch_slot()
            slot += 1
            if network == self.networks[0]:  # the shell's one slot Tick per cadence
                self._report_applied(node)
                self.deliver(node, Tick())
            for peer in peers:
                if node.echo_on.get(peer.name, True):
                    echo(peer)
            self.at(self.now + interval, probe)

        cadence_slot = 0

        def switch_cadence() -> None:
            nonlocal cadence_slot
            if node.core is not core or not node.agent:
                return
            if not node.frozen and cadence_slot % pace(1) == 0:
                switch_slot()
            cadence_slot += 1
            self.at(self.now + core.timing.switch_probe_period, switch_cadence)

        # The shell's switch prober: each slot's probe may be re-sent at once, up to
        # SWITCH_RETRIES times, one switch_echo_timeout apart, until one is answered; a
        # reply later than the timeout is a miss. While the last probe was answered and
        # none is in flight (calm), only every calm_every-th slot probes.
        calm = False
        in_flight = 0

        def pace(full: int) -> int:
            """Slots between two probes now: calm_every while calm, else the full pace."""
            return calm_every if calm and not in_flight else full

        def switch_slot() -> None:
            switch_probe(SWITCH_RETRIES)

        def switch_probe(retries_left: int) -> None:
            nonlocal in_flight
            timeout = core.timing.switch_echo_timeout
            rtt = 2 * LATENCY + self.switch_delay[network]
            answered = (
                self.carrier(node, network)
                and self._through(network)
                and self._through(network)
                and rtt <= timeout
            )
            in_flight += 1
            self.deliver(node, SwitchReachability(network, answered), rtt if answered else timeout)
            self.at(
                self.now + (rtt if answered else timeout),
                lambda: switch_done(answered, retries_left),
            )

        def switch_done(answered: bool, retries_left: int) -> None:
            nonlocal calm, in_flight
            if node.core is not core or not node.agent:
                return
            if node.frozen:  # the shell expires it once it runs again
                self.at(self.now + interval, lambda: switch_done(answered, retries_left))
                return
            in_flight -= 1
            calm = answered
            if not answered and retries_left:
                switch_probe(retries_left - 1)

        if not every:
            self.at(self.now + self.rng.uniform(0, core.timing.switch_probe_period), switch_cadence)

        # probes re-sent at once since the last answer, as the shell does, per peer
        retried = {p.name: 0 for p in peers}
        answer_due = {p.name: 0.0 for p in peers}  # the last probe's report, per peer

        def echo(peer: SimNode) -> None:
            if node.core is not core or not node.agent or node.frozen:
                return
            answered = (
                peer.powered
                and network not in self.echo_filtered
                and self.path(node, peer, network)
                and self._crosses(node, peer, network)
                and self._crosses(peer, node, network)
            )
            timing = self.config.timing
            delay = 2 * LATENCY if answered else timing.echo_timeout
            self.deliver(node, EchoResult(network, answered, peer.name), delay)
            answer_due[peer.name] = self.now + delay
            if answered:
                retried[peer.name] = 0
            elif retried[peer.name] < timing.peer_echo_retries:
                retried[peer.name] += 1
                self.at(self.now + delay, lambda: echo(peer))

        def echo_now(name: str) -> None:
            """Turned on: one probe at once, as the shell sends, unless one is in flight."""
            if self.now >= answer_due[name]:
                echo(next(p for p in peers if p.name == name))

        node.echo_now[network] = echo_now
        self.at(self.now + self.rng.uniform(0, interval), probe)

    def deliver(self, node: SimNode, event: Event, delay: float = 0.0) -> None:
        core = node.core

        def handle() -> None:
            if node.core is not core or core is None or not node.agent or not node.powered:
                return
            if node.frozen:
                node.backlog.append((self.now, event))
                return
            self._run(node, core.handle(event, self.now))

        self.at(self.now + delay, handle)

    def _tick(self, node: SimNode) -> None:
        core = node.core
        if core is None:
            return
        node.tick_generation += 1
        generation = node.tick_generation

        def fire() -> None:
            if node.tick_generation == generation and node.core is core and node.listening:
                self._run(node, core.handle(Tick(), self.now))

        self.at(core.next_deadline(), fire)

    def _run(self, node: SimNode, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Decision():
                    self.timeline.append(Line(self.now, node.name, action.text, action))
                    self._check_promotion(node, action)
                case RunPlan():
                    self.timeline.append(Line(self.now, node.name, _plan_text(action)))
                    node.plan = action
                    self._step(node, action, 0)
                case SendPeerMessage(view, network):
                    self._send(node, view, network)
                case ProbePeer(peer, on):
                    node.echo_on[peer] = on
                    if on:
                        for probe_now in node.echo_now.values():
                            probe_now(peer)
                case Alert() | Escalate():
                    self.timeline.append(
                        Line(self.now, node.name, f"{type(action).__name__}: {action}")
                    )
                case SendGarp():
                    self.timeline.append(Line(self.now, node.name, "SendGarp"))
                case RecordDataEpoch(epoch) | WithdrawDataEpoch(epoch):
                    node.data_epoch = epoch
                case FencePeer(epoch, peer):
                    self.timeline.append(Line(self.now, node.name, f"FencePeer({epoch}, {peer})"))
                    self._fence(node, epoch, peer)
        self._report_sync(node)
        self._tick(node)

    def _report_sync(self, node: SimNode) -> None:
        """The active node's sync manager: which standbys have caught up (a standby that
        hears the active on some network and whose sync does not lag)."""
        core = node.core
        if core is None or core.role is not Role.ACTIVE or not self.config.sync:
            node.sync_told = {}
            return
        for peer in self.others(node):
            in_sync = (
                not peer.sync_behind
                and peer.powered
                and any(self.path(node, peer, n) for n in self.networks)
            )
            if node.sync_told.get(peer.name) != in_sync:
                node.sync_told[peer.name] = in_sync
                self.deliver(node, SyncInSync(peer.name, in_sync), 0.01)

    def _commit(self) -> None:
        """A synchronous mount's commit on every active node (the mount serves on while
        its agent is stopped or killed, as long as the node runs): each standby in its
        stream applies it (one it can reach, not dropped, not lagging)."""
        for node in self.nodes.values():
            core = node.core
            if core is None or core.role is not Role.ACTIVE or not node.powered:
                continue
            node.commits += 1
            for peer in self.others(node):
                if (
                    peer.powered
                    and not peer.dropped
                    and not peer.sync_behind
                    and any(self.path(node, peer, n) for n in self.networks)
                ):
                    peer.applied = (core.epoch, node.commits)
        self.at(self.now + COMMIT_PERIOD, self._commit)

    def _report_applied(self, node: SimNode) -> None:
        """The standby agent's slot: its applier's record to the core when it changed."""
        if node.applied == (0, 0) or (node.core is not None and node.core.role.may_hold):
            return
        applied = (node.applied,)
        if applied != node.applied_told:
            node.applied_told = applied
            self.deliver(node, SyncApplied(applied))

    def _check_promotion(self, node: SimNode, decision: Decision) -> None:
        """A node without both networks never promotes on its own."""
        if decision.kind != "promote" or node.core is None:
            return
        uplinks = node.core.view(self.now).uplinks
        if not all(ok for _, ok in uplinks):
            self.violations.append(f"t={self.now:.3f} {decision.text} with uplinks {uplinks}")

    def _send(self, node: SimNode, view: object, only: str | None = None) -> None:
        for peer in self.others(node):
            for network in self.networks:
                if only is not None and network != only:
                    continue
                if self.path(node, peer, network) and self._crosses(node, peer, network):
                    event: Event = (
                        PeerUnauthenticated(network, "bad-mac", node.name)
                        if self.secrets_differ
                        else PeerMessage(network, view)  # type: ignore[arg-type]
                    )
                    self.deliver(peer, event, LATENCY)

    def _fence(self, node: SimNode, epoch: int, name: str) -> None:
        """The ssh fence: works when the peer's sshd runs and a network reaches it; it
        releases what the peer holds and kills its agent, which systemd restarts."""
        peer = self.nodes[name]

        def finish() -> None:
            reachable = any(self.path(node, peer, n) for n in self.networks)
            if not (peer.powered and reachable and not peer.sshd_frozen):
                self.deliver(node, FenceResult(epoch, False, "ssh fence: no answer", name))
                return
            if epoch <= peer.epoch:
                refused = "ssh fence: refused, stale epoch"
                self.deliver(node, FenceResult(epoch, False, refused, name))
                return
            peer.holds_vip, peer.running, peer.last_role = False, set(), Role.WAITING
            peer.agent, peer.core, peer.plan, peer.frozen = False, None, None, False
            peer.backlog = []
            self._fault(f"{peer.name} fenced by {node.name}")
            self.boot(peer.name, self.now + AGENT_RESTART)
            self.deliver(node, FenceResult(epoch, True, "ssh fence: fenced", name))

        self.at(self.now + FENCE_TIME, finish)

    def _step(self, node: SimNode, plan: RunPlan, index: int) -> None:
        """Run one plan step; a newer plan or a dead agent drops the rest."""
        if index >= len(plan.steps):
            return
        step = plan.steps[index]
        core = node.core

        def finish() -> None:
            if node.core is not core or node.plan is not plan or not node.agent:
                return
            if node.frozen:
                self.at(self.now + 0.01, finish)
                return
            error = self._apply_step(node, step)
            if error:
                self.deliver(node, ActionFailed(plan.number, step, error))
                return
            self.deliver(node, ActionDone(plan.number, step))
            self._step(node, plan, index + 1)

        self.at(self.now + STEP_TIME.get(type(step), 0.001), finish)

    def _apply_step(self, node: SimNode, step: PlanStep) -> str | None:
        match step:
            case PersistState(epoch, role):
                node.epoch, node.last_role = epoch, role
            case ClaimVip():
                node.holds_vip = True
            case ReleaseVip():
                node.holds_vip = False
            case StartResource(name) if name in node.fail_start:
                return f"{name} exited with status 1"
            case StartResource(name):
                node.running.add(name)
            case StopResource(name) if name in node.fail_stop:
                return f"{name} did not stop"
            case StopResource(name):
                node.running.discard(name)
            case StartSync() | StopSync() | SendGarp():
                pass
        return None

    # ---- faults ----------------------------------------------------------

    def set_port(self, node: str, network: str, up: bool, at: float) -> None:
        def change() -> None:
            self.nodes[node].ports[network] = up
            self._fault(f"{node}'s cable to switch {network} {'plugged in' if up else 'pulled'}")
            self._carrier_changed(network)

        self.at(at, change)

    def set_switch(self, network: str, up: bool, at: float) -> None:
        def change() -> None:
            self.switch_up[network] = up
            self._fault(f"switch {network} {'on' if up else 'off'}")
            self._carrier_changed(network)

        self.at(at, change)

    def set_switch_delay(self, network: str, delay: float, at: float) -> None:
        def change() -> None:
            self.switch_delay[network] = delay
            self._fault(f"switch {network} answers echo {delay * 1000:.0f} ms late")

        self.at(at, change)

    def _carrier_changed(self, network: str) -> None:
        for node in self.nodes.values():
            self.deliver(node, LinkChanged(network, self.carrier(node, network)))

    def _fault(self, text: str) -> None:
        self.timeline.append(Line(self.now, "world", text))

    def filter_echo(self, network: str, at: float) -> None:
        """From `at`, a firewall drops ICMP echo between the nodes on `network` (the
        peer messages pass, and the switch's echo)."""

        def change() -> None:
            self._fault(f"ICMP echo between the nodes filtered on {network}")
            self.echo_filtered.add(network)

        self.at(at, change)

    def set_loss(self, network: str, loss: float, at: float) -> None:
        def change() -> None:
            self.loss[network] = loss
            self._fault(f"random loss on network {network}: {loss:.0%}")

        self.at(at, change)

    def set_peer_link(self, network: str, up: bool, at: float) -> None:
        def change() -> None:
            self.peer_link_up[network] = up
            state = "restored" if up else "broken (switches still reachable)"
            self._fault(f"path between the nodes on network {network} {state}")

        self.at(at, change)

    def set_link(self, a: str, b: str, network: str, up: bool, at: float) -> None:
        """The path between two nodes on one network only (a VLAN filter, a firewall)."""

        def change() -> None:
            self.link_up[(frozenset((a, b)), network)] = up
            state = "restored" if up else "broken"
            self._fault(f"path between {a} and {b} on network {network} {state}")

        self.at(at, change)

    def set_links(self, a: str, b: str, up: bool, at: float) -> None:
        """The path between two nodes on every network (`set_link` on each): a cut."""
        for network in self.networks:
            self.set_link(a, b, network, up, at)

    def set_link_loss(
        self, sender: str, receiver: str, network: str, loss: float, at: float
    ) -> None:
        """Random loss of what `sender` sends `receiver` on one network only (one
        direction; the switch probes and every other path are not affected)."""

        def change() -> None:
            self.link_loss[(sender, receiver, network)] = loss
            self._fault(f"random loss from {sender} to {receiver} on network {network}: {loss:.0%}")

        self.at(at, change)

    def set_sync_behind(self, name: str, behind: bool, at: float) -> None:
        def change() -> None:
            self.nodes[name].sync_behind = behind
            self._fault(f"sync to {name} {'lags behind' if behind else 'caught up'}")
            for node in self.nodes.values():  # the active's sync manager sees it at once
                self._report_sync(node)

        self.at(at, change)

    def drop_from_stream(self, name: str, at: float) -> None:
        """The active's mount drops this standby's channel (it applies no more commits);
        the active says so only when its sync manager sees it (`set_sync_behind`)."""

        def change() -> None:
            self.nodes[name].dropped = True
            self._fault(f"the synchronous stream to {name} lost")

        self.at(at, change)

    def freeze(self, name: str, at: float, duration: float, agent_only: bool = False) -> None:
        """SIGSTOP every process of a node (its sshd too), or only its agent."""
        node = self.nodes[name]
        core = node.core

        def thaw() -> None:
            node.sshd_frozen = False
            if node.core is not core:
                return  # fenced meanwhile: that agent is gone, a new one runs
            node.frozen = False
            backlog, node.backlog = node.backlog, []
            for event in self._read_backlog(node, backlog):
                self.deliver(node, event)
            self._tick(node)

        def freeze() -> None:
            nonlocal core
            core = node.core
            node.frozen, node.sshd_frozen = True, not agent_only
            what = f"the agent on {name}" if agent_only else f"every process on {name}"
            self._fault(f"{what} stopped (SIGSTOP) for {duration:g}s")

        self.at(at, freeze)
        self.at(at + duration, thaw)

    def _read_backlog(self, node: SimNode, backlog: list[tuple[float, Event]]) -> list[Event]:
        """What a thawed agent reads of what waited: the peer link's sockets hold peer
        messages, which it takes through an `Inbox` (the newest per peer and network,
        none older than the schedule gap); the other events, in the order they came."""
        assert node.core is not None
        inbox: Inbox[tuple[str, str], Event] = Inbox(node.core.timing.schedule_gap)
        others: list[Event] = []
        for arrived, event in backlog:
            waited = self.now - arrived
            match event:
                case PeerMessage(network, view):  # with its wait, as the peer link tells it
                    inbox.add((view.node, network), replace(event, waited=waited), waited)
                case PeerUnauthenticated():
                    if not inbox.too_old(waited):
                        others.append(event)
                case _:
                    others.append(event)
        return others + inbox.take()

    def kill_agent(self, name: str, at: float, restart_after: float | None) -> None:
        """SIGKILL the agent: VIP and services stay as they are."""
        node = self.nodes[name]

        def kill() -> None:
            node.agent = False
            node.core = None
            node.plan = None
            self._fault(f"agent on {name} killed (SIGKILL)")

        self.at(at, kill)
        if restart_after is not None:
            self.boot(name, at + restart_after)

    def power_off(self, name: str, at: float) -> None:
        node = self.nodes[name]

        def off() -> None:
            node.powered, node.agent, node.core = False, False, None
            node.holds_vip, node.running = False, set()
            self._fault(f"{name} powered off")

        self.at(at, off)

    def set_secrets_differ(self, differ: bool, at: float) -> None:
        """One node's secret file replaced by another (or put right again)."""

        def change() -> None:
            self.secrets_differ = differ
            self._fault("the nodes' secrets differ" if differ else "the secrets agree again")

        self.at(at, change)

    def command(self, name: str, command: OperatorCommand, at: float) -> None:
        def issue() -> None:
            self._fault(f"operator on {name}: {command.command.value}")
            self.deliver(self.nodes[name], command)

        self.at(at, issue)

    # ---- watching ------------------------------------------------------

    def _watch_dual_vip(self) -> None:
        vip = [n for n in self.nodes.values() if n.holds_vip and n.powered]
        pairs = [(a, b) for i, a in enumerate(vip) for b in vip[i + 1 :]]
        holders = any(any(self.path(a, b, n) for n in self.networks) for a, b in pairs)
        # two holders that both reach the clients' network (the VIP's), heard or not
        reaching = [n for n in vip if self.carrier(n, self.client_network)]
        if len(reaching) >= 2 and self._clients_since is None:
            self._clients_since = self.now
        elif len(reaching) < 2 and self._clients_since is not None:
            span = self.now - self._clients_since
            self._dual_clients_worst = max(self._dual_clients_worst, span)
            self._clients_since = None
        if holders and self._holders_since is None:
            self._holders_since = self.now
        elif not holders and self._holders_since is not None:
            span = self.now - self._holders_since
            self._dual_holders_worst = max(self._dual_holders_worst, span)
            self._holders_since = None
        both = any(self.can_hear(a, b) for a, b in pairs)
        if both and self._dual_since is None:
            self._dual_since = self.now
        elif not both and self._dual_since is not None:
            span = self.now - self._dual_since
            self._dual_vip_seconds += span
            self._dual_vip_worst = max(self._dual_vip_worst, span)
            self._dual_since = None

    def _open(self, since: float | None) -> float:
        """How long a span still open has lasted by now (0 when none is open)."""
        return 0.0 if since is None else self.now - since

    @property
    def dual_vip_seconds(self) -> float:
        """Seconds in all with two VIP holders that hear each other, up to now."""
        return self._dual_vip_seconds + self._open(self._dual_since)

    @property
    def dual_vip_worst(self) -> float:
        """The longest such span, one still open counted up to now."""
        return max(self._dual_vip_worst, self._open(self._dual_since))

    @property
    def dual_holders_worst(self) -> float:
        """The longest span of two holders a cable connects, one still open up to now."""
        return max(self._dual_holders_worst, self._open(self._holders_since))

    @property
    def dual_clients_worst(self) -> float:
        """The longest span of two holders on the clients' network, one still open up to now."""
        return max(self._dual_clients_worst, self._open(self._clients_since))

    def roles(self) -> dict[str, Role | None]:
        return {n.name: (n.core.role if n.core else None) for n in self.nodes.values()}

    def active_nodes(self) -> list[str]:
        return [name for name, role in self.roles().items() if role is Role.ACTIVE]

    def decisions(self, node: str | None = None) -> list[Decision]:
        return [
            line.decision
            for line in self.timeline
            if line.decision and (node is None or line.node == node)
        ]


def _plan_text(plan: RunPlan) -> str:
    return "plan: " + ", ".join(step_name(s) for s in plan.steps)
