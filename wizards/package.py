"""The Debian package on the nodes: which version each has, and installing the operator's .deb.

`find_local` finds the operator's package (``--package PATH``, else the newest
``mosqit-failover_*_all.deb`` in ./dist or the current directory) and reads its
version from the package itself. `installed` asks a node what dpkg has
(``dpkg-query``); `compare_versions` orders versions exactly as dpkg does.

`check_installable` copies the package to a temporary directory on the node
(sftp), lets apt simulate the install (``apt-get -s``, which changes nothing)
and removes the copy again: a node whose apt cannot get a dependency yields one
line naming the missing packages and the fix, before anything is changed.
`install` copies it again and installs it with ``apt-get install -y
./file.deb``: the package itself never comes from the node's apt sources, its
dependencies do. The copy is named ``mosqit-failover_VERSION_all.deb`` whatever
the operator's file is called (apt takes a local file only if it ends in .deb).
apt waits up to LOCK_WAIT seconds for the dpkg lock (apt-daily after a boot);
when it still fails on the lock, the reason says apt was busy, not broken.
The install is recorded in `Changes`: a rollback removes a
package the wizard installed where there was none (``apt-get remove``; the
dependencies apt pulled in stay, ``apt-get autoremove`` is the operator's
call); an upgrade is kept, because the older package is not at hand to go back
to.
"""

from __future__ import annotations

import functools
import io
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mosqit_failover.wizards.changes import Change, Changes
from mosqit_failover.wizards.ssh import Session, SshError

PACKAGE = "mosqit-failover"
PATTERN = f"{PACKAGE}_*_all.deb"
SEARCH_DIRS = (Path("dist"), Path("."))
INSTALL_TIMEOUT = 900.0  # apt may download the dependencies from a slow mirror
# seconds apt waits for the dpkg lock (apt-daily, unattended-upgrades on a fresh node)
LOCK_WAIT = 300
# English messages (they are parsed), no debconf question, and the operator's
# changes to a conffile kept on an upgrade
APT = (
    "env LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -q "
    f"-o DPkg::Lock::Timeout={LOCK_WAIT} "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


class PackageError(Exception):
    """The package cannot be read, found or installed; the message names the fix."""


# ---- versions, as dpkg compares them (deb-version(7)) ---------------------------


def _order(char: str) -> int:
    """dpkg's weight of one character of a non-digit run: ~ sorts before everything."""
    if char == "~":
        return -1
    if char.isascii() and char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (by _order) and numbers (by value)."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i, j = i + 1, j + 1
        start_a, start_b = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        na, nb = int(a[start_a:i] or "0"), int(b[start_b:j] or "0")
        if na != nb:
            return -1 if na < nb else 1
    return 0


def _split(version: str) -> tuple[int, str, str]:
    text = version.strip()
    epoch, _, rest = text.partition(":") if ":" in text else ("0", "", text)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    if not epoch.isdigit() or not upstream or any(c.isspace() for c in text):
        raise PackageError(f"{version!r} is not a Debian version (like 0.1.0 or 1:0.2-1)")
    return int(epoch), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version ``a`` is lower than, equal to or higher than ``b``."""
    (ea, ua, ra), (eb, ub, rb) = _split(a), _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


# ---- the operator's package ---------------------------------------------------


@dataclass(frozen=True)
class LocalPackage:
    path: Path
    version: str


def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ar archive (a .deb is one), by name."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        field = header[48:58].decode("ascii", "replace").strip()
        if not field.isdigit() or pos + 60 + int(field) > len(data):
            raise ValueError(f"corrupt ar member header at byte {pos} (size {field!r})")
        size = int(field)
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)  # members are padded to an even offset
    return members


def read_control(path: Path) -> dict[str, str]:
    """The fields of a .deb's control file (Package, Version, Depends, ...)."""
    members = _ar_members(path.read_bytes())
    name = next((n for n in members if n.startswith("control.tar")), None)
    if name is None:
        raise ValueError("no control.tar member")
    if name.endswith(".zst"):
        raise ValueError("control.tar.zst cannot be read here; build it with dpkg-deb -Zxz")
    with tarfile.open(fileobj=io.BytesIO(members[name]), mode="r:*") as tar:
        member = next((m for m in tar.getmembers() if m.name in ("./control", "control")), None)
        if member is not None and not member.isfile():
            raise ValueError(f"the control file in {name} is not a regular file")
        handle = tar.extractfile(member) if member is not None else None
        if handle is None:
            raise ValueError(f"{name} holds no control file")
        text = handle.read().decode()
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def local_package(path: Path) -> LocalPackage:
    """The package at ``path``; PackageError when it is unreadable or another package."""
    try:
        fields = read_control(path)
    except (OSError, ValueError, KeyError, tarfile.TarError, UnicodeDecodeError) as error:
        raise PackageError(
            f"{path} is not a readable Debian package ({error}): build one with make deb"
        ) from None
    if fields.get("Package") != PACKAGE or "Version" not in fields:
        raise PackageError(
            f"{path} is the package {fields.get('Package')!r}, not {PACKAGE}: give "
            f"--package the path of {PACKAGE}_VERSION_all.deb"
        )
    _split(fields["Version"])
    return LocalPackage(path, fields["Version"])


def find_local(given: str | None, where: tuple[Path, ...] = SEARCH_DIRS) -> LocalPackage | None:
    """``given`` (must exist), else the newest package in ``where``; None when there is none."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise PackageError(
                f"--package {given}: no such file; give the path of {PACKAGE}_VERSION_all.deb "
                "(make deb builds one in dist/)"
            )
        return local_package(path)
    found = [local_package(p) for d in where for p in sorted(d.glob(PATTERN)) if p.is_file()]
    if not found:
        return None
    by_version = functools.cmp_to_key(compare_versions)
    return max(found, key=lambda p: (by_version(p.version), p.path.stat().st_mtime))


# ---- the package on a node ------------------------------------------------------


@dataclass(frozen=True)
class NodePackage:
    dpkg: bool  # the node has dpkg (a Debian system)
    version: str | None  # the installed version; None when not installed

    def older_than(self, local: LocalPackage) -> bool:
        return self.version is None or compare_versions(self.version, local.version) < 0


QUERY = (
    "command -v dpkg-query >/dev/null || exit 127; "
    f"dpkg-query -W -f='${{Status}}\\t${{Version}}' {PACKAGE} 2>/dev/null || true"
)


def parse_query(status: int, out: str) -> NodePackage:
    """The answer to QUERY: only a fully installed package counts (not one removed with
    its config files left, not one half-configured)."""
    if status == 127:
        return NodePackage(False, None)
    state, _, version = out.strip().partition("\t")
    return NodePackage(True, version.strip() if state == "install ok installed" else None)


def installed(session: Session) -> NodePackage:
    result = session.run(QUERY)
    return parse_query(result.status, result.out)


# ---- apt's answer -----------------------------------------------------------------

_DEPENDS = re.compile(
    r"(?:Pre-)?Depends: (?P<name>[a-z0-9][a-z0-9+.-]*)(?: \((?P<want>[^)]*)\))?"
    r"(?: but (?P<why>[^\n]*?))?\s*$",
    re.MULTILINE,
)
_UNLOCATED = re.compile(r"^E: Unable to locate package (?P<name>\S+)", re.MULTILINE)
_NO_CANDIDATE = re.compile(r"^E: Package '(?P<name>[^']+)' has no installation candidate", re.M)
_LOCKED = re.compile(r"^(Could not get lock|Unable to acquire the dpkg \S+ lock|Unable to lock)")
_HELD_BY = re.compile(r"It is held by process (?P<by>\d+ \([^)]*\))")


def missing_dependencies(output: str) -> list[str]:
    """What apt could not get, one item per package, from apt's own words."""
    found: dict[str, str] = {}
    for match in _DEPENDS.finditer(output):
        name, want, why = match["name"], match["want"], (match["why"] or "").rstrip(".")
        if name == PACKAGE:
            continue
        wanted = f"{name} ({want})" if want else name
        if why.endswith("is to be installed"):  # apt offers another version
            found[name] = f"{wanted}: only {why.removesuffix(' is to be installed')} is available"
        elif why.startswith("it is not going to be installed"):
            found.setdefault(name, f"{wanted} (its own dependencies cannot be installed)")
        else:
            found[name] = f"{wanted} (not installable)" if why else wanted
    for pattern in (_UNLOCATED, _NO_CANDIDATE):
        for match in pattern.finditer(output):
            found.setdefault(match["name"], f"{match['name']} (not found)")
    return list(found.values())


def explain_failure(node: str, output: str) -> str:
    """One line: why apt cannot install the package on ``node``, and how to fix it."""
    missing = missing_dependencies(output)
    if missing:
        return (
            f"{node}: apt cannot get what {PACKAGE} needs: {', '.join(missing)}. Add a Debian "
            f"source that has it to {node}'s /etc/apt/sources.list (Debian 12: bookworm main) "
            f"and run apt-get update there, or install it by hand; then re-run"
        )
    errors = [line[3:].strip() for line in output.splitlines() if line.startswith("E: ")]
    if any(_LOCKED.search(e) for e in errors):
        held = next((m["by"] for e in errors if (m := _HELD_BY.search(e))), "another apt or dpkg")
        return (
            f"{node}: apt is busy: {held} held the dpkg lock for over {LOCK_WAIT // 60} minutes "
            f"(apt-daily or unattended-upgrades after a boot?); let it finish (ps -C apt-get,dpkg "
            f"on {node}), then re-run"
        )
    said = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    said = said[:300].rstrip().rstrip(".")
    stop = " " if said.endswith(("?", "!")) else ". "
    return (
        f"{node}: apt-get cannot install {PACKAGE}: {said}{stop}Fix apt on {node} "
        "(apt-get -f install, apt-get update), then re-run"
    )


# ---- copying and installing -------------------------------------------------------


def remote_name(local: LocalPackage) -> str:
    """The name the package gets on the node: apt-get installs a local file only when
    it ends in .deb, whatever the operator called their copy."""
    return f"{PACKAGE}_{local.version.partition(':')[2] or local.version}_all.deb"


def upload(session: Session, local: LocalPackage) -> str:
    """Copy the package into a new temporary directory on the node (sftp); its remote path."""
    # commands run as root (sudo for another login), sftp as the login user: the
    # directory is theirs, so that sftp may write into it
    owner = shlex.quote(session.login.user)
    made = session.run(
        f'd=$(mktemp -d /var/tmp/mosqit-failover-package.XXXXXX) && chown {owner} "$d" && '
        'echo "$d"',
        check=True,
    )
    remote = f"{made.out.strip()}/{remote_name(local)}"
    try:
        session.put(local.path, remote)
    except SshError:
        remove_upload(session, remote)
        raise
    return remote


def remove_upload(session: Session, remote: str) -> None:
    if session.alive:
        session.run(f"rm -rf {shlex.quote(str(Path(remote).parent))}")


def check_installable(session: Session, local: LocalPackage) -> str | None:
    """None when apt can install the package on this node, else the one-line reason."""
    remote = upload(session, local)
    try:
        result = session.run(f"{APT} -s install {shlex.quote(remote)} 2>&1", timeout=120)
    finally:
        remove_upload(session, remote)
    return None if result.status == 0 else explain_failure(session.label, result.out)


def install(
    session: Session,
    local: LocalPackage,
    before: NodePackage,
    changes: Changes,
) -> None:
    """Copy the package over and install it (apt-get); recorded in ``changes``."""
    was = f" (was {before.version})" if before.version else ""
    what = f"install {PACKAGE} {local.version}{was} from {local.path.name}"
    if not changes.plan(session, what):
        return
    undo = None
    if before.version is None:

        def undo() -> None:
            # apt waits for the dpkg lock: an install cut off by Ctrl-C may still run there
            session.run(f"{APT} remove -y {PACKAGE}", check=True, timeout=LOCK_WAIT + 300)

    kept = (
        ""
        if undo is not None
        else " (an upgrade is kept on rollback: the older package is not at hand)"
    )
    remote = upload(session, local)
    try:
        # Ctrl-C, a dropped connection or a timeout while apt ran: it may have installed
        # the package, which a rollback must remove or name (a helper's finding: Ctrl-C
        # during apt-get left the package, and the report said everything was undone)
        with changes.cut_off(session, what + kept, undo, "while apt ran"):
            result = session.run(
                f"{APT} install -y {shlex.quote(remote)} 2>&1", timeout=INSTALL_TIMEOUT
            )
    finally:
        remove_upload(session, remote)
    if result.status != 0:
        if undo is not None:  # apt may have unpacked it before failing
            changes.perhaps(session, what, "apt failed", undo)
        raise PackageError(explain_failure(session.label, result.out))
    changes.record(Change(session.label, (what + kept).replace("install", "installed", 1), undo))
