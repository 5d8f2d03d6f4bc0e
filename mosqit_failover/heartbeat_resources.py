"""heartbeat's haresources and authkeys for import-heartbeat.

haresources: the preferred node's group (and any other group of the same node), in
order: `IPaddr`/`IPaddr2` (or a bare address) become the VIP, `MailTo` [alerts]
mail_to, `drbddisk` a script resource running `drbdadm primary/secondary`,
`Filesystem` and heartbeat's `apache` their OCF agents of resource-agents, init
scripts sysv resources (with arguments: script resources). A name close to a
resource agent's is questioned ("did you mean IPaddr2?"), what cannot be carried
over is listed with the reason.

authkeys: never copied as is. heartbeat's sha1/md5 keys are passphrases for its own
HMAC; a key of at least 32 characters is reused (hex-encoded) for our HMAC-SHA256; a
shorter one, crc, or an authkeys heartbeat would not read (a typo) is replaced by a
new random secret, with a note: the import never stops on authkeys.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosqit_failover.authkeys import MIN_SECRET_BYTES, generate_secret_text
from mosqit_failover.config import PLACEHOLDER
from mosqit_failover.heartbeat_hacf import ascii_number, did_you_mean, node_like, read_lines

NOT_SUPPORTED = {
    "LVM": "volume groups on shared storage are not managed: activate the volume group in a "
    "script resource, or use the OCF agent ocf:heartbeat:LVM-activate",
    "Raid1": "software RAID on shared storage is not managed",
    "IPv6addr": "only one IPv4 VIP is supported",
    "IPsrcaddr": "setting the preferred source address is not supported",
    "SendArp": "not needed: the agent sends gratuitous ARP itself (vip.garp_count)",
    "AudibleAlarm": "not supported; use [alerts] hooks",
    "WinPopup": "not supported; use [alerts] hooks",
    "portblock": "not supported",
    "Delay": "not supported; put the pause into the next service's own start",
}
# heartbeat's own resource scripts (/etc/ha.d/resource.d): a haresources name close to
# one of these is more likely a typo than an init script of that name


RESOURCE_AGENTS = (
    *NOT_SUPPORTED,
    *("IPaddr", "IPaddr2", "MailTo", "Filesystem", "drbddisk", "drbdupper", "apache"),
    *("db2", "hto-mapfuncs", "ICP", "ids", "LinuxSCSI", "LVSSyncDaemonSwap", "OCF"),
    *("ServeRAID", "WAS", "Xinetd"),
)


@dataclass
class Resources:
    owner: str = ""
    vip: ipaddress.IPv4Interface | None = None
    vip_guessed: bool = False  # no netmask given: /24 unless a network says otherwise
    vip_interface: str = ""
    services: list[dict[str, Any]] = field(default_factory=list)
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


def _agent_name(name: str, ha_dir: Path, where: str, notes: list[str]) -> str:
    """`name` as heartbeat's resource agent it stands for: a known agent, a script of
    ha_dir/resource.d, an init script, or, for a misspelt agent, the agent meant."""
    if name in RESOURCE_AGENTS or (ha_dir / "resource.d" / name).exists():
        return name
    same = next((agent for agent in RESOURCE_AGENTS if agent.lower() == name.lower()), None)
    if same:
        notes.append(
            f"{where}: {name}: heartbeat has no resource agent {name!r} (names are "
            f"case-sensitive): did you mean {same}? Read as {same}"
        )
        return same
    return name


def read_haresources(
    path: Path, nodes: list[str], ha_dir: Path, problems: list[str], notes: list[str]
) -> Resources:
    res = Resources()
    groups = read_lines(path)
    if not groups:
        problems.append(f"{path}: no resource group; expected 'NODE RESOURCE...'")
        return res
    number, text = groups[0]
    owner = text.split()[0]
    res.owner = node_like(owner, nodes) or ""
    if nodes and not res.owner:
        notes.append(
            f"{path}:{number}: {owner!r} is not a node of ha.cf ({', '.join(nodes)}); "
            "heartbeat needs the preferred node's name there: fill in cluster.preferred"
        )
    elif res.owner != owner:
        notes.append(f"{path}:{number}: {owner!r} read as node {res.owner!r}")
    items: list[tuple[str, str]] = []  # (where, item) of every group of the same node
    for number, text in groups:
        first, *rest = text.split()
        if (node_like(first, nodes) or first) != (res.owner or owner):
            notes.append(
                f"{path}:{number}: the group of {first} is not carried over: one node is "
                "active at a time, with one group (merge the groups or use two clusters)"
            )
            continue
        if number != groups[0][0]:
            notes.append(f"{path}:{number}: a second group of {first}: merged into the first")
        items += [(f"{path}:{number}", item) for item in rest]
    names: set[str] = set()
    for position, (where, item) in enumerate(items):
        name, *args = item.split("::")
        bare_address = not args and re.match(r"^\d+\.\d+\.\d+\.\d+", name)
        name = name if bare_address else _agent_name(name, ha_dir, where, notes)
        if name in ("IPaddr", "IPaddr2") or bare_address:
            before = [i for _, i in items[:position]]
            _read_vip(res, item, args[0] if args else name, before, where, notes)
        elif name == "MailTo":
            if not args:
                problems.append(f"{where}: {item}: expected MailTo::ADDRESS[::SUBJECT]")
                continue
            for address in args[0].split(","):
                if address and address not in res.mail_to:
                    res.mail_to.append(address)
        elif name in ("drbddisk", "drbdupper"):
            res.services.append(_drbd(args, names, where, notes, item))
        elif name == "Filesystem":
            res.services.append(_filesystem(args, names, where, notes, item))
        elif name in NOT_SUPPORTED:
            notes.append(f"{where}: {item} not carried over: {NOT_SUPPORTED[name]}")
        elif name in RESOURCE_AGENTS:
            res.services.append(_heartbeat_agent(name, args, names, where, notes, item))
        elif args and (hint := did_you_mean(name, RESOURCE_AGENTS)):
            # arguments after '::' are for resource agents (init scripts seldom take any),
            # and this name is close to one: a typo, not an init script; ask, do not guess
            res.services.append(
                {
                    "name": _unique(name, names),
                    "kind": f"{PLACEHOLDER}: the kind of {item}; no agent {name!r}{hint}",
                }
            )
            notes.append(f"{where}: {item}: heartbeat has no resource agent {name!r}{hint}")
        else:
            service = init_script_resource(name, args, ha_dir, names)
            res.services.append(service)
            notes.append(
                f"{where}: {item} became a {service['kind']} resource; heartbeat read its "
                "status from the output (running/OK), the agent reads the exit code "
                "(LSB: 0 running, 3 stopped) every timing.monitor_interval, and restarts "
                "or stops the service on it: check its status command"
            )
    return res


def _read_vip(
    res: Resources, item: str, spec: str, before: list[str], where: str, notes: list[str]
) -> None:
    try:
        vip, interface, guessed = _vip(spec)
    except ValueError as error:
        notes.append(f"{where}: {item}: {error}: fill in vip.address")
        return
    if res.vip is not None:
        notes.append(f"{where}: {item} not carried over: only one VIP is supported")
        return
    res.vip, res.vip_interface, res.vip_guessed = vip, interface, guessed
    if before:
        notes.append(
            f"{where}: the VIP came after {', '.join(before)} in heartbeat; "
            "the agent claims the VIP before it starts any service"
        )


def _unique(base_name: str, names: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base_name).strip("-.") or "service"
    unique, n = base[:60], 2
    while unique in names:
        unique, n = f"{base[:57]}-{n}", n + 1
    names.add(unique)
    return unique


def _drbd(
    args: list[str], names: set[str], where: str, notes: list[str], item: str
) -> dict[str, Any]:
    """heartbeat's drbddisk: `drbdadm primary RES` on start, `secondary` on stop."""
    resource = args[0] if args and args[0] else "all"
    quoted = shlex.quote(resource)
    notes.append(
        f"{where}: {item} became a script resource running `drbdadm primary/secondary "
        f"{resource}` as drbddisk did; DRBD itself stays configured by drbd-utils on both "
        "nodes (the linbit OCF agent is a promotable Pacemaker clone and does not fit a "
        "start/stop resource); or replace DRBD by [[sync]] tables"
    )
    return {
        "name": _unique(f"drbd-{resource}", names),
        "kind": "script",
        "start": f"drbdadm primary {quoted}",
        "stop": f"drbdadm secondary {quoted}",
        # drbd 8.4 prints "Primary/Secondary", drbd 9 "Primary": either way it starts so
        "status": f"drbdadm role {quoted} | grep -q '^Primary'",
    }


def _filesystem(
    args: list[str], names: set[str], where: str, notes: list[str], item: str
) -> dict[str, Any]:
    """heartbeat's Filesystem::DEVICE::DIRECTORY[::FSTYPE[::OPTIONS]] as the OCF agent."""
    if len(args) < 2 or not all(args[:2]):
        notes.append(f"{where}: {item}: expected Filesystem::DEVICE::DIRECTORY[::FSTYPE]")
        return {
            "name": _unique("filesystem", names),
            "kind": f"{PLACEHOLDER}: the mount of {item} (device and directory)",
        }
    params = dict(zip(("device", "directory", "fstype", "options"), args, strict=False))
    notes.append(
        f"{where}: {item} became the OCF agent ocf:heartbeat:Filesystem (Debian package "
        "resource-agents) with the same device, directory and type"
    )
    if len(args) > 4:  # said, not silently dropped
        notes.append(
            f"{where}: {item}: the arguments after the options ({'::'.join(args[4:])}) "
            "were left out: Filesystem takes DEVICE::DIRECTORY::FSTYPE::OPTIONS"
        )
    return {
        "name": _unique(f"fs-{args[1].strip('/')}", names),
        "kind": "ocf",
        "agent": "ocf:heartbeat:Filesystem",
        "params": {k: v for k, v in params.items() if v},
    }


def _heartbeat_agent(
    name: str, args: list[str], names: set[str], where: str, notes: list[str], item: str
) -> dict[str, Any]:
    """One of heartbeat's own resource scripts (heartbeat ran it before any init script of
    the same name): its OCF successor where resource-agents has one, else the script."""
    if name == "apache":
        notes.append(
            f"{where}: {item} is heartbeat's apache agent: it became the OCF agent "
            "ocf:heartbeat:apache (Debian package resource-agents)"
        )
        apache: dict[str, Any] = {"name": _unique(name, names), "kind": "ocf"}
        apache["agent"] = "ocf:heartbeat:apache"
        if args and args[0]:
            apache["params"] = {"configfile": args[0]}
        return apache
    command = shlex.join([f"/etc/ha.d/resource.d/{name}", *args])
    notes.append(
        f"{where}: {item} is heartbeat's own {name} script: it became a script resource "
        "calling it; keep that script on both nodes, and check that its status exits 0 "
        "only when running (the agent checks it every timing.monitor_interval)"
    )
    return {
        "name": _unique(name, names),
        "kind": "script",
        "start": f"{command} start",
        "stop": f"{command} stop",
        "status": f"{command} status",
    }


def init_script_resource(
    name: str, args: list[str], ha_dir: Path, names: set[str]
) -> dict[str, str]:
    unique = _unique(name, names)
    local = (ha_dir / "resource.d" / name).exists()
    if not local and not args:
        return {"name": unique, "kind": "sysv", "script": name}
    script = f"/etc/ha.d/resource.d/{name}" if local else f"/etc/init.d/{name}"
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


def read_authkeys(path: Path, notes: list[str]) -> str:
    """The new secret file's text. Whatever is wrong with authkeys is a note, never a
    failure: its key is replaced anyway unless it is long enough to keep."""
    if not path.is_file():
        notes.append(f"{path}: missing; a new random secret was generated")
        return generate_secret_text()
    active: int | None = None
    keys: dict[int, tuple[str, str, int]] = {}
    for number, text in read_lines(path):
        where = f"{path}:{number}"
        parts = text.split(None, 2)
        if re.fullmatch(r"auth\d+", parts[0]):
            notes.append(f"{where}: {parts[0]!r}: heartbeat expects 'auth KEYID' (a space)")
            continue
        if parts[0] == "auth":
            if len(parts) != 2 or not ascii_number(parts[1]):
                notes.append(f"{where}: expected 'auth KEYID'")
            else:
                active = int(parts[1])
            continue
        if not ascii_number(parts[0]) or len(parts) < 2:
            notes.append(f"{where}: expected 'KEYID METHOD [KEY]' or 'auth KEYID'")
            continue
        method = parts[1]
        if method not in ("sha1", "md5", "crc"):
            hint = did_you_mean(method, ["sha1", "md5", "crc"])
            notes.append(
                f"{where}: unknown method {method!r}{hint}; heartbeat knows sha1, md5, crc"
            )
            continue
        if method != "crc" and len(parts) < 3:
            notes.append(f"{where}: {method} needs a key: 'KEYID {method} KEY'")
            continue
        keys[int(parts[0])] = (method, parts[2] if len(parts) > 2 else "", number)
    if active is None or active not in keys:
        which = "no 'auth KEYID' line" if active is None else f"'auth {active}' names no key"
        notes.append(f"{path}: {which}: a new random secret was generated")
        return generate_secret_text()
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
