"""The ``lab`` fixture: the whole namespace lab, up once per session, always torn down.

Skips the lab suite (with the reason) only when not root or when namespaces,
cgroup v2 or the needed tools are unavailable. After teardown it checks that
nothing of the lab is left and that the host's /etc, /tmp, /run and mounts
were not touched (the failure the DESIGN warns about: a node acting on the host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mosqit_failover.lab import control, faults
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.node import cgroup2_root
from mosqit_failover.lab.topology import DEFAULT_PLAN, PREFIX, LabPlan

_WANTED = os.environ.get("MQLAB_PREFIX", PREFIX)
if _WANTED != PREFIX:  # topology was imported before tests/lab/__init__ set the prefix
    raise pytest.UsageError(f"the lab prefix is {PREFIX!r}, this worker's is {_WANTED!r}")
SENTINEL = f"{PREFIX}sentinel-{os.getpid()}"
TOOLS = ("ip", "nsenter", "unshare", "nft", "chroot", "ping")


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing or not Path("/lib/systemd/systemd").exists():
        return f"the lab needs {', '.join(missing) or 'systemd'} installed"
    try:
        cgroup2_root()
    except LabError as exc:
        return str(exc)
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--uts", "--cgroup", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"namespaces unavailable: {probe.stderr.strip()}"
    return None


@dataclass(frozen=True)
class HostSnapshot:
    """What of the host must survive the lab unchanged."""

    etc: frozenset[str]
    mounts: frozenset[str]
    hostname: str
    machine_id: str

    @classmethod
    def take(cls) -> HostSnapshot:
        with open("/proc/self/mountinfo") as fh:
            mounts = frozenset(line.split()[4] for line in fh)
        return cls(
            etc=frozenset(os.listdir("/etc")),
            mounts=mounts,
            hostname=Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else "",
            machine_id=Path("/etc/machine-id").read_text(),
        )

    def problems(self, plan: LabPlan) -> list[str]:
        """Differences that matter, compared with the host now."""
        now = HostSnapshot.take()
        out = [f"leftover: {item}" for item in control.leftovers(plan)]
        lost = self.etc - now.etc
        if lost:
            out.append(f"/etc lost entries: {sorted(lost)}")
        # /tmp and /run belong to everybody on this machine (other labs, tools): judge
        # them by sentinels of our own, which a node acting on the host would remove
        for what in ("tmp", "run"):
            if not (Path("/") / what / SENTINEL).exists():
                out.append(f"/{what}/{SENTINEL} vanished: something emptied the host's /{what}")
        # (new /etc entries are not judged: package installs run beside the tests)
        changed = {m for m in now.mounts ^ self.mounts if not _other_lab(m)}
        if changed:
            out.append(f"host mounts changed: {sorted(changed)}")
        if (now.hostname, now.machine_id) != (self.hostname, self.machine_id):
            out.append("host /etc/hostname or /etc/machine-id changed")
        return out


def _other_lab(mount: str) -> bool:
    """A mount of another lab running beside this one (MQLAB_PREFIX), or of another tool
    working in a directory of its own under /tmp (a chroot's /proc): not ours to judge.
    A lab node never mounts below /tmp on the host (it has its own /tmp); what a node
    acting on the host would mount (/tmp itself, /run, /proc, /sys, /dev) is still judged."""
    name = Path(mount).name
    if mount.startswith("/run/netns/mq") and not name.startswith(PREFIX):
        return True
    return len(Path(mount).parts) > 3 and mount.startswith("/tmp/") and PREFIX not in mount


@pytest.fixture(scope="session")
def lab_plan() -> LabPlan:
    return DEFAULT_PLAN


@pytest.fixture(scope="session")
def host_before(lab_plan: LabPlan) -> HostSnapshot:
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab tests skipped: {reason}")
    control.down(lab_plan)  # leftovers of a crashed run
    for what in ("tmp", "run"):
        (Path("/") / what / SENTINEL).write_text("mosqit-failover lab test sentinel\n")
    return HostSnapshot.take()


@pytest.fixture(scope="session")
def lab(lab_plan: LabPlan, host_before: HostSnapshot) -> Iterator[control.Lab]:
    """The running lab (both nodes booted). Torn down at the end, whatever happens."""
    try:
        running = control.up(lab_plan)
        yield running
    finally:
        control.down(lab_plan)
    problems = host_before.problems(lab_plan)
    for what in ("tmp", "run"):
        (Path("/") / what / SENTINEL).unlink(missing_ok=True)
    assert not problems, "lab teardown left traces on the host:\n" + "\n".join(problems)


@pytest.fixture
def lab_clean(lab: control.Lab) -> Iterator[control.Lab]:
    """The lab, with every fault undone and every node thawed after the test."""
    yield lab
    for node in lab.nodes.values():
        if node.alive() and node.frozen():
            node.thaw()
    faults.clear_all(lab.plan)
