"""The configuration: one TOML file, identical on both nodes.

`load(path)` returns a validated, frozen `Config` or raises `ConfigError`
listing every problem found, each naming the key, the bad value and the fix.
The schema is the `_SCHEMA` tables below: the keys allowed in each table,
their kinds and their defaults.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import ipaddress
import math
import os
import posixpath
import re
import reprlib
import shlex
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosqit_failover.kinds import known_kinds
from mosqit_failover.terminal import terminal_safe

DEFAULT_PATH = Path("/etc/mosqit-failover/mosqit-failover.toml")
DEFAULT_CONTROL_SOCKET = Path("/run/mosqit-failover/control.sock")
MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few KiB; this bounds what load() reads


class ConfigError(Exception):
    """The config is unusable; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        # a key or a path may hold an escape sequence or undecodable bytes, and every
        # reader of a problem shows it to an operator
        self.source = terminal_safe(source)
        self.problems = [terminal_safe(problem) for problem in problems]
        super().__init__(f"{self.source}: " + "; ".join(self.problems))

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


SWITCH_ECHO_TIMEOUT = 0.1
"""A switch's echo reply later than this (or the interval, if longer) is a miss: a
switch's CPU answers ICMP slowly and rate-limited (control-plane policing), tens of
milliseconds under load, where a server answers in well under one."""

SWITCH_RETRIES = 2
"""Probes re-sent at once after a switch's probe timed out, in every probe slot."""

SWITCH_ARP_AFTER = 3
"""Switch probes missed in a row after which each further miss also sends an ARP request
for the switch (`effects.garp.ArpAsk`). Under 30 % loss the switch's kernel lost its
entry for a node now and then (three unicast re-checks lost) and answered nothing until
one of its broadcasts a second got through: 2.4 s of silence, a false "lost uplink" and
a handover about once per 15 minutes of such loss in the lab. Three misses: at 30 % loss
a round trip is lost in a row three times in about one probe of eight, so the requests
stay rare there, and none go out while the switch answers."""

ARP_ASK_GAP = 0.2
ARP_ASK_MOST = 10
"""Seconds between two of those ARP requests for one switch at least (ARP_ASK_GAP), and
how many in one run of misses at most (ARP_ASK_MOST): a switch that never answers ICMP (a filter, a
wrong address) would otherwise get one broadcast per missed probe for ever, about ten a
second, and a port with Dynamic ARP Inspection is shut (err-disabled) past 15 ARP
frames a second by default. Ten requests 0.2 s apart cover the switch_timeout of the
standard timing; after them the kernel's own request a second goes on."""

FOLLOW_REACH = 0.2
"""While calm, a node's probe slot follows the heartbeat of the first node in
`cluster.order` (probes/echo.py, `_Cadence.follow`): a slot moves this many intervals
earlier at most, and never comes closer than 1 - FOLLOW_REACH intervals after the last
one. Inside the quarter period by which the heartbeat may go early with a slot, with
room for rounding, so the heartbeat goes with the slot."""

FOLLOW_GRACE = 0.05
"""While a node's slots follow that heartbeat, its slot timer waits this many intervals
past the slot for it: a heartbeat a little late (the timers of both nodes run up to a
millisecond or two late) still shares the wake-up. A dead peer's next probe therefore
goes up to this much of an interval later (the fast profile: 1 ms)."""

KERNEL_SILENT_MISSES = 10
"""Echo misses in a row on every network that end the proof of a live host and decide
a silent peer's death under any loss (`Timing.kernel_silent_misses`): a live host at
30 % loss (a round trip lost 51 % of the time) misses ten in a row on both networks
about once in a million tries."""

SWITCH_CALM_MIN_TRIES = 22
"""An answering switch is probed half as often only where a switch that went silent
still gets this many probes (`Timing.switch_tries`) before it counts as lost. At 30 %
loss each way a round trip is lost 51 % of the time, all 22 with 0.51^22 = 4 x 10^-7.
The standard timing's 23 qualify; the fast profile's 19 would have made a false
uplink loss under sustained 30 % loss about eight times as frequent (once in ~3 days
per switch instead of ~24: a helper's replay of the real prober), so it stays at the
full pace; where the timings' tries were fewest (18) it would have come to less."""


@dataclass(frozen=True)
class Timing:
    interval: float = 0.1
    misses: int = 3
    heartbeat: float = 0.05
    calm_heartbeat: float = 0.1
    echo_timeout: float = 0.02
    service_timeout: float = 3.0
    link_rise: float = 2.0
    link_fall: float = 0.2
    switch_timeout: float = 2.0
    startup_grace: float = 5.0
    start_failure_backoff: float = 60.0
    stop_retries: int = 3
    # how often a node checks that it holds what its role says, and nothing else (the
    # VIP, each monitored resource); 0: never (README, "Resource monitoring")
    monitor_interval: float = 30.0
    failure_timeout: float = 600.0  # a resource's failure counts this long (0: until a restart)
    on_stop_failure: str = "retry"
    peer_echo: str = "auto"  # "auto": on demand where the timing allows it; "always"
    # a calm node's heartbeats: "alternate" (one network at a time, in turn) or "all"
    calm_heartbeat_networks: str = "alternate"
    # where the values came from, for check-config: the profile named in the file
    # ("standard" = the defaults above) and the keys the file set itself
    profile: str = field(default="standard", compare=False)
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    @functools.cached_property  # derived from frozen fields: computed once
    def switch_probe_every(self) -> int:
        """The switch is probed every this many slots of the interval: eight times in
        switch_timeout at least (the slot's wake-up shared). 0: the interval is too long
        for that, and the switch is probed on a cadence of its own (`switch_probe_period`):
        two probes in switch_timeout, once an interval, left a switch a try or two before
        it counted as lost."""
        return int(self.switch_timeout / (8 * self.interval) + 1e-9)

    @functools.cached_property
    def switch_probe_period(self) -> float:
        """Seconds between two probes of the switch (its re-sent probes aside)."""
        every = self.switch_probe_every
        return every * self.interval if every else self.switch_timeout / 8

    @functools.cached_property
    def switch_calm_every(self) -> int:
        """While the switch answers it is probed half as often, four times in
        switch_timeout: every this many slots of the interval. From its first miss until
        it answers again, at the full pace: a silent switch loses only the tries of the
        first half period (23 instead of 26 at the standard timing), an answering one
        costs half the packets. Not where that would leave a silent switch fewer than
        SWITCH_CALM_MIN_TRIES (a short switch_timeout), nor on a cadence of its own
        (switch_probe_every 0: a long interval has few idle packets to save)."""
        every = self.switch_probe_every
        if not every or self._switch_tries(2 * every * self.interval) < SWITCH_CALM_MIN_TRIES:
            return max(1, every)
        return 2 * every

    @functools.cached_property
    def switch_calm_period(self) -> float:
        """Seconds between two probes of a switch that answers."""
        every = self.switch_probe_every
        return self.switch_calm_every * self.interval if every else self.switch_probe_period

    @functools.cached_property
    def switch_echo_timeout(self) -> float:
        """A switch's reply later than this is a miss (and re-sent at once): the interval,
        at least SWITCH_ECHO_TIMEOUT (the fast profile's 20 ms interval took a switch that
        answers in 25 ms for dead, and the uplink for lost after switch_timeout), at most
        a sixth of switch_timeout: a probe and its SWITCH_RETRIES re-sent ones take a
        third of it at most."""
        cap = self.switch_timeout / (2 * (SWITCH_RETRIES + 1))
        return min(max(self.interval, SWITCH_ECHO_TIMEOUT), cap)

    @functools.cached_property
    def switch_tries(self) -> int:
        """About how many probes go to a switch that went silent before it counts as
        lost: the calm probe at most switch_calm_period after the last answer, then the
        probe of each slot at the full pace, each with its re-sent ones, all sent within
        switch_timeout."""
        return self._switch_tries(self.switch_calm_period)

    def _switch_tries(self, calm: float) -> int:
        period, timeout = self.switch_probe_period, self.switch_echo_timeout
        slots = range(math.ceil(self.switch_timeout / period) + 1)
        sends = (
            calm + slot * period + k * timeout for slot in slots for k in range(SWITCH_RETRIES + 1)
        )
        return sum(1 for at in sends if at < self.switch_timeout)

    @functools.cached_property
    def schedule_gap(self) -> float:
        """A pause this long between two runs of the agent means it was not running
        (SIGSTOP, a suspended VM, a blocked loop), not that the world went quiet: the
        core restarts its timeouts (`Core._check_schedule_gap`), and a datagram that
        waited this long in the socket is old news (`inbox.Inbox`). Ten heartbeats, at
        least 1 s: a busy machine's scheduling delays stay well below it."""
        return max(1.0, 10 * self.heartbeat)

    @functools.cached_property
    def listed_again_within(self) -> float:
        """How long a standby (N nodes) waits, before it may promote, for a peer that
        leaves it out of its `heard` list to list it again (`Core._unlisted`): its own
        heartbeat's way there and the peer's next view back, with the settle time's
        margin. Longer, a one-way cut just before the active died slowed the failover
        to service_timeout (a helper's finding: 2.7 s instead of 0.2 s)."""
        return self.settle + self.peer_gone_after

    @functools.cached_property
    def peer_gone_after(self) -> float:
        """No sign of life this long (and `misses` echoes missed) = peer gone."""
        return self.misses * self.interval

    @functools.cached_property
    def echo_window(self) -> float:
        """The UDP silence that, with `misses` echoes missed on every network, means gone.

        As long as `misses` probes sent an interval apart would take to time out,
        even though the shell confirms a miss with probes re-sent at once: the
        quick retries must not shorten the evidence of silence. Waiting for
        `peer_gone_after` as well would only add failover time. Never shorter
        than two heartbeats, so that one lost heartbeat is not silence. Under
        loss it is this silence, not the quick echo retries, that keeps false
        failovers away.
        """
        return max((self.misses - 1) * self.interval + self.echo_timeout, 2 * self.heartbeat)

    @functools.cached_property
    def kernel_silent_misses(self) -> int:
        """Echo misses in a row on every network that end the proof of a live host (the
        core's `_kernel_outlived_agent`) and decide a silent peer's death whatever the
        recent loss (`PeerTracker.misses_beat_loss`): at least twice `misses`. The peer's
        echo prober re-sends a missed probe at once up to one fewer times, so that they
        come within tens of milliseconds where the loss asks for that many."""
        return max(KERNEL_SILENT_MISSES, 2 * self.misses)

    @functools.cached_property
    def peer_echo_retries(self) -> int:
        """Probes to a peer re-sent at once after a miss, one fewer than
        `kernel_silent_misses` (the daemon's prober; the simulation and the unit tests'
        harness model it)."""
        return self.kernel_silent_misses - 1

    @functools.cached_property
    def kernel_proof_after(self) -> float:
        """An echo reply that comes this long after the peer's last message proves its
        host outlived its agent. A dead host's last reply can come that late only when
        its last heartbeat went out a calm period before it died, a little late, and
        the reply was on its way: a calm heartbeat and two echo timeouts (140 ms; the
        fast profile 30 ms, a simulated death with 12.5 ms was taken for a hang once in
        30 runs)."""
        return self.calm_heartbeat + 2 * self.echo_timeout

    @functools.cached_property
    def echo_on_demand_after(self) -> float | None:
        """The silence after which a calm peer is probed, and its lateness is trouble,
        when echo runs on demand; None: probed every interval for ever (`peer_echo =
        "always"`, or a timing too tight for it).

        A calm heartbeat late by half an echo timeout: the first sign of loss that a
        probe every interval would have given about as early (its miss shows an
        echo_timeout after its slot), so that both nodes speed up their heartbeats as
        soon as they would have; and early enough that `misses` probes and their quick
        retries time out with an echo_timeout to spare within `echo_window`, so a
        dead peer is declared gone as soon as with probes every interval. The
        standard timing gives 110 ms against a 220 ms window; the fast profile, whose
        window is not much longer than a calm heartbeat, probes every interval.
        """
        after = self.calm_heartbeat + self.echo_timeout / 2
        room = (self.misses + 1) * self.echo_timeout
        if self.peer_echo == "always" or after + room > self.echo_window:
            return None
        return after

    @functools.cached_property
    def settle(self) -> float:
        """Time for the peer's view of a shared link loss to reach us."""
        return self.link_fall + 4 * self.heartbeat


@dataclass(frozen=True)
class Vip:
    address: ipaddress.IPv4Interface
    interface: str
    garp_count: int = 5
    garp_interval: float = 0.2
    garp_refresh: float = 0.0


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    switch: ipaddress.IPv4Address | None


@dataclass(frozen=True)
class Attachment:
    """One node's port on one network."""

    network: str
    interface: str
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class Node:
    name: str
    attachments: tuple[Attachment, ...]
    vip_interface: str

    def on(self, network: str) -> Attachment:
        for attachment in self.attachments:
            if attachment.network == network:
                return attachment
        raise KeyError(network)


@dataclass(frozen=True)
class Resource:
    name: str
    kind: str  # systemd | sysv | script | ocf
    unit: str = ""
    script: str = ""
    start: str = ""
    stop: str = ""
    status: str = ""
    timeout: float = 60.0
    agent: str = ""  # ocf: "ocf:PROVIDER:TYPE" or an absolute path to the agent
    params: tuple[tuple[str, str], ...] = ()  # ocf: OCF_RESKEY_<name>=<value>
    monitor: bool = True  # its status is checked every timing.monitor_interval
    # failures (within timing.failure_timeout) restarted on the active before it hands over
    restarts: int = 2


@dataclass(frozen=True)
class SyncDir:
    """One directory pushed from the active node to the standby (see mosqit_failover.sync)."""

    path: str
    excludes: tuple[str, ...] = ()
    interval: float = 1.0
    full_every: float = 3600.0
    peer_path: str = ""  # where it lands on the peer; "" = the same path
    ssh_user: str = "root"
    ssh_port: int = 22
    ssh_key: str = "/etc/mosqit-failover/sync_key"
    timeout: float = 30.0  # rsync I/O timeout (--timeout)
    connect_timeout: float = 5.0  # ssh ConnectTimeout
    bwlimit: int = 0  # KiB/s, 0 = unlimited
    # synchronous write mode (docs/sync-mode.md): "async" (inotify + rsync) or "synchronous"
    # (a FUSE mount on the active node: close, fsync, rename... return once on the standbys)
    mode: str = "async"
    on_standby_loss: str = "degrade"  # "degrade" or "block" (EIO after block_timeout)
    block_timeout: float = 10.0
    ack_timeout: float = 10.0  # a standby that acknowledges nothing this long is dropped

    @property
    def target(self) -> str:
        return self.peer_path or self.path

    @property
    def synchronous(self) -> bool:
        return self.mode == SYNCHRONOUS


@dataclass(frozen=True)
class Alerts:
    """[alerts]: hooks run and mail sent on each decision and failure (see alerts.py)."""

    hooks: tuple[str, ...] = ()
    hook_timeout: float = 10.0
    queue: int = 100  # events waiting per hook or mail; when full the oldest is dropped
    mail_to: tuple[str, ...] = ()
    mail_from: str = ""  # "" = mosqit-failover@<this host's FQDN>
    smtp: str = "127.0.0.1:25"
    smtp_timeout: float = 30.0
    events: tuple[str, ...] = ()  # kinds to send; () = all

    @property
    def smtp_host(self) -> str:
        return split_host_port(self.smtp)[0]

    @property
    def smtp_port(self) -> int:
        return split_host_port(self.smtp)[1]


@dataclass(frozen=True)
class Metrics:
    """[metrics]: the Prometheus endpoint; listen "" (the default) is off."""

    listen: str = ""

    @property
    def host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.listen)[1]


@dataclass(frozen=True)
class Console:
    """[console]: the web console (mosqit_failover.console).

    On by default on loopback, but it only runs once the token file exists
    (`mosqit-failover gen-secret /etc/mosqit-failover/console_token`);
    listen "" turns it off altogether. HTTPS either natively (tls_cert and
    tls_key, both or neither) or from a TLS-terminating proxy in front of a
    plain loopback listener (behind_tls_proxy); either way the browser's side
    is https: the Origin check expects it and the session cookie is Secure.
    """

    listen: str = "127.0.0.1:8405"
    token_file: Path = Path("/etc/mosqit-failover/console_token")
    server_names: tuple[str, ...] = ()  # Host names besides IP literals and localhost
    session_idle: float = 3600.0
    tls_cert: Path | None = None  # PEM certificate (chain): the console does TLS itself
    tls_key: Path | None = None  # its unencrypted PEM private key, mode 0600 or 0400
    behind_tls_proxy: bool = False  # plain on loopback, reached through a TLS proxy

    @property
    def https(self) -> bool:
        """Whether browsers reach the console over https."""
        return self.tls_cert is not None or self.behind_tls_proxy


@dataclass(frozen=True)
class Fencing:
    """[fencing]: how a node makes sure its hung peer holds nothing before the
    OS-problem promotion (STONITH). Parsed by _read_fencing."""

    ssh: bool = True
    ssh_key: str = "/etc/mosqit-failover/sync_key"
    ssh_user: str = "root"
    ssh_port: int = 22
    power: tuple[tuple[str, str], ...] = ()  # (node, fence-agent command line)
    timeout: float = 10.0
    on_failure: str = "wait"  # "wait": no promotion, retry; "promote": take the risk
    retry: float = 5.0

    def power_command(self, node: str) -> str:
        """The power fence command line for ``node``; "" when none is configured."""
        return dict(self.power).get(node, "")


def split_host_port(text: str) -> tuple[str, int]:
    """'127.0.0.1:25' -> ('127.0.0.1', 25); '[::1]:25' -> ('::1', 25). Validated at load."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def control_socket_in(path: Path) -> Path:
    """The control socket a config names, read from a file that may not load (an edit
    half done): cluster.control_socket if it is a usable path, else the default. The
    running agent still serves on the socket of the config it started with."""
    from mosqit_failover.control import socket_path_problem

    try:
        raw = tomllib.loads(_read_trusted(path))
        named = raw.get("cluster", {}).get("control_socket")
    except (ConfigError, ValueError, RecursionError, AttributeError):
        return DEFAULT_CONTROL_SOCKET
    usable = isinstance(named, str) and named and "\x00" not in named
    return Path(named) if usable and socket_path_problem(named) is None else DEFAULT_CONTROL_SOCKET


@dataclass(frozen=True)
class Config:
    cluster: str
    order: tuple[str, ...]  # every node once, the first goes first (the preferred node)
    failback: bool
    secret_file: Path
    port: int
    state_dir: Path
    control_socket: Path
    timing: Timing
    vip: Vip
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    resources: tuple[Resource, ...]
    sync: tuple[SyncDir, ...]
    alerts: Alerts = Alerts()
    metrics: Metrics = Metrics()
    console: Console = Console()
    fencing: Fencing = Fencing()

    @functools.cached_property
    def network_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.networks)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def preferred(self) -> str:
        return self.order[0]

    @property
    def multi_server(self) -> bool:
        return len(self.nodes) > 2

    @functools.cached_property
    def order_id(self) -> str:
        """A short digest of `order` (hex): peers compare it to find a config that differs.

        Computed once per Config (it is frozen): every message sent and received reads it."""
        digest = hashlib.sha256("\n".join(self.order).encode()).digest()[:4]
        return (digest if any(digest) else b"\x00\x00\x00\x01").hex()

    def rank(self, name: str) -> int:
        """The node's place in `order`: 0 goes first."""
        return self.order.index(name)

    def peers_of(self, name: str) -> tuple[Node, ...]:
        """Every other node, in `order`."""
        return tuple(self.node(n) for n in self.order if n != name)

    def peer_of(self, name: str) -> Node:
        """The other node of a two-node pair (multi-server code uses `peers_of`)."""
        peers = self.peers_of(name)
        if len(peers) != 1:
            raise ValueError(f"{len(self.nodes)} nodes: peer_of() is for two-node pairs")
        return peers[0]


# every pattern is used with fullmatch: "$" would also match before a trailing newline
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
_MAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def parse_duration(text: str) -> float:
    """'100ms', '1.5s', '2m', '1h' -> seconds. Raises ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNIT[match.group(2)]


# The bad value as shown in a problem: bounded, so a huge or deeply nested value
# (TOML dotted keys nest without limit) never floods the report or recurses.
_SHOW = reprlib.Repr()
_SHOW.maxlevel = 3
_SHOW.maxstring = _SHOW.maxother = 120
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = _SHOW.maxset = 20


class _Checker:
    """Collects problems while reading raw TOML data, so all are reported at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, value: object, fix: str) -> None:
        self.problems.append(f"{key} = {_SHOW.repr(value)}: {fix}")

    def table(self, data: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            self.fail(key, value, f"must be a table ([{key}])")
            return {}
        for unknown in sorted(set(value) - allowed):
            self.problems.append(
                f"{key}.{unknown}: unknown key; allowed here: {', '.join(sorted(allowed))}"
            )
        return value

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        kind: Callable[[Any], Any],
        default: Any = ...,
        fix: str = "",
    ) -> Any:
        name = key.rsplit(".", 1)[-1]
        if name not in data:
            if default is ...:
                self.problems.append(f"{key}: missing; {fix or 'add it'}")
                return None
            return default
        try:
            return kind(data[name])
        except (ValueError, TypeError) as error:
            self.fail(key, data[name], str(error))
            return default if default is not ... else None


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("must be a non-empty string")
    if "\x00" in value:  # no file name, command or address holds one
        raise ValueError("has a NUL character (\\u0000) in it; remove it")
    return value


# in a path, a control character (C0, DEL, C1) is a slip of the editor (or an attack),
# never meant
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PATH_CONTROL_PROBLEM = "has a control character (a newline, a tab) in it; remove it"


def _absolute_path(value: Any) -> str:
    text = _string(value)
    if not text.startswith("/"):
        raise ValueError("must be an absolute path (the agent runs from /, not from where you are)")
    if _PATH_CONTROL.search(text):
        raise ValueError(_PATH_CONTROL_PROBLEM)
    return text


def _normalized(path: str) -> str:
    """An absolute path as the kernel resolves its dots and slashes ("//" is "/")."""
    return "/" + posixpath.normpath(path).lstrip("/")


def _own_directory(value: Any) -> str:
    text = _absolute_path(value)
    norm = _normalized(text)
    if norm in _SYSTEM_DIRS or _LIB_DIR.fullmatch(norm):
        raise ValueError('must be a directory of its own, like "/var/lib/mosqit-failover"')
    if (norm + "/").startswith(_SYSTEM_TREES):
        # the epoch must outlive a reboot: after a power loss of both, the node that was
        # active last must still know it (a helper's finding: /run and /dev/shm were taken)
        raise ValueError(
            f"{norm} is not kept across a reboot (or not a disk at all), and the promotion "
            'epoch must be: use a directory on disk, like "/var/lib/mosqit-failover"'
        )
    return text


# a unit name as systemctl takes it; never an option ("-H host" would be one)
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@-]{0,254}")


# the host's own units: a standby stops its resources, so one of these would stop the
# agent itself, sshd (the sync and the ssh fence), the journal or the network (a
# helper's finding: check-config took them all)
_HOST_UNITS = {
    "mosqit-failover.service": "the agent itself",
    "ssh.service": "sshd, which the sync and the ssh fence log in through",
    "sshd.service": "sshd, which the sync and the ssh fence log in through",
    "ssh.socket": "sshd, which the sync and the ssh fence log in through",
    "sshd.socket": "sshd, which the sync and the ssh fence log in through",
    "dbus.service": "the system bus",
    "dbus.socket": "the system bus",
    "networking.service": "the network",
    "NetworkManager.service": "the network",
}
_HOST_UNIT = re.compile(
    r"systemd-.*|(?:default|multi-user|graphical|basic|sysinit|rescue|emergency|shutdown"
    r"|reboot|poweroff|halt|kexec|network|network-online|network-pre|local-fs|remote-fs"
    r"|sockets|timers|paths|slices|getty|swap|time-sync|nss-lookup|umount|final)\.target"
    r"|(?:serial-)?getty@.*"
)


def _sysv_script(value: Any) -> str:
    """An init script, never the host's own (its service is what _HOST_UNITS names)."""
    text = _string(value)
    name = posixpath.basename(text.rstrip("/"))
    what = _HOST_UNITS.get(f"{name}.service") or _HOST_UNITS.get(_SYSV_ALIASES.get(name, ""))
    if what:
        raise ValueError(
            f"{text} starts {what}: a standby stops its resources, and would stop it; "
            "protect the application's own script, like /etc/init.d/asterisk"
        )
    return text


_SYSV_ALIASES = {"network-manager": "NetworkManager.service"}  # Debian's script name


def _unit_name(value: Any) -> str:
    text = _string(value)
    if not _UNIT_NAME.fullmatch(text):
        raise ValueError(
            'must be a systemd unit name, like "postgresql.service" (letters, digits and '
            '":_.\\@-", not starting with "-")'
        )
    # systemctl reads a name without a known suffix as a service
    known = (".service", ".target", ".mount", ".slice", ".socket", ".timer", ".path")
    full = text if text.endswith(known) else f"{text}.service"
    what = _HOST_UNITS.get(full) or ("part of systemd itself" if _HOST_UNIT.fullmatch(full) else "")
    if what:
        raise ValueError(
            f"{full} is {what}: a standby stops its resources, and would stop it; "
            'protect the application\'s own unit, like "postgresql.service"'
        )
    return text


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError("must be a name of letters, digits, '.', '_' or '-' (at most 63)")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _count(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return check


def _duration(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            seconds = parse_duration(value) if isinstance(value, str) else None
        except ValueError:
            seconds = None
        if seconds is None:
            raise ValueError('must be a duration with a unit, like "100ms", "2s", "5m"')
        if not low <= seconds <= high:
            raise ValueError(f"must be between {low:g}s and {high:g}s")
        return seconds

    return check


def _garp_refresh(value: Any) -> float:
    seconds = _duration(0, 86400)(value)
    if 0 < seconds < 1:
        # each refresh is a burst of garp_count frames to every host of the segment
        raise ValueError(
            'must be "0s" (off) or at least "1s" (keepalived\'s floor too): '
            "more often floods the network with ARP"
        )
    return seconds


def _ipv4(value: Any) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise TypeError('must be an IPv4 address in quotes, like "192.0.2.10"')
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError('must be an IPv4 address, like "192.0.2.10"') from None
    _one_host(address)
    return address


def _one_host(address: ipaddress.IPv4Address) -> None:
    """Refuse an address that can name no host on a wire: multicast, "this network"
    (0.0.0.0/8), reserved (240/4) or the limited broadcast. (Loopback is taken: the
    tests run pairs on it; check-config warns.)"""
    if address.is_multicast:
        what = "a multicast address"
    elif address in _THIS_NETWORK:
        what = 'in 0.0.0.0/8 ("this network")'
    elif address.is_reserved:  # 240.0.0.0/4, 255.255.255.255 among them
        what = "a reserved address (240.0.0.0/4)"
    else:
        return
    raise ValueError(f"{address} is {what}, not a host's; use the node's own address")


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _not_a_host(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> str:
    """Why ``address`` names no single host of ``subnet`` ("" if it does): pings to a
    subnet's network or broadcast address go to every host or none, never one."""
    if subnet.prefixlen >= 31:  # point-to-point (RFC 3021) and /32: every address is a host
        return ""
    if address == subnet.network_address:
        return f"is the network address of {subnet}, not a host"
    if address == subnet.broadcast_address:
        return f"is the broadcast address of {subnet}, not a host"
    return ""


def _subnet(value: Any) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(_string(value), strict=True)
    except ValueError:
        raise ValueError('must be a network with prefix length, like "192.0.2.0/24"') from None
    _one_host(subnet.network_address)
    return subnet


def _interface_address(value: Any) -> ipaddress.IPv4Interface:
    text = _string(value)
    if "/" not in text:
        raise ValueError('must carry its prefix length, like "192.0.2.50/24"')
    try:
        address = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError('must be an IPv4 address with prefix, like "192.0.2.50/24"') from None
    _one_host(address.ip)
    return address


def _ifname(value: Any) -> str:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise ValueError("must be an interface name of at most 15 characters, like eth0")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError('must be a list of strings, like ["*.tmp"]')
    return tuple(value)


_TIMING_KEYS = {
    "interval": _duration(0.01, 10),
    "misses": _count(1, 100),
    "heartbeat": _duration(0.001, 10),  # from 1 ms: the fast profile's is 3 ms
    "calm_heartbeat": _duration(0.01, 10),
    "echo_timeout": _duration(0.001, 10),
    "service_timeout": _duration(0.1, 600),
    "link_rise": _duration(0, 600),
    "link_fall": _duration(0, 60),
    "switch_timeout": _duration(0.1, 600),
    "startup_grace": _duration(0, 3600),
    "start_failure_backoff": _duration(0, 86400),
    "stop_retries": _count(0, 100),
    "monitor_interval": _duration(0, 3600),
    "failure_timeout": _duration(0, 86400),
}
_TIMING_SETTINGS = ("on_stop_failure", "peer_echo", "calm_heartbeat_networks")  # words


@dataclass(frozen=True)
class TimingProfile:
    """A named set of [timing] defaults (`timing.profile`); keys the file sets win.

    Whatever is not in `values` keeps the Timing default. Unless the file sets them,
    echo_timeout is at most half the interval, and calm_heartbeat is twice the
    heartbeat within the interval, or (`calm_is_interval`) the interval itself.
    docs/timing.md gives each profile's numbers and why.
    """

    name: str
    summary: str
    values: Mapping[str, float | int] = field(default_factory=dict)
    calm_is_interval: bool = False


TIMING_PROFILES: Mapping[str, TimingProfile] = {
    p.name: p
    for p in (
        TimingProfile("standard", "100 ms probes, a dead peer noticed in about 0.2 s"),
        # BFD-like. misses 2 and a 5 ms echo timeout: the peer is gone 25 ms after its
        # last message (echo_window); 3 ms heartbeats while anything looks wrong put
        # eight of them in that window, so 30 % loss on both networks passes for a dead
        # peer about once in 5 days of it, under 0.1 % in 300 s (docs/timing.md has the
        # arithmetic); at idle the heartbeat goes every interval, as the echo probes do
        TimingProfile(
            "fast",
            "BFD-like 20 ms probes, a dead peer noticed in 20-31 ms",
            {
                "interval": 0.02,
                "misses": 2,
                "heartbeat": 0.003,
                "echo_timeout": 0.005,
                "link_fall": 0.1,
            },
            calm_is_interval=True,
        ),
    )
}
_PROFILE_CHOICES = ", ".join(f'"{name}"' for name in TIMING_PROFILES)


def _profile(value: Any) -> TimingProfile:
    if not isinstance(value, str) or value not in TIMING_PROFILES:
        raise ValueError(f"must be one of {_PROFILE_CHOICES} (see docs/timing.md)")
    return TIMING_PROFILES[value]


def format_duration(seconds: float) -> str:
    """0.02 -> '20ms', 3.0 -> '3s', 0.1125 -> '112.5ms': as a config would spell it."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    return f"{round(seconds, 3):g}s"


def _read_timing(c: _Checker, raw: Mapping[str, Any]) -> Timing:
    data = c.table(raw, "timing", set(_TIMING_KEYS) | {"profile", *_TIMING_SETTINGS})
    profile = c.get(data, "timing.profile", _profile, TIMING_PROFILES["standard"])
    base = Timing()
    defaults = {k: profile.values.get(k, getattr(base, k)) for k in _TIMING_KEYS}
    values = {k: c.get(data, f"timing.{k}", f, defaults[k]) for k, f in _TIMING_KEYS.items()}
    # defaults that follow the probe interval (a wrong value reads as its default here,
    # and is reported): a LAN echo reply takes well under a millisecond, but short
    # intervals still leave the reply half of one
    interval, heartbeat = values["interval"], values["heartbeat"]
    if "echo_timeout" not in data:
        values["echo_timeout"] = min(defaults["echo_timeout"], interval / 2)
    if "calm_heartbeat" not in data:
        values["calm_heartbeat"] = (
            interval if profile.calm_is_interval else min(2 * heartbeat, interval)
        )

    def word(key: str, choices: tuple[str, str], rule: str) -> str:
        """One of two words (the first is the default); a wrong one is reported."""
        value = c.get(data, f"timing.{key}", _string, choices[0])
        if value not in choices:
            c.fail(f"timing.{key}", value, rule)
            return choices[0]
        return str(value)

    on_stop = word("on_stop_failure", ("retry", "reboot"), 'must be "retry" or "reboot"')
    peer_echo = word(
        "peer_echo",
        ("auto", "always"),
        'must be "auto" (echo to a peer only while its heartbeats are late) or "always"',
    )
    calm_networks = word(
        "calm_heartbeat_networks",
        ("alternate", "all"),
        'must be "alternate" (a calm heartbeat on one network at a time) or "all"',
    )
    explicit = frozenset(k for k in data if k in _TIMING_KEYS or k in _TIMING_SETTINGS)
    timing = Timing(
        **values,
        on_stop_failure=on_stop,
        peer_echo=peer_echo,
        calm_heartbeat_networks=calm_networks,
        profile=profile.name,
        explicit=explicit,
    )

    def origin(key: str) -> str:
        """Where a value the problem compares with came from, when the file did not set it
        and a profile other than the defaults did: the operator looks for it in vain."""
        if key in data or profile.name == "standard":
            return ""
        return f" ({format_duration(getattr(timing, key))}, from profile {profile.name!r})"

    if timing.heartbeat > timing.interval:
        c.fail(
            "timing.heartbeat",
            data.get("heartbeat"),
            f"must not be longer than timing.interval{origin('interval')}",
        )
    if timing.heartbeat <= timing.interval and not (
        timing.heartbeat <= timing.calm_heartbeat <= timing.interval
    ):
        c.fail(
            "timing.calm_heartbeat",
            data.get("calm_heartbeat"),
            "must lie between timing.heartbeat and timing.interval"
            + (origin("heartbeat") or origin("interval")),
        )
    if timing.echo_timeout >= timing.interval:
        c.fail(
            "timing.echo_timeout",
            data.get("echo_timeout"),
            "must be shorter than timing.interval (a reply is awaited before the next echo)"
            + origin("interval"),
        )
    if 0 < timing.monitor_interval < 1:
        # each check is a status command per resource: a subprocess or several, on the
        # path of nothing, but not ten a second
        c.fail(
            "timing.monitor_interval",
            data.get("monitor_interval"),
            'must be 0 (no monitoring) or at least 1s, like monitor_interval = "10s"',
        )
    if timing.service_timeout < timing.peer_gone_after:
        c.fail(
            "timing.service_timeout",
            data.get("service_timeout", format_duration(timing.service_timeout)),
            f"must be at least interval x misses ({timing.peer_gone_after:g}s); "
            f'e.g. service_timeout = "{format_duration(timing.peer_gone_after)}"',
        )
    return timing


def timing_sources(timing: Timing) -> dict[str, str]:
    """Each [timing] key -> where its value came from: "set" (the file), "profile NAME",
    "default", or the rule it follows (echo_timeout, calm_heartbeat)."""
    profile = TIMING_PROFILES.get(timing.profile, TIMING_PROFILES["standard"])
    given = "default" if profile.name == "standard" else f"profile {profile.name}"
    sources = {}
    for key in (*_TIMING_KEYS, *_TIMING_SETTINGS):
        if key in timing.explicit:
            sources[key] = "set"
        elif key in profile.values:
            sources[key] = f"profile {profile.name}"
        else:
            sources[key] = "default"
    if "echo_timeout" not in timing.explicit and "interval" in timing.explicit:
        sources["echo_timeout"] = f"{given} (at most interval / 2)"
    if "calm_heartbeat" not in timing.explicit:
        if profile.calm_is_interval:
            sources["calm_heartbeat"] = f"{given} (= interval)"
        elif timing.explicit & {"heartbeat", "interval"}:
            sources["calm_heartbeat"] = f"{given} (2 x heartbeat, at most interval)"
    return sources


def advice(cfg: Config) -> list[str]:
    """check-config's notes on choices the agent accepts but an operator should know
    the price of (each names what it costs and the fix); empty for a careful config."""
    notes = [
        f"networks.{net.name} has no switch: its uplink counts as healthy on carrier alone, "
        "so a dead switch, or a cut behind it with the carrier up, goes unseen and a node "
        f"keeps the VIP on it. Set networks.{net.name}.switch to an address on that network "
        "that answers ping (the switch's management address, or the gateway)"
        for net in cfg.networks
        if net.switch is None
    ]
    timing = cfg.timing
    usual = 2 if timing.profile == "fast" else 3
    if "misses" in timing.explicit and timing.misses < usual:
        notes.append(
            f"timing.misses = {timing.misses}: fewer than 3 echo misses in a row on every "
            "network decide that a silent peer is dead, so under loss more false failovers; "
            "3 is the default (the fast profile's 2 goes with its 3 ms heartbeats under "
            "loss: docs/timing.md)"
        )
    loopback = {str(net.subnet) for net in cfg.networks if net.subnet.network_address.is_loopback}
    if cfg.vip.address.ip.is_loopback:
        loopback.add(str(cfg.vip.address))
    if loopback:
        notes.append(
            f"{', '.join(sorted(loopback))}: loopback, which never leaves a host: nodes on "
            "it cannot hear each other, and clients cannot reach the VIP (fine for a test on "
            "one machine only); use the addresses of the nodes' cabled networks"
        )
    notes += _monitor_advice(cfg)
    return notes


def _monitor_advice(cfg: Config) -> list[str]:
    """Monitoring that can never hand over: the failures of a resource that fails at
    each look reach `restarts + 1` only if that many looks fit in failure_timeout (a
    helper's finding: check-config said nothing)."""
    interval, timeout = cfg.timing.monitor_interval, cfg.timing.failure_timeout
    if interval <= 0 or timeout <= 0:
        return []
    fit = math.ceil(timeout / interval)  # looks within failure_timeout, the first included
    return [
        f"resource {r.name}: restarts = {r.restarts}, but only {fit} looks "
        f"(timing.monitor_interval {format_duration(interval)}) fit in "
        f"timing.failure_timeout ({format_duration(timeout)}): a resource failing "
        "at every look is restarted for ever and never handed over; lower "
        "restarts or monitor_interval, or raise failure_timeout"
        for r in cfg.resources
        if r.monitor and r.restarts + 1 > fit
    ]


def describe_timing(timing: Timing) -> list[str]:
    """check-config's account of the timing: each value with its source, then the values
    the agent derives from them (the Timing properties)."""
    profile = TIMING_PROFILES.get(timing.profile, TIMING_PROFILES["standard"])
    # a dead peer's last message came at most a heartbeat before it died, its echo
    # misses are confirmed by the next slot's probe (on demand: the probe sent once its
    # silence reaches echo_on_demand_after) and the retries sent at once
    after = timing.echo_on_demand_after
    # a slot that follows the first node's heartbeat may wait FOLLOW_GRACE for it
    first_probe = (1 + FOLLOW_GRACE) * timing.interval if after is None else after
    detect = max(timing.echo_window, first_probe + timing.misses * timing.echo_timeout)
    summary = profile.summary
    changed = sorted(timing.explicit - {"profile"})
    if changed:  # the profile's own summary would be wrong (a helper's finding)
        summary = (
            f"changed by {', '.join(changed)}: {format_duration(timing.interval)} probes, "
            f"a dead peer noticed in at most {format_duration(detect)}"
        )
    lines = [f"timing: profile {profile.name} ({summary}; docs/timing.md)"]
    sources = timing_sources(timing)
    for key, source in sources.items():
        value = getattr(timing, key)
        shown = format_duration(value) if isinstance(value, float) else str(value)
        lines.append(f"  {key:<24}{shown:>9}  {source}")
    every = timing.switch_probe_every
    calm = timing.switch_calm_period > timing.switch_probe_period
    derived = [
        (
            "peer_gone_after",
            timing.peer_gone_after,
            "misses x interval: how long a peer's view counts",
        ),
        ("echo_window", timing.echo_window, "UDP silence that, with the echo misses, means gone"),
        (
            "kernel_proof_after",
            timing.kernel_proof_after,
            "an echo reply this far into that silence: host alive, agent hung (fence first)",
        ),
        ("settle", timing.settle, "link_fall + 4 x heartbeat"),
        (
            "schedule gap",
            timing.schedule_gap,
            "the agent not run this long: timeouts restart, older peer words dropped",
        ),
        (
            "switch probed every",
            timing.switch_probe_period,
            (
                "switch_timeout / 8 in whole intervals"
                if every
                else "switch_timeout / 8: the interval is longer"
            )
            + ("; from a miss to the next answer" if calm else ""),
        ),
        (
            "answering switch every",
            timing.switch_calm_period,
            "while it answers: half as often (fewer idle packets)"
            if calm
            else f"the same: half as often would leave under {SWITCH_CALM_MIN_TRIES} tries"
            if every
            else "the same: on a cadence of its own",
        ),
        (
            "switch echo timeout",
            timing.switch_echo_timeout,
            f"a later reply is a miss, re-sent at once up to {SWITCH_RETRIES} times a probe",
        ),
        (
            "dead peer noticed in",
            detect,
            "at most: echo_window or the first probe + misses x echo_timeout",
        ),
    ]
    lines.append("  derived:")
    for name, value, why in derived:
        lines.append(f"  {name:<24}{format_duration(value):>9}  {why}")
    why = "probes sent to a silent switch before it counts as lost (switch_timeout)"
    lines.append(f"  {'switch tries':<24}{timing.switch_tries:>9}  {why}")
    why = "echo misses in a row on every network that decide under any loss (fewer if light)"
    lines.append(f"  {'kernel_silent_misses':<24}{timing.kernel_silent_misses:>9}  {why}")
    if after is not None:
        why = "peers are probed only after this silence (on demand, peer_echo auto)"
        lines.append(f"  {'echo on demand after':<24}{format_duration(after):>9}  {why}")
    elif timing.peer_echo == "auto":
        why = "calm_heartbeat + (misses + 1.5) x echo_timeout is longer than echo_window"
        lines.append(f"  {'echo to peers':<24}{'always':>9}  {why}")
    else:
        lines.append(f"  {'echo to peers':<24}{'always':>9}  peer_echo always")
    return lines


def _read_networks(c: _Checker, raw: Mapping[str, Any]) -> tuple[Network, ...]:
    data = raw.get("networks")
    if not isinstance(data, dict) or len(data) != 2:
        c.problems.append(
            "networks: need exactly two tables, like [networks.a] and [networks.b], one per switch"
        )
        return ()
    networks = []
    for name, table in data.items():
        key = f"networks.{name}"
        if _name_problem(c, key, name) or not isinstance(table, dict):
            continue
        c.table(data, key, {"subnet", "switch"})
        subnet = c.get(table, f"{key}.subnet", _subnet, fix='like "192.0.2.0/24"')
        switch = c.get(table, f"{key}.switch", _ipv4, None)
        if subnet and switch and switch not in subnet:
            c.fail(f"{key}.switch", str(switch), f"must lie inside {key}.subnet {subnet}")
        elif subnet and switch and (why := _not_a_host(switch, subnet)):
            c.fail(f"{key}.switch", str(switch), f"{why}; give the switch's own address")
        if subnet:
            networks.append(Network(name, subnet, switch))
    if len(networks) == 2 and networks[0].subnet.overlaps(networks[1].subnet):
        c.problems.append(
            f"networks: {networks[0].name} and {networks[1].name} overlap "
            f"({networks[0].subnet}, {networks[1].subnet}); each switch needs its own subnet"
        )
    return tuple(networks)


def _name_problem(c: _Checker, key: str, name: str) -> bool:
    try:
        _name(name)
    except ValueError as error:
        c.fail(key, name, str(error))
        return True
    return False


MIN_NODES, MAX_NODES = 2, 8


def _read_nodes(
    c: _Checker, raw: Mapping[str, Any], networks: tuple[Network, ...], vip_interface: str
) -> tuple[Node, ...]:
    data = raw.get("nodes")
    if not isinstance(data, dict) or not MIN_NODES <= len(data) <= MAX_NODES:
        count = f"{len(data)} given" if isinstance(data, dict) else "none given"
        c.problems.append(
            f"nodes: need {MIN_NODES} to {MAX_NODES} tables ({count}), like [nodes.alpha] and "
            "[nodes.beta], one per server (named by hostname)"
        )
        return ()
    nodes = []
    seen: dict[str, str] = {}  # lowercased -> the name first written so
    for name, table in data.items():
        key = f"nodes.{name}"
        if _name_problem(c, key, name) or not isinstance(table, dict):
            continue
        first = seen.setdefault(name.lower(), name)
        if first != name:  # one host either way: DNS and pick_node ignore case
            c.problems.append(
                f"nodes.{first} and nodes.{name}: node names must differ by more than case "
                "(host names ignore it, so both would be the same server); rename or "
                "remove one"
            )
            continue
        c.table(data, key, {n.name for n in networks} | {"vip_interface"})
        attachments = []
        for network in networks:
            port = table.get(network.name)
            pkey = f"{key}.{network.name}"
            if not isinstance(port, dict):
                c.problems.append(
                    f"{pkey}: missing; add {pkey} = "
                    '{ interface = "eth0", address = "..." } for this node\'s port on '
                    f"network {network.name}"
                )
                continue
            c.table(table, pkey, {"interface", "address"})
            ifname = c.get(port, f"{pkey}.interface", _ifname)
            address = c.get(port, f"{pkey}.address", _ipv4)
            if address and address not in network.subnet:
                c.fail(f"{pkey}.address", str(address), f"must lie inside {network.subnet}")
            elif address and (why := _not_a_host(address, network.subnet)):
                c.fail(f"{pkey}.address", str(address), f"{why}; give this node's own address")
            if ifname and address:
                attachments.append(Attachment(network.name, ifname, address))
        ifnames = [a.interface for a in attachments]
        if len(set(ifnames)) != len(ifnames):
            c.problems.append(
                f"{key}: both networks use interface {ifnames[0]}; each network needs its "
                "own interface (one cable to each switch)"
            )
        own_vip_if = c.get(table, f"{key}.vip_interface", _ifname, vip_interface)
        nodes.append(Node(name, tuple(attachments), own_vip_if))
    return tuple(nodes)


_KIND_KEYS = frozenset({"unit", "script", "start", "stop", "status", "agent"})


def _read_resources(c: _Checker, raw: Mapping[str, Any]) -> tuple[Resource, ...]:
    items = raw.get("resources", [])
    if not isinstance(items, list):
        c.fail("resources", items, "use [[resources]] tables, one per protected resource")
        return ()
    fields = {"name", "kind", "unit", "script", "start", "stop", "status", "timeout"}
    fields |= {"agent", "params", "monitor", "restarts"}
    needs = {
        "systemd": ("unit",),
        "sysv": ("script",),
        "script": ("start", "stop", "status"),
        "ocf": ("agent",),
    }
    kinds = 'one of "systemd", "sysv", "script", "ocf"'
    resources = []
    for index, item in enumerate(items):
        key = f"resources[{index}]"
        if not isinstance(item, dict):
            c.fail(key, item, "must be a table")
            continue
        for unknown in sorted(set(item) - fields):
            c.problems.append(f"{key}.{unknown}: unknown key; allowed: {', '.join(sorted(fields))}")
        name = c.get(item, f"{key}.name", _name)
        kind = c.get(item, f"{key}.kind", _string, fix=kinds)
        if kind not in needs:
            if kind is not None:
                c.fail(f"{key}.kind", kind, f"must be {kinds}")
            continue
        checks = {"agent": _ocf_agent, "unit": _unit_name, "script": _sysv_script}
        values = {f: c.get(item, f"{key}.{f}", checks.get(f, _string)) for f in needs[kind]}
        for other in sorted(set(item) & _KIND_KEYS - set(needs[kind])):
            # taken and never used, it was silently ignored (a helper's finding: a
            # systemd resource's start = "..." never ran)
            owners = " or ".join(f'"{k}"' for k, keys in needs.items() if other in keys)
            c.problems.append(
                f"{key}.{other}: only for kind = {owners}, not {kind!r}; remove it (or change kind)"
            )
        timeout = c.get(item, f"{key}.timeout", _duration(0.1, 3600), 60.0)
        params: tuple[tuple[str, str], ...] = ()
        if kind == "ocf":
            params = c.get(item, f"{key}.params", _ocf_params, ())
        elif "params" in item:
            c.problems.append(f'{key}.params: only for kind = "ocf", not {kind!r}; remove it')
        monitor = c.get(item, f"{key}.monitor", _bool, True)
        restarts = c.get(item, f"{key}.restarts", _count(0, 100), 2)
        if name and all(values.values()):
            resources.append(
                Resource(
                    name=name,
                    kind=kind,
                    timeout=timeout,
                    params=params,
                    monitor=monitor,
                    restarts=restarts,
                    **values,
                )
            )
    names = [r.name for r in resources]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        c.problems.append(f"resources: name {dup!r} is used twice; give each resource its own")
    return tuple(resources)


_OCF_AGENT = re.compile(r"ocf:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")
_OCF_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _ocf_agent(value: Any) -> str:
    text = _string(value)
    if not (_OCF_AGENT.fullmatch(text) or (text.startswith("/") and ".." not in text)):
        raise ValueError(
            'must be "ocf:PROVIDER:TYPE" (like "ocf:heartbeat:IPaddr2", found under '
            "/usr/lib/ocf/resource.d/PROVIDER/TYPE) or an absolute path to the agent"
        )
    return text


def _ocf_params(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise TypeError('must be a table, like params = { ip = "192.0.2.50", cidr_netmask = 24 }')
    params = []
    for name, raw in value.items():
        if not _OCF_PARAM.fullmatch(name):
            raise ValueError(f"parameter name {name!r} must be letters, digits and '_'")
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        if not isinstance(raw, str | int | float):
            raise TypeError(f"parameter {name} must be a string, number or true/false")
        params.append((name, str(raw)))
    return tuple(params)


_SYNC_KEYS = {
    "path",
    "excludes",
    "interval",
    "full_every",
    "peer_path",
    "ssh_user",
    "ssh_port",
    "ssh_key",
    "timeout",
    "connect_timeout",
    "bwlimit",
    "mode",
    "on_standby_loss",
    "block_timeout",
    "ack_timeout",
}

SYNCHRONOUS = "synchronous"
SYNC_MODES = ("async", SYNCHRONOUS)
STANDBY_LOSS = ("degrade", "block")


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError("must be one of " + ", ".join(f'"{c}"' for c in choices))
        return value

    return check


def _sync_mode_problems(key: str, item: Mapping[str, Any], mode: str, loss: str) -> list[str]:
    """What cannot go with the directory's mode (one line each, naming the fix)."""
    if mode == SYNCHRONOUS:
        out = []
        if item.get("excludes"):
            out.append(
                f'{key}.excludes: cannot be combined with mode = "synchronous" (the mount '
                'replicates everything under it): remove excludes, or keep mode = "async"'
            )
        if "block_timeout" in item and loss != "block":
            out.append(
                f'{key}.block_timeout: applies only with on_standby_loss = "block": '
                'remove it, or set on_standby_loss = "block"'
            )
        return out
    return [
        f'{key}.{name}: applies only with mode = "synchronous": remove it, '
        'or set mode = "synchronous"'
        for name in ("on_standby_loss", "block_timeout", "ack_timeout")
        if name in item
    ]


# A synced directory lands on the standby: never one of these trees of its system,
# nor anything below the virtual or runtime ones.
_SYSTEM_DIRS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/proc", "/root", "/run", "/sbin", "/sys", "/usr"}
    | {"/var", "/var/lib"}
)
_SYSTEM_TREES = ("/dev/", "/proc/", "/run/", "/sys/")
_LIB_DIR = re.compile(r"/lib[^/]*")  # /lib, /lib32, /lib64, /libx32
# below these the standby's own software, boot, packages, network, logins and ssh
# (the sync key's forced command) live: synced, the active's copy replaces them (a
# helper's finding: /etc/ssh, /root/.ssh, /usr/lib, /var/lib/dpkg were taken)
_HOST_TREES = (
    "/bin/", "/boot/", "/sbin/", "/usr/",
    "/etc/apt/", "/etc/network/", "/etc/NetworkManager/", "/etc/netplan/", "/etc/pam.d/",
    "/etc/security/", "/etc/ssh/", "/etc/sudoers.d/", "/etc/systemd/",
    "/var/lib/apt/", "/var/lib/dpkg/", "/var/lib/systemd/", "/var/log/journal/",
)  # fmt: skip
_HOST_DIR = re.compile(r"/lib[^/]*/.*|(.*/)?\.ssh(/.*)?")  # and any user's .ssh


def _own_dirs(state_dir: str | None, secret: str | None, config_dir: Path | None) -> dict[str, str]:
    """The agent's own directories, by what a problem calls them (absolute ones only)."""
    candidates = {
        "state directory (cluster.state_dir)": state_dir,
        "secret file's directory (cluster.secret_file)": secret and posixpath.dirname(secret),
        "config directory": str(config_dir) if config_dir else None,
        "default config directory": str(DEFAULT_PATH.parent),
    }
    return {
        what: posixpath.normpath(d)
        for what, d in candidates.items()
        if d and d.startswith("/") and posixpath.normpath(d) != "/"
    }


def symlinked_sync_problem(path: str, resolved: str) -> str | None:
    """Why a synced directory that ``path`` names but that is ``resolved`` on the node
    (its real path: a symlink on the way) cannot be synced, or None.

    The config's rules see the path as written: ``/srv/x/etc``, a symlink to /etc on
    the active node, pushed the active's /etc (shadow, host keys, the cluster's
    secret) to the standby (a helper's finding)."""
    if _normalized(path) == resolved:
        return None
    problem = _sync_dir_problem(resolved, {})
    if problem is None:
        return None
    return f"{path} leads through a symlink to {resolved}, which {problem}"


def _sync_dir_problem(value: str, own: Mapping[str, str]) -> str | None:
    """Why `value` cannot be a synced directory (sync.path or sync.peer_path), or None."""
    if not value.startswith("/"):
        return 'must be an absolute directory path, like "/srv/data"'
    if _PATH_CONTROL.search(value):
        return _PATH_CONTROL_PROBLEM
    norm = _normalized(value)
    plain = value in (norm, norm + "/")
    if norm in _SYSTEM_DIRS or norm.startswith(_SYSTEM_TREES) or _LIB_DIR.fullmatch(norm):
        return (
            f"{'is' if plain else 'means'} {norm}, a system directory: syncing it would "
            "overwrite the standby's own system; sync an application's directory, like /srv/data"
        )
    local = norm.startswith("/usr/local/")  # software of this site's own: its choice
    if (not local and (norm + "/").startswith(_HOST_TREES)) or _HOST_DIR.fullmatch(norm):
        return (
            f"{'is' if plain else 'means'} {norm}, part of the system (software, boot, "
            "packages, network, logins or ssh keys): syncing it would give the standby the "
            "active's copy of them; sync an application's directory, like /srv/data"
        )
    if not plain:
        return f"has '.', '..' or repeated '/' in it: write it as {norm}"
    for what, own_dir in own.items():
        if norm == own_dir or norm.startswith(own_dir + "/") or own_dir.startswith(norm + "/"):
            return (
                f"overlaps the agent's own {what} {own_dir}: the standby must keep its own; "
                "sync a directory outside it"
            )
    return None


def _read_sync(
    c: _Checker, raw: Mapping[str, Any], own_dirs: Mapping[str, str]
) -> tuple[SyncDir, ...]:
    items = raw.get("sync", [])
    if not isinstance(items, list):
        c.fail("sync", items, "use [[sync]] tables, one per directory")
        return ()
    dirs = []
    for index, item in enumerate(items):
        key = f"sync[{index}]"
        if not isinstance(item, dict):
            c.fail(key, item, "must be a table")
            continue
        for unknown in sorted(set(item) - _SYNC_KEYS):
            c.problems.append(
                f"{key}.{unknown}: unknown key; allowed: {', '.join(sorted(_SYNC_KEYS))}"
            )
        path = c.get(item, f"{key}.path", _string, fix='add path = "/srv/data"')
        peer_path = c.get(item, f"{key}.peer_path", _string, "")
        bad = {
            name: problem
            for name, value in (("path", path), ("peer_path", peer_path))
            if value and (problem := _sync_dir_problem(value, own_dirs))
        }
        for name, problem in bad.items():
            c.fail(f"{key}.{name}", item[name], problem)
        if bad:
            continue
        extra = {
            "ssh_user": c.get(item, f"{key}.ssh_user", _name, "root"),
            "ssh_port": c.get(item, f"{key}.ssh_port", _count(1, 65535), 22),
            "ssh_key": c.get(
                item, f"{key}.ssh_key", _absolute_path, "/etc/mosqit-failover/sync_key"
            ),
            "timeout": c.get(item, f"{key}.timeout", _duration(1, 3600), 30.0),
            "connect_timeout": c.get(item, f"{key}.connect_timeout", _duration(0.5, 120), 5.0),
            "bwlimit": c.get(item, f"{key}.bwlimit", _count(0, 10**9), 0),
            "mode": c.get(item, f"{key}.mode", _one_of(SYNC_MODES), "async"),
            "on_standby_loss": c.get(
                item, f"{key}.on_standby_loss", _one_of(STANDBY_LOSS), "degrade"
            ),
            "block_timeout": c.get(item, f"{key}.block_timeout", _duration(0.1, 3600), 10.0),
            "ack_timeout": c.get(item, f"{key}.ack_timeout", _duration(1, 600), 10.0),
        }
        c.problems += _sync_mode_problems(key, item, extra["mode"], extra["on_standby_loss"])
        excludes = c.get(item, f"{key}.excludes", _strings, ())
        interval = c.get(item, f"{key}.interval", _duration(0.05, 60), 1.0)
        full_every = c.get(item, f"{key}.full_every", _duration(0, 604800), 3600.0)
        if path:
            dirs.append(
                SyncDir(
                    path.rstrip("/"),
                    excludes,
                    interval,
                    full_every,
                    peer_path=(peer_path or "").rstrip("/"),
                    **extra,
                )
            )
    paths = [d.path for d in dirs]
    for dup in sorted({p for p in paths if paths.count(p) > 1}):
        c.problems.append(f"sync: {dup} is listed twice")
    c.problems += _nested_synchronous_problems(dirs)
    c.problems += _shared_target_problems(dirs)
    return tuple(dirs)


def _shared_target_problems(dirs: list[SyncDir]) -> list[str]:
    """Two synced directories landing in one place on the standby, or one inside the
    other's there but not here: each full sync deletes what the other sent (--delete),
    and after a failover the data is whichever ran last."""
    out = []
    for i, one in enumerate(dirs):
        for other in dirs[i + 1 :]:
            if one.path == other.path:
                continue  # "listed twice" already
            if one.target == other.target:
                out.append(
                    f"sync: {one.path} and {other.path} both land in {one.target} on the peer; "
                    "give each its own peer_path"
                )
                continue
            for outer, inner in ((one, other), (other, one)):
                if inner.target.startswith(outer.target + "/") and (
                    outer.path + inner.target[len(outer.target) :] != inner.path
                ):
                    out.append(
                        f"sync: {inner.path} lands in {inner.target} on the peer, inside "
                        f"{outer.target} where {outer.path} lands, but is not the same place "
                        f"inside {outer.path} here: the two would delete each other's files "
                        "there; give it a peer_path outside that directory"
                    )
    return out


def _nested_synchronous_problems(dirs: list[SyncDir]) -> list[str]:
    """A synchronous directory inside or around another synced one, one line each.

    The inner mount would be reached through the outer one (every change replicated by
    two unordered streams), or hidden by it; an async one beside a live channel would let
    rsync overwrite an acknowledged change."""
    out = []
    for outer in dirs:
        for inner in dirs:
            if not inner.path.startswith(outer.path + "/"):
                continue
            if SYNCHRONOUS in (outer.mode, inner.mode):
                out.append(
                    f"sync: {inner.path} lies inside {outer.path} and one of them is "
                    'mode = "synchronous": a synchronous directory cannot be nested with '
                    "another synced one; sync only the outer directory, or two separate ones"
                )
    return out


def _control_socket_problem(path: str) -> str | None:
    from mosqit_failover.control import socket_path_problem

    if _PATH_CONTROL.search(path):
        return _PATH_CONTROL_PROBLEM
    return socket_path_problem(path)


def _host_port(value: Any) -> str:
    """HOST:PORT, an IPv6 address in brackets; "[]" (every interface, by accident) and
    unbalanced brackets are refused."""
    text = _string(value)
    host, _, port = text.rpartition(":")
    if host.startswith("[") or host.endswith("]"):
        try:
            ok = host[0] == "[" and host[-1] == "]" and bool(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            ok = False
    else:
        ok = bool(host) and ":" not in host and all(ch.isprintable() for ch in host)
        ok = ok and not any(ch.isspace() for ch in host)
    if not ok or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError('must be "HOST:PORT", like "127.0.0.1:25" or "[::1]:25"')
    return text


_ANY_ADDRESS = ("0.0.0.0", "[::]")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def _one_listener(first: str, second: str) -> bool:
    """Whether two checked HOST:PORTs cannot both be bound: the same port, and the same
    host or a wildcard (0.0.0.0 takes 127.0.0.1's port too)."""
    (host_a, _, port_a), (host_b, _, port_b) = first.rpartition(":"), second.rpartition(":")
    if int(port_a) != int(port_b):
        return False
    hosts = {host_a.lower(), host_b.lower()}
    return len(hosts) == 1 or bool(hosts & set(_ANY_ADDRESS)) or hosts <= set(_LOOPBACK_NAMES)


def _mail_address(value: Any) -> str:
    address = _string(value)
    if not _MAIL.fullmatch(address):
        raise ValueError(f"{address!r} is not a mail address like ops@example.com")
    return address


def _mail_addresses(value: Any) -> tuple[str, ...]:
    return tuple(_mail_address(a) for a in _strings(value))


def _hooks(value: Any) -> tuple[str, ...]:
    hooks = _strings(value)
    for hook in hooks:
        if not hook.startswith("/"):
            raise ValueError(f"{hook!r} must be an absolute path to an executable")
    return hooks


def _event_kinds(value: Any) -> tuple[str, ...]:
    kinds = _strings(value)
    for kind in kinds:
        if kind not in known_kinds():
            raise ValueError(f"{kind!r} is no event kind; known: {', '.join(known_kinds())}")
    return kinds


def _read_alerts(c: _Checker, raw: Mapping[str, Any]) -> Alerts:
    keys = {"hooks", "hook_timeout", "queue", "mail_to", "mail_from", "smtp", "smtp_timeout"}
    data = c.table(raw, "alerts", keys | {"events"})
    d = Alerts()
    return Alerts(
        hooks=c.get(data, "alerts.hooks", _hooks, d.hooks),
        hook_timeout=c.get(data, "alerts.hook_timeout", _duration(0.1, 3600), d.hook_timeout),
        queue=c.get(data, "alerts.queue", _count(1, 100000), d.queue),
        mail_to=c.get(data, "alerts.mail_to", _mail_addresses, d.mail_to),
        mail_from=c.get(data, "alerts.mail_from", _mail_address, d.mail_from),
        smtp=c.get(data, "alerts.smtp", _host_port, d.smtp),
        smtp_timeout=c.get(data, "alerts.smtp_timeout", _duration(0.1, 600), d.smtp_timeout),
        events=c.get(data, "alerts.events", _event_kinds, d.events),
    )


def _read_console(c: _Checker, raw: Mapping[str, Any]) -> Console:
    from mosqit_failover.console.tls import file_problems  # it does not import the config

    keys = {"listen", "token_file", "server_names", "session_idle"}
    data = c.table(raw, "console", keys | {"tls_cert", "tls_key", "behind_tls_proxy"})
    d = Console()
    listen = c.get(data, "console.listen", lambda v: "" if v == "" else _host_port(v), d.listen)
    token = c.get(data, "console.token_file", _string, str(d.token_file))
    if not token.startswith("/"):
        c.fail("console.token_file", token, "must be an absolute path")
    names = c.get(data, "console.server_names", _strings, d.server_names)
    idle = c.get(data, "console.session_idle", _duration(60, 86400), d.session_idle)
    tls = {k: c.get(data, f"console.{k}", _string, None) for k in ("tls_cert", "tls_key")}
    proxy = c.get(data, "console.behind_tls_proxy", _bool, d.behind_tls_proxy)
    usable = True
    for key, value in tls.items():
        if value is not None and not value.startswith("/"):
            c.fail(f"console.{key}", value, "must be an absolute path")
            usable = False
    cert, key_file = tls["tls_cert"], tls["tls_key"]
    if (cert is None) != (key_file is None):
        given, missing = ("tls_cert", "tls_key") if key_file is None else ("tls_key", "tls_cert")
        c.problems.append(
            f"console.{missing}: missing; console.{given} and console.{missing} go together "
            "(both for HTTPS, or neither)"
        )
    elif cert is not None and key_file is not None and usable:
        for key, path, problem in file_problems(Path(cert), Path(key_file)):
            c.fail(f"console.{key}", path, problem)
    if proxy and cert is not None:
        c.fail(
            "console.behind_tls_proxy",
            proxy,
            "is for a plain listener behind a TLS proxy, but tls_cert makes the console do "
            "TLS itself: set one or the other",
        )
    if proxy and listen and not _is_loopback(split_host_port(listen)[0]):
        c.fail(
            "console.behind_tls_proxy",
            proxy,
            f"needs console.listen on a loopback address (not {listen}): the hop from the "
            'proxy is plain HTTP; listen = "127.0.0.1:8405"',
        )
    return Console(
        listen or "",
        Path(token),
        tuple(n.lower() for n in names),
        idle,
        tls_cert=Path(cert) if cert and key_file else None,
        tls_key=Path(key_file) if cert and key_file else None,
        behind_tls_proxy=proxy,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_metrics(c: _Checker, raw: Mapping[str, Any]) -> Metrics:
    data = c.table(raw, "metrics", {"listen"})
    listen = c.get(data, "metrics.listen", lambda v: "" if v == "" else _host_port(v), "")
    return Metrics(listen or "")


_PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_FENCING_KEYS = {"ssh", "ssh_key", "ssh_user", "ssh_port", "power", "timeout"}
_FENCING_KEYS |= {"on_failure", "retry"}


def _fence_command(node: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _string(value)
        try:
            words = shlex.split(text)
        except ValueError as error:
            raise ValueError(f"the command line for {node} cannot be split ({error})") from None
        program = words[0] if words else ""
        absolute = program.startswith("/") and ".." not in program.split("/")
        if not (absolute or _PROGRAM.fullmatch(program)):
            raise ValueError(
                f"the command for {node} must start with an absolute path or a program name, "
                'like "fence_ipmilan --ip 10.0.9.1 --username admin --lanplus '
                "--password-script 'cat /etc/mosqit-failover/ipmi_pw' --action off\""
            )
        return text

    return check


def _read_fencing(
    c: _Checker, raw: Mapping[str, Any], sync: tuple[SyncDir, ...], nodes: tuple[Node, ...]
) -> Fencing:
    data = c.table(raw, "fencing", _FENCING_KEYS)
    d = Fencing()
    key = sync[0].ssh_key if sync else d.ssh_key
    ssh = c.get(data, "fencing.ssh", _bool, d.ssh)
    ssh_key = c.get(data, "fencing.ssh_key", _string, key)
    if "ssh_key" in data and ssh_key and not ssh_key.startswith("/"):
        c.fail("fencing.ssh_key", ssh_key, "must be an absolute path to the private key")
    power: list[tuple[str, str]] = []
    table = data.get("power", {})
    if not isinstance(table, dict):
        c.fail("fencing.power", table, 'must be a table, like power = { beta = "fence_... off" }')
        table = {}
    names = {n.name for n in nodes}
    for node in table:
        if names and node not in names:
            c.problems.append(
                f"fencing.power.{node}: not a node of this config; the keys are the node "
                f"to fence: {', '.join(sorted(names))}"
            )
            continue
        checked = c.get(table, f"fencing.power.{node}", _fence_command(node), None)
        if checked:
            power.append((node, checked))
    on_failure = c.get(data, "fencing.on_failure", _string, d.on_failure)
    if on_failure not in ("wait", "promote"):
        c.fail(
            "fencing.on_failure",
            on_failure,
            'must be "wait" (no promotion until a fence succeeds) or "promote" '
            "(promote anyway: the peer may still hold the VIP and services)",
        )
        on_failure = d.on_failure
    fencing = Fencing(
        ssh=ssh,
        ssh_key=ssh_key,
        ssh_user=c.get(data, "fencing.ssh_user", _name, d.ssh_user),
        ssh_port=c.get(data, "fencing.ssh_port", _count(1, 65535), d.ssh_port),
        power=tuple(power),
        timeout=c.get(data, "fencing.timeout", _duration(1, 600), d.timeout),
        on_failure=on_failure,
        retry=c.get(data, "fencing.retry", _duration(0.1, 3600), d.retry),
    )
    if not fencing.ssh and not table and fencing.on_failure == "wait":
        c.fail(
            "fencing.ssh",
            False,
            'with no power command no fence can succeed, and on_failure = "wait" would then '
            "never promote on an OS problem; set ssh = true, add fencing.power commands, or "
            'on_failure = "promote"',
        )
    return fencing


def _read_order(
    c: _Checker, cluster: Mapping[str, Any], preferred: str, names: list[str]
) -> tuple[str, ...]:
    """`cluster.order`: which node goes first, then second... among candidates alike.

    Two nodes may say just `preferred` (the order is then preferred, other); from
    three nodes on, the order must be written out: a sorted default would decide
    which room serves after a failure without anyone having said so.
    """
    everyone = ", ".join(f'"{n}"' for n in names)
    if preferred and names and preferred not in names:
        c.fail("cluster.preferred", preferred, f"must be one of the nodes: {everyone}")
    given = cluster.get("order") if isinstance(cluster, dict) else None
    if given is None:
        if len(names) > 2:
            c.problems.append(
                f"cluster.order: missing; with {len(names)} nodes write the order in which "
                f"they take over, like order = [{everyone}]"
            )
            return tuple(names)
        first = preferred if preferred in names else min(names, default="")
        return tuple([first, *sorted(n for n in names if n != first)]) if names else ()
    fix = f"list every node once, in the order they take over, like order = [{everyone}]"
    if not isinstance(given, list) or not all(isinstance(x, str) for x in given):
        c.fail("cluster.order", given, fix)
        return tuple(names)
    spelled = {n.lower(): n for n in names}
    unknown = [
        f"{x!r} (the node is spelled {spelled[x.lower()]})" if x.lower() in spelled else repr(x)
        for x in given
        if x not in names
    ]
    missing = [n for n in names if n not in given]
    twice = sorted({x for x in given if given.count(x) > 1})
    if names and (unknown or missing or twice):
        said = [f"unknown {', '.join(unknown)}" if unknown else ""]
        said += [f"missing {', '.join(missing)}" if missing else ""]
        said += [f"twice {', '.join(twice)}" if twice else ""]
        c.fail("cluster.order", given, f"{'; '.join(x for x in said if x)}: {fix}")
        return tuple(names)
    if preferred and given and preferred != given[0]:
        c.fail(
            "cluster.preferred",
            preferred,
            f"contradicts cluster.order, which puts {given[0]} first; keep only order",
        )
    return tuple(given)


def _check_addresses(
    c: _Checker, vip: Vip | None, nodes: tuple[Node, ...], networks: tuple[Network, ...]
) -> None:
    seen: dict[ipaddress.IPv4Address, str] = {}
    for network in networks:
        if network.switch:
            seen[network.switch] = f"networks.{network.name}.switch"
    for node in nodes:
        for a in node.attachments:
            where = f"nodes.{node.name}.{a.network}.address"
            if a.address in seen:
                c.problems.append(f"{where} = '{a.address}': already used by {seen[a.address]}")
            seen[a.address] = where
    if vip is None:
        return
    if vip.address.ip in seen:
        c.problems.append(f"vip.address = '{vip.address}': already used by {seen[vip.address.ip]}")
    home = next((n for n in networks if vip.address.ip in n.subnet), None)
    if networks and home is None:
        subnets = ", ".join(str(n.subnet) for n in networks)
        c.problems.append(
            f"vip.address = '{vip.address}': outside every configured network ({subnets}); "
            "pick a free address in one of them"
        )
    if home is not None:
        _check_vip_in(c, vip, home, nodes)
    for node in nodes:
        ports = {a.network: a.interface for a in node.attachments}
        if home is not None and home.name in ports:
            continue  # `_check_vip_in` names the one port it must be
        if node.vip_interface not in ports.values():
            c.problems.append(
                f"nodes.{node.name}: the VIP interface {node.vip_interface!r} is not one of its "
                "network interfaces; set vip.interface or nodes.NAME.vip_interface"
            )


def _check_vip_in(c: _Checker, vip: Vip, home: Network, nodes: tuple[Node, ...]) -> None:
    """The VIP as a host of its network, on each node's port to that network: another
    prefix adds a route to the active node (a /8 takes a whole range to that port), and
    on another port the address answers on the other switch, where no client looks."""
    subnet = home.subnet
    where = f"vip.address = '{vip.address}'"
    why = _not_a_host(vip.address.ip, subnet)
    if why:
        c.problems.append(f"{where}: {why}; pick a free host address of {subnet}")
    prefix = vip.address.network.prefixlen
    if prefix not in (subnet.prefixlen, 32):
        c.problems.append(
            f"{where}: the prefix /{prefix} differs from network {home.name}'s "
            f"({subnet}): the active node would route {vip.address.network} to that port; "
            f"write {vip.address.ip}/{subnet.prefixlen} (or /32)"
        )
    for node in nodes:
        port = next((a.interface for a in node.attachments if a.network == home.name), None)
        if port is not None and node.vip_interface != port:
            c.problems.append(
                f"nodes.{node.name}: the VIP is in network {home.name} ({subnet}), whose port "
                f"on {node.name} is {port}, not {node.vip_interface}: set vip.interface (or "
                f"nodes.{node.name}.vip_interface) to {port!r}"
            )


PLACEHOLDER = "FILL-IN"  # import-heartbeat writes "FILL-IN: what goes here" where it could not know


def _placeholders(value: Any, key: str = "", depth: int = 0) -> list[str]:
    """One problem per "FILL-IN: ..." value left in the config, naming its key and what to put.
    The import writes them at most 4 levels deep: deeper nesting is left to the checks."""
    if isinstance(value, str) and value.startswith(PLACEHOLDER):
        what = value[len(PLACEHOLDER) :].lstrip(": ") or "a value"
        return [f"{key}: fill in {what} (a placeholder left by import-heartbeat)"]
    if depth > 4:
        return []
    items: list[tuple[str, Any]] = []
    found: list[str] = []
    if isinstance(value, dict):  # a name with a dot (a node's FQDN) is quoted, as in the file
        items = [(f"{key}.{k}" if "." not in k else f'{key}."{k}"', v) for k, v in value.items()]
        for name in value:  # a node name the import could not know is a table's name
            if isinstance(name, str) and name.startswith(PLACEHOLDER):
                what = name[len(PLACEHOLDER) :].lstrip(": ") or "a name"
                where = f"{key}.<name>".lstrip(".")
                found.append(
                    f"{where}: fill in {what} as the table's name, like [{key or 'table'}.alpha] "
                    "(a placeholder left by import-heartbeat)"
                )
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    return found + [p for k, v in items for p in _placeholders(v, k.lstrip("."), depth + 1)]


def parse(text: str, source: str = "<config>", *, config_dir: Path | None = None) -> Config:
    """Parse and validate TOML text; raise ConfigError naming every problem.

    `config_dir` (the file's directory, from load) is kept out of [[sync]] too.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, [f"not valid TOML: {error}; fix the syntax there"]) from None
    except RecursionError:
        fix = "a config needs a few levels at most: remove the nesting"
        raise ConfigError(source, [f"a value is nested too deeply; {fix}"]) from None
    placeholders = _placeholders(raw)
    if placeholders:  # the other checks would only complain about the placeholders' values
        raise ConfigError(source, placeholders)
    c = _Checker()
    top = {"cluster", "timing", "vip", "networks", "nodes", "resources", "sync"}
    top |= {"alerts", "metrics", "console"}
    top |= {"fencing"}
    for unknown in sorted(set(raw) - top):
        c.problems.append(f"{unknown}: unknown table or key; allowed: {', '.join(sorted(top))}")
    cluster = c.table(
        raw,
        "cluster",
        {"name", "preferred", "order", "failback", "secret_file", "port", "state_dir"}
        | {"control_socket"},
    )
    name = c.get(cluster, "cluster.name", _name, fix='add name = "mycluster" under [cluster]')
    preferred = c.get(cluster, "cluster.preferred", _name, "")
    failback = c.get(cluster, "cluster.failback", _bool, False)
    secret = c.get(cluster, "cluster.secret_file", _absolute_path, "/etc/mosqit-failover/secret")
    port = c.get(cluster, "cluster.port", _count(1, 65535), 5405)
    state_dir = c.get(cluster, "cluster.state_dir", _own_directory, "/var/lib/mosqit-failover")
    control = c.get(cluster, "cluster.control_socket", _string, str(DEFAULT_CONTROL_SOCKET))
    control_problem = control and _control_socket_problem(control)
    if control_problem:
        c.fail("cluster.control_socket", control, control_problem)
    timing = _read_timing(c, raw)
    vip_table = c.table(
        raw, "vip", {"address", "interface", "garp_count", "garp_interval", "garp_refresh"}
    )
    vip_address = c.get(vip_table, "vip.address", _interface_address, fix='like "192.0.2.50/24"')
    vip_if = c.get(
        vip_table, "vip.interface", _ifname, fix='the interface for the VIP, like "eth0"'
    )
    networks = _read_networks(c, raw)
    nodes = _read_nodes(c, raw, networks, vip_if or "")
    vip = None
    if vip_address and vip_if:
        vip = Vip(
            vip_address,
            vip_if,
            c.get(vip_table, "vip.garp_count", _count(0, 100), 5),
            c.get(vip_table, "vip.garp_interval", _duration(0, 10), 0.2),
            c.get(vip_table, "vip.garp_refresh", _garp_refresh, 0.0),
        )
    _check_addresses(c, vip, nodes, networks)
    order = _read_order(c, cluster, preferred, [n.name for n in nodes])
    resources = _read_resources(c, raw)
    sync = _read_sync(c, raw, _own_dirs(state_dir, secret, config_dir))
    alerts = _read_alerts(c, raw)
    metrics = _read_metrics(c, raw)
    console = _read_console(c, raw)
    if metrics.listen and console.listen and _one_listener(metrics.listen, console.listen):
        # one of the two would fail to bind at every start (a helper's finding)
        c.problems.append(
            f"metrics.listen = {metrics.listen!r}: console.listen = {console.listen!r} is the "
            "same port on an address it covers; give each its own port, like "
            'metrics.listen = "127.0.0.1:9405"'
        )
    fencing = _read_fencing(c, raw, sync, nodes)
    if c.problems or vip is None:
        raise ConfigError(source, c.problems or ["vip: missing [vip] table"])
    return Config(
        cluster=name,
        order=order,
        failback=failback,
        secret_file=Path(secret),
        port=port,
        state_dir=Path(state_dir),
        control_socket=Path(control),
        timing=timing,
        vip=vip,
        networks=networks,
        nodes=nodes,
        resources=resources,
        sync=sync,
        alerts=alerts,
        metrics=metrics,
        console=console,
        fencing=fencing,
    )


def load(path: Path) -> Config:
    """Read the config file (the agent, check-config, sync-receive, reload) and parse it.

    The file holds commands run as root (resources, hooks, fencing): it must be
    a regular file that only root can change (or, for a user who is not root,
    only that user or root), in directories others cannot write to.
    """
    text = _read_trusted(path)
    return parse(text, str(path), config_dir=Path(os.path.abspath(path)).parent)


def _read_trusted(path: Path) -> str:
    """The config file's text, read as `load` needs it: a regular file no one else can
    change, at most MAX_CONFIG_BYTES, UTF-8 (never blocking on a FIFO, never reading
    /dev/zero for ever). ConfigError naming the problem otherwise."""
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(source, ["file not found; pass --config PATH or create it"]) from None
    except OSError as error:
        raise ConfigError(source, [_open_problem(error)]) from None
    try:
        st = os.fstat(fd)  # the file opened, not whatever the path names by now
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(source, ["not a regular file; pass --config with the config file"])
        problems = _trust_problems(path, st)
        if problems:
            raise ConfigError(source, problems)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise ConfigError(source, [f"cannot read: {error}"]) from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        limit = f"larger than {MAX_CONFIG_BYTES >> 20} MiB"
        raise ConfigError(source, [f"{limit}; a config is a few KiB: is it the right file?"])
    raw = b"".join(chunks)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(source, [_NOT_UTF8 + " (it is UTF-16; save it as UTF-8)"])
    if raw.startswith(b"\xef\xbb\xbf"):  # "UTF-8 with BOM": TOML takes no BOM
        raise ConfigError(source, ["begins with a byte-order mark; save it as UTF-8 without BOM"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            source, [f"{_NOT_UTF8}: byte {raw[error.start]:#04x} on line {line}; save it as UTF-8"]
        ) from None


_NOT_UTF8 = "is not UTF-8 text"


def _open_problem(error: OSError) -> str:
    """Why the config file cannot be opened, with the fix."""
    if error.errno == errno.ELOOP:
        return "is a symlink loop (or too many links in a row); point --config at the file"
    if error.errno == errno.EACCES:
        return "permission denied; run as root (the agent and its tools read it as root)"
    if error.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory; check the path"
    return f"cannot read: {error.strerror or error}"


def _trust_problems(path: Path, st: os.stat_result) -> list[str]:
    """Who besides root (or the user running us) could change the config file."""
    me = os.geteuid()
    owners = {0, me}
    problems = []
    wrong = _who_else_writes(st, owners)
    if wrong:
        problems.append(
            f"{wrong}, but it holds commands run as root; "
            f"fix: chown root:root {path} && chmod 0644 {path}"
        )
    seen: set[Path] = set()
    for start in (Path(os.path.abspath(path)).parent, Path(os.path.realpath(path)).parent):
        for directory in (start, *start.parents):
            if directory in seen:
                continue
            seen.add(directory)
            try:
                dst = os.stat(directory)
            except OSError:
                continue
            sticky = dst.st_mode & stat.S_ISVTX
            wrong = _who_else_writes(dst, owners, sticky=bool(sticky))
            if wrong:
                problems.append(
                    f"its directory {directory} {wrong}, so others could "
                    f"replace the config; fix: chown root:root {directory} && "
                    f"chmod go-w {directory}"
                )
    return problems


def _who_else_writes(st: os.stat_result, owners: set[int], sticky: bool = False) -> str:
    """'' when only an allowed owner can write; else what is wrong, for a problem line."""
    mode = stat.S_IMODE(st.st_mode)
    wrong = []
    if st.st_uid not in owners:
        wrong.append(f"is owned by uid {st.st_uid}, not root")
    writers = [who for who, bit in (("group", 0o020), ("others", 0o002)) if mode & bit]
    if writers and not sticky:
        wrong.append(f"is writable by {' and '.join(writers)} (mode {mode:04o})")
    return " and ".join(wrong)


def pick_node(config: Config, wanted: str | None, hostname: str, source: str = "node") -> str:
    """The node this agent runs as: --node, else this host's name as `uname -n` gives
    it (heartbeat's rule, so an FQDN node name works), else its short form.

    A node's name is spelled one way, its [nodes.NAME] key, and --node must match it
    exactly (as cluster.order and switchover's target do); the host's name matches
    ignoring case, as host names do (parse refuses names that differ only by case,
    so at most one node matches), and the node's own spelling is returned."""
    names = [n.name for n in config.nodes]
    if wanted:
        if wanted in names:
            return wanted
        raise ConfigError(
            source,
            [
                f"--node {wanted!r} is not a node of this config ({', '.join(names)}): pass "
                "one of them"
            ],
        )
    spelled = {n.lower(): n for n in names}
    short = hostname.split(".")[0]
    for name in (hostname, short):
        if name.lower() in spelled:
            return spelled[name.lower()]
    longer = [n for n in names if n.split(".")[0].lower() == short.lower()]
    if longer:  # an FQDN typed for the node, a short host name (or another domain)
        raise ConfigError(
            source,
            [
                f"this host's name is {hostname!r}, and the config names {longer[0]!r}: "
                f"not the same name, so not taken for this host. Name the node as "
                f"`uname -n` says ([nodes.{hostname}] on every node) or pass --node {longer[0]}"
            ],
        )
    raise ConfigError(
        source,
        [
            f"this host's name {hostname!r} (nor its short form) is not a node of this config "
            f"({', '.join(names)}); name the node after `uname -n` or pass --node NAME"
        ],
    )
