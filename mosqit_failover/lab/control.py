"""Bring the whole lab up, tear it down (idempotent, also after a crash), show it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .netns import NETNS_DIR, LabError, build_network, destroy_network, list_lab_netns, run
from .node import Node, cgroup2_root, kill_cgroup
from .topology import NODE_NAMES, PREFIX, LabPlan, node_specs

MARK_NETNS_DIR = "created-run-netns"


@dataclass
class Lab:
    """A running lab: its plan and its booted nodes by name."""

    plan: LabPlan
    nodes: dict[str, Node] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    @classmethod
    def attach(cls, plan: LabPlan) -> Lab:
        """The lab that ``lab up`` left running (with as many nodes as it has)."""
        plan = plan_in_use(plan)
        return cls(plan, {n: Node.attach(plan, n) for n in plan.node_names})


def plan_in_use(plan: LabPlan) -> LabPlan:
    """``plan`` with as many nodes as the lab on the host has (from its state dir).

    ``lab up --nodes 3`` leaves gamma's state beside alpha's and beta's; ``lab
    status`` and ``Lab.attach`` given the two-node plan find it from there."""
    try:
        names = {p.name for p in plan.state_dir.iterdir() if p.is_dir()}
    except OSError:
        return plan
    count = max((i + 1 for i, name in enumerate(NODE_NAMES) if name in names), default=0)
    if count <= len(plan.nodes):
        return plan
    return dataclasses.replace(plan, nodes=node_specs(count))


def leftovers(plan: LabPlan) -> list[str]:
    """Everything of a lab that exists now, as human-readable items."""
    items = [f"netns {ns}" for ns in list_lab_netns()]
    with contextlib.suppress(LabError):
        items += [f"cgroup {p}" for p in cgroup2_root().glob(PREFIX + "*")]
    if plan.state_dir.exists():
        items.append(f"state {plan.state_dir}")
    items += [f"mount {m}" for m in lab_mounts(plan)]
    return items


def lab_mounts(plan: LabPlan) -> list[str]:
    """Host mounts that belong to the lab (there should be none)."""
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p.startswith(str(plan.state_dir)) or PREFIX in p]


def up(plan: LabPlan, boot: bool = True) -> Lab:
    """Build the networks and boot every node (cleaning leftovers first)."""
    if leftovers(plan):
        down(plan)
    t0 = time.monotonic()
    plan.state_dir.mkdir(parents=True)
    if not NETNS_DIR.exists():
        (plan.state_dir / MARK_NETNS_DIR).touch()
    lab = Lab(plan)
    try:
        build_network(plan)
        lab.timings["network"] = time.monotonic() - t0
        if boot:
            started = [Node.boot(plan, spec, wait=False) for spec in plan.nodes]
            for node in started:
                node.wait_running(plan.boot_timeout)
                lab.nodes[node.name] = node
            lab.timings["boot"] = time.monotonic() - t0 - lab.timings["network"]
    except BaseException:
        down(plan)
        raise
    lab.timings["up"] = time.monotonic() - t0
    return lab


def down(plan: LabPlan) -> list[str]:
    """Remove every trace of the lab; safe to call any time. Returns what was removed."""
    removed = leftovers(plan)
    try:
        cgroups = sorted(cgroup2_root().glob(PREFIX + "*"))
    except LabError:
        cgroups = []
    for cg in cgroups:  # every process of every node: systemd, services, unshare
        kill_cgroup(cg)
    reap_unshare(plan)
    destroy_network()  # the client probe and anything else left in a lab netns
    for mount in sorted(lab_mounts(plan), key=len, reverse=True):
        run(["umount", "-l", mount], check=False)
    created_netns_dir = (plan.state_dir / MARK_NETNS_DIR).exists()
    shutil.rmtree(plan.state_dir, ignore_errors=True)
    if created_netns_dir and NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        run(["umount", str(NETNS_DIR)], check=False)
        NETNS_DIR.rmdir()
    return removed


def reap_unshare(plan: LabPlan) -> None:
    """Collect the nodes' unshare processes if this process started them (no zombies)."""
    for pidfile in plan.state_dir.glob("*/unshare.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.waitpid(int(pidfile.read_text()), os.WNOHANG)


def status(plan: LabPlan) -> list[str]:
    """One line per lab part: namespaces, nodes (pid, systemd state), leftovers."""
    lines = [f"netns {ns}" for ns in list_lab_netns()] or ["no lab namespaces"]
    plan = plan_in_use(plan)
    for name in plan.node_names:
        try:
            node = Node.attach(plan, name)
        except LabError as exc:
            if plan.node_dir(name).exists():
                lines.append(f"node {name}: {exc}")
            continue
        state = node.run(["systemctl", "is-system-running"], check=False, timeout=5)
        frozen = " frozen" if node.frozen() else ""
        lines.append(f"node {name}: pid {node.pid}, systemd {state.stdout.strip()}{frozen}")
    return lines


def run_tool(name: str, main: Callable[[], int]) -> int:
    """A lab tool's command line (a benchmark, the profiler): a LabError (a stale package,
    no cgroup v2, a lab left up) is one line naming it and exit status 1, no traceback."""
    try:
        return main()
    except LabError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
