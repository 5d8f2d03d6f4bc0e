"""What the nodes look like, and whether both networks work: read only, changes nothing.

`gather` reads a node's hostname, interfaces (carrier, IPv4 addresses) and
whether mosqit-failover is installed; `discover` finds the two networks
every node is on; `connectivity` pings, from each node, the switch and every
other node on each network and returns a table whose failed rows carry the fix.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mosqit_failover.wizards.ssh import Session, SshError

NETWORK_NAMES = ("a", "b")
FACTS_COMMAND = (
    "uname -n; ip -j addr show; "
    'bin=$(command -v mosqit-failover || true); echo "$bin"; '
    '[ -n "$bin" ] && head -n1 "$(readlink -f "$bin")" || echo'
)


class CheckError(Exception):
    """The nodes are not ready for the pair; the message says what to fix first."""


@dataclass(frozen=True)
class Iface:
    name: str
    carrier: bool
    addresses: tuple[ipaddress.IPv4Interface, ...]


@dataclass(frozen=True)
class Facts:
    hostname: str
    interfaces: Mapping[str, Iface]
    binary: str  # path of mosqit-failover on the node, "" if missing
    python: str  # the interpreter it runs with (from its #! line), "" if unknown
    # every IPv4 address the node holds, secondary ones (a VIP) included
    held: frozenset[ipaddress.IPv4Address] = frozenset()

    def port_in(self, subnet: ipaddress.IPv4Network) -> Port | None:
        for iface in self.interfaces.values():
            for address in iface.addresses:
                if address.network == subnet:
                    return Port(iface.name, address)
        return None


@dataclass(frozen=True)
class Port:
    interface: str
    address: ipaddress.IPv4Interface


@dataclass
class Network:
    """One of the two networks, with each node's port on it."""

    name: str
    subnet: ipaddress.IPv4Network
    ports: dict[str, Port]
    switch: ipaddress.IPv4Address | None = None


def parse_facts(text: str) -> Facts:
    """Parse the output of FACTS_COMMAND."""
    lines = text.split("\n")
    if len(lines) < 4:
        raise CheckError(f"unexpected answer from the node: {text[:200]!r}")
    try:
        interfaces, held = _interfaces(json.loads(lines[1]))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise CheckError(
            f"the node's `ip -j addr show` answer is not what iproute2 prints "
            f"({type(error).__name__}: {error}; it began {lines[1][:120]!r}): is `ip` "
            "iproute2's, and recent enough for -j (Debian 10 and later)?"
        ) from None
    shebang = lines[3].strip()
    python = shebang[2:].split()[0] if shebang.startswith("#!") and len(shebang) > 2 else ""
    hostname = lines[0].strip().split(".")[0]
    return Facts(hostname, interfaces, lines[2].strip(), python, frozenset(held))


def _interfaces(
    listed: list[dict[str, Any]],
) -> tuple[dict[str, Iface], set[ipaddress.IPv4Address]]:
    """The interfaces in `ip -j addr show`'s list, and every IPv4 address held."""
    interfaces = {}
    held: set[ipaddress.IPv4Address] = set()
    for item in listed:
        name = str(item["ifname"])
        if name == "lo":
            continue
        inet = [a for a in item.get("addr_info", []) if a.get("family") == "inet"]
        held |= {ipaddress.IPv4Address(a["local"]) for a in inet}  # secondary ones too
        flags = set(item.get("flags", []))
        addresses = tuple(
            ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            for a in inet
            if not a.get("secondary")
        )
        carrier = "LOWER_UP" in flags and "NO-CARRIER" not in flags
        interfaces[name] = Iface(name, carrier, addresses)
    return interfaces, held


def gather(session: Session) -> Facts:
    result = session.run(FACTS_COMMAND, check=True)
    try:
        return parse_facts(result.out)
    except CheckError as error:
        raise CheckError(f"{session.label}: {error}") from None


def _node_local(subnet: ipaddress.IPv4Network, facts: Mapping[str, Facts]) -> bool:
    """Whether two nodes hold the same address in ``subnet``: a bridge of each node's own
    (podman's cni-podman0 10.88.0.1/16, docker0, virbr0), not a network between them. It
    was taken for network B, and every check passed as each node pinged itself (a
    helper's finding)."""
    held = [p.address.ip for f in facts.values() if (p := f.port_in(subnet)) is not None]
    return len(set(held)) < len(held)


def discover(
    facts: Mapping[str, Facts], first: ipaddress.IPv4Address | None = None
) -> list[Network]:
    """The networks every node has an address in, network a first (the one of ``first``).

    Raises CheckError when there are fewer than two, naming each node that lacks
    an address in a network the others share.
    """
    subnets = {
        node: {a.network for i in f.interfaces.values() for a in i.addresses}
        for node, f in facts.items()
    }
    shared_set = {s for s in set.intersection(*subnets.values()) if not _node_local(s, facts)}
    shared = sorted(shared_set, key=lambda s: (first not in s if first else 0, s))
    if len(shared) < 2:
        # a network some node lacks, which at least two others (or the other of a pair) share
        wanted = {
            s for s in set.union(*subnets.values()) - shared_set
            if sum(s in mine for mine in subnets.values()) >= min(2, len(subnets) - 1)
        }  # fmt: skip
        problems = []
        for subnet in sorted(wanted):
            having = [n for n in facts if subnet in subnets[n]]
            other = having[0]
            port = facts[other].port_in(subnet)
            for node in facts:
                if subnet not in subnets[node]:
                    problems.append(
                        f"{node} has no address in {subnet} (which {other} has on "
                        f"{port.interface if port else '?'})"
                    )
        what = "the pair needs" if len(facts) == 2 else "every node needs"
        raise CheckError(
            f"the nodes share {len(shared)} network(s), {what} two (one per switch): "
            + ("; ".join(problems) or "each node needs an address on network A and on B")
            + ". Connect the missing uplink, give it an address in that network, and re-run."
        )
    networks = []
    for name, subnet in zip(NETWORK_NAMES, shared[:2], strict=True):
        ports = {}
        for node, f in facts.items():
            port = f.port_in(subnet)
            assert port is not None
            ports[node] = port
        networks.append(Network(name, subnet, ports))
    for node in facts:
        interfaces = [net.ports[node].interface for net in networks]
        if interfaces[0] == interfaces[1]:
            raise CheckError(
                f"{node} reaches both networks through {interfaces[0]}: each network needs "
                "its own interface (one cable to each switch)"
            )
    return networks


@dataclass
class Row:
    check: str
    results: dict[str, tuple[bool, str]] = field(default_factory=dict)
    fix: str = ""  # "{node}" stands for the node whose check failed
    itself: str = ""  # the node the row is about (shown as "-" in its own column)


def connectivity(
    sessions: Mapping[str, Session], facts: Mapping[str, Facts], networks: list[Network]
) -> list[Row]:
    """Carrier, switch and every other node's reachability on both networks, from each node.

    A pair has one row "peer answers on a" per network (as it always had); three
    nodes or more have one row per node and network ("gamma answers on b"), so a
    path missing between two nodes is named by its row (the target) and column
    (the node that pinged)."""
    pair = len(sessions) == 2
    rows: dict[str, Row] = {}
    for net in networks:
        switch = net.name.upper()
        rows[f"carrier-{net.name}"] = Row(
            f"uplink {net.name} carrier", fix=f"plug the cable to switch {switch}"
        )
        rows[f"switch-{net.name}"] = Row(
            f"switch {switch} {net.switch} answers",
            fix=f"check switch {switch} and the address {net.switch}",
        )
        if pair:
            rows[f"peer-{net.name}"] = Row(
                f"peer answers on {net.name}",
                fix=f"check both nodes' ports on switch {switch} (VLAN, firewall: ICMP)",
            )
            continue
        for peer in sessions:
            rows[f"peer-{net.name}-{peer}"] = Row(
                f"{peer} answers on {net.name}",
                fix=f"no path between {{node}} and {peer} on network {net.name}: check both "
                f"nodes' ports on switch {switch} (VLAN, firewall: ICMP)",
                itself=peer,
            )
    for node, session in sessions.items():
        pings = []
        for net in networks:
            port = net.ports[node]
            iface = facts[node].interfaces[port.interface]
            rows[f"carrier-{net.name}"].results[node] = (
                iface.carrier,
                f"{port.interface} ok" if iface.carrier else f"{port.interface} NO CARRIER",
            )
            targets = [(f"switch-{net.name}", net.switch)]
            targets += [
                (f"peer-{net.name}{'' if pair else '-' + peer}", net.ports[peer].address.ip)
                for peer in sessions
                if peer != node
            ]
            for key, target in targets:
                argv = ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1"]
                argv += ["-I", port.interface, str(target)]
                pings.append(f'( {shlex.join(argv)} >/dev/null 2>&1; echo "{key} $?" ) &')
        result = session.run(" ".join(pings) + " wait", timeout=30)
        for line in result.out.splitlines():
            key, _, status = line.partition(" ")
            if key not in rows:
                continue
            ok = status.strip() == "0"
            rows[key].results[node] = (ok, "answers" if ok else "NO ANSWER")
    return list(rows.values())


def failed(rows: list[Row]) -> list[str]:
    """One explanation per failed check: which node, what failed, the fix."""
    out = []
    for row in rows:
        for node, (ok, text) in row.results.items():
            if not ok:
                fix = row.fix.replace("{node}", node)
                out.append(f"{node}: {row.check}: {text}; fix: {fix}")
    return out


def render(rows: list[Row], nodes: list[str]) -> str:
    width = max(len(r.check) for r in rows) + 2
    lines = [f"{'check':{width}}" + "".join(f"{n:22}" for n in nodes)]
    for row in rows:
        cells = "".join(
            f"{'-':22}" if n == row.itself else f"{('ok ' if ok else 'FAIL ') + text:22}"
            for n in nodes
            for ok, text in (row.results.get(n, (False, "not checked")),)
        )
        lines.append(f"{row.check:{width}}{cells}")
    return "\n".join(lines)


def arp_in_use(session: Session, interface: str, address: ipaddress.IPv4Address) -> bool:
    """Whether anyone on ``interface``'s segment answers ARP for ``address``.

    Sends one ping (the kernel resolves the address by ARP first) and reads the
    neighbour entry: a link-layer address means someone answered ARP, even if
    ICMP is filtered. Only the node's neighbour cache entry for it is changed.
    """
    q_if, q_addr = shlex.quote(interface), shlex.quote(str(address))
    script = (
        f"ip neigh del {q_addr} dev {q_if} 2>/dev/null; "
        f"ping -n -q -c 2 -i 0.3 -W 1 -I {q_if} {q_addr} >/dev/null 2>&1; "
        f"ip -j neigh show {q_addr} dev {q_if}"
    )
    result = session.run(script, timeout=20)
    try:
        entries = json.loads(result.out or "[]")
    except json.JSONDecodeError as error:
        raise SshError(f"{session.label}: unreadable `ip neigh` output: {error}") from None
    return isinstance(entries, list) and any(
        isinstance(e, dict) and e.get("lladdr") for e in entries
    )
