"""A lab node: systemd as PID 1 with journald, in its own namespaces and cgroup.

Boot recipe (docs/lab.md), with the tweaks this machine needed:

* The node gets its own cgroup2 directory ``mqlab-NODE`` (under
  ``/sys/fs/cgroup/unified`` on this hybrid-cgroup host, ``/sys/fs/cgroup`` on a
  pure v2 host) and its own cgroup namespace (``unshare --cgroup``). Inside, a
  fresh ``cgroup2`` is mounted on ``/sys/fs/cgroup``, so the node's systemd
  runs in unified mode with its own tree and the two nodes never collide. The
  same directory gives a reliable freeze (``cgroup.freeze``) and kill
  (``cgroup.kill``) of everything the node runs.
* ``/sys`` is a fresh read-only sysfs (so systemd sees a container: udev and
  friends skip themselves), ``/dev`` is a small tmpfs with only null, zero,
  full, random, urandom, tty, fuse (where the host has it: the synchronous sync
  mode), a private devpts and shm (no real disks),
  ``/dev/console`` is /dev/null. ``/proc/sys`` is read-only except
  ``/proc/sys/net`` (per network namespace), ``/proc/sysrq-trigger`` read-only:
  a node cannot change the host kernel's settings.
* Each node gets its own ``/etc/machine-id`` (the host's would be shared
  otherwise), an empty ``/etc/fstab``, a volatile journal without rate limit.
* The project checkout is rbind-mounted at its own path (writes are shared
  with the host); the Python prefix in use is bind-mounted read-only when it
  is not under /usr (a venv under /tmp would be hidden by the node's /tmp).

Files for the node's /etc (and root's shell startup files, see :data:`ROOT_DOTFILES`)
are staged in ``/run/mqlab/NODE/seed`` and copied into the overlay's upper layer
before systemd starts; boot-time links of
ssh/keepalived/lsyncd are removed in the overlay (whiteouts, the host keeps
them). See MASKED_UNITS for what is masked and why.

Freeze uses the cgroup v2 freezer rather than SIGSTOP to every pid: it is
atomic (no race with processes forking while we iterate), also covers
processes started later in the cgroup, and systemd does not see its children
as "stopped" (no SIGCHLD). Seen from the peer the effect is the same: the
kernel still answers ICMP, no process answers anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .netns import LabError, run, spawn
from .topology import PREFIX, LabPlan, NodeSpec

# Masked inside every node (symlink to /dev/null in the node's /etc):
MASKED_UNITS: tuple[str, ...] = (
    # no terminals in a lab node (console-getty fails on /dev/console=/dev/null)
    "console-getty.service",
    "getty@.service",
    "serial-getty@.service",
    "container-getty@.service",
    "getty-static.service",
    "getty.target",
    "systemd-networkd-wait-online.service",
    # touch the host kernel or real hardware (module loading, kernel sysctls,
    # binfmt, pstore, clock, debug filesystems, hugepages, fuse, udev)
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-pstore.service",
    "systemd-timesyncd.service",
    "systemd-hwdb-update.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "ipvsadm.service",
    "openipmi.service",  # loads IPMI drivers into the host's kernel (if openipmi is installed)
    "ipmievd.service",
    "fstrim.timer",
    "fstrim.service",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    # host daemons and periodic jobs that have no place in a node
    "postgresql.service",
    "postgresql@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "man-db.timer",
    "cron.service",
    "rsync.service",
)
# Installed and enabled by Debian; present but not started at boot in a node
# (the agent or the lab starts them explicitly).
NOT_AT_BOOT: tuple[str, ...] = ("ssh", "keepalived", "lsyncd")

ROOT_DOTFILES = {".bashrc": "dot.bashrc", ".profile": "dot.profile"}
"""root's shell startup files in a node: Debian's own (``/usr/share/base-files``), not
the host's. sshd runs every command through the user's shell, and Debian's bash reads
~/.bashrc then: a developer's .bashrc on the host (pyenv init, ~0.1-0.2 s) ran once per
sync batch and rename session and made each push that much slower than on a server."""

JournalEntry = dict[str, Any]


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted on the host."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mounts[left.split()[4]] = right.split()[0]
    for candidate in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if mounts.get(candidate) == "cgroup2":
            return Path(candidate)
    raise LabError("no cgroup2 hierarchy mounted (needed for the lab nodes)")


def shared_paths(plan: LabPlan) -> list[tuple[Path, bool]]:
    """(path, writable) bind-mounted into every node at the same path."""
    paths = [(plan.project_dir, True)]
    for prefix in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        if prefix.parts[:2] == ("/", "usr") or prefix.is_relative_to(plan.project_dir):
            continue
        paths.append((prefix, False))
    return paths


def demo_unit(plan: LabPlan) -> str:
    return (
        "[Unit]\nDescription=mosqit-failover lab demo service (UDP, answers with hostname)\n\n"
        "[Service]\nType=notify\n"
        f"Environment=PYTHONPATH={plan.project_dir} PYTHONUNBUFFERED=1\n"
        f"WorkingDirectory={plan.project_dir}\n"
        f"ExecStart={plan.python} -m mosqit_failover.lab.demo_service --port {plan.demo_port}\n"
    )


def write_seed(plan: LabPlan, spec: NodeSpec, seed: Path) -> None:
    """Stage the node's /etc additions (copied into the overlay's upper layer)."""
    etc = seed / "etc"
    units = etc / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    (etc / "hostname").write_text(spec.name + "\n")
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
    (etc / "fstab").write_text("# mosqit-failover lab node: nothing to mount\n")
    for unit in MASKED_UNITS:
        (units / unit).symlink_to("/dev/null")
    (units / plan.demo_unit).write_text(demo_unit(plan))
    jconf = etc / "systemd" / "journald.conf.d"
    jconf.mkdir(parents=True)
    (jconf / "mqlab.conf").write_text("[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\n")
    sconf = etc / "systemd" / "system.conf.d"
    sconf.mkdir(parents=True)
    (sconf / "mqlab.conf").write_text(
        "[Manager]\nDefaultTimeoutStartSec=30s\nDefaultTimeoutStopSec=5s\n"
    )
    home = seed / "root"
    home.mkdir(mode=0o700)
    for name, debian in ROOT_DOTFILES.items():
        default = Path("/usr/share/base-files") / debian
        (home / name).write_text(default.read_text() if default.exists() else "")


def boot_script(plan: LabPlan, spec: NodeSpec, node_dir: Path) -> str:
    """The shell script run as PID 1 of the node's new namespaces; ends in systemd."""
    q = shlex.quote
    mnt = node_dir / "mnt"
    root = mnt / "root"
    r = q(str(root))
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        f"mount -t tmpfs -o mode=0755 {PREFIX}{spec.name} {q(str(mnt))}",
        f"mkdir -p {q(str(mnt / 'upper'))} {q(str(mnt / 'work'))} {r}",
        f"cp -a {q(str(node_dir / 'seed'))}/. {q(str(mnt / 'upper'))}/",
        f"mount -t overlay overlay -o lowerdir=/,upperdir={q(str(mnt / 'upper'))},"
        f"workdir={q(str(mnt / 'work'))} {r}",
        f"mount -t proc proc {r}/proc",
        f"mount --bind {r}/proc/sys {r}/proc/sys",
        f"mount --bind {r}/proc/sys/net {r}/proc/sys/net",
        f"mount -o remount,bind,ro {r}/proc/sys",
        f"if [ -e /proc/sysrq-trigger ]; then mount --bind /proc/sysrq-trigger "
        f"{r}/proc/sysrq-trigger && mount -o remount,bind,ro {r}/proc/sysrq-trigger; fi",
        f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys",
        f"mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 {r}/sys/fs/cgroup",
        f"mount -t tmpfs -o mode=0755,nosuid mqlab-dev {r}/dev",
        f"for d in null zero full random urandom tty; do touch {r}/dev/$d; "
        f"mount --bind /dev/$d {r}/dev/$d; done",
        f"touch {r}/dev/console && mount --bind /dev/null {r}/dev/console",
        # the synchronous sync mode's FUSE mount (docs/sync-mode.md), where the host has it
        f"if [ -e /dev/fuse ]; then touch {r}/dev/fuse && mount --bind /dev/fuse {r}/dev/fuse; fi",
        f"mkdir -p {r}/dev/pts {r}/dev/shm",
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts {r}/dev/pts",
        f"ln -s pts/ptmx {r}/dev/ptmx && ln -s /proc/self/fd {r}/dev/fd",
        f"ln -s /proc/self/fd/0 {r}/dev/stdin && ln -s /proc/self/fd/1 {r}/dev/stdout",
        f"ln -s /proc/self/fd/2 {r}/dev/stderr",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev mqlab-shm {r}/dev/shm",
        f"mount -t tmpfs -o mode=0755,nosuid,nodev mqlab-run {r}/run",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev mqlab-tmp {r}/tmp",
    ]
    for path, writable in shared_paths(plan):
        p = q(str(path))
        lines.append(f"mkdir -p {r}{p} && mount --rbind {p} {r}{p}")
        if not writable:
            lines.append(f"mount -o remount,bind,ro {r}{p}")
    for svc in NOT_AT_BOOT:
        lines.append(
            f"rm -f {r}/etc/systemd/system/*.wants/{svc}.service "
            f"{r}/etc/systemd/system/*.wants/{svc}.socket {r}/etc/rc[2-5].d/S[0-9][0-9]{svc}"
        )
    lines += [
        f"hostname {q(spec.name)}",
        f"exec chroot {r} /usr/bin/env -i container=lab PATH=/usr/sbin:/usr/bin:/sbin:/bin "
        "/lib/systemd/systemd --system",
    ]
    return "\n".join(lines) + "\n"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


class Node:
    """A booted lab node, reached from the host with nsenter."""

    def __init__(self, plan: LabPlan, spec: NodeSpec, pid: int) -> None:
        self.plan = plan
        self.spec = spec
        self.pid = pid

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cgroup(self) -> Path:
        return cgroup2_root() / f"{PREFIX}{self.name}"

    def __repr__(self) -> str:
        return f"Node({self.name!r}, pid={self.pid})"

    # -- life cycle -------------------------------------------------------
    @classmethod
    def boot(cls, plan: LabPlan, spec: NodeSpec, wait: bool = True) -> Node:
        """Start the node's systemd (its network namespace must exist)."""
        node_dir = plan.node_dir(spec.name)
        if node_dir.exists():
            raise LabError(f"{node_dir} exists: run `lab down` first")
        (node_dir / "mnt").mkdir(parents=True)
        write_seed(plan, spec, node_dir / "seed")
        script = node_dir / "boot.sh"
        script.write_text(boot_script(plan, spec, node_dir))
        cg = cgroup2_root() / f"{PREFIX}{spec.name}"
        cg.mkdir(exist_ok=True)
        argv = [
            "sh",
            "-c",
            'echo $$ > "$1/cgroup.procs" && shift && exec "$@"',
            "mqlab-boot",
            str(cg),
            "ip",
            "netns",
            "exec",
            spec.netns,
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--uts",
            "--cgroup",
            "--kill-child",
            "sh",
            str(script),
        ]
        proc = spawn(argv, log=node_dir / "console.log", detach=True)
        (node_dir / "unshare.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while not (kids := _children(proc.pid)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"node {spec.name} did not start: {cls._console(node_dir)}")
            time.sleep(0.02)
        node = cls(plan, spec, kids[0])
        (node_dir / "pid").write_text(f"{node.pid}\n")
        if wait:
            node.wait_running(plan.boot_timeout)
        return node

    @classmethod
    def attach(cls, plan: LabPlan, name: str) -> Node:
        """The running node ``name`` (from the state in /run/mqlab)."""
        try:
            pid = int((plan.node_dir(name) / "pid").read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"node {name} is not up (no state in {plan.state_dir})") from exc
        node = cls(plan, plan.node(name), pid)
        if not node.alive():
            raise LabError(f"node {name} (pid {pid}) is not running")
        return node

    @staticmethod
    def _console(node_dir: Path) -> str:
        try:
            return (node_dir / "console.log").read_text()[-2000:]
        except OSError:
            return "(no console log)"

    def alive(self) -> bool:
        try:
            text = Path(f"/proc/{self.pid}/cgroup").read_text()
        except OSError:
            return False
        return f"/{PREFIX}{self.name}/" in text or text.rstrip().endswith(f"/{PREFIX}{self.name}")

    def wait_running(self, timeout: float = 60.0) -> str:
        """Wait until systemd reports running or degraded; return that state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise LabError(
                    f"node {self.name} died during boot: "
                    f"{self._console(self.plan.node_dir(self.name))}"
                )
            proc = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = proc.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.1)
        failed = self.run(["systemctl", "--failed", "--no-pager"], check=False).stdout
        jobs = self.run(["systemctl", "list-jobs", "--no-pager"], check=False).stdout
        raise LabError(
            f"node {self.name} not up after {timeout}s (state {state!r})\n"
            f"systemctl --failed:\n{failed}\nsystemctl list-jobs:\n{jobs}"
        )

    def poweroff(self, timeout: float = 15.0) -> None:
        """Clean shutdown with ``systemctl poweroff``; killed if it takes too long."""
        self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            self.kill()

    def kill(self) -> None:
        """Kill every process of the node at once (like pulling the power)."""
        kill_cgroup(self.cgroup)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    # -- running things inside -------------------------------------------
    def nsenter(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-a", "-r", "-w", *argv]

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(self.nsenter(argv), check=check, timeout=timeout, input=input)

    def systemctl(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)

    def is_active(self, unit: str) -> bool:
        return self.systemctl("is-active", "--quiet", unit, check=False).returncode == 0

    def journal(
        self,
        unit: str | None = None,
        since: float | None = None,
        fields: Iterable[str] | None = None,
        identifier: str | None = None,
        grep: str | None = None,
    ) -> list[JournalEntry]:
        """Journal entries (journalctl -o json), optionally since a host time.time()."""
        argv = ["journalctl", "--no-pager", "-o", "json", "--all"]
        if unit:
            argv += ["-u", unit]
        if identifier:
            argv += ["-t", identifier]
        if since is not None:
            argv += ["--since", f"@{int(since)}"]
        if grep:
            argv += ["-g", grep]
        wanted = list(fields) if fields is not None else None
        if wanted:
            argv.append("--output-fields=" + ",".join(wanted))
        proc = self.run(argv, check=False)
        if proc.returncode not in (0, 1):  # 1: nothing matched -g
            raise LabError(f"journalctl in {self.name} failed: {proc.stderr.strip()}")
        out: list[JournalEntry] = []
        for line in proc.stdout.splitlines():
            entry: JournalEntry = json.loads(line)
            if since is not None and int(entry["__REALTIME_TIMESTAMP"]) < since * 1e6:
                continue
            if wanted:
                keep = {*wanted, "__REALTIME_TIMESTAMP"}
                entry = {k: v for k, v in entry.items() if k in keep}
            out.append(entry)
        return out

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside the node (through its chroot, never onto the host)."""
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        self.run(["sh", "-c", script, "sh", path, f"{mode:o}"], input=text)

    def read_file(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def link_state(self, iface: str) -> tuple[bool, set[str]]:
        """(carrier, flags) of one interface, as the node sees it."""
        info = json.loads(self.run(["ip", "-j", "link", "show", "dev", iface]).stdout)[0]
        flags = set(info.get("flags", []))
        return "NO-CARRIER" not in flags and info.get("operstate") != "DOWN", flags

    def start_sshd(self) -> None:
        """Start sshd with host keys of the node's own (not the host's copies)."""
        self.run(["sh", "-c", "rm -f /etc/ssh/ssh_host_*_key* && ssh-keygen -A -q"])
        self.systemctl("start", "ssh.service")

    # -- freezing ---------------------------------------------------------
    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process of the node (cgroup v2 freezer)."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        self._set_frozen(False, timeout)

    def frozen(self) -> bool:
        return "frozen 1" in (self.cgroup / "cgroup.events").read_text()

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        (self.cgroup / "cgroup.freeze").write_text("1" if frozen else "0")
        deadline = time.monotonic() + timeout
        while self.frozen() != frozen:
            if time.monotonic() > deadline:
                raise LabError(f"node {self.name}: cgroup freeze={frozen} not reached")
            time.sleep(0.01)


def _cgroup_populated(cg: Path) -> bool:
    try:
        return "populated 1" in (cg / "cgroup.events").read_text()
    except OSError:
        return False


def kill_cgroup(cg: Path, timeout: float = 10.0) -> None:
    """SIGKILL everything in a cgroup (and below), wait, then remove it."""
    if not cg.is_dir():
        return
    (cg / "cgroup.freeze").write_text("0")
    kill = cg / "cgroup.kill"
    if kill.exists():
        kill.write_text("1")
    else:  # kernels before 5.14
        for procs in cg.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while _cgroup_populated(cg):
        if time.monotonic() > deadline:
            raise LabError(f"processes of {cg} did not die")
        time.sleep(0.02)
    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        sub.rmdir()
    cg.rmdir()
