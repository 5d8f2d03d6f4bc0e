"""The agent: an asyncio shell around the pure core.

Probes turn the world into events; `Agent.feed` hands each to the core with
the loop's monotonic time and carries out what comes back: decision lines to
the journal, plans to the PlanRunner, messages to the peer link. One timer
wakes the core at the deadline it asks for. Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
)
from mosqit_failover.alerts import Alerter
from mosqit_failover.authkeys import Keyring, SecretFileError, load_keyring
from mosqit_failover.config import (
    SWITCH_RETRIES,
    Attachment,
    Config,
    ConfigError,
)
from mosqit_failover.config import load as load_config
from mosqit_failover.control import ControlServer
from mosqit_failover.core import Core, ProtocolError
from mosqit_failover.effects import EffectError, StartRefused
from mosqit_failover.effects.agent_lock import AgentLock
from mosqit_failover.effects.fence import Fencer
from mosqit_failover.effects.garp import ArpAsk, Garp
from mosqit_failover.effects.resources import ResourceRunner, make_runner
from mosqit_failover.effects.state import DataEpochWriter, StateFile
from mosqit_failover.effects.vip import Vip, addresses_here
from mosqit_failover.effects.vip_conflict import VipConflictProbe
from mosqit_failover.effects.vip_record import VipRecord
from mosqit_failover.events import (
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
    Role,
    SwitchReachability,
    SyncApplied,
    SyncInSync,
    Tick,
)
from mosqit_failover.journal import DecisionLog
from mosqit_failover.kinds import AlertKind
from mosqit_failover.notify import Notifier
from mosqit_failover.peerlink import PeerLink
from mosqit_failover.planrunner import PlanRunner
from mosqit_failover.probes.arp_pace import ArpAskPace
from mosqit_failover.probes.echo import EchoProber
from mosqit_failover.probes.links import LinkMonitor
from mosqit_failover.resource_monitor import ResourceMonitor
from mosqit_failover.sync.manager import PLANNED_DRAIN, SyncManager
from mosqit_failover.syncfs.progress import AppliedReader, applied_path

if TYPE_CHECKING:  # both are off by default: their modules (prometheus_client, TLS, HTTP)
    # are imported only when [metrics] or [console] is set
    from mosqit_failover.console.server import ConsoleServer
    from mosqit_failover.metrics import MetricsServer

LOGGER = logging.getLogger("mosqit_failover.daemon")
STOP_TIMEOUT = 120.0
COMMANDS = {c.value: c for c in Command if c is not Command.STOP}


class CoreFeed:
    """Hands events to the core, one error policy for every source, and keeps its timer.

    An exception the core raises on an event is a bug in the core: it is logged
    with the event (traceback, and one journal line at priority err), counted
    (`errors`, `core_errors` in the status), and the agent runs on with the core
    as it stands: no move outside the table was made (`ProtocolError` is raised
    before it), and the actions decided before the error are still carried out so
    the shell stays in step with the core's role.

    Exactly one timer is armed, for the core's next deadline, after every event.
    A timer that fired is gone even when the core asks for the same deadline again
    (a Tick that runs a hair before its deadline, as the loop may run it, changes
    nothing and gets the same deadline back), so it is armed anew.
    """

    def __init__(
        self,
        core: Core,
        loop: asyncio.AbstractEventLoop,
        log: DecisionLog,
        carry_out: Callable[[Action], None],
    ) -> None:
        self.core = core
        self.errors = 0  # events on which the core raised
        self._loop = loop
        self._log = log
        self._carry_out = carry_out
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = math.nan  # the deadline the armed timer was set for

    def feed(self, event: Event) -> None:
        try:
            actions = self.core.handle(event, self._loop.time())
        except Exception as error:
            actions = error.actions if isinstance(error, ProtocolError) else []
            self.errors += 1
            LOGGER.exception("the core failed on %r", event)
            self._log.note(
                f"BUG: the core failed on {event!r}: {type(error).__name__}: {error}; "
                f"the agent runs on ({self.errors} such errors since start)",
                priority=3,
                CORE_ERROR=type(error).__name__,
            )
        for action in actions:
            self._carry_out(action)
        self._arm()

    @property
    def armed_for(self) -> float | None:
        """The deadline of the armed timer (None: none armed)."""
        return None if self._timer is None else self._armed_for

    def _arm(self) -> None:
        wake_at = self.core.next_deadline()
        if self._timer is not None and wake_at == self._armed_for:
            return  # most events change nothing
        self.close()
        self._armed_for = wake_at
        self._timer = self._loop.call_at(wake_at, self._tick)

    def _tick(self) -> None:
        self._timer = None  # it fired: whatever the core asks for next is armed anew
        self.feed(Tick())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Agent:
    def __init__(
        self,
        config: Config,
        node: str,
        keyring: Keyring,
        log: DecisionLog,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.node = config.node(node)
        self.log = log
        self.notifier = Notifier()
        self.state = StateFile(config.state_dir / "state.json")
        self.data_epochs = DataEpochWriter(self.state, lambda text: log.note(text, priority=3))
        self.vip = Vip(config.vip.address, self.node.vip_interface)
        self.vip_record = VipRecord(config.state_dir)
        self.garp = Garp(
            config.vip.address.ip,
            self.node.vip_interface,
            config.vip.garp_count,
            config.vip.garp_interval,
        )
        self.runners: dict[str, ResourceRunner] = {r.name: make_runner(r) for r in config.resources}
        self.peerlink = PeerLink(
            config,
            node,
            keyring,
            self._peer_message,
            log,
            on_unauthenticated=self._peer_unauthenticated,
        )
        self.fencer = Fencer(config, node)
        self.pid_file = config.state_dir / "agent.pid"
        self.lock = AgentLock(config.state_dir)
        self.plans = PlanRunner(self._execute, self.feed)
        self.recent: collections.deque[str] = collections.deque(maxlen=50)
        # every decision since the start, by kind: `switchover --wait` counts on them
        self.decided: collections.Counter[str] = collections.Counter()
        self._said: list[Decision] = []  # decisions of the command being handled
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: Core | None = None
        self._feed: CoreFeed | None = None
        self._control_server: ControlServer | None = None
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.monitor: ResourceMonitor | None = None  # set when the tasks start
        self._jobs: set[asyncio.Future[None]] = set()
        self.probes: dict[str, EchoProber] = {}
        self._slot_prober: EchoProber | None = None  # one whose cadence has the slot Tick
        self._probe_targets: dict[str, tuple[str, str]] = {}  # probe -> (network, peer or "")
        self._switch_arp: dict[str, ArpAsk] = {}  # per network: who-has the switch
        self._messages: dict[tuple[str, str], PeerMessage] = {}  # (peer, network) -> the last
        self.alerts = Alerter(config.alerts, config.cluster, self.node.name)
        self.metrics: MetricsServer | None = None
        self.console: ConsoleServer | None = None
        self.failovers = 0  # times this node became ACTIVE since the agent started
        self.sync = SyncManager(
            config,
            self.node.name,
            self._sync_note,
            on_in_sync=lambda peer, ok: self.feed(SyncInSync(peer, ok)),
            alert=self._sync_alert,
        )
        self.sync.on_mount_died = self._sync_mount_died
        self._applied = _applied_reader(config)
        self._applied_told: tuple[tuple[int, int], ...] = ()

    @property
    def core(self) -> Core:
        assert self._core is not None, "the core exists once run() started"
        return self._core

    # ---- life ----------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.lock.take)  # before anything binds, writes or acts
        inventory = await self._inventory()
        if inventory.holds_vip and not await asyncio.to_thread(self.state.path.exists):
            vip = f"{self.config.vip.address} dev {self.node.vip_interface}"
            raise StartRefused(_state_lost(self.state.path, vip))
        await self._drop_old_vip()
        await self._check_identity()
        await asyncio.to_thread(self._write_pid)
        self.log.attach(self._loop)  # what journald and systemd did not take goes again
        self.notifier.attach(self._loop)
        self._core = Core(self.config, self.node.name, inventory, self._loop.time())
        self._feed = CoreFeed(self._core, self._loop, self.log, self._carry_out)
        self.log.note(
            f"agent starting as {self.node.name}: epoch {inventory.epoch}, last role "
            f"{inventory.last_role.value}, holding VIP: {inventory.holds_vip}, running: "
            f"{', '.join(inventory.running) or 'nothing'}",
            priority=5,
        )
        if not inventory.holds_anything:  # nothing to adopt: no mount of ours may serve on
            await self.sync.end_leftovers()
        self._start_metrics()
        await self._start_console()
        await self.peerlink.open()
        control = self._control_server = ControlServer(self.config.control_socket, self._control)
        await control.start()
        self._start_tasks()
        self._handle_signals(self._loop)
        self._background(self._check_resources([r.name for r in self.config.resources]))
        self.feed(Tick())
        self.notifier.ready(self._status_words())
        try:
            await self._stopped.wait()
        finally:
            self.notifier.stopping()
            await self.alerts.drain(5.0)  # the last lines reach hooks and mail
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await control.close()
            if self.console is not None:
                await self.console.close()
            if self.metrics is not None:
                self.metrics.close()
            await self.sync.stop()
            self.peerlink.close()
            self._applied.close()
            self.garp.close()
            for asker in self._switch_arp.values():
                asker.close()
            self._feed.close()
        self.pid_file.unlink(missing_ok=True)
        self.log.note("agent stopped", priority=5)
        self.lock.release()
        return 0

    def _write_pid(self) -> None:
        """Where a fence from the peer finds this agent to kill it (the fence verb
        checks the command line before it does)."""
        self.pid_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        temp = self.pid_file.with_suffix(".tmp")
        temp.write_text(f"{os.getpid()}\n", encoding="ascii")
        temp.replace(self.pid_file)

    def _start_metrics(self) -> None:
        """The Prometheus endpoint when [metrics] listen is set; a busy address stops the start."""
        settings = self.config.metrics
        if not settings.listen:
            return
        assert self._loop is not None
        from mosqit_failover.metrics import MetricsServer

        self.metrics = MetricsServer(settings.host, settings.port, self.status, self._loop)
        try:
            self.metrics.start()
        except OSError as error:
            raise EffectError(str(error.strerror or error)) from None

    async def _start_console(self) -> None:
        """The web console when [console] listen is set and its token file exists.

        An unsafe token file or a busy address stops the start (like metrics)."""
        settings = self.config.console
        if not settings.listen:
            return
        from mosqit_failover.console.auth import ConsoleAuthError
        from mosqit_failover.console.server import ConsoleServer

        console = ConsoleServer(
            settings,
            self._control,
            lambda text, priority: self.log.note(text, priority=priority, CONSOLE="1"),
            lambda: {r.name: self.runners[r.name] for r in self.config.resources},
            nodes=lambda: [n.name for n in self.config.nodes],
        )
        try:
            if await console.start():
                self.console = console
        except ConsoleAuthError as error:
            raise EffectError(str(error)) from None
        except OSError as error:
            raise EffectError(str(error.strerror or error)) from None

    def _start_tasks(self) -> None:
        interfaces = {a.network: a.interface for a in self.node.attachments}
        links = LinkMonitor(interfaces, lambda net, up: self.feed(LinkChanged(net, up)))
        coros = [links.run(), self.plans.run(), self._watchdog(), self._garp_refresh()]
        self.monitor = self._monitor()
        coros += [self.alerts.run(), self.monitor.run()]
        coros += [prober.run() for prober in self._make_probers()]
        self._tasks = [asyncio.create_task(self._guard(c)) for c in coros]

    def _monitor(self) -> ResourceMonitor:
        assert self._loop is not None
        return ResourceMonitor(
            interval=lambda: self.config.timing.monitor_interval,
            wanted=self.core.monitoring,
            clock=self._loop.time,
            vip_held=self.vip.held,
            runners=lambda: {
                r.name: self.runners[r.name] for r in self.config.resources if r.monitor
            },
            report=self.feed,
            note=lambda text: self.log.note(text, priority=4),
            vip_others=VipConflictProbe(self.config.vip.address.ip, self.node.vip_interface).others,
            probe_others=lambda: self.core.role is Role.ACTIVE,
        )

    def _make_probers(self) -> list[EchoProber]:
        """The echo probers, each also in ``probes`` (status) and ``_probe_targets``: per
        network, one per peer and one for the switch (if the network names one)."""
        probers = []
        peers = self.config.peers_of(self.node.name)
        timing = self.config.timing
        # every probe slot also hands the core a Tick: a heartbeat due within a quarter
        # period goes out in the slot's wake-up instead of one of its own
        slot_tick = Tick()

        def on_slot() -> None:
            self._note_applied()  # first: the slot's heartbeat carries it
            self.feed(slot_tick)

        for attachment in self.node.attachments:
            net = attachment.network
            source = str(attachment.address)
            for peer in peers:
                # a pair's probe keeps its old name (dashboards and the console use it)
                name = f"peer-{net}" if len(peers) == 1 else f"peer-{net}-{peer.name}"
                prober = EchoProber(
                    name,
                    source,
                    str(peer.on(net).address),
                    timing.interval,
                    self._echo_reporter(net, peer.name),
                    timeout=timing.echo_timeout,
                    # a miss is confirmed by probes sent at once, not a whole interval apart,
                    # as many as heavy loss asks for (the core weighs the misses against
                    # it); the UDP silence the core also demands keeps this from speeding
                    # up false failovers
                    retries=timing.peer_echo_retries,
                    on_slot=on_slot,
                )
                self.probes[name] = prober
                self._probe_targets[name] = (net, peer.name)
                self._slot_prober = self._slot_prober or prober
                probers.append(prober)
            switch = next(n.switch for n in self.config.networks if n.name == net)
            if switch is not None:
                # in the interval's slots (sharing their wake-ups), unless the interval
                # is too long for eight probes in switch_timeout
                every = timing.switch_probe_every
                prober = EchoProber(
                    f"switch-{net}",
                    source,
                    str(switch),
                    timing.interval if every else timing.switch_probe_period,
                    self._switch_reporter(attachment, switch),
                    # a switch counts as lost only after switch_timeout (2 s) without an
                    # answer: eight probes in it at least are plenty at idle, and under
                    # loss each slot's probe is retried twice, one timeout apart. Retries
                    # only in the first slot after an answer left ~11 tries in 2 s: at
                    # 30 % loss each way (a round trip lost 51 % of the time) the active
                    # "lost" an uplink and handed over about every 5 minutes in the lab.
                    timeout=timing.switch_echo_timeout,
                    every=max(1, every),
                    # half as often while it answers: the switches are half the idle
                    # packets otherwise; the full pace from its first miss (23 tries in
                    # 2 s instead of 26 at the standard timing)
                    calm_every=timing.switch_calm_every,
                    retries=SWITCH_RETRIES,
                    retry_each_slot=True,
                    on_slot=on_slot if every else None,
                )
                self.probes[f"switch-{net}"] = prober
                self._probe_targets[f"switch-{net}"] = (net, "")
                probers.append(prober)
        return probers

    def _note_applied(self) -> None:
        """On a standby with synchronous directories: hand the core what its appliers
        last made durable when that changed (the election's commit; one pread per
        directory and heartbeat slot, nothing without such directories)."""
        if self.core.role.may_hold:
            return
        # a reload that made the last synchronous directory async: nothing is read, and
        # the core is told so once (it would show its last count for ever)
        applied = self._applied.read() if self._applied.paths else ()
        if applied != self._applied_told:
            self._applied_told = applied
            self.feed(SyncApplied(applied))

    # A probe reports many times a second: its two possible events are made once.

    def _reporter(self, kind: type[SwitchReachability], network: str) -> Any:
        events = {answered: kind(network, answered) for answered in (True, False)}
        return lambda answered: self.feed(events[answered])

    def _switch_reporter(self, attachment: Attachment, switch: ipaddress.IPv4Address) -> Any:
        """The switch's answers, and ARP requests for it from the SWITCH_ARP_AFTER-th miss
        in a row, paced (`ArpAskPace`; config's SWITCH_ARP_AFTER, ARP_ASK_GAP)."""
        network = attachment.network
        report = self._reporter(SwitchReachability, network)
        asker = ArpAsk(attachment.address, switch, attachment.interface)
        self._switch_arp[network] = asker
        pace = ArpAskPace()

        def reported(answered: bool) -> None:
            if pace.report(answered, time.monotonic()):  # the loop's clock
                asker.ask()
            report(answered)

        return reported

    def _echo_reporter(self, network: str, peer: str) -> Any:
        events = {answered: EchoResult(network, answered, peer) for answered in (True, False)}
        return lambda answered: self.feed(events[answered])

    async def _guard(self, coro: Any) -> None:
        """A probe or worker that dies is logged and the agent stops (systemd restarts it)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            LOGGER.exception("a task of the agent failed")
            self.log.note("a task of the agent failed; stopping so systemd restarts it", 2)
            self._stopped.set()

    def _handle_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        loop.add_signal_handler(signal.SIGUSR2, self._restart_in_place)

    def _restart_in_place(self) -> None:
        """SIGUSR2 (sent by the package's postinst on upgrade): exit without handing over.

        A stop would move the service to the peer and back again for a mere code
        update. The VIP and the services stay where they are (the unit's
        KillMode=process spares the services' processes), the sockets and the sync
        close as on any exit, and Restart=always starts the new code, which adopts
        what it finds (as after a crash, scenarios/agent_killed.py).
        """
        self.log.note(
            f"restarting in place on SIGUSR2 ({self._status_words()}): exiting without "
            "handing over; the restarted agent adopts the VIP and services it finds",
            priority=5,
        )
        self._stopped.set()

    def _request_stop(self) -> None:
        if self.core.stopped or self.core.maintenance:
            self._stopped.set()  # in maintenance, leave everything as it is
            return
        self.feed(OperatorCommand(Command.STOP))
        assert self._loop is not None
        self._loop.call_later(STOP_TIMEOUT, self._stopped.set)

    async def _check_identity(self) -> None:
        """Say it loudly when none of this node's addresses is on this host: a host renamed
        to its peer's name ran as the peer, and the hints it gave pointed elsewhere (a
        helper's finding). Not a refusal: at boot the addresses may come after the agent
        (the unit is after network.target only)."""
        ports = [(a.address, a.interface) for a in self.node.attachments]
        if any(await asyncio.to_thread(addresses_here, ports)):
            return
        shown = ", ".join(f"{a} on {i}" for a, i in ports)
        self.log.note(
            f"none of node {self.node.name}'s addresses ({shown}) is on this host (yet?): if "
            f"this host is not {self.node.name}, stop the agent and fix the host name "
            "(hostnamectl) or the config; an agent running as another node acts as that node",
            priority=3,
        )

    async def _drop_old_vip(self) -> None:
        """Take away the VIP this node's agent added under an earlier config (another
        address, or another interface): the restart that changes the VIP left the old
        one on the interface, and after a switchover both nodes held it (a helper's
        finding). Never one of this node's own addresses."""
        old = await asyncio.to_thread(self.vip_record.read)
        if old is None:
            return
        address, ifname = old
        if (address.ip, ifname) == (self.config.vip.address.ip, self.node.vip_interface):
            return
        # only where a VIP of this cluster can have been: never loopback, never an interface
        # off the cluster's networks, never any node's own address (a record written by
        # hand took 127.0.0.1, an operator's address and the peer's: a helper's finding)
        ports = {a.interface for a in self.node.attachments} | {self.node.vip_interface}
        nodes = {a.address for n in self.config.nodes for a in n.attachments}
        if address.ip.is_loopback or ifname not in ports or address.ip in nodes:
            return
        stale = Vip(address, ifname)
        try:
            if not await asyncio.to_thread(stale.held):
                return
            await stale.release()
        except EffectError as error:
            self.log.note(
                f"the VIP {address} on {ifname}, added under an earlier config, could not be "
                f"removed ({error}): remove it by hand (ip addr del {address} dev {ifname})",
                priority=3,
            )
            return
        await asyncio.to_thread(self.vip_record.clear)  # taken away once, not at each start
        self.log.note(
            f"removed the VIP {address} on {ifname}, added under an earlier config (the "
            f"config names {self.config.vip.address} on {self.node.vip_interface})",
            priority=4,
        )

    async def _inventory(self) -> Inventory:
        epoch, role = await asyncio.to_thread(self.state.load)
        running = []
        for name, runner in self.runners.items():
            try:
                if await runner.running():
                    running.append(name)
            except EffectError as error:
                self.log.note(f"cannot tell whether {name} runs: {error}", priority=4)
        data_epoch = await asyncio.to_thread(self.state.load_data_epoch)
        holds_vip = await asyncio.to_thread(self.vip.held)
        return Inventory(epoch, role, holds_vip, tuple(running), data_epoch)

    # ---- the core ------------------------------------------------------

    def feed(self, event: Event) -> None:
        """Every source's events go through here (CoreFeed: the error policy, the timer)."""
        assert self._feed is not None
        self._feed.feed(event)
        if self.core.stopped:
            self._stopped.set()

    def _peer_message(self, network: str, view: PeerView, waited: float) -> None:
        # the wire hands over the same view object while a peer's view is unchanged: its
        # event too is made once per peer, network and view (and wait: 0 unless backlog)
        key = (view.node, network)
        event = self._messages.get(key)
        if event is None or event.view is not view or event.waited != waited:
            event = self._messages[key] = PeerMessage(network, view, waited)
        self.feed(event)
        # the first node's heartbeat woke us: while calm, the probe slot (and our
        # heartbeat with it) runs in this wake-up if due soon, so that a slot costs one
        # wake-up, not two. Only that node's: nodes that followed each other could pull
        # each other's slots forward for ever (probes/echo.py, _Cadence.follow)
        prober, loop = self._slot_prober, self._loop
        if (
            prober is not None
            and loop is not None
            and view.node == self.config.order[0]
            and self.core.calm(loop.time())
        ):
            prober.follow()

    def _peer_unauthenticated(self, peer: str, network: str, reason: str, detail: str) -> None:
        self.feed(PeerUnauthenticated(network, reason, peer))

    async def _fence(self, epoch: int, peer: str) -> None:
        self.log.note(f"fencing peer {peer} before promoting in epoch {epoch}", priority=4)
        outcome = await self.fencer.fence(epoch, peer=peer)
        self.log.note(
            f"fence of {peer}: {outcome.detail}",
            priority=5 if outcome.fenced else 3,
            FENCE=str(epoch),
        )
        self.feed(FenceResult(epoch, outcome.fenced, outcome.detail, peer))

    def _carry_out(self, action: Action) -> None:
        match action:
            case SendPeerMessage(view, network):  # first: the one of every heartbeat
                self.peerlink.send(view, network)
            case Decision():
                self.log.write(action)
                self.alerts.decision(action)
                if self.metrics is not None:
                    self.metrics.decision(action)
                if action.role is Role.ACTIVE and action.old_role is not Role.ACTIVE:
                    self.failovers += 1
                self.recent.append(f"{time.strftime('%H:%M:%S')} {action.text}")
                self.decided[str(action.kind)] += 1
                self._said.append(action)
                self.notifier.status(self._status_words())
            case RunPlan():
                self.plans.submit(action)
            case ProbePeer(peer, on, reason):
                for name, (_, target) in self._probe_targets.items():
                    if target == peer:
                        self.probes[name].set_active(on)
                self.log.note(f"echo to {peer} {'on' if on else 'off'}: {reason}", priority=7)
            case SendGarp():
                self._background(self._garp_now())
            case FencePeer(epoch, peer):
                self._background(self._fence(epoch, peer))
            case RecordDataEpoch(epoch) | WithdrawDataEpoch(epoch):
                self.data_epochs.write(epoch)
            case Alert(kind, text):
                self.log.note(f"ALERT {kind}: {text}", priority=2, ALERT=kind)
                self.alerts.failure(kind, text, state=self.core.role.value, epoch=self.core.epoch)
            case Escalate(how, reason):
                self.log.note(f"ESCALATION {how}: {reason}", priority=2, ALERT="escalate")
                self.alerts.failure(
                    "escalate",
                    f"{self.node.name}: {how}: {reason}",
                    state=self.core.role.value,
                    epoch=self.core.epoch,
                    escalation=True,
                )
                if how == "reboot":
                    self._background(_reboot())

    def _background(self, coro: Any) -> None:
        """Run a short side job without blocking the core; keep it referenced until done."""
        task = asyncio.ensure_future(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _execute(self, step: PlanStep) -> None:
        match step:
            case PersistState(epoch, role):
                await asyncio.to_thread(self.state.save, epoch, role)
            case ClaimVip():
                vip = (self.config.vip.address, self.node.vip_interface)
                await asyncio.to_thread(self.vip_record.write, *vip)  # before it is there
                await self.vip.claim()
                self.log.note(f"VIP {self.config.vip.address} added", VIP="added")
            case ReleaseVip():
                await self.vip.release()
                self.log.note(f"VIP {self.config.vip.address} removed", VIP="removed")
            case SendGarp():
                await self.garp.announce()
            case StartResource(name):
                await self.runners[name].start()
            case StopResource(name):
                await self.runners[name].stop()
            case StartSync(epoch, _, synchronous):
                self.sync.start(epoch, synchronous)
                await self.sync.mount(epoch, self._heard_peers())  # of these, before services
            case StopSync(planned, abort_if_left, successor):
                await self.sync.unmount()
                taker = successor if abort_if_left else ""
                assert self._loop is not None
                began = self._loop.time()
                left = [t for p, t in await self.sync.stop(planned, keep=taker) if p == taker]
                if left:  # the core serves on rather than lose them
                    # "within 60 s" for a drain a refusal ended after 1.3 s misled (a
                    # helper's finding): how long it took, and its limit
                    took = self._loop.time() - began
                    raise EffectError(
                        f"the sync could not push everything to {taker} (its drain ended "
                        f"after {took:.1f} s of at most {PLANNED_DRAIN:.0f}: "
                        f"{'; '.join(left)})"
                    )

    async def _check_resources(self, names: list[str]) -> None:
        """Say and alert each of `names` that could never start on this node (a unit
        systemd does not know, a missing init script): a typo'd unit passed check-config
        and reload, and the next switchover failed on both nodes in turn (a helper's
        finding). At the start and for what a reload added or changed."""
        for name in names:
            runner = self.runners.get(name)
            problem = await runner.missing() if runner is not None else None
            if problem is None:
                continue
            text = f"{self.node.name}: {problem}; a takeover by this node would fail to start it"
            kind = AlertKind.START_FAILED
            self.log.note(f"ALERT {kind}: {text}", priority=3, ALERT=kind)
            self.alerts.failure(kind, text, state=self.core.role.value, epoch=self.core.epoch)

    def _sync_note(self, text: str, priority: int) -> None:
        self.log.note(text, priority=priority, SYNC="1")

    def _sync_alert(self, text: str) -> None:
        kind = AlertKind.SYNC_DEGRADED
        self.log.note(f"ALERT {kind}: {self.node.name}: {text}", priority=2, ALERT=kind)
        self.alerts.failure(
            kind, f"{self.node.name}: {text}", state=self.core.role.value, epoch=self.core.epoch
        )

    def _heard_peers(self) -> list[str]:
        assert self._loop is not None
        peers = self.core.snapshot(self._loop.time())["peers"]
        assert isinstance(peers, dict)
        return [name for name, view in peers.items() if view.get("heard")]

    def _sync_mount_died(self, path: str, detail: str, holders: list[str]) -> None:
        """The synchronous file system died while ACTIVE (already unmounted lazily).

        Hand over to a standby whose channel was live: it holds every acknowledged change,
        so the switchover keeps RPO 0. Remounting here instead would leave a gap: the
        service writes on while the standbys are synced again, and an rsync beside a live
        channel could put an older copy over an acknowledged change; a quiet point (the
        services stopped) is what a handover gives. With no such standby (degraded already)
        a handover could lose writes: this node stays, asynchronous until its next
        promotion."""
        if self.core.role is not Role.ACTIVE:
            return
        if not holders:
            self.log.note(
                f"sync {path}: staying ACTIVE after the synchronous file system died: no "
                "standby holds every acknowledged change (it was degraded); the directory is "
                "synced asynchronously until the next promotion",
                priority=3,
                SYNC="1",
            )
            return
        target = holders[0] if self.config.multi_server or len(holders) > 1 else ""
        self.log.note(
            f"sync {path}: handing over after the synchronous file system died ({detail}): "
            f"{', '.join(holders)} holds every acknowledged change; a remount under the "
            "running service could not be gap-free",
            priority=3,
            SYNC="1",
        )
        self.feed(OperatorCommand(Command.SWITCHOVER, target))
        if self.core.role is Role.ACTIVE:
            self.log.note(
                f"sync {path}: staying ACTIVE: the handover was refused (see the line above); "
                "the directory is synced asynchronously until the next promotion",
                priority=3,
                SYNC="1",
            )

    async def _garp_now(self) -> None:
        try:
            await self.garp.announce()
        except EffectError as error:
            self.log.note(f"gratuitous ARP failed: {error}", priority=3)

    async def _garp_refresh(self) -> None:
        period = self.config.vip.garp_refresh
        if period <= 0:
            return
        while True:
            await asyncio.sleep(period)
            if self.core.role is Role.ACTIVE:
                await self._garp_now()

    async def _watchdog(self) -> None:
        period = self.notifier.watchdog_period()
        if period is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(period)

    # ---- status and control --------------------------------------------

    def _status_words(self) -> str:
        snap = self.core.snapshot(self._loop.time() if self._loop else 0.0)
        peers = snap.get("peers")
        assert isinstance(peers, dict)
        label = "peer" if len(peers) == 1 else "peers"
        shown = ", ".join(f"{p['node']} {p['role']}" for p in peers.values())
        return f"{snap['role']} ({snap['mode']}), epoch {snap['epoch']}; {label} {shown}"

    def status(self) -> dict[str, Any]:
        assert self._loop is not None
        snap = self.core.snapshot(self._loop.time())
        snap["cluster"] = self.config.cluster
        snap["vip"] = str(self.config.vip.address)
        probes: dict[str, dict[str, Any]] = {
            name: {
                "sent": p.sent,
                "answered": p.answered,
                "retried": p.retried,
                "active": p.active,
                "last_rtt_ms": None if p.last_rtt is None else round(p.last_rtt * 1000, 3),
                "network": self._probe_targets[name][0],
                "peer": self._probe_targets[name][1] or None,
            }
            for name, p in self.probes.items()
        }
        for net, asker in self._switch_arp.items():  # ARP requests while it was silent
            probes[f"switch-{net}"].update(arp_asked=asker.sent, arp_error=asker.last_error)
        snap["probes"] = probes
        receiver = self.peerlink.receiver
        snap["peer_link"] = {
            "accepted": receiver.accepted,
            "dropped": {r.value: n for r, n in receiver.counters.items() if n},
            "from_strangers": self.peerlink.foreign,
            # read after a stop of this agent: old news, never decoded (inbox.py)
            "waited_too_long": self.peerlink.stale,
            "sent": self.peerlink.sent,
        }
        snap["recent_decisions"] = list(self.recent)[-20:]
        snap["decisions_total"] = self.decided.total()
        snap["decisions_by_kind"] = dict(self.decided)
        snap["failovers"] = self.failovers
        snap["core_errors"] = self._feed.errors if self._feed is not None else 0
        snap["alerts"] = self.alerts.counters()
        snap["journal"] = {"lost": self.log.lost, "waiting": self.log.waiting}
        # probe slots run in the wake-up of a peer's heartbeat (docs/timing.md)
        snap["slots_followed"] = self._slot_prober.slots_followed if self._slot_prober else 0
        snap["sync"] = self.sync.status()
        return snap

    async def _restore_control(self) -> None:
        """The control socket back if it was deleted (only SIGHUP can ask for it then)."""
        if self._control_server is None:
            return
        try:
            if await self._control_server.restore():
                path = self.config.control_socket
                self.log.note(f"control socket {path} was gone: listening there again", priority=4)
        except EffectError as error:
            self.log.note(f"cannot listen on the control socket again: {error}", priority=3)

    def _reload_on_signal(self) -> None:
        """SIGHUP (systemctl reload): as `mosqit-failover reload`, the answer to the journal;
        and the control socket made again if it was deleted."""
        self._background(self._restore_control())
        reply = self._reload(stop_removed=False)
        if reply.get("ok"):
            self.log.note("reloaded on SIGHUP", priority=5)
        else:  # a config error, or the core's refusal (its decision line)
            why = reply.get("error") or "; ".join(reply.get("decisions") or ()) or "no reason"
            self.log.note(f"reload on SIGHUP refused: {why}", priority=3)

    def _reload(self, stop_removed: bool) -> dict[str, Any]:
        """Re-read the config file and the secret file; new resources start on the
        active node only. Nothing changes unless both read well."""
        if self.config_path is None:
            return {"ok": False, "error": "the agent was not started from a config file"}
        try:
            new = load_config(self.config_path)
            keyring = load_keyring(new.secret_file)
        except ConfigError as error:
            return {"ok": False, "error": error.report()}
        except SecretFileError as error:
            return {"ok": False, "error": f"{error}; nothing was reloaded"}
        redefined = _redefined(self.config, new)
        if redefined:
            names = ", ".join(f"{name} ({what})" for name, what in redefined)
            return {
                "ok": False,
                "error": f"resource {names} would run something else under the same name, "
                "and the old one would go on running unmanaged: give it a new name "
                "(`mosqit-failover reload --stop-removed` then stops the old one and starts "
                "the new); nothing was reloaded",
            }
        blockers = _reload_blockers(self.config, new)
        if blockers:
            return {
                "ok": False,
                "error": f"{', '.join(blockers)} changed: restart the agent for that "
                "(maintenance on, systemctl restart mosqit-failover, maintenance off)",
            }
        assert self._loop is not None
        self._said = []
        actions = self.core.reconfigure(new, self._loop.time(), stop_removed)
        sync_said: list[str] = []
        if not any(isinstance(a, Decision) and a.kind == "refused" for a in actions):
            self.peerlink.rekey(keyring)
            sync_said.append(f"secret file {new.secret_file} read again")
            before = {r.name: r for r in self.config.resources}
            changed = [r.name for r in new.resources if before.get(r.name) != r]
            self.config = new
            for resource in new.resources:  # removed runners stay until their stop ran
                self.runners[resource.name] = make_runner(resource)
            self._background(self._check_resources(changed))
            if self.monitor is not None:
                self.monitor.wake()  # a shorter interval applies now, not after the old one
            sync_said += self.sync.reconfigure(new)  # before the plan's StartSync/StopSync runs
            self._applied.close()
            self._applied = _applied_reader(new)
        for action in actions:
            self._carry_out(action)
        return self._reply([*(d.text for d in self._said), *sync_said])

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["command"]
        if name == "status":
            return {"ok": True, "status": self.status()}
        if name == "reload":
            return self._reload(request.get("stop_removed") is True)
        command = COMMANDS.get(name)
        if command is None:
            return {
                "ok": False,
                "error": f"unknown command {name!r}; known: status, " + ", ".join(COMMANDS),
            }
        target = request.get("to", "")
        if command is not Command.SWITCHOVER and "to" in request:
            return {"ok": False, "error": f"{name} takes no 'to'; only switchover does"}
        if not isinstance(target, str) or (target and target not in self.config.order):
            nodes = ", ".join(n for n in self.config.order if n != self.node.name)
            return {"ok": False, "error": f"switchover --to {target!r}: not a node; one of {nodes}"}
        self._said = []
        self.feed(OperatorCommand(command, target))
        return self._reply([d.text for d in self._said])

    def _reply(self, lines: list[str]) -> dict[str, Any]:
        """A command's answer: what was decided, and whether the core refused it."""
        refused = any(d.kind == "refused" for d in self._said)
        return {
            "ok": not refused,
            "decisions": lines,
            # where a command left this node, for `switchover --wait` (handover_wait.py)
            "epoch": self.core.epoch,
            "decisions_total": self.decided.total(),
            "decisions_by_kind": dict(self.decided),
        }


def _state_lost(path: Path, vip_on: str) -> str:
    """Why an agent whose node holds the VIP without a state file does not start.

    A node that never ran holds no VIP: this one was active, and its epoch went with
    the file. Started at epoch 0 it released the VIP and services, took over again in
    epoch 1 beside a peer at epoch 40, and the next handover's sync deleted what it
    took meanwhile on both nodes (a helper's finding)."""
    return (
        f"the state file {path} is missing, but this node holds the VIP ({vip_on}): it was "
        "active, and its epoch (which decides whose data wins) was lost with the file. "
        "Restore the state directory from a backup; or, to let the peer's data win, "
        f"release the VIP (ip addr del {vip_on}) and stop the protected services "
        "here, then start the agent"
    )


RELOAD_FIXED = (
    "cluster",
    "nodes",
    "networks",
    "vip",
    "port",
    "secret_file",
    "state_dir",
    "control_socket",
    "console",
    # the metrics endpoint and the alert sinks (hooks, mail) are set up at start
    "metrics",
    "alerts",
)


# the echo probers are made with these at start: the core must not judge their results
# (or start them on demand) with other values than they run with
PROBE_TIMING = ("interval", "echo_timeout", "misses", "switch_timeout")


def _applied_reader(config: Config) -> AppliedReader:
    """The records of this node's appliers, one per synchronous directory (where the
    active's stream lands here: its target, as the forced command admits it)."""
    return AppliedReader(
        [applied_path(config.state_dir, s.target) for s in config.sync if s.synchronous]
    )


def _reload_blockers(old: Config, new: Config) -> list[str]:
    """What a reload cannot change in place (the agent must restart for these)."""
    fixed = [key for key in RELOAD_FIXED if getattr(old, key) != getattr(new, key)]
    return fixed + [
        f"timing.{key}"
        for key in PROBE_TIMING
        if getattr(old.timing, key) != getattr(new.timing, key)
    ]


# what a resource runs: changed under the same name, the old one runs on unmanaged
RESOURCE_DEFINITION = ("kind", "unit", "script", "start", "stop", "status", "agent", "params")


def _redefined(old: Config, new: Config) -> list[tuple[str, str]]:
    """Resources a reload would give another thing to run under the same name: the old
    unit (or script) went on running unmanaged, on the standby after a switchover,
    while the reload said nothing changed (a helper's finding)."""
    before = {r.name: r for r in old.resources}
    found = []
    for resource in new.resources:
        was = before.get(resource.name)
        if was is None:
            continue
        differ = [k for k in RESOURCE_DEFINITION if getattr(was, k) != getattr(resource, k)]
        if differ:
            found.append((resource.name, "/".join(differ)))
    return found


async def _reboot() -> None:
    process = await asyncio.create_subprocess_exec("systemctl", "reboot")
    await process.wait()
