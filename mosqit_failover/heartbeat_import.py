"""`mosqit-failover import-heartbeat /etc/ha.d`: a heartbeat (v1) setup to our TOML config.

Reads the three files of a heartbeat directory:

- ha.cf: `node` names, `keepalive`/`deadtime`/`initdead` (timing), `ucast`/
  `bcast`/`mcast` interfaces and addresses (our two networks), `ping` nodes
  (switch probes, when they lie in a network), `auto_failback`, `udpport`;
- haresources: the first resource group, in order: `IPaddr`/`IPaddr2` (or a
  bare address) become the VIP, `MailTo` becomes [alerts] mail_to, init scripts
  become sysv resources (with arguments: script resources), and what cannot be
  carried over (Filesystem, drbddisk, ...) is listed with the reason;
- authkeys: never copied as is. heartbeat's sha1/md5 keys are passphrases for
  its own HMAC; a key of at least 32 characters is reused (hex-encoded) for
  our HMAC-SHA256, a shorter one (or crc, which authenticates nothing) is
  replaced by a new random secret.

`convert(directory)` is pure but for reading those files: it returns the
TOML text, the secret file text and the notes (what was assumed and what was
not carried over), or raises `ImportError_` naming every malformed line with
its file and line number. Unknown values the operator must supply are written
as "FILL-IN: ..." strings, which `check-config` then names.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosqit_failover.authkeys import MIN_SECRET_BYTES, generate_secret_text

NOT_SUPPORTED = {
    "Filesystem": "mosqit-failover mounts no shared or replicated block device; it copies "
    "directories with rsync: add a [[sync]] table for the data under that mount point",
    "drbddisk": "DRBD is not used: directory sync (rsync) replaces it; add [[sync]] tables",
    "drbdupper": "DRBD is not used: directory sync (rsync) replaces it; add [[sync]] tables",
    "LVM": "volume groups on shared storage are not managed",
    "Raid1": "software RAID on shared storage is not managed",
    "IPv6addr": "only one IPv4 VIP is supported",
    "IPsrcaddr": "setting the preferred source address is not supported",
    "SendArp": "not needed: the agent sends gratuitous ARP itself (vip.garp_count)",
    "AudibleAlarm": "not supported; use [alerts] hooks",
    "WinPopup": "not supported; use [alerts] hooks",
    "portblock": "not supported",
    "Delay": "not supported; put the pause into the next service's own start",
}
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
    "traditional_compression": "messages are small and never compressed",
    "coredumps": "systemd handles core dumps",
    "realtime": "not needed",
    "uuidfrom": "nodes are named by hostname",
    "autojoin": "the pair is fixed: exactly two nodes",
    "hopfudge": "not needed",
    "ping_group": "ping groups are not supported; each network's switch is probed instead",
    "mcast": "multicast is not used; messages go to the peer's address on each network",
    "deadping": "ping nodes share the switch timeout (timing.switch_timeout)",
}
_TIME = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")


class ImportError_(Exception):
    """Malformed input: one line per problem, each naming the file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Result:
    toml: str
    secret: str
    notes: list[str] = field(default_factory=list)
    complete: bool = True  # no FILL-IN left


@dataclass
class _HaCf:
    nodes: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    interfaces: dict[str, list[ipaddress.IPv4Address]] = field(default_factory=dict)
    pings: list[tuple[ipaddress.IPv4Address, str]] = field(default_factory=list)
    auto_failback: bool | None = None


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) without comments and blank lines; backslash continues a line."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(
        path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
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


def _seconds(text: str) -> float:
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a time (like 2, 500ms or 2s)")
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def _read_hacf(path: Path, problems: list[str], notes: list[str]) -> _HaCf:
    cf = _HaCf()
    for number, text in _lines(path):
        where = f"{path}:{number}"
        directive, *args = text.split()
        if directive.endswith(":"):  # "keepalive: 2" is accepted by heartbeat too
            directive = directive[:-1]
        try:
            _hacf_line(cf, directive, args, notes, where)
        except ValueError as error:
            problems.append(f"{where}: {directive}: {error}")
    return cf


def _hacf_line(cf: _HaCf, directive: str, args: list[str], notes: list[str], where: str) -> None:
    def need(count: int, form: str) -> None:
        if len(args) < count:
            raise ValueError(f"expected '{directive} {form}'")

    if directive == "node":
        need(1, "NAME [NAME...]")
        cf.nodes += args
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
    elif directive == "bcast":
        need(1, "INTERFACE [INTERFACE...]")
        for interface in args:
            cf.interfaces.setdefault(interface, [])
    elif directive == "ping":
        need(1, "ADDRESS [ADDRESS...]")
        for arg in args:
            try:
                cf.pings.append((ipaddress.IPv4Address(arg), where))
            except ValueError:
                raise ValueError(f"{arg!r} is not an IPv4 address") from None
    elif directive == "auto_failback":
        need(1, "on|off|legacy")
        if args[0] not in ("on", "off", "legacy", "yes", "no", "true", "false"):
            raise ValueError(f"{args[0]!r}: expected on, off or legacy")
        cf.auto_failback = args[0] in ("on", "yes", "true")
        if args[0] == "legacy":
            notes.append(f"{where}: auto_failback legacy read as off")
    elif directive == "nice_failback":
        need(1, "on|off")
        cf.auto_failback = args[0] not in ("on", "yes", "true")
    elif directive == "udpport":
        need(1, "PORT")
        if not args[0].isdigit():
            raise ValueError(f"{args[0]!r} is not a port number")
        notes.append(
            f"{where}: udpport {args[0]} not carried over: the agent speaks its own protocol, "
            "on cluster.port (default 5405); open that port between the nodes"
        )
    elif directive == "mcast":
        cf_interface = args[0] if args else ""
        if cf_interface:
            cf.interfaces.setdefault(cf_interface, [])
        notes.append(f"{where}: mcast: {IGNORED_DIRECTIVES['mcast']}")
    elif directive in IGNORED_DIRECTIVES:
        notes.append(f"{where}: {directive} not carried over: {IGNORED_DIRECTIVES[directive]}")
    else:
        notes.append(f"{where}: unknown directive {directive!r} ignored")


@dataclass
class _Resources:
    owner: str = ""
    vip: ipaddress.IPv4Interface | None = None
    vip_interface: str = ""
    services: list[dict[str, str]] = field(default_factory=list)
    mail_to: list[str] = field(default_factory=list)


def _vip(spec: str) -> tuple[ipaddress.IPv4Interface, str, bool]:
    """IPaddr's argument 'ADDR[/BITS|/NETMASK[/IFACE[/BROADCAST]]]' -> (VIP, iface, guessed)."""
    parts = spec.split("/")
    try:
        address = ipaddress.IPv4Address(parts[0])
    except ValueError:
        raise ValueError(f"{parts[0]!r} is not an IPv4 address") from None
    mask = parts[1] if len(parts) > 1 and parts[1] else ""
    try:
        vip = ipaddress.IPv4Interface(f"{address}/{mask or 24}")
    except ValueError:
        raise ValueError(f"{mask!r} is not a prefix length or netmask") from None
    interface = parts[2] if len(parts) > 2 else ""
    return vip, interface, not mask


def _read_haresources(
    path: Path, nodes: list[str], ha_dir: Path, problems: list[str], notes: list[str]
) -> _Resources:
    res = _Resources()
    groups = _lines(path)
    if not groups:
        problems.append(f"{path}: no resource group; expected 'NODE RESOURCE...'")
        return res
    for number, _ in groups[1:]:
        notes.append(
            f"{path}:{number}: a second resource group is not carried over: one node is "
            "active at a time, with one group (merge the groups or use two clusters)"
        )
    number, text = groups[0]
    owner, *items = text.split()
    res.owner = owner
    if nodes and owner not in nodes:
        problems.append(
            f"{path}:{number}: {owner!r} is not a node of ha.cf ({', '.join(nodes)}); "
            "the line must start with the preferred node's name"
        )
    names: set[str] = set()
    for position, item in enumerate(items):
        where = f"{path}:{number}"
        name, *args = item.split("::")
        if name in ("IPaddr", "IPaddr2") or (not args and re.match(r"^\d+\.\d+\.\d+\.\d+", name)):
            spec = args[0] if args else name
            try:
                vip, interface, guessed = _vip(spec)
            except ValueError as error:
                problems.append(f"{where}: {item}: {error}")
                continue
            if res.vip is not None:
                notes.append(f"{where}: {item} not carried over: only one VIP is supported")
                continue
            res.vip, res.vip_interface = vip, interface
            if guessed:
                notes.append(f"{where}: {item} has no netmask: assumed /24; check vip.address")
            if position > 0:
                notes.append(
                    f"{where}: the VIP came after {', '.join(items[:position])} in heartbeat; "
                    "the agent claims the VIP before it starts any service"
                )
        elif name == "MailTo":
            if not args:
                problems.append(f"{where}: {item}: expected MailTo::ADDRESS[::SUBJECT]")
                continue
            res.mail_to += [a for a in args[0].split(",") if a]
        elif name in NOT_SUPPORTED:
            notes.append(f"{where}: {item} not carried over: {NOT_SUPPORTED[name]}")
        else:
            service = _service(name, args, ha_dir, names)
            res.services.append(service)
            notes.append(
                f"{where}: {item} became a {service['kind']} resource; heartbeat read its "
                "status from the output (running/OK), the agent reads the exit code "
                "(LSB: 0 running, 3 stopped): check its status command"
            )
    return res


def _service(name: str, args: list[str], ha_dir: Path, names: set[str]) -> dict[str, str]:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", name).strip("-.") or "service"
    unique, n = base[:60], 2
    while unique in names:
        unique, n = f"{base[:57]}-{n}", n + 1
    names.add(unique)
    local = ha_dir / "resource.d" / name
    if not local.exists() and not args:
        return {"name": unique, "kind": "sysv", "script": name}
    script = f"/etc/ha.d/resource.d/{name}" if local.exists() else f"/etc/init.d/{name}"
    # the agent runs these lines with /bin/sh -c: every word is quoted, so that an
    # argument is passed to the script as it stood in haresources, never run
    command = shlex.join([script, *args])
    return {
        "name": unique,
        "kind": "script",
        "start": f"{command} start",
        "stop": f"{command} stop",
        "status": f"{command} status",
    }


def _read_authkeys(path: Path, problems: list[str], notes: list[str]) -> str:
    """The new secret file's text."""
    active: int | None = None
    keys: dict[int, tuple[str, str, int]] = {}
    for number, text in _lines(path):
        where = f"{path}:{number}"
        parts = text.split(None, 2)
        if parts[0] == "auth":
            if len(parts) != 2 or not parts[1].isdigit():
                problems.append(f"{where}: expected 'auth KEYID'")
            else:
                active = int(parts[1])
            continue
        if not parts[0].isdigit() or len(parts) < 2:
            problems.append(f"{where}: expected 'KEYID METHOD [KEY]' or 'auth KEYID'")
            continue
        method = parts[1]
        if method not in ("sha1", "md5", "crc"):
            problems.append(f"{where}: unknown method {method!r}; heartbeat knows sha1, md5, crc")
            continue
        if method != "crc" and len(parts) < 3:
            problems.append(f"{where}: {method} needs a key: 'KEYID {method} KEY'")
            continue
        keys[int(parts[0])] = (method, parts[2] if len(parts) > 2 else "", number)
    if active is None:
        problems.append(f"{path}: no 'auth KEYID' line naming the key in use")
        return ""
    if active not in keys:
        problems.append(f"{path}: 'auth {active}' names a key that is not defined")
        return ""
    method, key, number = keys[active]
    where = f"{path}:{number}"
    if method == "crc":
        notes.append(f"{where}: crc authenticates nothing; a new random secret was generated")
    elif len(key) >= 2 * MIN_SECRET_BYTES and 1 <= active <= 255:
        notes.append(
            f"{where}: the {method} key ({len(key)} characters) is long enough for "
            "HMAC-SHA256 and was reused (hex-encoded); heartbeat's own HMAC is not: "
            "consider a fresh one (`mosqit-failover gen-secret`)"
        )
        return f"# from heartbeat authkeys key {active}\n{active} {key.encode().hex()}\n"
    else:
        notes.append(
            f"{where}: the {method} key has {len(key)} characters; heartbeat keys cannot be "
            f"reused for HMAC-SHA256 under {2 * MIN_SECRET_BYTES} characters: a new random "
            "secret was generated (copy the same file to both nodes)"
        )
    return generate_secret_text()


def _q(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _timing(times: dict[str, float], notes: list[str]) -> list[str]:
    if "keepalive" not in times and "deadtime" not in times and "initdead" not in times:
        return []
    lines = ["[timing]"]
    keepalive = min(max(times.get("keepalive", 0.1), 0.01), 10.0)
    lines += [f"interval = {_q(_duration(keepalive))}", f"heartbeat = {_q(_duration(keepalive))}"]
    if "deadtime" in times:
        misses = min(max(math.ceil(times["deadtime"] / keepalive), 1), 100)
        service_timeout = min(max(misses * keepalive, times["deadtime"], 0.1), 600)
        lines += [f"misses = {misses}", f"service_timeout = {_q(_duration(service_timeout))}"]
    if "initdead" in times:
        lines.append(f"startup_grace = {_q(_duration(min(times['initdead'], 3600)))}")
    notes.append(
        "timing: heartbeat's keepalive/deadtime were carried over as interval x misses; the "
        "agent's defaults (100ms x 3) fail over in under a second: consider removing [timing]"
    )
    return [*lines, ""]


def _networks(
    cf: _HaCf, nodes: list[str], notes: list[str]
) -> tuple[list[tuple[str, str, list[str], str]], bool]:
    """[(network, interface, address per node, subnet)] and whether all was known."""
    complete = True
    interfaces = list(cf.interfaces)
    if len(interfaces) > 2:
        notes.append(f"only two networks are used: {', '.join(interfaces[2:])} not carried over")
    while len(interfaces) < 2:
        notes.append(
            "heartbeat used fewer than two networks; the agent needs two (one per switch): "
            "fill in the second network's interface and addresses"
        )
        interfaces.append(f"FILL-IN: interface {len(interfaces) + 1}")
        complete = False
    networks = []
    for net, interface in zip(("a", "b"), interfaces[:2], strict=True):
        known = [str(a) for a in cf.interfaces.get(interface, [])]
        addresses = []
        for index, node in enumerate(nodes):
            if index < len(known):
                addresses.append(known[index])
            else:
                addresses.append(f"FILL-IN: {node}'s address on {interface}")
                complete = False
        if len(known) == len(nodes) and known:
            notes.append(
                f"network {net} ({interface}): addresses given to nodes in ha.cf's order "
                f"({', '.join(f'{n} {a}' for n, a in zip(nodes, known, strict=False))}); check them"
            )
        if known:
            subnet = str(ipaddress.IPv4Network(f"{known[0]}/24", strict=False))
            notes.append(f"network {net}: subnet {subnet} assumed (/24); check it")
        else:
            subnet = f"FILL-IN: subnet of {interface}"
            complete = False
        networks.append((net, interface, addresses, subnet))
    return networks, complete


def convert(ha_dir: Path, cluster: str = "ha") -> Result:
    """Read ha.cf, haresources and authkeys under ha_dir; see the module doc."""
    problems: list[str] = []
    notes: list[str] = []
    files = {name: ha_dir / name for name in ("ha.cf", "haresources", "authkeys")}
    for path in files.values():
        if not path.is_file():
            problems.append(
                f"{path}: missing; a heartbeat directory has ha.cf, haresources, authkeys"
            )
    if problems:
        raise ImportError_(problems)
    try:
        cf = _read_hacf(files["ha.cf"], problems, notes)
        nodes = cf.nodes
        if len(nodes) != 2:
            problems.append(
                f"{files['ha.cf']}: {len(nodes)} node(s) ({', '.join(nodes) or 'no node line'}); "
                "the agent runs exactly two: list both with 'node NAME'"
            )
        res = _read_haresources(files["haresources"], nodes, ha_dir, problems, notes)
        secret = _read_authkeys(files["authkeys"], problems, notes)
    except OSError as error:
        raise ImportError_([f"cannot read {error.filename}: {error.strerror}"]) from None
    if problems:
        raise ImportError_(problems)
    networks, complete = _networks(cf, nodes, notes)
    out = [
        "# converted from heartbeat by `mosqit-failover import-heartbeat`; check every",
        "# assumption listed on stderr, then run `mosqit-failover check-config`",
        "[cluster]",
        f"name = {_q(cluster)}",
        f"preferred = {_q(res.owner)}",
        f"failback = {_q(bool(cf.auto_failback))}",
        "",
        *_timing(cf.times, notes),
        "[vip]",
    ]
    if res.vip is None:
        notes.append("haresources has no IPaddr: fill in vip.address")
        complete = False
    out.append(f"address = {_q(res.vip if res.vip else 'FILL-IN: VIP like 192.0.2.50/24')}")
    vip_interface = res.vip_interface or networks[0][1]
    if res.vip_interface and res.vip_interface not in [n[1] for n in networks]:
        notes.append(f"the VIP's interface {res.vip_interface} is not one of the two networks")
    out += [f"interface = {_q(vip_interface)}", ""]
    switches = _switches(cf, networks, notes)
    for net, _, _, subnet in networks:
        out.append(f"[networks.{net}]")
        out.append(f"subnet = {_q(subnet)}")
        if net in switches:
            out.append(f"switch = {_q(switches[net])}")
        out.append("")
    for index, node in enumerate(nodes):
        out.append(f"[nodes.{_q(node) if not re.match(r'^[A-Za-z0-9_-]+$', node) else node}]")
        for net, interface, addresses, _ in networks:
            out.append(
                f"{net} = {{ interface = {_q(interface)}, address = {_q(addresses[index])} }}"
            )
        out.append("")
    for service in res.services:
        out.append("[[resources]]")
        out += [f"{key} = {_q(value)}" for key, value in service.items()]
        out.append("")
    if res.mail_to:
        out += ["[alerts]", f"mail_to = [{', '.join(_q(m) for m in res.mail_to)}]", ""]
    return Result("\n".join(out), secret, notes, complete)


def _switches(
    cf: _HaCf, networks: list[tuple[str, str, list[str], str]], notes: list[str]
) -> dict[str, str]:
    switches: dict[str, str] = {}
    for address, where in cf.pings:
        home = None
        for net, _, _, subnet in networks:
            if not subnet.startswith("FILL-IN") and address in ipaddress.IPv4Network(subnet):
                home = net
        if home is None:
            notes.append(
                f"{where}: ping node {address} not carried over: it lies in neither network; "
                "the agent probes one switch address per network (networks.NAME.switch)"
            )
        elif home in switches:
            notes.append(f"{where}: ping node {address}: network {home} already probes one")
        else:
            switches[home] = str(address)
    return switches


def add_import_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `import-heartbeat` on the `mosqit-failover` sub-command parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "import-heartbeat",
        help="convert a heartbeat directory (ha.cf, haresources, authkeys) into our config",
    )
    parser.add_argument("directory", nargs="?", default="/etc/ha.d", help="default /etc/ha.d")
    parser.add_argument("--cluster", default="ha", help="cluster name for the new config")
    parser.add_argument("-o", "--output", help="write the config here (default: stdout)")
    parser.add_argument("--secret", help="write the new secret file here (mode 0600)")
    parser.add_argument(
        "--force", action="store_true", help="replace existing files (-o, --secret)"
    )
    parser.set_defaults(func=run_import)
    return parser


CONFIG_MODE = 0o644  # the config holds no secret: the secret is a file of its own
SECRET_MODE = 0o600


@dataclass(frozen=True)
class _Output:
    path: Path
    text: str
    mode: int
    what: str


def _destination_problem(out: _Output, force: bool) -> str | None:
    """Why ``out`` cannot be written (checked before anything is written), or None."""
    parent = out.path.parent
    if not parent.is_dir():
        return (
            f"cannot write the {out.what} to {out.path}: the directory {parent} does not "
            "exist; create it or choose another path"
        )
    if out.path.is_dir():
        return f"cannot write the {out.what} to {out.path}: it is a directory; give a file name"
    if (out.path.exists() or out.path.is_symlink()) and not force:
        return f"{out.path} already exists: pass --force to replace it (the {out.what})"
    return None


def _stage(out: _Output) -> str:
    """A temporary file in the output's directory, with its text and final mode, on disk."""
    fd, tmp = tempfile.mkstemp(dir=out.path.parent, prefix=f".{out.path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(fd, out.mode)  # 0600 from the start for a secret, whatever the umask
            handle.write(out.text)
            handle.flush()
            os.fsync(fd)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _put(tmp: str, path: Path, replace: bool) -> None:
    """Rename the staged file into place: a reader sees the old file or the new one, never a
    part. Without ``replace`` an existing file is never overwritten (FileExistsError)."""
    if replace:
        os.replace(tmp, path)
    else:
        os.link(tmp, path)  # atomic too, and fails if the file appeared meanwhile
        os.unlink(tmp)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_outputs(outputs: list[_Output], force: bool) -> str | None:
    """Write every output, or (when one cannot be written) none; the problem, or None.

    Every destination is checked, then every file is written to a temporary file
    beside it, and only then are they renamed into place.
    """
    problems = [p for p in (_destination_problem(out, force) for out in outputs) if p]
    paths = [out.path.resolve() for out in outputs]
    if len(set(paths)) < len(paths):
        problems.append(f"-o and --secret name the same file ({outputs[0].path})")
    if problems:
        return "; ".join(problems)
    staged: list[str] = []
    try:
        try:
            for out in outputs:
                staged.append(_stage(out))
        except OSError as error:
            return f"cannot write the {out.what} to {out.path}: {error.strerror or error}"
        created: list[Path] = []
        for out, tmp in zip(outputs, staged, strict=True):
            existed = out.path.exists() or out.path.is_symlink()
            try:
                _put(tmp, out.path, force)
            except OSError as error:
                for path in created:  # a file that appeared meanwhile (or a full disk)
                    path.unlink(missing_ok=True)
                if isinstance(error, FileExistsError):
                    return f"{out.path} already exists: pass --force to replace it"
                return f"cannot write the {out.what} to {out.path}: {error.strerror or error}"
            if not existed:
                created.append(out.path)
    finally:
        for tmp in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return None


def run_import(args: argparse.Namespace) -> int:
    """Print (or write) the config; notes and problems go to stderr. 0 done, 1 incomplete,
    2 malformed input or an output that cannot be written (then nothing is written)."""
    try:
        result = convert(Path(args.directory), args.cluster)
    except ImportError_ as error:
        print(f"import-heartbeat: {len(error.problems)} malformed line(s):", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    outputs = []
    if args.secret:
        outputs.append(_Output(Path(args.secret), result.secret, SECRET_MODE, "secret"))
    if args.output:
        outputs.append(_Output(Path(args.output), result.toml, CONFIG_MODE, "config"))
    failure = _write_outputs(outputs, getattr(args, "force", False))
    if failure:
        print(f"import-heartbeat: {failure}; nothing was written", file=sys.stderr)
        return 2
    if not args.output:
        sys.stdout.write(result.toml)
    if args.secret:
        print(
            f"wrote the secret to {args.secret} (mode 0600); copy it to the peer", file=sys.stderr
        )
    else:
        print(
            "no secret written: pass --secret PATH, or run `mosqit-failover gen-secret`",
            file=sys.stderr,
        )
    print("not carried over, or assumed:", file=sys.stderr)
    for note in result.notes:
        print(f"  - {note}", file=sys.stderr)
    if not result.complete:
        print("the config has FILL-IN values: edit them, then run check-config", file=sys.stderr)
        return 1
    return 0
