"""`mosqit-failover import-heartbeat /etc/ha.d`: a heartbeat (v1) setup to our TOML config.

Reads the three files of a heartbeat directory (docs/migration.md says what maps to
what): ha.cf (mosqit_failover.heartbeat_hacf), haresources and authkeys
(mosqit_failover.heartbeat_resources). `auto_failback` keeps heartbeat's meaning,
its default ("legacy") included: that fails back.

`convert(directory)` is pure but for reading those files: it returns the TOML text,
the secret file text and the notes (what was assumed and what was not carried over),
or raises `ImportError_` naming every malformed line of ha.cf and haresources with
its file and line number. Values it cannot know are written as "FILL-IN: ..."
strings, which `check-config` names one by one.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosqit_failover.config import _NAME as NAME_RULE  # the config's rule for names
from mosqit_failover.config import PLACEHOLDER, Timing
from mosqit_failover.heartbeat_hacf import (
    HaCf,
    HostFacts,
    Network,
    read_hacf,
    read_networks,
    which_node,
)
from mosqit_failover.heartbeat_resources import Resources, read_authkeys, read_haresources

AUTO_FAILBACK_SOURCE = "linux-ha.org/ha.cf/AutoFailbackDirective"


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


def _q(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_q(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL.sub(_escape, text) + '"'


# what a TOML basic string may not hold as such (a tab may), and C1, which it may but
# a terminal acts on (the TOML goes to stdout): written as \uXXXX
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04X}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _timing(times: dict[str, float], notes: list[str]) -> list[str]:
    if "keepalive" not in times and "deadtime" not in times and "initdead" not in times:
        return []
    lines = ["[timing]"]
    given = times.get("keepalive", 0.1)
    keepalive = min(max(given, 0.01), 10.0)
    if keepalive != given:  # heartbeat takes any number; the agent's interval is bounded
        notes.append(
            f"timing: keepalive {_duration(given) if given else '0'} is outside the agent's "
            f"10ms-10s: interval = {_duration(keepalive)} instead"
        )
    lines += [f"interval = {_q(_duration(keepalive))}", f"heartbeat = {_q(_duration(keepalive))}"]
    if 2 * keepalive > Timing().switch_timeout:  # a switch judged no faster than the peer
        lines.append(f"switch_timeout = {_q(_duration(2 * keepalive))}")
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


def _failback(cf: HaCf, notes: list[str]) -> str:
    """cluster.failback as heartbeat did it, with the reason as a TOML comment."""
    if cf.auto_failback in ("on", "off"):
        return f"failback = {_q(cf.auto_failback == 'on')}  # auto_failback {cf.auto_failback}"
    said = "auto_failback legacy" if cf.auto_failback else "no auto_failback in ha.cf"
    notes.append(
        f"{said}: heartbeat's default is legacy, which fails back to the preferred node "
        f"({AUTO_FAILBACK_SOURCE}): failback = true; set false to stay on the standby"
    )
    return f"failback = true  # {said}: heartbeat's legacy default fails back"


NAME_TEXT = "letters, digits, '.', '_' or '-', at most 63, starting with a letter or digit"


def _node_keys(nodes: list[str], notes: list[str]) -> dict[str, str]:
    """Each node's name in the config: its ha.cf name, or a placeholder (with a note) when
    the config refuses that name (check-config names it then)."""
    keys: dict[str, str] = {}
    for name in nodes:
        keys[name] = name
        if not NAME_RULE.fullmatch(name):
            keys[name] = f"{PLACEHOLDER}: a node name for {name!r}"
            notes.append(
                f"node {name!r} in ha.cf is not a name the agent accepts ({NAME_TEXT}): "
                "its [nodes] table name is a placeholder; fill in a name (the host's "
                "`uname -n` if it can be renamed, else pass --node NAME to the agent)"
            )
    return keys


def default_cluster_name(nodes: list[str]) -> str | None:
    """A cluster name of the pair's own: its node names (short forms when they differ),
    sorted, joined by '-' ("bill1-bill2"): the same on both nodes and on every run, and
    unlike any other pair's. None when that is no valid name (too long, odd characters)."""
    shorts = [n.split(".")[0] for n in nodes]
    names = shorts if len(set(shorts)) == len(shorts) and all(shorts) else nodes
    name = "-".join(sorted(names))
    return name if NAME_RULE.fullmatch(name) else None


def _cluster_line(cluster: str | None, cf: HaCf, notes: list[str]) -> str:
    if cluster is not None:
        return f"name = {_q(cluster)}"
    name = default_cluster_name(cf.nodes)
    why = "each pair needs a name of its own, or fleet alerts mix pairs up (docs/monitoring.md)"
    if name is None:
        notes.append(
            f"cluster.name: the node names make no valid cluster name; {why}: "
            "fill it in, or pass --cluster NAME"
        )
        return f"name = {_q(PLACEHOLDER + ': a cluster name unlike every other pair')}"
    notes.append(
        f"cluster.name = {name!r}, from the node names; {why}: pass --cluster NAME for "
        "another (the same on both nodes)"
    )
    return f"name = {_q(name)}  # from the node names: unique to this pair"


def convert(
    ha_dir: Path,
    cluster: str | None = None,
    *,
    facts: HostFacts | None = None,
    node: str | None = None,
) -> Result:
    """Read ha.cf, haresources and authkeys under ha_dir; see the module doc. `cluster`
    is the cluster name (None: from the node names, see default_cluster_name); `facts`
    describe the host the import runs on (none: nothing is known of it); `node` is the
    node whose ha.cf this is, when that is not this host."""
    facts = facts or HostFacts()
    problems: list[str] = []
    if cluster is not None and not NAME_RULE.fullmatch(cluster):
        raise ImportError_([f"--cluster {cluster!r}: a cluster name is {NAME_TEXT}"])
    notes: list[str] = []
    if not ha_dir.is_dir():
        what = "does not exist" if not os.path.lexists(ha_dir) else "is not a directory"
        raise ImportError_(
            [f"{ha_dir}: {what}; give heartbeat's directory (like /etc/ha.d), not a file in it"]
        )
    files = {name: ha_dir / name for name in ("ha.cf", "haresources", "authkeys")}
    for name in ("ha.cf", "haresources"):
        problem = _input_problem(files[name])
        if problem:
            problems.append(f"{files[name]}: {problem}")
    if problems:
        raise ImportError_(problems)
    try:
        cf = read_hacf(files["ha.cf"], problems, notes)
        if len(cf.nodes) != 2:
            problems.append(
                f"{files['ha.cf']}: {len(cf.nodes)} node(s) "
                f"({', '.join(cf.nodes) or 'no node line'}); the agent runs exactly two: "
                "list both with 'node NAME'"
            )
        res = read_haresources(files["haresources"], cf.nodes, ha_dir, problems, notes)
        secret = read_authkeys(files["authkeys"], notes)
    except OSError as error:
        raise ImportError_([f"cannot read {error.filename}: {error.strerror}"]) from None
    if problems:
        raise ImportError_(problems)
    if any("." in n for n in cf.nodes):
        notes.append(
            "node names are kept as ha.cf has them (heartbeat matched them to `uname -n`): "
            "the agent picks the node named like `uname -n`, then like its short form; "
            "elsewhere pass --node NAME"
        )
    try:
        me, on_me = which_node(cf, facts, node, notes)
    except ValueError as error:
        raise ImportError_([str(error)]) from None
    networks = read_networks(cf, facts, me, on_me, notes)
    keys = _node_keys(cf.nodes, notes)
    preferred = keys.get(res.owner, "")
    if not preferred or preferred.startswith(PLACEHOLDER):
        preferred = PLACEHOLDER + ": the preferred node (a node name)"
    out = [
        "# converted from heartbeat by `mosqit-failover import-heartbeat`; check every",
        "# assumption listed on stderr, then run `mosqit-failover check-config`",
        "[cluster]",
        _cluster_line(cluster, cf, notes),
        f"preferred = {_q(preferred)}",
        _failback(cf, notes),
        "",
        *_timing(cf.times, notes),
        *_vip_table(res, networks, notes),
    ]
    switches = _switches(cf, networks, notes)
    for network in networks:
        out.append(f"[networks.{network.name}]")
        out.append(f"subnet = {_q(network.subnet)}")
        if network.name in switches:
            out.append(f"switch = {_q(switches[network.name])}")
        out.append("")
    for name in cf.nodes:
        key = keys[name]
        out.append(f"[nodes.{_q(key) if not re.fullmatch(r'[A-Za-z0-9_-]+', key) else key}]")
        for network in networks:
            port = {"interface": network.interface, "address": network.addresses[name]}
            out.append(f"{network.name} = {_q(port)}")
        out.append("")
    for service in res.services:
        out.append("[[resources]]")
        out += [f"{key} = {_q(value)}" for key, value in service.items()]
        out.append("")
    if res.mail_to:
        out += ["[alerts]", f"mail_to = [{', '.join(_q(m) for m in res.mail_to)}]", ""]
    toml = "\n".join(out)
    return Result(toml, secret, notes, PLACEHOLDER not in toml)


def _vip_table(res: Resources, networks: list[Network], notes: list[str]) -> list[str]:
    vip: ipaddress.IPv4Interface | str | None = res.vip
    if res.vip is not None and res.vip_guessed:
        home = next((n for n in networks if n.holds(res.vip.ip)), None)
        if home:
            vip = ipaddress.IPv4Interface(f"{res.vip.ip}/{home.subnet.split('/')[1]}")
        notes.append(f"the VIP {res.vip.ip} has no netmask in haresources: {vip} assumed; check it")
    if vip is None:
        notes.append("haresources has no IPaddr: fill in vip.address")
        vip = f"{PLACEHOLDER}: VIP like 192.0.2.50/24"
    interface = res.vip_interface or networks[0].interface
    if res.vip_interface and res.vip_interface not in [n.interface for n in networks]:
        notes.append(
            f"the VIP's interface {res.vip_interface} in haresources is none of the two "
            "networks' interfaces, and the agent puts the VIP on one of them: fill in "
            "vip.interface"
        )
        interface = f"{PLACEHOLDER}: one of the networks' interfaces ({res.vip_interface} "
        interface += "in haresources is none of them)"
    return ["[vip]", f"address = {_q(vip)}", f"interface = {_q(interface)}", ""]


def _switches(cf: HaCf, networks: list[Network], notes: list[str]) -> dict[str, str]:
    switches: dict[str, str] = {}
    for address, where in cf.pings:
        home = None
        for network in networks:
            if network.holds(address):
                home = network.name
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
    from mosqit_failover.cli import path_argument

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "import-heartbeat",
        help="convert a heartbeat directory (ha.cf, haresources, authkeys) into our config",
    )
    parser.add_argument("directory", nargs="?", default="/etc/ha.d", help="default /etc/ha.d")
    parser.add_argument(
        "--cluster",
        help="cluster name for the new config, unique in your fleet (default: the node "
        "names, sorted, like bill1-bill2)",
    )
    parser.add_argument(
        "--node",
        help="the node this ha.cf comes from (default: the node named like this host, "
        "as heartbeat does); its ucast lines name the other node's addresses",
    )
    parser.add_argument(
        "-o", "--output", type=path_argument, help="write the config here (default: stdout)"
    )
    parser.add_argument(
        "--secret", type=path_argument, help="write the new secret file here (mode 0600)"
    )
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


def _destination_problem(out: _Output, force: bool, source: Path) -> str | None:
    """Why ``out`` cannot be written (checked before anything is written), or None.
    ``source`` is heartbeat's directory, which is never written into: its files are the
    operator's way back (a helper's finding: -o DIR/ha.cf --force replaced ha.cf)."""
    parent = out.path.parent
    if not parent.is_dir():
        return (
            f"cannot write the {out.what} to {out.path}: the directory {parent} does not "
            "exist; create it or choose another path"
        )
    if out.path.is_dir():
        return f"cannot write the {out.what} to {out.path}: it is a directory; give a file name"
    if parent.resolve() == source.resolve():
        return (
            f"cannot write the {out.what} to {out.path}: it is in heartbeat's directory "
            f"{source}, whose files are the way back to heartbeat; write it elsewhere, like "
            f"/etc/mosqit-failover/{'secret' if out.mode == SECRET_MODE else 'config.toml'}"
        )
    try:
        kind = stat.S_IFMT(out.path.lstat().st_mode)
    except FileNotFoundError:
        return None
    if kind != stat.S_IFREG:
        # --force renames over the name: a device node (/dev/full), a FIFO or a link
        # would be replaced by a file (a helper's finding)
        what = "a symlink" if kind == stat.S_IFLNK else "not a regular file"
        return (
            f"cannot write the {out.what} to {out.path}: it is {what}, and is never "
            "replaced; give the path of a regular file (or a new one)"
        )
    if not force:
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


def _write_outputs(outputs: list[_Output], force: bool, source: Path) -> str | None:
    """Write every output, or (when one cannot be written) none; the problem, or None.

    Every destination is checked, then every file is written to a temporary file
    beside it, and only then are they renamed into place.
    """
    problems = [p for p in (_destination_problem(out, force, source) for out in outputs) if p]
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


def _input_problem(path: Path) -> str | None:
    """Why heartbeat's file ``path`` cannot be read, or None."""
    try:
        kind = stat.S_IFMT(path.stat().st_mode)
    except FileNotFoundError:
        if path.is_symlink():
            return "a symlink to nothing; point it at the file or copy the file here"
        return "missing; a heartbeat directory has ha.cf, haresources, authkeys"
    except OSError as error:  # a symlink loop, a path through a file
        return f"cannot be read ({error.strerror}); give the real file"
    if kind != stat.S_IFREG:
        return "not a regular file (a directory, a FIFO, a device); give heartbeat's file"
    return None


def run_import(args: argparse.Namespace) -> int:
    """Print (or write) the config; notes and problems go to stderr. 0 done, 1 incomplete,
    2 malformed input or an output that cannot be written (then nothing is written)."""
    try:
        result = convert(
            Path(args.directory),
            args.cluster,
            facts=HostFacts.of_this_host(),
            node=getattr(args, "node", None),
        )
    except ImportError_ as error:
        print(
            f"import-heartbeat: cannot convert, {len(error.problems)} problem(s):", file=sys.stderr
        )
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    outputs = []
    if args.secret:
        outputs.append(_Output(Path(args.secret), result.secret, SECRET_MODE, "secret"))
    if args.output:
        outputs.append(_Output(Path(args.output), result.toml, CONFIG_MODE, "config"))
    failure = _write_outputs(outputs, getattr(args, "force", False), Path(args.directory))
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
