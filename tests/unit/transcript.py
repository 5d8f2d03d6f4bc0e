"""Drive one core with explicit events at explicit times; read back a transcript.

The harness plays the shell for a single node: at each probe interval it
feeds the switch answers and the echo results the test set up (the echo
only while the core wants it, one at once when it turns it on), the peer's
messages at each heartbeat while the peer is alive, and a Tick at every
deadline the core asks for. What comes out is the core's decisions and
actions as short text, in order (peer messages left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mosqit_failover.actions import (
    Action,
    Decision,
    FencePeer,
    ProbePeer,
    RunPlan,
    SendPeerMessage,
)
from mosqit_failover.config import Config
from mosqit_failover.core import Core
from mosqit_failover.events import (
    ActionDone,
    ActionFailed,
    EchoResult,
    Event,
    FenceResult,
    Inventory,
    LinkChanged,
    PeerMessage,
    PeerUnauthenticated,
    PeerView,
    Role,
    SwitchReachability,
    Tick,
)
from mosqit_failover.sim_scenarios import sim_config

FENCE_TIME = 0.3  # an ssh fence's login and stops


def step_text(step: object) -> str:
    fields = ", ".join(str(getattr(v, "value", v)) for v in vars(step).values())
    return f"{type(step).__name__}({fields})" if fields else type(step).__name__


def action_text(action: Action) -> str:
    match action:
        case Decision():
            return f"[{action.kind}] {action.text}"
        case RunPlan():
            return f"plan {action.number}: " + ", ".join(step_text(s) for s in action.steps)
    return step_text(action)


def view_of(node: str, role: Role, epoch: int, **changes: object) -> PeerView:
    """A healthy node's view (both uplinks up; a candidate unless it holds), as changed."""
    view = PeerView(
        node=node,
        role=role,
        epoch=epoch,
        uplinks=(("a", True), ("b", True)),
        candidate=role in (Role.WAITING, Role.STANDBY),
        yielding=False,
        maintenance=False,
        manual=False,
    )
    return replace(view, **changes)  # type: ignore[arg-type]


@dataclass
class Harness:
    node: str = "beta"
    config: Config = field(default_factory=sim_config)
    inventory: Inventory = field(default_factory=Inventory)
    now: float = 0.0
    carrier: dict[str, bool] = field(default_factory=lambda: {"a": True, "b": True})
    switch_answers: dict[str, bool] = field(default_factory=lambda: {"a": True, "b": True})
    echo_answers: dict[str, bool] = field(default_factory=lambda: {"a": True, "b": True})
    peer: PeerView | None = None  # sent every heartbeat while set
    # how often the peer sends it (None: every `heartbeat`, the pace of a troubled
    # peer; a calm one sends every `calm_heartbeat`)
    peer_pace: float | None = None
    peer_unauthenticated: str | None = None  # instead: dropped for this reason (another secret)
    fence_answer: tuple[bool, str] | None = (True, "ssh fence via 10.0.1.1: fenced")
    peer_networks: tuple[str, ...] = ("a", "b")
    echo_retries: bool = True  # a timed-out probe is re-sent at once, as the shell does
    auto_complete: bool = True  # finish every plan step at once, as a healthy executor would
    fail_step: str | None = None  # the step (by text) the executor fails
    outputs: list[tuple[float, Action]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = Core(self.config, self.node, self.inventory, self.now)
        peer_name = self.config.peer_of(self.node).name
        self.peer_name = peer_name
        self._next_probe = self.now
        self._next_beat = self.now
        self._misses_due: list[tuple[float, str]] = []  # an unanswered echo reports at its timeout
        self._retries = {"a": 0, "b": 0}  # probes re-sent at once since the last answer
        self._retry_limit = self.config.timing.peer_echo_retries  # the daemon's prober
        self.echo_on = True  # the core's last ProbePeer: the shell starts probing
        self._jobs: list[tuple[int, list[object]]] = []
        self._fences: list[tuple[float, int]] = []  # (answer due, epoch)
        for network, up in self.carrier.items():
            self.feed(LinkChanged(network, up))

    # -- building peer views ------------------------------------------

    def peer_view(self, role: Role, epoch: int, **changes: object) -> PeerView:
        return view_of(self.peer_name, role, epoch, **changes)

    # -- feeding ------------------------------------------------------

    def feed(self, event: Event) -> list[Action]:
        actions = self.core.handle(event, self.now)
        self.feed_actions(actions)
        return actions

    def feed_actions(self, actions: list[Action]) -> None:
        """Take actions the core returned outside handle() (e.g. from reconfigure)."""
        self.outputs += [(self.now, a) for a in actions]
        for action in actions:
            if isinstance(action, RunPlan):
                self._jobs = [(action.number, list(action.steps))]
            if isinstance(action, FencePeer) and self.fence_answer is not None:
                self._fences.append((self.now + FENCE_TIME, action.epoch))
            if isinstance(action, ProbePeer):
                self.echo_on = action.on
                waiting = {network for _, network in self._misses_due}
                for network in ("a", "b"):
                    if action.on and network not in waiting:
                        self._echo(network)
        if self.auto_complete:
            self._complete_steps()

    def _complete_steps(self) -> None:
        while self._jobs:
            number, steps = self._jobs[0]
            if not steps:
                self._jobs.pop(0)
                continue
            step = steps.pop(0)
            if self.fail_step is not None and step_text(step) == self.fail_step:
                self._jobs = []
                self.feed(ActionFailed(number, step, "exit status 1"))
                return
            self.feed(ActionDone(number, step))

    def set_carrier(self, network: str, up: bool) -> None:
        self.carrier[network] = up
        self.feed(LinkChanged(network, up))

    def run_until(self, end: float) -> None:
        """Advance time, playing probes, heartbeats and ticks, up to `end`."""
        interval = self.config.timing.interval
        heartbeat = self.config.timing.heartbeat
        while True:
            misses = [t for t, _ in self._misses_due]
            fences = [t for t, _ in self._fences]
            wake = min(
                self._next_probe, self._next_beat, self.core.next_deadline(), *misses, *fences
            )
            if wake > end:
                break
            self.now = max(self.now, wake)
            while self._misses_due and self._misses_due[0][0] <= self.now:
                network = self._misses_due.pop(0)[1]
                self.feed(EchoResult(network, False))
                if self.echo_retries and self._retries[network] < self._retry_limit:
                    self._retries[network] += 1  # the shell re-sends a timed-out probe at once
                    self._echo(network)
            if self.now >= self._next_probe:
                self._next_probe = self.now + interval
                for network in ("a", "b"):
                    up = self.carrier[network]
                    self.feed(SwitchReachability(network, up and self.switch_answers[network]))
                    if self.echo_on:
                        self._echo(network)
            while self._fences and self._fences[0][0] <= self.now and self.fence_answer:
                epoch = self._fences.pop(0)[1]
                self.feed(FenceResult(epoch, *self.fence_answer))
            if self.now >= self._next_beat:
                self._next_beat = self.now + (self.peer_pace or heartbeat)
                for network in self.peer_networks:
                    if not self.carrier[network]:
                        continue
                    if self.peer_unauthenticated is not None:
                        self.feed(PeerUnauthenticated(network, self.peer_unauthenticated))
                    elif self.peer is not None:
                        self.feed(PeerMessage(network, self.peer))
            self.feed(Tick())
        self.now = end

    def _echo(self, network: str) -> None:
        if self.carrier[network] and self.echo_answers[network]:
            self._retries[network] = 0
            self.feed(EchoResult(network, True))
        else:
            due = self.now + self.config.timing.echo_timeout
            self._misses_due.append((due, network))
            self._misses_due.sort()

    # -- reading ------------------------------------------------------

    def transcript(self, since: float = 0.0) -> list[str]:
        """Decisions, plans, alerts... as text: not the heartbeats, nor the echo on
        demand's ProbePeer (see `probes`)."""
        return [
            action_text(a)
            for t, a in self.outputs
            if t >= since and not isinstance(a, (SendPeerMessage, ProbePeer))
        ]

    def probes(self, since: float = 0.0) -> list[str]:
        """The echo on demand's ProbePeer actions as text."""
        return [action_text(a) for t, a in self.outputs if t >= since and isinstance(a, ProbePeer)]

    def decisions(self, since: float = 0.0) -> list[Decision]:
        return [a for t, a in self.outputs if t >= since and isinstance(a, Decision)]

    def kinds(self, since: float = 0.0) -> list[str]:
        return [d.kind for d in self.decisions(since)]

    def role(self) -> Role:
        return self.core.role

    def last_view(self) -> PeerView:
        return [a.view for _, a in self.outputs if isinstance(a, SendPeerMessage)][-1]


def standby(**kwargs: object) -> Harness:
    """beta as STANDBY beside alpha ACTIVE (epoch 1), both networks healthy."""
    h = Harness(**kwargs)  # type: ignore[arg-type]
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(1.0)
    assert h.role() is Role.STANDBY, h.transcript()
    return h


def active(**kwargs: object) -> Harness:
    """alpha ACTIVE (epoch 1) beside beta STANDBY, both networks healthy."""
    h = Harness(node="alpha", **kwargs)  # type: ignore[arg-type]
    h.peer = h.peer_view(Role.STANDBY, 0)
    h.run_until(1.0)
    assert h.role() is Role.ACTIVE, h.transcript()
    return h
