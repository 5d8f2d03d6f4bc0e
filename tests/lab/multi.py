"""What the three-node lab tests of multi-server mode share (test_multi_server_lab.py
and test_multi_server_more.py): the cluster, bringing it up and down, restoring it
after a test, waiting for things and judging the VIP.

alpha, beta and gamma run the packaged agent as systemd units with one synced
directory, /srv/data; the client pings the VIP the whole module long. Each module
keeps its fixtures thin (``yield from cluster_lab(...)``, ``yield from restoring(...)``)
and subclasses :class:`Cluster` for its own ``rejoin`` signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

from mosqit_failover.lab import control, deploy, faults, sshkeys
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.netns import LabError, run
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, PREFIX, plan_for
from mosqit_failover.lab.vipwatch import VipWatch
from tests.lab.conftest import lab_unavailable

PLAN = plan_for(3)
SYNCED = "/srv/data"
# files the active writes (python3 in the node): ROOT COUNT SIZE
WRITE_FILES = r"""
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
for i in range(count):
    with open(os.path.join(root, f"f{i:03d}"), "wb") as fh:
        fh.write(os.urandom(size))
"""


# -- the cluster -------------------------------------------------------------


@dataclass
class Cluster:
    lab: control.Lab
    probe: Probe
    config: str = ""  # the config every node runs (order alpha, beta, gamma)
    # (since, until, node): the node had every cable pulled, it reached nobody
    cut_off: list[tuple[float, float, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Node:
        return self.lab[name]

    @property
    def nodes(self) -> dict[str, Node]:
        return self.lab.nodes

    def roles(self) -> dict[str, str]:
        return deploy.roles(self.nodes)

    def status(self, name: str) -> dict[str, Any]:
        return deploy.status(self[name])

    def kinds(self, name: str, since: float) -> list[str]:
        return [str(e["DECISION"]) for e in deploy.decisions(self[name], since)]

    def command(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self[name].run([deploy.AGENT, *argv, "--config", deploy.CONFIG_PATH], check=False)

    def isolate(self, *names: str) -> float:
        """Pull every cable of `names` in one batch; the moment just before (failover
        counts from it)."""
        at = time.time()
        self._ports(names, "down")
        return at

    def reconnect(self, since: float, *names: str) -> None:
        """Every cable of `names` back in (one batch); they were cut off since `since`.

        (Each test module's ``rejoin`` calls it, with the arguments in its own order.)"""
        self._ports(names, "up")
        now = time.time()
        self.cut_off += [(since, now, name) for name in names]

    @staticmethod
    def _ports(names: Iterable[str], state: str) -> None:
        # one command, as faults.isolate does: every port goes at the same moment
        batch = "".join(
            f"link set {PLAN.node(name).port(net)} {state}\n" for name in names for net in NETS
        )
        run(["ip", "-batch", "-"], ns=PLAN.switch_ns, input=batch)

    def evidence(self, since: float) -> str:
        """Decision lines of every node since `since`, and what each says of itself."""
        lines = []
        for name, node in self.nodes.items():
            lines.append(f"--- {name}: decisions")
            try:
                for entry in deploy.decisions(node, since):
                    at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - since
                    lines.append(f"  {at:7.2f}s [{entry['DECISION']}] {entry.get('MESSAGE', '')}")
            except LabError as error:
                lines.append(f"  journal unreadable: {error}")
            try:
                lines.append(f"--- {name}: status {json.dumps(brief_status(self.status(name)))}")
            except LabError as error:
                lines.append(f"--- {name}: no status: {error}")
        return "\n".join(lines)

    def after_cut(
        self, fault: float, taker: str, wait: float, since: float, kinds_since: float | None = None
    ) -> AfterCut:
        """What followed a cut at `fault` (:meth:`isolate`): the client's first answer from
        `taker` (None: none within 10 s), then `wait` seconds more for a wrong promotion to
        show; the roles then, each node's decision kinds since `kinds_since` (default: the
        cut) and the evidence since `since`."""
        try:
            answer = self.probe.wait_answer_from(taker, after=fault, timeout=10)
            failover: float | None = answer.recv - fault
        except TimeoutError:
            failover = None
        time.sleep(wait)
        kinds_from = fault if kinds_since is None else kinds_since
        return AfterCut(
            failover,
            self.roles(),
            {name: self.kinds(name, kinds_from) for name in self.nodes},
            self.evidence(since),
        )


class AfterCut(NamedTuple):
    failover: float | None  # seconds from the cut to the taker's first answer
    roles: dict[str, str]
    kinds: dict[str, list[str]]
    evidence: str


C = TypeVar("C", bound=Cluster)


def brief_status(st: dict[str, Any]) -> dict[str, Any]:
    """The parts of `status --json` that say who is what."""
    keys = ("role", "epoch", "data_epoch", "mode", "candidate", "uplinks")
    peers = {
        name: {k: p.get(k) for k in ("role", "epoch", "data_epoch", "heard", "in_sync", "rank")}
        for name, p in (st.get("peers") or {}).items()
    }
    return {**{k: st.get(k) for k in keys}, "peers": peers}


def lab_netns_listed() -> list[str]:
    """The namespaces of this prefix that ``ip netns list`` shows."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def lab_processes() -> list[str]:
    """Processes on the host whose command line names a namespace of this lab."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.decode(errors="replace") in PLAN.all_netns for arg in argv):
            out.append(f"{proc.name}: {b' '.join(argv).decode(errors='replace')}")
    return out


def each(nodes: Iterable[Node], act: Callable[[Node], object]) -> None:
    """`act` on every node at the same moment (threads); the first error re-raised."""
    errors: list[BaseException] = []

    def one(node: Node) -> None:
        try:
            act(node)
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def start_agents(nodes: Iterable[Node]) -> None:
    """Start the agent on every node at the same moment (the order elects, not the start)."""
    each(nodes, lambda node: node.systemctl("start", deploy.UNIT, timeout=60))


def stop_agents(nodes: Iterable[Node]) -> None:
    each(nodes, lambda node: node.systemctl("stop", deploy.UNIT, timeout=150))


# -- up, restored, down ------------------------------------------------------


def cluster_lab(
    request: pytest.FixtureRequest,
    kind: type[C],
    prepare: Callable[[control.Lab, str], None] | None = None,
) -> Iterator[C]:
    """The body of a module's ``cluster`` fixture: three nodes with the agent and
    /srv/data synced (`prepare(lab, config)` before the agents start); all of it gone
    afterwards.

    Like ``test_lab_multi``'s ``lab3`` it replaces the session's two-node lab when one
    is up and rebuilds it afterwards."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab tests skipped: {reason}")
    shared: control.Lab | None = None
    if control.leftovers(DEFAULT_PLAN):  # the session's two-node lab, as lab3 does
        shared = request.getfixturevalue("lab")
    probe: Probe | None = None
    try:
        t0 = time.monotonic()
        lab = control.up(PLAN)
        sshkeys.setup(lab.nodes, PLAN)
        config = sshkeys.install_config(lab.nodes, PLAN, [SYNCED])
        if prepare is not None:
            prepare(lab, config)
        print(f"\n3-node lab up and installed in {time.monotonic() - t0:.1f}s", flush=True)
        start_agents(lab.nodes.values())
        probe = Probe(PLAN, duration=3600)
        yield kind(lab, probe, config)
    finally:
        if probe is not None:
            probe.stop()
        control.down(PLAN)  # thaws and kills every node (whole cgroups) first
        left = control.leftovers(PLAN) + lab_netns_listed() + lab_processes()
        if shared is not None:
            shared.nodes = control.up(shared.plan).nodes
        assert not left, f"the 3-node lab left traces: {left}"


def restore(c: C, then: Callable[[C], None] | None = None) -> None:
    """Every cable in, no cut, no loss, nobody frozen; then what the module undoes too."""
    for node in c.nodes.values():
        if node.alive() and node.frozen():
            node.thaw()
    faults.clear_all(PLAN)  # every port up (rejoins), cuts healed, loss cleared
    if then is not None:
        then(c)


def restoring(c: C, then: Callable[[C], None] | None = None) -> Iterator[C]:
    """The body of a module's ``restored`` fixture: the cluster, restored afterwards."""
    try:
        yield c
    finally:
        restore(c, then)


def take_down(c: Cluster) -> None:
    """The last test's part: the lab goes, no namespace of the prefix nor process is left."""
    c.probe.stop()
    t0 = time.monotonic()
    control.down(PLAN)
    print(f"3-node lab down in {time.monotonic() - t0:.1f}s", flush=True)
    # (this module's asserts are not rewritten by pytest: each names what it found)
    netns, leftovers, processes = lab_netns_listed(), control.leftovers(PLAN), lab_processes()
    assert netns == [], f"namespaces left: {netns}"
    assert leftovers == [], f"lab leftovers: {leftovers}"
    assert processes == [], f"processes left: {processes}"


# -- waiting for things ------------------------------------------------------


def wait_for(what: str, check: Callable[[], bool], timeout: float, period: float = 0.2) -> float:
    """Wait until check() is true; return how long it took, fail with `what`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(period)
    return time.monotonic() - start


def has_file(node: Node, path: str, text: str) -> bool:
    proc = node.run(["cat", path], check=False)
    return proc.returncode == 0 and proc.stdout == text


def equal_data(c: Cluster, nodes: Iterable[str] | None = None) -> bool:
    """Every standby among `nodes` (default all) reported in sync with the active's epoch
    (the same data_epoch)."""
    names = list(nodes or c.nodes)
    try:
        states = {name: c.status(name) for name in names}
    except LabError:
        return False
    active = [s for s in states.values() if s["role"] == "ACTIVE"]
    if len(active) != 1:
        return False
    epoch = active[0]["epoch"]
    standbys = [s for s in states.values() if s["role"] == "STANDBY"]
    peers = active[0].get("peers") or {}
    return len(standbys) == len(states) - 1 and all(
        s["data_epoch"] == epoch and (peers.get(s["node"]) or {}).get("in_sync") is True
        for s in standbys
    )


def settle(c: Cluster, active: str = "alpha", timeout: float = 40.0) -> None:
    """The cluster formed, with `active` ACTIVE and every standby in sync with it.

    When another node is active (an earlier test's failover), the operator hands the
    service back with `switchover --to ACTIVE`."""
    since = time.time()
    try:
        roles = deploy.wait_pair(c.nodes, timeout=timeout)
        wait_for("every standby in sync", lambda: equal_data(c), timeout)
        current = next(n for n, r in roles.items() if r == "ACTIVE")
        if current != active:
            switch_to(c, current, active, timeout)
        c.probe.wait_answer_from(active, after=time.time(), timeout=10)
    except (AssertionError, LabError, TimeoutError) as error:
        raise AssertionError(
            f"the cluster did not settle with {active} active: {error}\n{c.evidence(since)}"
        ) from error


def switch_to(
    c: Cluster, current: str, active: str, timeout: float = 30.0, nodes: Iterable[str] = ()
) -> None:
    """`switchover --to ACTIVE` on `current`; wait for the roles and the sync (of `nodes`,
    default all)."""
    names = list(nodes or c.nodes)
    deploy.switch_over(c[current], active, within=10)
    wanted = {n: "ACTIVE" if n == active else "STANDBY" for n in names}
    deploy.wait_roles({n: c[n] for n in names}, wanted, timeout=timeout)
    wait_for(f"every standby in sync with {active}", lambda: equal_data(c, names), timeout)


# -- the VIP -------------------------------------------------------------------


def dual_holders(vips: VipWatch, cut_off: list[tuple[float, float, str]]) -> list[str]:
    """Samples at which two nodes held the VIP, as "NODE+OTHER at T".

    A node counts as holding at a sample of another when its samples just before and
    just after both found the VIP (vipwatch's rule). A pair is left out while one of
    the two had every cable pulled (it reached neither the other nor the client)."""
    samples = list(vips.samples)
    names = set(PLAN.node_names)
    out = []
    for i, sample in enumerate(samples):
        if not sample.held:
            continue
        for other in sorted(names - {sample.node}):
            before = next((s for s in reversed(samples[:i]) if s.node == other), None)
            after = next((s for s in samples[i + 1 :] if s.node == other), None)
            if before is None or after is None or not (before.held and after.held):
                continue
            if any(
                node in (sample.node, other) and lo <= before.asked and after.answered <= hi
                for lo, hi, node in cut_off
            ):
                continue
            out.append(f"{sample.node}+{other} at {sample.asked:.2f}")
    return out


def check_vip(c: Cluster, vips: VipWatch, since: float) -> None:
    assert not vips.errors, vips.errors
    assert vips.samples, "the VIP was never sampled"
    both = dual_holders(vips, c.cut_off)
    print(
        f"VIP sampled {len(vips.samples)} times (each node every {vips.cycle() * 1000:.0f} ms), "
        f"holders {vips.holders()}, two holders that could see each other: {len(both)}",
        flush=True,
    )
    assert not both, (
        f"two nodes that see each other held the VIP at {len(both)} sample(s): {both[:5]}"
        f"\n{c.evidence(since)}"
    )
