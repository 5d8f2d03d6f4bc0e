"""`mosqit-failover wizard deploy`: set up the pair over ssh, then manage its resources.

A pair, or 2 to 8 nodes (`ask_hosts`: each given once; `open_sessions` and
`name_sessions` refuse one machine given twice, by its host key or host name):
from three nodes on the takeover order is asked and written as `order`, the
networks are checked between every two nodes and every node's sync key is
authorized on every other; "both nodes" below reads "every node".

Steps: log into both nodes (host keys checked), compare the installed
package with the operator's .deb (and ask to install it where it is missing
or older), check both networks, ask cluster name / VIP / VIP interface, let
apt check the install, then: install the package, set up the nodes' ssh keys
for the sync, write config + secret, start the agents, wait for ACTIVE +
STANDBY, then run the resource wizard.

Where the Debian package is installed, its unit (/lib/systemd/system) runs the
agent and the wizard writes no unit of its own; a hand-installed unit left in
/etc/systemd/system would shadow it and is moved aside. Only a node without the
package whose operator installed the agent by hand (pip, no dpkg) gets the unit
from units/ in /etc/systemd/system, with ExecStart naming its binary.

Re-running it over a deployed pair (both nodes have the config and the
secret, and an agent runs; e.g. to upgrade the package): each node keeps its
config and secret as they are (their [[resources]], [[sync]], [fencing],
alerts and timing stay; cluster, VIP and VIP interfaces come from the config,
not asked; given answers that differ are refused: edit the config to change
them), and a running agent is never restarted -- `systemctl restart` hands
the service over, two switchovers for the pair. Only the package is offered
(where older than the operator's .deb); its postinst restarts the agent in
place (SIGUSR2: no handover). Agents not running are started, units not
enabled are enabled. A pair whose agents are both stopped is deployed anew,
as the first time (config rendered from the answers, a new secret). When the
wizard writes config and secret to a node whose agent runs, it tells the
agent to reload (SIGHUP: it re-reads both). A rollback puts back what was
there: files get their old content, a reloaded agent is reloaded again, only
a unit the wizard enabled is disabled and only an agent it started is
stopped. The VIP question accepts the pair's own address (in a node's
existing config, or held by a node), which the node holding it answers ARP
for.

Guarantees: nothing is changed on a node before every question is answered
and every check passed; every change is recorded (`Changes`) and, when a
later step fails or is interrupted, undone in reverse order, and the
operator is told exactly what was undone and what could not be.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mosqit_failover import config as configuration
from mosqit_failover.authkeys import generate_secret_text
from mosqit_failover.wizards import checks, configedit, package
from mosqit_failover.wizards.changes import Changes, left_changed
from mosqit_failover.wizards.prompts import AnswerError, Asker, non_empty
from mosqit_failover.wizards.ssh import AuthError, KnownHosts, Login, Session, SshError, connect

CONFIG_PATH = "/etc/mosqit-failover/mosqit-failover.toml"
SECRET_PATH = "/etc/mosqit-failover/secret"
SYNC_KEY = "/etc/mosqit-failover/sync_key"
UNIT = "mosqit-failover.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
# where a hand-installed unit goes once the package's unit takes over (not a unit dir)
RETIRED_UNIT = f"/etc/mosqit-failover/{UNIT}.before-package"
# the checkout's units/, or where `pip install` puts them (setup.cfg data_files)
UNIT_SOURCES = (
    Path(__file__).resolve().parents[1] / "units" / UNIT,
    Path(sys.prefix) / "share" / "mosqit-failover" / UNIT,
)
UNIT_SOURCE = next((p for p in UNIT_SOURCES if p.exists()), UNIT_SOURCES[0])
LOGIN_TRIES = 3  # password tries per node in interactive mode
MAX_NODES = 8  # a cluster has 2 to MAX_NODES nodes
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class WizardError(Exception):
    """The wizard stopped; the message names the problem and the fix."""


def check_host(text: str) -> str:
    text = text.strip()
    if not text or " " in text:
        raise ValueError("give the node's address (like 192.0.2.11) or host name")
    if _DOTTED.fullmatch(text):
        # the resolver reads 10.0.1.012 as octal (10.0.1.10) and ssh reached the wrong
        # host, or none (a helper's finding)
        parts = [int(part) for part in text.split(".")]
        if any(part > 255 for part in parts):
            raise ValueError(f"{text} is not an IPv4 address: a part is above 255")
        plain = ".".join(map(str, parts))
        if plain != text:
            raise ValueError(
                f"{text}: a leading zero reads as octal (another address); write {plain}"
            )
    elif ":" in text and text.rsplit(":", 1)[1].isdigit() and text.count(":") == 1:
        raise ValueError(f"give the address alone; the ssh port goes to --port ({text})")
    elif ":" not in text:  # a host name (IPv6 addresses have colons)
        _check_host_name(text)
    return text


def _check_host_name(text: str) -> None:
    """ValueError unless ``text`` can be a host name (the resolver cannot even encode
    one with an empty label or one over 63 characters: a traceback, a helper's finding)."""
    labels = text.removesuffix(".").split(".")
    if len(text) > 253 or not all(labels):
        problem = "it is too long" if len(text) > 253 else "a part between dots is empty"
    elif any(len(label) > 63 for label in labels):
        problem = "a part between dots is longer than 63 characters"
    elif not all(_LABEL.fullmatch(label) for label in labels):
        problem = "it has characters a host name cannot have"
    else:
        return
    raise ValueError(
        f"{text!r} is not a valid host name or address ({problem}): give the node's address "
        "(like 192.0.2.11) or its host name"
    )


_LABEL = re.compile(r"[\w-]+")  # letters, digits, '-' (and '_', seen in names too)


_DOTTED = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


def check_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("a TCP port from 1 to 65535")
    return int(text)


def check_name(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError("letters, digits, '.', '_' or '-', at most 63, like shop-pair")
    return text


def host_key_decider(asker: Asker) -> Callable[[str, str, str | None], bool]:
    """Accept a host key: known fingerprints and explicit answers first, then ask."""

    def decide(host: str, now: str, old: str | None) -> bool:
        if old is None:
            asker.say(f"host key of {host}: {now}")
            if now in asker.answers.get("host_fingerprints", []):
                return True
            if isinstance(asker.answers.get("accept_new_host_keys"), bool):
                return bool(asker.answers["accept_new_host_keys"])
            key = f"accept_key_{host}"
            if not asker.interactive and not asker.given(key):
                return False
            return asker.confirm(key, f"Is this {host}'s key (check it on the node)?")
        asker.say(
            f"WARNING: the host key of {host} CHANGED.\n  stored: {old}\n  now:    {now}\n"
            "  Accept only if the node was reinstalled; else someone may be in the middle."
        )
        if host in asker.answers.get("accept_changed_host_keys", []):
            return True
        key = f"accept_changed_{host}"
        if not asker.interactive and not asker.given(key):
            return False
        return asker.confirm(key, f"Replace the stored key of {host}?")

    return decide


def ask_login(asker: Asker, count: int = 2) -> Login:
    user = asker.ask("user", "Log in as", non_empty, "root")
    port = asker.ask("port", "ssh port", check_port, "22")
    if asker.given("password") or asker.given("key"):
        how = "password" if asker.given("password") else "key"
    else:
        how = asker.choose("auth", "Log in with", ["password", "key"], "password")
    if how == "password":
        every = "both nodes" if count == 2 else "every node"
        password = asker.ask("password", f"Password of {user} (same on {every})", str, None, True)
        return Login(user, password=password, port=port)
    key = asker.ask("key", "Private key file", non_empty, "~/.ssh/id_ed25519")
    return Login(user, key_file=key, port=port)


def _and(names: list[str]) -> str:
    """alpha and beta; alpha, beta and gamma."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _optional_host(text: str) -> str:
    return check_host(text) if text.strip() else ""


def _same_address(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def ask_hosts(asker: Asker) -> list[str]:
    """The nodes' addresses, 2 to MAX_NODES, each once.

    Given as ``nodes`` (a list; ``--node`` once per node) or ``node1``, ``node2``,
    ``node3``...; at the terminal with none given, node 1 and 2 are asked, then
    "another node" until an empty answer (or MAX_NODES)."""
    numbered = sorted(
        int(k[4:]) for k in asker.answers if re.fullmatch(r"node[0-9]+", k) and asker.given(k)
    )
    if asker.given("nodes"):
        if numbered:
            raise AnswerError(
                "the nodes are given twice, as nodes (--node) and as node1, node2...: "
                "give them one way"
            )
        given = asker.answers["nodes"]
        items = given.split(",") if isinstance(given, str) else list(given)
        hosts = []
        for item in items:
            try:
                hosts.append(check_host(str(item)))
            except ValueError as error:
                raise AnswerError(f"answer nodes: {item!r}: {error}") from None
    else:
        if numbered and numbered != list(range(1, len(numbered) + 1)):
            gap = next(i for i in range(1, numbered[-1] + 1) if i not in numbered)
            raise AnswerError(
                f"node{numbered[-1]} is given but node{gap} is not: number the nodes "
                "node1, node2, node3... without a gap"
            )
        hosts = [
            asker.ask("node1", "Address of the first node", check_host),
            asker.ask("node2", "Address of the second node", check_host),
        ]
        for index in range(3, max(numbered[-1] if numbered else 0, MAX_NODES) + 1):
            key = f"node{index}"
            if asker.given(key):
                hosts.append(asker.ask(key, f"Address of node {index}", check_host))
            elif asker.interactive and not numbered and len(hosts) < MAX_NODES:
                host = asker.ask(
                    key, f"Address of another node (node {index}; empty to finish)", _optional_host
                )
                if not host:
                    break
                hosts.append(host)
            else:
                break
    if not 2 <= len(hosts) <= MAX_NODES:
        raise AnswerError(
            f"{len(hosts)} node(s) given: a cluster has 2 to {MAX_NODES} nodes; give "
            + ("another node" if len(hosts) < 2 else f"{len(hosts) - MAX_NODES} fewer")
        )
    seen: dict[str, int] = {}
    for index, host in enumerate(hosts, 1):
        first = seen.setdefault(_same_address(host), index)
        if first != index:
            raise AnswerError(
                f"{host} is given twice (node {first} and node {index}): give each node once"
            )
    return hosts


def open_sessions(asker: Asker, known: KnownHosts) -> dict[str, Session]:
    """Ask for the nodes and the login; connect to each (keys checked). Keyed by label
    (node1, node2...; `name_sessions` keys them by hostname). A node reached twice
    (its host key seen at two addresses) is refused before anything else."""
    hosts = ask_hosts(asker)
    login = ask_login(asker, len(hosts))
    decide = host_key_decider(asker)
    sessions: list[Session] = []
    try:
        for index, host in enumerate(hosts, 1):
            session = log_in(asker, f"node{index}", host, login, known, decide)
            login = session.login  # the password that worked is tried first on the others
            sessions.append(session)
            asker.say(f"connected to {host}")
        check_host_keys(sessions)
    except BaseException:
        for session in sessions:
            session.close()
        raise
    return {s.label: s for s in sessions}


def check_host_keys(sessions: list[Session]) -> None:
    """Two addresses that lead to one machine (the same host key) are one node."""
    seen: dict[str, Session] = {}
    for session in sessions:
        key = getattr(session, "host_key", "")
        other = seen.setdefault(key, session) if key else session
        if other is not session:
            raise WizardError(
                f"{other.host} and {session.host} show the same host key ({key}): the same "
                "node given twice (give each node once, by one address), or a clone whose "
                "host keys were copied (on it: rm /etc/ssh/ssh_host_*; ssh-keygen -A; "
                "systemctl restart ssh). Nothing was changed."
            )


def log_in(
    asker: Asker,
    label: str,
    host: str,
    login: Login,
    known: KnownHosts,
    decide: Callable[[str, str, str | None], bool],
) -> Session:
    """Connect to one node; in interactive mode a refused password may be typed again."""
    for attempt in range(1, LOGIN_TRIES + 1):
        try:
            return connect(label, host, login, known, decide)
        except AuthError as error:
            if not asker.interactive or login.password is None or attempt == LOGIN_TRIES:
                if attempt > 1:
                    raise AuthError(f"{error} ({attempt} tries)") from None
                raise
            asker.say(f"  {error}")
            asker.answers.pop("password", None)  # a given password was wrong: ask
            password = asker.ask(
                "password",
                f"Password of {login.user} on {host} (try {attempt + 1} of {LOGIN_TRIES})",
                str,
                None,
                True,
            )
            login = replace(login, password=password)
    raise AssertionError("unreachable")


@dataclass
class Plan:
    """Everything the wizard will write, decided before any change."""

    sessions: dict[str, Session]  # by node name (hostname)
    facts: dict[str, checks.Facts]
    networks: list[checks.Network]
    cluster: str
    vip: ipaddress.IPv4Interface
    vip_interfaces: dict[str, str]  # by node name
    config: str | None  # None: the pair is deployed, each node keeps its config and secret
    packages: Packages
    order: list[str] = field(default_factory=list)  # the takeover order (a pair: preferred first)
    # a node replaced (reinstalled): only these get `config` and `secret`, the deployed
    # nodes' own, which keep theirs (their resources, sync, fencing); () = every node
    replacing: tuple[str, ...] = ()
    secret: str | None = None  # None: a fresh one


def name_sessions(
    raw: dict[str, Session], need_agent: bool = True
) -> tuple[dict[str, Session], dict[str, checks.Facts]]:
    """Gather each node's facts and key the sessions by hostname (the config's node names).

    need_agent: mosqit-failover must be installed on every node (the deploy wizard
    installs the package itself, so it checks that in `plan_packages`)."""
    facts = {s.label: checks.gather(s) for s in raw.values()}
    names = [facts[s.label].hostname for s in raw.values()]
    if len(raw) == 2 and names[0] == names[1]:
        raise WizardError(
            f"both nodes are called {names[0]!r}: give each its own host name "
            "(hostnamectl set-hostname NAME) and re-run"
        )
    by_name: dict[str, Session] = {}
    for session in raw.values():
        other = by_name.setdefault(facts[session.label].hostname, session)
        if other is not session:
            raise WizardError(
                f"{other.host} and {session.host} are both called "
                f"{facts[session.label].hostname!r}: give each node its own host name "
                "(hostnamectl set-hostname NAME) and re-run. Nothing was changed."
            )
    for name in names:
        try:
            check_name(name)
        except ValueError as error:
            raise WizardError(f"host name {name!r} cannot name a node: {error}") from None
    sessions: dict[str, Session] = {}
    named: dict[str, checks.Facts] = {}
    for session in raw.values():
        name = facts[session.label].hostname
        named[name] = facts[session.label]
        session.label = name
        sessions[name] = session
    missing = [n for n, f in named.items() if not f.binary]
    if missing and need_agent:
        raise WizardError(
            f"mosqit-failover is not installed on {', '.join(missing)}: install it there "
            "(mosqit-failover wizard deploy installs the package), then re-run"
        )
    return sessions, named


@dataclass
class Packages:
    """The package on each node, and what the wizard will do about it."""

    local: package.LocalPackage | None  # the operator's .deb
    on_node: dict[str, package.NodePackage]
    install: list[str]  # nodes that get the .deb installed
    by_hand: list[str]  # nodes without the package, running a hand-installed agent


def plan_packages(
    asker: Asker, sessions: dict[str, Session], facts: dict[str, checks.Facts]
) -> Packages:
    """Compare each node's package with the operator's; ask once whether to install it."""
    given = asker.answers.get("package")
    local = package.find_local(str(given) if given else None)
    on_node = {name: package.installed(session) for name, session in sessions.items()}
    behind = [n for n, p in on_node.items() if local and p.dpkg and p.older_than(local)]
    if local is not None:
        ahead = [
            f"{n} has {p.version}"
            for n, p in on_node.items()
            if p.version and package.compare_versions(p.version, local.version) > 0
        ]
        if ahead:
            asker.say(
                f"{package.PACKAGE} {local.version} ({local.path}) is older than what "
                f"{', '.join(ahead)}: not installed there, the node keeps its newer version"
            )
    install: list[str] = []
    if local is not None and behind:
        has = ", ".join(f"{n} has {on_node[n].version or 'none'}" for n in behind)
        asker.say(f"{package.PACKAGE} {local.version} ({local.path}): {has}")
        if asker.confirm(
            "install_package",
            f"Install it on {_and(behind)} (copied over ssh, apt-get install)?",
            default=True,
        ):
            install = behind
    # nodes left without the package: each must run an agent installed by hand
    by_hand = [n for n in sessions if n not in install and not on_node[n].version]
    lacking = [n for n in by_hand if not facts[n].binary]
    if lacking:
        where = " and ".join(lacking)
        if local is None:
            fix = (
                "build the package (make deb) and give it with --package PATH (or put it in ./dist)"
            )
        elif not all(on_node[n].dpkg for n in lacking):
            fix = "it has no dpkg (not Debian): install the agent there by hand (README)"
        else:
            fix = "answer yes to installing the package (install_package = true)"
        raise WizardError(f"mosqit-failover is not installed on {where}: {fix}, then re-run")
    if by_hand and not UNIT_SOURCE.exists():
        raise WizardError(
            f"{' and '.join(by_hand)} run a hand-installed agent, whose unit file "
            f"{UNIT_SOURCE} is missing from this installation: install the package instead"
        )
    return Packages(local, on_node, install, by_hand)


def check_packages(sessions: dict[str, Session], packages: Packages) -> None:
    """apt on each node to install to must be able to get every dependency (simulated)."""
    if packages.local is None:
        return
    problems = [
        problem
        for name in packages.install
        if (problem := package.check_installable(sessions[name], packages.local))
    ]
    if problems:
        raise WizardError("\n".join(f"{p}. Nothing was changed." for p in problems))


def ask_switches(asker: Asker, networks: list[checks.Network]) -> None:
    for net in networks:

        def check(text: str, net: checks.Network = net) -> ipaddress.IPv4Address:
            try:
                address = ipaddress.IPv4Address(text)
            except ValueError:
                raise ValueError("an IPv4 address, like 192.0.2.1") from None
            if address not in net.subnet:
                raise ValueError(f"must lie inside network {net.name}, {net.subnet}")
            return address

        net.switch = asker.ask(
            f"switch_{net.name}",
            f"Address that must answer on network {net.name.upper()} ({net.subnet}), "
            "e.g. the switch",
            check,
        )


def check_networks(
    asker: Asker,
    sessions: dict[str, Session],
    facts: dict[str, checks.Facts],
    networks: list[checks.Network],
) -> None:
    rows = checks.connectivity(sessions, facts, networks)
    asker.say(checks.render(rows, list(sessions)))
    problems = checks.failed(rows)
    if problems:
        raise WizardError(
            "the networks are not ready; nothing was changed:\n  " + "\n  ".join(problems)
        )


def _same_prefix(prefix: str, subnet: ipaddress.IPv4Network) -> bool:
    """Whether ``prefix`` (24, or a mask like 255.255.255.0) is ``subnet``'s."""
    try:
        given = ipaddress.IPv4Network(f"{subnet.network_address}/{prefix}", strict=False)
    except ValueError:
        return False
    return given.prefixlen == subnet.prefixlen


def ask_vip(
    asker: Asker,
    sessions: dict[str, Session],
    networks: list[checks.Network],
    own: frozenset[ipaddress.IPv4Address] = frozenset(),
    default: str | None = None,
) -> ipaddress.IPv4Interface:
    """The VIP: a free address, or the pair's own (``own``: the VIP of the nodes'
    existing config and the addresses the nodes hold), which the node holding it
    answers ARP for."""
    used = {p.address.ip: f"{n}'s address" for net in networks for n, p in net.ports.items()}
    used |= {net.switch: f"switch {net.name.upper()}" for net in networks if net.switch}
    first = next(iter(sessions.values()))

    def check(text: str) -> ipaddress.IPv4Interface:
        given, slash, prefix = text.strip().partition("/")
        try:
            address = ipaddress.IPv4Address(given)
        except ValueError:
            raise ValueError("an IPv4 address, like 192.0.2.50") from None
        net = next((n for n in networks if address in n.subnet), None)
        if net is None:
            subnets = ", ".join(str(n.subnet) for n in networks)
            raise ValueError(f"{address} lies outside both networks ({subnets}): pick one inside")
        if slash and not _same_prefix(prefix, net.subnet):
            # "/32" became the network's /24 without a word (a helper's finding)
            raise ValueError(
                f"{text.strip()}: the VIP takes its network's prefix, /{net.subnet.prefixlen} "
                f"({net.subnet}): give {address} alone, or {address}/{net.subnet.prefixlen}"
            )
        if address in used:
            raise ValueError(f"{address} is {used[address]}: pick a free address")
        if address in (net.subnet.network_address, net.subnet.broadcast_address):
            raise ValueError(f"{address} is not a host address of {net.subnet}")
        port = net.ports[first.label]
        if address not in own and checks.arp_in_use(first, port.interface, address):
            raise ValueError(
                f"{address} is already in use (a host answered ARP on network {net.name}): "
                "pick a free address, or free it first"
            )
        return ipaddress.IPv4Interface(f"{address}/{net.subnet.prefixlen}")

    return asker.ask("vip", "Service address (VIP)", check, default)


def ask_vip_interface(
    asker: Asker,
    facts: dict[str, checks.Facts],
    networks: list[checks.Network],
    vip: ipaddress.IPv4Interface,
) -> dict[str, str]:
    """The VIP interface of each node: one question, or one per node when the names differ.

    When both nodes name their port on the VIP's network alike, one name is asked
    (``vip_interface``) and must exist on both; otherwise each node is asked for
    its own (``vip_interface_NODE``, default: its port on the VIP's network).
    """
    ports = {n: {net.ports[n].interface for net in networks} for n in facts}
    offered = sorted(set.intersection(*ports.values()))
    vip_net = next(n for n in networks if vip.ip in n.subnet)
    own = {n: p.interface for n, p in vip_net.ports.items()}

    def check_on(nodes: list[str], fix: str) -> Callable[[str], str]:
        def check(text: str) -> str:
            for node in nodes:
                if text in ports[node]:
                    continue
                network_ports = ", ".join(sorted(ports[node]))
                # lo (the facts leave it out), a docker bridge: "missing" misled
                if text == "lo" or text in facts[node].interfaces:
                    raise ValueError(
                        f"interface {text!r} on {node} is not one of its ports on the "
                        f"cluster's networks ({network_ports}): the VIP must sit on the "
                        f"network the clients reach; {fix}"
                    )
                have = ", ".join(sorted(facts[node].interfaces))
                raise ValueError(
                    f"interface {text!r} is missing on {node} (it has {have}; the network "
                    f"ports are {network_ports}): {fix}"
                )
            return text

        return check

    if len(set(own.values())) == 1:
        fix = f"choose one of {', '.join(offered) or '-'}"
        name = asker.ask(
            "vip_interface",
            f"Interface for the VIP ({', '.join(offered)})",
            check_on(list(facts), fix),
            next(iter(own.values())),
        )
        return {node: name for node in facts}
    asker.say(
        f"The nodes name their port on network {vip_net.name.upper()} differently ("
        + ", ".join(f"{n} {i}" for n, i in own.items())
        + "): the VIP interface is asked per node."
    )
    chosen = {}
    for node in facts:
        key = f"vip_interface_{node}"
        if not asker.given(key) and asker.given("vip_interface"):
            key = "vip_interface"  # one name given for both: it must exist on each
        fix = f"choose one of {', '.join(sorted(ports[node]))} (answer vip_interface_{node})"
        chosen[node] = asker.ask(
            key,
            f"Interface for the VIP on {node} ({', '.join(sorted(ports[node]))})",
            check_on([node], fix),
            own[node],
        )
    return chosen


@dataclass
class Existing:
    """What a node already has of a pair: its config (None: none) and whether a secret."""

    config: str | None
    secret: bool
    running: bool = True  # the agent's unit is active
    secret_digest: str = ""  # of the secret file's text ("" none): the nodes' must match

    def vip(self) -> ipaddress.IPv4Address | None:
        parsed = _parse_or_none(self.config)
        return parsed.vip.address.ip if parsed else None


def _parse_or_none(text: str | None) -> configuration.Config | None:
    if text is None:
        return None
    try:
        return configuration.parse(text, CONFIG_PATH)
    except configuration.ConfigError:
        return None


def existing(sessions: dict[str, Session]) -> dict[str, Existing]:
    have = {}
    for name, session in sessions.items():
        secret = session.read(SECRET_PATH)
        digest = hashlib.sha256(secret.encode()).hexdigest() if secret is not None else ""
        have[name] = Existing(
            session.read(CONFIG_PATH), secret is not None, is_active(session), digest
        )
    return have


def kept_config(have: dict[str, Existing]) -> configuration.Config | None:
    """The config of a deployed pair (both nodes have a config and a secret, an agent
    runs), else None."""
    if not all(e.config is not None and e.secret for e in have.values()):
        return None
    if not any(e.running for e in have.values()):
        return None
    name = _same_files(have)
    return _parse_deployed(have[name], name, "both nodes" if len(have) == 2 else "every node")


def _same_files(deployed: dict[str, Existing]) -> str:
    """The first of the `deployed` nodes (each with a config and a secret), once their
    configs are one text and their secrets one secret.

    Configs that differ are no pair's (the wizard writes one; `wizard resources` refuses
    to edit them): a re-run reported "The pair is up" over them (a helper's finding).
    Kept as they are, secrets that differ leave the agents unable to authenticate each
    other: no failover (a helper's finding: a rollback that could not undo one node's
    secret, then a re-run, reported "The pair is up")."""
    name, first = next(iter(deployed.items()))
    other = [n for n, e in deployed.items() if e.config != first.config]
    if other:
        raise WizardError(
            f"{CONFIG_PATH} on {_and(other)} differs from {name}'s: the wizard keeps a "
            "deployed pair's config, and one that differs between the nodes is no pair's. "
            f"Make them the same (copy the right one to every node, then `systemctl reload "
            f"{UNIT}` there), or move config and secret aside on every node to deploy a new "
            "pair; then re-run. Nothing was changed."
        )
    other = [n for n, e in deployed.items() if e.secret_digest != first.secret_digest]
    if other:
        raise WizardError(
            f"the secret files differ: {SECRET_PATH} on {_and(other)} is not {name}'s, so "
            "the agents cannot authenticate each other and no node would take over. Copy "
            f"{name}'s {SECRET_PATH} to {_and(other)} (mode 0600; then `systemctl reload "
            f"{UNIT}` there), or move config and secret aside on every node to deploy a new "
            "pair; then re-run. Nothing was changed."
        )
    return name


def _parse_deployed(node: Existing, name: str, where: str) -> configuration.Config:
    try:
        return configuration.parse(node.config or "", f"{name}:{CONFIG_PATH}")
    except configuration.ConfigError as error:
        raise WizardError(
            f"{name}'s {CONFIG_PATH} does not load ({error}): fix it (or move it and the "
            f"secret aside on {where} to deploy a new pair), then re-run. Nothing was changed."
        ) from None


def survivors_config(
    have: dict[str, Existing],
) -> tuple[configuration.Config, str, tuple[str, ...]] | None:
    """A deployed pair with nodes reinstalled: the config of the nodes that have a config
    and a secret, which of them has it, and the nodes that have neither, which are to
    get them; None unless both kinds are there (and no node has only one of the two).

    Rendering a new config there replaced the surviving node's resources, sync and
    secret without a word (a helper's finding): the survivors' files are kept and
    copied to the new nodes, which must be the lost ones (the config's node names)."""
    survivors = [n for n, e in have.items() if e.config is not None and e.secret]
    fresh = tuple(n for n, e in have.items() if e.config is None and not e.secret)
    if not survivors or not fresh or len(survivors) + len(fresh) != len(have):
        return None
    name = _same_files({n: have[n] for n in survivors})
    config = _parse_deployed(have[name], name, _and(survivors))
    nodes = [n.name for n in config.nodes]
    if sorted(nodes) != sorted(have):
        what = "pair" if len(nodes) == 2 else "cluster"
        lost = [n for n in nodes if n not in have]
        raise WizardError(
            f"{_and(survivors)} run{'s' if len(survivors) == 1 else ''} the {what} "
            f"{config.cluster} of {_and(nodes)} (config and secret there), and {_and(list(fresh))} "
            f"{'has' if len(fresh) == 1 else 'have'} neither: a node that replaces a lost one "
            f"({_and(lost) if lost else 'none is missing'}) needs its host name and addresses "
            f"(hostnamectl set-hostname NAME). Or move config and secret aside on "
            f"{_and(survivors)} to deploy a new {what} (its resources and sync are then "
            "asked anew). Nothing was changed."
        )
    return config, name, fresh


def check_replacement_addresses(
    config: configuration.Config, facts: dict[str, checks.Facts], fresh: tuple[str, ...]
) -> None:
    """Each node that replaces a lost one has the ports and addresses the config gives
    it, and its VIP interface: its agent would not start otherwise."""
    problems = []
    for node in config.nodes:
        if node.name not in fresh:
            continue
        interfaces = facts[node.name].interfaces
        for port in node.attachments:
            held = interfaces.get(port.interface)
            if held is None or port.address not in {a.ip for a in held.addresses}:
                problems.append(
                    f"{node.name} lacks {port.address} on {port.interface} (network "
                    f"{port.network.upper()})"
                )
        if node.vip_interface not in interfaces:
            problems.append(f"{node.name} has no interface {node.vip_interface} for the VIP")
    if problems:
        raise WizardError(
            "a new node must stand where the lost one stood: "
            + "; ".join(problems)
            + f". Give it those ports and addresses, or edit {CONFIG_PATH} on the other "
            "nodes (then `systemctl reload`); then re-run. Nothing was changed."
        )


def check_kept_answers(
    asker: Asker,
    sessions: dict[str, Session],
    facts: dict[str, checks.Facts],
    networks: list[checks.Network],
    kept: configuration.Config,
    vip_interfaces: dict[str, str],
) -> None:
    """Answers given for a deployed pair (not asked) are checked as for a new pair and
    must agree with its config: the wizard does not change a deployed pair's config."""
    differ: list[str] = []
    if asker.given("cluster") and check_name(str(asker.answers["cluster"])) != kept.cluster:
        differ.append(f"cluster {asker.answers['cluster']} (it is {kept.cluster})")
    if asker.given("order") and len(sessions) > 2:
        order = ask_order(asker, list(sessions))
        if order != list(kept.order):
            differ.append(f"order {', '.join(order)} (it is {', '.join(kept.order)})")
    vip = kept.vip.address
    if asker.given("vip"):
        own = frozenset({vip.ip}.union(*(f.held for f in facts.values())))
        vip = ask_vip(asker, sessions, networks, own)
        if vip != kept.vip.address:
            differ.append(f"VIP {vip} (it is {kept.vip.address})")
    if any(k == "vip_interface" or k.startswith("vip_interface_") for k in asker.answers):
        chosen = ask_vip_interface(asker, facts, networks, vip)
        if chosen != vip_interfaces:
            differ.append(f"VIP interfaces {_pairs(chosen)} (they are {_pairs(vip_interfaces)})")
    for net in kept.networks:  # given answers were ignored here (a helper's finding)
        key = f"switch_{net.name.lower()}"
        if asker.given(key) and str(asker.answers[key]).strip() != str(net.switch or ""):
            shown = net.switch or "none"
            differ.append(f"switch of network {net.name} {asker.answers[key]} (it is {shown})")
    if differ:
        raise WizardError(
            f"the pair {kept.cluster} is deployed (its config and secret are on the nodes) "
            f"and its config differs from the answers: {'; '.join(differ)}. The wizard keeps "
            f"a deployed pair's config: edit {CONFIG_PATH} on the nodes that have it (then "
            "systemctl reload), or drop those answers. Nothing was changed."
        )


def ask_order(asker: Asker, names: list[str]) -> list[str]:
    """The takeover order (who takes over first among equals), from three nodes on:
    asked, the nodes as given by default, and shown. A pair is not asked: the first
    node is its preferred one, as always."""
    if len(names) == 2:
        return list(names)
    if isinstance(asker.answers.get("order"), list | tuple):
        asker.answers["order"] = ", ".join(str(n) for n in asker.answers["order"])
    fix = f"list every node once, like {', '.join(names)}"

    def check(text: str) -> list[str]:
        order = [n for n in re.split(r"[,\s]+", text.strip()) if n]
        unknown = [n for n in order if n not in names]
        if unknown:
            raise ValueError(f"{_and(unknown)}: not a node here (the nodes: {', '.join(names)})")
        twice = sorted({n for n in order if order.count(n) > 1})
        if twice:
            raise ValueError(f"{_and(twice)} given twice: {fix}")
        missing = [n for n in names if n not in order]
        if missing:
            raise ValueError(f"{_and(missing)} missing: {fix}")
        return order

    order = asker.ask(
        "order", "Takeover order, who takes over first (comma separated)", check, ", ".join(names)
    )
    asker.say(f"Takeover order: {' > '.join(order)}")
    return order


def plan_deploy(asker: Asker, raw: dict[str, Session]) -> Plan:
    """Steps 1, 2 and 4: read-only. Raises WizardError when a check fails."""
    sessions, facts = name_sessions(raw, need_agent=False)
    packages = plan_packages(asker, sessions, facts)
    have = existing(sessions)
    kept = kept_config(have)
    survived = survivors_config(have) if kept is None else None
    first_ip = _ip_or_none(next(iter(sessions.values())).host)
    try:
        networks = checks.discover(facts, first_ip)
    except checks.CheckError as error:
        raise WizardError(f"{error}\nNothing was changed.") from None
    ask_switches(asker, networks)
    asker.say("\nConnectivity on both networks:")
    check_networks(asker, sessions, facts, networks)
    pair = len(sessions) == 2
    replacing: tuple[str, ...] = ()
    secret: str | None = None
    if survived is not None:
        kept, survivor, replacing = survived
        secret = sessions[survivor].read(SECRET_PATH)
        config = have[survivor].config
        asker.say(
            f"\n{_and([n for n in sessions if n not in replacing])} run"
            f"{'s' if len(sessions) - len(replacing) == 1 else ''} the "
            f"{'pair' if pair else 'cluster'} {kept.cluster}; {_and(list(replacing))} "
            f"{'has' if len(replacing) == 1 else 'have'} no config and no secret: "
            f"{'it gets' if len(replacing) == 1 else 'they get'} {survivor}'s (its resources, "
            "sync and fencing included), the running agents are kept as they are."
        )
    elif kept is not None:
        asker.say(
            f"\n{_and(list(sessions))} already run the {'pair' if pair else 'cluster'} "
            f"{kept.cluster} (config and secret on {'both' if pair else 'every node'}): "
            f"{'both' if pair else 'all'} are kept as they are, no agent is restarted"
            + (
                " (the package upgrade restarts it in place, no switchover)"
                if packages.install
                else ""
            )
            + "."
        )
        config = None
    if kept is not None:
        by_node = {n.name: n.vip_interface for n in kept.nodes}
        vip_interfaces = {n: by_node.get(n, kept.vip.interface) for n in sessions}
        check_kept_answers(asker, sessions, facts, networks, kept, vip_interfaces)
        cluster, vip, order = kept.cluster, kept.vip.address, list(kept.order)
    else:
        order = ask_order(asker, list(sessions))
        cluster = asker.ask("cluster", "Cluster (reserve) name", check_name, "pair")
        vips = {v for e in have.values() if (v := e.vip()) is not None}
        own = frozenset(vips.union(*(f.held for f in facts.values())))
        vip = ask_vip(asker, sessions, networks, own, str(min(vips)) if vips else None)
        vip_interfaces = ask_vip_interface(asker, facts, networks, vip)
        first = vip_interfaces[next(iter(sessions))]
        config = configedit.render_config(
            cluster,
            networks,
            vip,
            first,
            list(sessions),
            vip_interfaces=vip_interfaces,
            order=order if not pair else (),
        )
    check_packages(sessions, packages)
    if survived is not None:
        check_replacement_addresses(survived[0], facts, replacing)
    return Plan(
        sessions,
        facts,
        networks,
        cluster,
        vip,
        vip_interfaces,
        config,
        packages,
        order,
        replacing,
        secret,
    )


def _pairs(by_node: dict[str, str]) -> str:
    return ", ".join(f"{node} {value}" for node, value in by_node.items())


def _ip_or_none(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def receiver_command(python: str, config: str = CONFIG_PATH) -> str:
    """The forced command of the sync key (the lab installs the same one, through this)."""
    return f"{python} -m mosqit_failover.sync.receive --config {config}"


def authorized_line(python: str, public_key: str, config: str = CONFIG_PATH) -> str:
    return f'command="{receiver_command(python, config)}",restrict {public_key.strip()}\n'


def merge_lines(old: str | None, drop: Callable[[str], bool], add: list[str]) -> str:
    kept = [line for line in (old or "").splitlines() if line.strip() and not drop(line)]
    return "".join(line + "\n" for line in kept + [a.rstrip("\n") for a in add])


def _ends_with(comment: str | tuple[str, ...]) -> Callable[[str], bool]:
    return lambda line: line.rstrip().endswith(comment)


def _for_hosts(hosts: list[str]) -> Callable[[str], bool]:
    return lambda line: line.split(" ", 1)[0] in hosts


def setup_keys(plan: Plan, changes: Changes) -> None:
    """Step 3: an ed25519 sync key per node (the fence logs in with it too), in every
    other node's authorized_keys (forced command); each node learns every other
    node's host key on both networks."""
    public: dict[str, str] = {}
    host_keys: dict[str, str] = {}
    for name, session in plan.sessions.items():
        existing = session.read(SYNC_KEY + ".pub")
        if existing is None:
            changes.run(
                session,
                f"mkdir -p /etc/mosqit-failover && ssh-keygen -q -t ed25519 -N '' "
                f"-C mosqit-sync@{name} -f {SYNC_KEY}",
                f"create the sync key {SYNC_KEY} (ed25519)",
                undo=f"rm -f {SYNC_KEY} {SYNC_KEY}.pub",
            )
            existing = (
                session.read(SYNC_KEY + ".pub") or f"ssh-ed25519 (new key) mosqit-sync@{name}"
            )
        public[name] = existing.strip()
        host = session.read("/etc/ssh/ssh_host_ed25519_key.pub")
        if host is None:
            raise WizardError(f"{name} has no /etc/ssh/ssh_host_ed25519_key.pub: run ssh-keygen -A")
        host_keys[name] = " ".join(host.split()[:2])
    for name, session in plan.sessions.items():
        peers = [n for n in plan.sessions if n != name]
        python = plan.facts[name].python or "/usr/bin/python3"
        comments = tuple(f"mosqit-sync@{peer}" for peer in peers)
        old = session.read("/root/.ssh/authorized_keys")
        text = merge_lines(
            old,
            _ends_with(comments),
            [authorized_line(python, public[peer]) for peer in peers],
        )
        changes.run(
            session, "mkdir -p /root/.ssh && chmod 700 /root/.ssh", "make /root/.ssh (mode 0700)"
        )
        changes.write_file(session, "/root/.ssh/authorized_keys", text, 0o600)
        addresses = {
            peer: [str(net.ports[peer].address.ip) for net in plan.networks] for peer in peers
        }
        known = session.read("/root/.ssh/known_hosts")
        text = merge_lines(
            known,
            _for_hosts([a for peer in peers for a in addresses[peer]]),
            [f"{a} {host_keys[peer]}" for peer in peers for a in addresses[peer]],
        )
        changes.write_file(session, "/root/.ssh/known_hosts", text, 0o600)


def hand_unit(binary: str) -> str:
    """The unit from units/ for an agent installed by hand, run from ``binary``."""
    if not UNIT_SOURCE.exists():
        raise WizardError(f"the unit file {UNIT_SOURCE} is missing from this installation")
    text = UNIT_SOURCE.read_text()
    return re.sub(r"^ExecStart=\S+", f"ExecStart={binary}", text, flags=re.MULTILINE)


def install_packages(plan: Plan, changes: Changes) -> None:
    """Step 5a: the operator's .deb on the nodes that lack it (apt checked it can)."""
    local = plan.packages.local
    for name in plan.packages.install:
        assert local is not None
        package.install(plan.sessions[name], local, plan.packages.on_node[name], changes)


def is_active(session: Session) -> bool:
    return session.run(f"systemctl is-active --quiet {UNIT}").status == 0


def unit_state(session: Session) -> tuple[bool, bool]:
    """Whether the agent's unit is (active, enabled) on the node, read before any change."""
    return is_active(session), session.run(f"systemctl is-enabled --quiet {UNIT}").status == 0


def install(plan: Plan, changes: Changes) -> None:
    """Step 5b: identical config and one fresh secret (unless the pair is deployed:
    ``plan.config`` None keeps each node's), the unit for hand installs only; enable
    and start the agents that are not.

    A running agent is never restarted (a restart hands the service over): it is
    told to reload (SIGHUP: it re-reads config and secret) when its files were
    written, and again on a rollback once they are put back. Undo puts back what
    was there: only a unit the wizard enabled is disabled, only an agent it
    started is stopped."""
    secret = plan.secret if plan.secret is not None else generate_secret_text()
    written = set(plan.replacing or plan.sessions) if plan.config is not None else set()
    states: dict[str, tuple[bool, bool]] = {}
    for name, session in plan.sessions.items():
        active, enabled = states[name] = unit_state(session)
        if name in written:
            assert plan.config is not None
            if active:  # undone last: the old config and secret are back by then
                changes.on_undo(
                    session,
                    f"reload {UNIT} with the config and secret put back",
                    f"systemctl reload {UNIT}",
                )
            changes.write_file(session, CONFIG_PATH, plan.config, 0o644)
            changes.write_file(session, SECRET_PATH, secret, 0o600)
        if name in plan.packages.by_hand:
            changes.write_file(session, UNIT_PATH, hand_unit(plan.facts[name].binary), 0o644)
        elif session.read(UNIT_PATH) is not None:
            changes.run(
                session,
                f"mv -f {UNIT_PATH} {RETIRED_UNIT}",
                f"move {UNIT_PATH} aside to {RETIRED_UNIT} (the package's unit takes over)",
                undo=f"mv -f {RETIRED_UNIT} {UNIT_PATH}",
            )
        changes.run(
            session,
            "systemctl daemon-reload",
            "systemctl daemon-reload",
            undo="systemctl daemon-reload",
        )
        if not enabled:
            changes.run(
                session,
                f"systemctl enable {UNIT}",
                f"enable {UNIT}",
                undo=f"systemctl disable {UNIT}",
            )
    for name, session in plan.sessions.items():
        active, _enabled = states[name]
        if not active:
            changes.run(
                session, f"systemctl start {UNIT}", f"start {UNIT}", undo=f"systemctl stop {UNIT}"
            )
        elif name in written:
            changes.run(
                session,
                f"systemctl reload {UNIT}",
                f"reload {UNIT} (it re-reads config and secret; no restart, no switchover)",
            )


def node_status(session: Session) -> dict[str, Any] | None:
    result = session.run(f"mosqit-failover status --json --config {CONFIG_PATH}", timeout=15)
    if result.status != 0:
        return None
    try:
        status = json.loads(result.out)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deeply
        return None
    # another version's, or not the agent's at all (a wrapper of the same name)
    return status if isinstance(status, dict) and isinstance(status.get("role"), str) else None


def wait_pair(sessions: dict[str, Session], timeout: float = 60.0) -> dict[str, str]:
    """Wait until one node is ACTIVE and every other STANDBY; return the roles."""
    deadline = time.monotonic() + timeout
    formed = ["ACTIVE"] + ["STANDBY"] * (len(sessions) - 1)
    roles: dict[str, str] = {}
    while time.monotonic() < deadline:
        roles = {}
        for name, session in sessions.items():
            status = node_status(session)
            roles[name] = str(status["role"]) if status else "DOWN"
        if sorted(roles.values()) == formed:
            return roles
        time.sleep(0.5)
    what, where = ("pair", "both nodes") if len(sessions) == 2 else ("cluster", "every node")
    raise WizardError(
        f"the {what} did not form within {timeout:g}s (roles: {roles}): read "
        f"`journalctl -t mosqit-failover` on {where}"
    )


def deploy(
    asker: Asker,
    known: KnownHosts,
    dry_run: bool,
    then: Callable[[dict[str, Session], Changes], None] | None = None,
    wait: bool = True,
) -> int:
    """The whole deployment; returns the exit status. Raises on errors (after rollback).

    ``wait`` False (--no-wait): the agents are started but the cluster's forming is
    not waited for (nor rolled back if it does not); `status` on a node tells."""
    raw = open_sessions(asker, known)
    changes = Changes(dry_run, asker.say)
    deployed = ""  # once the pair stands: what it is (a later stop leaves it so)
    try:
        plan = plan_deploy(asker, raw)
        if plan.packages.install:
            asker.say(f"\nInstalling {package.PACKAGE} on {', '.join(plan.packages.install)}:")
            install_packages(plan, changes)
        asker.say("\nSetting up the nodes' ssh keys for the sync:")
        setup_keys(plan, changes)
        if plan.config is None:
            asker.say("Keeping config and secret, starting the agents that are not running:")
        else:
            asker.say("Writing config and secret, starting (or reloading) the agents:")
        install(plan, changes)
        if dry_run:
            asker.say(f"dry run: {len(changes.planned)} change(s) would be made; none was.")
            return 0
        what = "pair" if len(plan.sessions) == 2 else "cluster"
        if wait:
            roles = wait_pair(plan.sessions)
            asker.say(f"The {what} is up: " + ", ".join(f"{n} {r}" for n, r in roles.items()))
        else:
            asker.say(
                f"The agents run on {_and(list(plan.sessions))}; not waiting for the {what} to "
                f"form (--no-wait): `mosqit-failover status` on a node shows the roles."
            )
        where = set(plan.vip_interfaces.values())
        on = where.pop() if len(where) == 1 else _pairs(plan.vip_interfaces)
        vip = plan.vip
        asker.say(f"  cluster {plan.cluster}, VIP {vip} on {on}")
        if then is not None:
            changes.done.clear()  # the pair stands; the resource wizard rolls back its own
            deployed = f"The {what} is deployed and running (cluster {plan.cluster}, VIP {vip})"
            then(plan.sessions, changes)
        return 0
    except (
        WizardError,
        SshError,
        AnswerError,
        KeyboardInterrupt,
        checks.CheckError,
        package.PackageError,
    ) as error:
        raise Aborted(error, changes.rollback(), deployed) from None
    finally:
        for session in raw.values():
            session.close()


class Aborted(Exception):
    """The wizard stopped after making changes; ``undone`` says what happened to each.

    ``deployed``: set when the deployment was complete and the resource step stopped
    (the pair is kept as it is: nothing of it is rolled back)."""

    def __init__(self, cause: BaseException, undone: list[str], deployed: str = "") -> None:
        self.cause = cause
        self.undone = undone
        self.deployed = deployed
        super().__init__(str(cause))

    def report(self) -> str:
        interrupted = isinstance(self.cause, KeyboardInterrupt)
        # an interrupt may say how and what it cut off (SIGTERM; the resource wizard's
        # rollback of a config write)
        cause = (str(self.cause) or "interrupted") if interrupted else str(self.cause)
        if self.deployed:
            # Ctrl-C at the resource wizard's prompt said "Nothing was changed on the
            # nodes" after the pair was deployed (a helper's finding)
            how = "interrupted" if interrupted else "stopped"
            return "\n".join(
                [
                    cause,
                    *(f"  {line}" for line in self.undone),
                    f"{self.deployed}: nothing of the deployment was undone. Only the "
                    f"resource step was {how}: what it changed is said above (nothing, if "
                    "no config was written).",
                ]
            )
        if not self.undone:
            return unchanged(cause)
        nodes = left_changed(self.undone)
        lines = [cause, "What was changed, and what the rollback did:"]
        lines += [f"  {line}" for line in self.undone]
        if nodes:
            # the heading said "rolled back" above lines saying NOT undone (a helper's
            # finding): say what is left and what to do about it
            lines.append(
                f"Left changed on {_and(nodes)}: what is marked NOT undone. Re-run the "
                f"wizard once {'it is' if len(nodes) == 1 else 'they are'} reachable (it "
                f"checks what each node has), or put {CONFIG_PATH} and {SECRET_PATH} back "
                "by hand."
            )
        else:
            lines.append("Everything was undone: the nodes are as before.")
        return "\n".join(lines)


def unchanged(cause: str) -> str:
    """``cause`` and that nothing was changed on the nodes (unless the cause says so itself)."""
    if "nothing was changed" in cause.lower():
        return cause
    return f"{cause}\nNothing was changed on the nodes."
