"""heartbeat's ha.cf for import-heartbeat: nodes, timing, links, failback; and what the
host the import runs on says of itself (`HostFacts`), to tell whose address is whose.

heartbeat's `ucast IFACE ADDR` names the PEER's address as seen from the node whose
ha.cf it is, and node names are `uname -n`, compared case-insensitively. Which node is
which comes from this host (its name, its interfaces' addresses, /etc/hosts) or from
`--node NAME`; an address that cannot be placed is a "FILL-IN: ..." placeholder.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mosqit_failover.config import PLACEHOLDER

IGNORED_DIRECTIVES = {
    "logfile": "logs go to the journal",
    "debugfile": "logs go to the journal",
    "logfacility": "logs go to the journal",
    "use_logd": "logs go to the journal",
    "debug": "logs go to the journal",
    "warntime": "no separate warning time; decisions are logged when made",
    "serial": "serial links are not supported: the nodes talk over both Ethernet networks",
    "baud": "serial links are not supported",
    "crm": "a CRM (Pacemaker) configuration is not converted; only haresources is",
    "respawn": "programs are not respawned by the agent; use systemd units",
    "apiauth": "heartbeat's API is not provided",
    "watchdog": "the agent uses systemd's watchdog (WatchdogSec in the unit)",
    "compression": "messages are small and never compressed",
    "compression_threshold": "messages are small and never compressed",
    "traditional_compression": "messages are small and never compressed",
    "coredumps": "systemd handles core dumps",
    "realtime": "not needed",
    "uuidfrom": "nodes are named by hostname",
    "autojoin": "the pair is fixed: exactly two nodes",
    "hopfudge": "not needed",
    "ping_group": "ping groups are not supported; each network's switch is probed instead",
    "deadping": "ping nodes share the switch timeout (timing.switch_timeout)",
    "conn_logd_time": "logs go to the journal",
}


KNOWN_DIRECTIVES = (
    *IGNORED_DIRECTIVES,
    *("node", "keepalive", "deadtime", "initdead", "ucast", "bcast", "udp", "mcast", "ping"),
    *("auto_failback", "nice_failback", "udpport"),
)


_TIME = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s)?")  # ASCII digits, as heartbeat reads them


_BOOLEAN = {"on": True, "yes": True, "true": True, "y": True, "1": True}
_BOOLEAN |= {"off": False, "no": False, "false": False, "n": False, "0": False}


@dataclass(frozen=True)
class HostFacts:
    """What the importing host can tell: its `uname -n`, the IPv4 addresses of its
    interfaces and its /etc/hosts (lower-case name -> addresses). Run on a node of the
    heartbeat pair, these say which node it is and which addresses are whose."""

    hostname: str = ""
    addresses: Mapping[str, tuple[ipaddress.IPv4Interface, ...]] = field(default_factory=dict)
    hosts: Mapping[str, tuple[ipaddress.IPv4Address, ...]] = field(default_factory=dict)

    @classmethod
    def of_this_host(cls, hosts_file: Path = Path("/etc/hosts")) -> HostFacts:
        try:
            hosts = parse_hosts(hosts_file.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            hosts = {}
        return cls(os.uname().nodename, _interface_addresses(), hosts)


def parse_hosts(text: str) -> dict[str, tuple[ipaddress.IPv4Address, ...]]:
    """/etc/hosts text -> lower-case name or alias -> its IPv4 addresses."""
    hosts: dict[str, tuple[ipaddress.IPv4Address, ...]] = {}
    for line in text.splitlines():
        address, *names = line.split("#", 1)[0].split() or [""]
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            continue  # IPv6, or not an address line
        for name in names:
            hosts[name.lower()] = (*hosts.get(name.lower(), ()), ip)
    return hosts


def _interface_addresses() -> dict[str, tuple[ipaddress.IPv4Interface, ...]]:
    """This host's IPv4 addresses by interface, from `ip -j -4 addr`; {} when ip fails."""
    try:
        done = subprocess.run(
            ["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=10
        )
        links = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    found: dict[str, tuple[ipaddress.IPv4Interface, ...]] = {}
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                address = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                found[link["ifname"]] = (*found.get(link["ifname"], ()), address)
    return found


@dataclass
class HaCf:
    nodes: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    interfaces: dict[str, list[ipaddress.IPv4Address]] = field(default_factory=dict)
    pings: list[tuple[ipaddress.IPv4Address, str]] = field(default_factory=list)
    auto_failback: str = ""  # on, off or legacy as written (nice_failback translated); "" none


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) without comments and blank lines; backslash continues a line."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(
        # "utf-8-sig": an editor's byte-order mark is no part of the first directive
        path.read_text(encoding="utf-8-sig", errors="replace").splitlines(),
        1,
    ):
        text = raw.split("#", 1)[0].rstrip()
        if pending is not None:
            text = pending[1] + " " + text.strip()
            number = pending[0]
            pending = None
        if text.endswith("\\"):
            pending = (number, text[:-1])
            continue
        if text.strip():
            out.append((number, text.strip()))
    if pending is not None and pending[1].strip():
        out.append(pending)
    return out


MAX_SECONDS = 86400.0  # a day: more is a typo, and beyond float range it is infinity


def _seconds(text: str) -> float:
    match = _TIME.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a time (like 2, 500ms or 2s)")
    seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if not seconds <= MAX_SECONDS:
        raise ValueError(f"{text[:20]}{'...' if len(text) > 20 else ''} is more than a day")
    return seconds


def ascii_number(text: str) -> bool:
    """ASCII digits only, as heartbeat (atoi) reads a number: str.isdigit() also takes "²",
    which int() refuses."""
    return re.fullmatch(r"[0-9]+", text) is not None


def did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """' (did you mean X?)' for a close choice, case-insensitively; '' for none."""
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    return f" (did you mean {lowered[close[0]]}?)" if close else ""


def read_hacf(path: Path, problems: list[str], notes: list[str]) -> HaCf:
    cf = HaCf()
    for number, text in read_lines(path):
        where = f"{path}:{number}"
        directive, *args = text.split()
        if directive.endswith(":"):  # "keepalive: 2" is accepted by heartbeat too
            directive = directive[:-1]
        try:
            _hacf_line(cf, directive, args, notes, where)
        except ValueError as error:
            problems.append(f"{where}: {directive}: {error}")
    return cf


def _hacf_line(cf: HaCf, directive: str, args: list[str], notes: list[str], where: str) -> None:
    def need(count: int, form: str) -> None:
        if len(args) < count:
            raise ValueError(f"expected '{directive} {form}'")

    if directive == "node":
        need(1, "NAME [NAME...]")
        known = {n.lower() for n in cf.nodes}
        twice = []
        for name in args:  # heartbeat compares node names case-insensitively
            if name.lower() in known:
                twice.append(name)
            else:
                known.add(name.lower())
                cf.nodes.append(name)
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice; list each node once")
    elif directive in ("keepalive", "deadtime", "initdead", "warntime"):
        need(1, "TIME")
        cf.times[directive] = _seconds(args[0])
        if directive == "warntime":
            notes.append(f"{where}: warntime not carried over: {IGNORED_DIRECTIVES['warntime']}")
    elif directive == "ucast":
        need(2, "INTERFACE ADDRESS")
        try:
            address = ipaddress.IPv4Address(args[1])
        except ValueError:
            raise ValueError(f"{args[1]!r} is not an IPv4 address") from None
        cf.interfaces.setdefault(args[0], []).append(address)
    elif directive in ("bcast", "udp"):
        need(1, "INTERFACE [INTERFACE...]")
        for interface in args:
            cf.interfaces.setdefault(interface, [])
        if directive == "udp":
            notes.append(f"{where}: udp is heartbeat's old spelling of bcast: read as bcast")
    elif directive == "mcast":
        need(1, "INTERFACE GROUP PORT TTL LOOP")
        cf.interfaces.setdefault(args[0], [])
        notes.append(
            f"{where}: mcast {args[0]}: multicast is not used; the agent sends to the peer's "
            f"address on each network, {args[0]} among them"
        )
    elif directive == "ping":
        need(1, "ADDRESS [ADDRESS...]")
        for arg in args:
            try:
                cf.pings.append((ipaddress.IPv4Address(arg), where))
            except ValueError:
                raise ValueError(f"{arg!r} is not an IPv4 address") from None
    elif directive == "auto_failback":
        need(1, "on|off|legacy")
        value = args[0].lower()
        if value != "legacy" and value not in _BOOLEAN:
            raise ValueError(f"{args[0]!r}: expected on, off or legacy")
        cf.auto_failback = "legacy" if value == "legacy" else "on" if _BOOLEAN[value] else "off"
    elif directive == "nice_failback":
        need(1, "on|off")
        if args[0].lower() not in _BOOLEAN:
            raise ValueError(f"{args[0]!r}: expected on or off")
        # nice_failback on is auto_failback off (heartbeat accepts both spellings)
        cf.auto_failback = "off" if _BOOLEAN[args[0].lower()] else "on"
    elif directive == "udpport":
        need(1, "PORT")
        if not ascii_number(args[0]):
            raise ValueError(f"{args[0]!r} is not a port number")
        notes.append(
            f"{where}: udpport {args[0]} not carried over: the agent speaks its own protocol, "
            "on cluster.port (default 5405); open that port between the nodes"
        )
    elif directive in IGNORED_DIRECTIVES:
        notes.append(f"{where}: {directive} not carried over: {IGNORED_DIRECTIVES[directive]}")
    else:
        hint = did_you_mean(directive, KNOWN_DIRECTIVES)
        notes.append(f"{where}: unknown directive {directive!r} ignored{hint}")


def node_named(name: str, nodes: list[str]) -> str | None:
    """The ha.cf spelling of node `name`: heartbeat compares node names case-insensitively."""
    return next((node for node in nodes if node.lower() == name.lower()), None)


def short_name(name: str) -> str:
    return name.split(".")[0].lower()


def node_like(name: str, nodes: list[str]) -> str | None:
    """The node `name` stands for: its own name in any case, else the one node whose short
    name is the same (pbx1 for pbx1.local)."""
    same = node_named(name, nodes) or ""
    alike = [node for node in nodes if short_name(node) == short_name(name)]
    return same or (alike[0] if len(alike) == 1 else None)


@dataclass(frozen=True)
class Network:
    name: str  # a or b
    interface: str
    addresses: dict[str, str]  # node -> address, or a FILL-IN text
    subnet: str  # or a FILL-IN text

    def holds(self, address: ipaddress.IPv4Address) -> bool:
        """Whether `address` lies in the subnet (never in a FILL-IN one)."""
        return not self.subnet.startswith(PLACEHOLDER) and address in ipaddress.IPv4Network(
            self.subnet
        )


def which_node(
    cf: HaCf, facts: HostFacts, node: str | None, notes: list[str]
) -> tuple[str | None, bool]:
    """(the node whose ha.cf this is, whether this host is that node)."""
    # heartbeat's own rule: this host is the node named after `uname -n` (or its short form)
    here = node_named(facts.hostname, cf.nodes) or node_named(
        facts.hostname.split(".")[0], cf.nodes
    )
    if node:
        named = node_named(node, cf.nodes)
        if named is None:
            raise ValueError(f"--node {node!r} is not a node of ha.cf ({', '.join(cf.nodes)})")
        return named, here == named
    if here:
        notes.append(f"this host ({facts.hostname}) is node {here}: its addresses are used")
    return here, here is not None


def _network(
    name: str, interface: str, cf: HaCf, facts: HostFacts, me: str | None, on_me: bool,
    notes: list[str],
) -> Network:  # fmt: skip
    """Whose address each ucast address is, and the subnet, from what is known."""
    nodes = cf.nodes
    local = facts.addresses.get(interface, ()) if on_me else ()
    found: dict[str, ipaddress.IPv4Address] = {}
    subnet = local[0].network if local else None
    if me and local:
        found[me] = local[0].ip
    # the address of this host in ucast is heartbeat's identical-file convention: skipped
    remaining = [a for a in cf.interfaces[interface] if a not in {i.ip for i in local}]
    for node in nodes:  # /etc/hosts of this host, by the full name and by the short one
        for address in (*facts.hosts.get(node.lower(), ()), *facts.hosts.get(short_name(node), ())):
            if node not in found and (address in remaining or (subnet and address in subnet)):
                found[node] = address
                notes.append(f"network {name} ({interface}): {node} is {address} (/etc/hosts)")
    remaining = [a for a in remaining if a not in found.values()]
    missing = [n for n in nodes if n not in found]
    if me and len(remaining) == 1 and len(missing) == 2 and cf.interfaces[interface]:
        peer = next(n for n in nodes if n != me)
        found[peer], remaining, missing = remaining[0], [], [me]
        notes.append(
            f"network {name} ({interface}): ucast {found[peer]} is {peer}'s: a ucast line "
            f"names the peer's address, and this ha.cf is {me}'s"
        )
    if len(remaining) == 1 and len(missing) == 1:
        found[missing[0]] = remaining[0]
        notes.append(
            f"network {name} ({interface}): ucast {remaining[0]} is {missing[0]}'s, "
            "the node whose address was not known"
        )
    elif len(remaining) == len(missing) == 2:
        found.update(zip(nodes, remaining, strict=True))
        given = ", ".join(f"{n} {a}" for n, a in zip(nodes, remaining, strict=True))
        notes.append(
            f"network {name} ({interface}): the ucast addresses were given to the nodes in "
            f"ha.cf's order ({given}); check them"
        )
    elif remaining:
        notes.append(
            f"network {name} ({interface}): ucast {', '.join(map(str, remaining))} names the "
            "peer's address as seen from the node whose ha.cf this is, which cannot be told "
            "here: fill the addresses in, or run again with --node NAME (that node)"
        )
    if subnet is None and found:
        first = next(iter(found.values()))
        subnet = ipaddress.IPv4Network(f"{first}/24", strict=False)
        notes.append(f"network {name}: subnet {subnet} assumed (/24); check it")
    addresses = {
        node: str(found[node])
        if node in found
        else f"{PLACEHOLDER}: {node}'s address on {interface}"
        for node in nodes
    }
    subnet_text = str(subnet) if subnet else f"{PLACEHOLDER}: subnet of {interface}"
    return Network(name, interface, addresses, subnet_text)


def read_networks(
    cf: HaCf, facts: HostFacts, me: str | None, on_me: bool, notes: list[str]
) -> list[Network]:
    interfaces = list(cf.interfaces)
    if len(interfaces) > 2:
        notes.append(f"only two networks are used: {', '.join(interfaces[2:])} not carried over")
    networks = [
        _network(name, interface, cf, facts, me, on_me, notes)
        for name, interface in zip(("a", "b"), interfaces, strict=False)
    ]
    if len(networks) < 2:
        notes.append(
            "heartbeat used fewer than two networks; the agent needs two (one per switch): "
            "fill in the second network's interface, subnet and addresses"
        )
    while len(networks) < 2:
        name = "ab"[len(networks)]
        interface = f"{PLACEHOLDER}: interface of network {name}"
        addresses = {n: f"{PLACEHOLDER}: {n}'s address on network {name}" for n in cf.nodes}
        networks.append(
            Network(name, interface, addresses, f"{PLACEHOLDER}: subnet of network {name}")
        )
    return networks
