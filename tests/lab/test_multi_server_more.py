"""Multi-server mode on a real lab of three nodes: the harder cases (docs/multi-server.md).

alpha, beta and gamma (order = ["alpha", "beta", "gamma"]) run the packaged agent
as systemd units with one synced directory, /srv/data; the client pings the VIP
the whole module long and the VIP is sampled from the kernel of every node
(vipwatch) while a test plays its faults. Proven here:

1. the active and the second both cut off at once (alpha and beta, every cable,
   one ``ip -batch``): gamma, the only candidate left, promotes within one
   detection window more than a plain failover (the client's first answer from
   gamma < 3 s after the cut), nobody else promotes, both return as standbys;
2. a rolling restart (``systemctl restart mosqit-failover`` on gamma, beta, then
   the active alpha, the cluster re-formed in between): never two VIP holders at
   one sample, the standbys' restarts move nothing, the client's longest gap per
   restart is reported and bounded (< 2 s; the active releases the VIP on SIGTERM,
   docs/packaging.md, and whoever takes it, the client is answered again within 2 s);
3. whole-site power loss: gamma active with the freshest data (a file written on
   it, both standbys reported in sync), then every agent SIGKILLed at the same
   instant (the nodes frozen, the agents' cgroups killed from the host, the VIP
   and the service gone as after a power cut; the nodes' disks are tmpfs, so a
   real node kill would lose the state files), then all started at once: gamma
   becomes ACTIVE although alpha is first in order, nobody else promotes, the file
   is there;
4. a standby that was down catches up before it may be elected: with order =
   ["alpha", "gamma", "beta"], gamma is away while the epoch moves on (alpha ->
   beta -> alpha, files written): its agent stopped and its sshd out of the active's
   reach (an nft rule in gamma; with only the agent stopped the active's push still
   reaches gamma's receiver and gamma is not behind at all). Its agent started
   again, sshd still unreachable: alpha's status shows it heard, not in sync, its
   data epoch behind; alpha cut off: beta (in sync) wins over gamma although gamma is earlier
   in order. Gamma's sshd reachable again, it catches up with beta (beta's status:
   in_sync, gamma's data_epoch = beta's epoch); beta cut off as well: gamma
   promotes.

No two nodes that can see each other ever hold the VIP at the same sample (a node
with every cable pulled reaches nobody: it is left out while cut off).

The lab has its own plan of three nodes under the session's prefix: run it with a
prefix of its own, ``MQLAB_PREFIX=mqm2-``. Like ``test_lab_multi``'s ``lab3`` it
replaces the session's two-node lab when one is up and rebuilds it afterwards.
Every test restores the lab (cables, frozen nodes, stopped agents, config) when it
ends; the last one takes the lab down and checks that no namespace of the prefix
(``ip netns list``) nor any process in one is left (the fixture checks it again).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.lab import control, deploy, sshkeys
from mosqit_failover.lab import faults as lab_faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.netns import LabError, run
from mosqit_failover.lab.node import Node, cgroup2_root
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, PREFIX, plan_for
from mosqit_failover.lab.vipwatch import VipWatch
from tests.lab.conftest import lab_unavailable

pytestmark = pytest.mark.lab

PLAN = plan_for(3)
SYNCED = "/srv/data"
STATE = "/var/lib/mosqit-failover/state.json"
# a runtime drop-in that keeps systemd from restarting a killed agent (power is off)
NO_RESTART = "/run/systemd/system/mosqit-failover.service.d/mqlab-power-off.conf"
ORDER_LINE = 'order = ["alpha", "beta", "gamma"]\n'
GAMMA_SECOND = 'order = ["alpha", "gamma", "beta"]\n'
# gamma's sshd out of the active's reach (the sync's only way in), inside gamma
SSH_BLOCK = "mqlab_no_ssh"
BLOCK_SSH = (
    f"add table inet {SSH_BLOCK}\n"
    f"add chain inet {SSH_BLOCK} input {{ type filter hook input priority 0; }}\n"
    f"add rule inet {SSH_BLOCK} input tcp dport 22 drop\n"
)
BOTH_CUT_WITHIN = 3.0  # the client answered by gamma after alpha and beta went
RESTART_GAP = 2.0  # the client's longest gap over a restart of the active
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
    config: str  # the config every node runs (order alpha, beta, gamma)
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
        """Pull every cable of `names` in one batch; the moment just before."""
        batch = "".join(
            f"link set {PLAN.node(name).port(net)} down\n" for name in names for net in NETS
        )
        at = time.time()
        run(["ip", "-batch", "-"], ns=PLAN.switch_ns, input=batch)
        return at

    def rejoin(self, since: float, *names: str) -> None:
        batch = "".join(
            f"link set {PLAN.node(name).port(net)} up\n" for name in names for net in NETS
        )
        run(["ip", "-batch", "-"], ns=PLAN.switch_ns, input=batch)
        now = time.time()
        self.cut_off += [(since, now, name) for name in names]

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


def brief_status(st: dict[str, Any]) -> dict[str, Any]:
    """The parts of `status --json` that say who is what."""
    keys = ("role", "epoch", "data_epoch", "mode", "candidate", "uplinks")
    peers = {
        name: {k: p.get(k) for k in ("role", "epoch", "data_epoch", "heard", "in_sync", "rank")}
        for name, p in (st.get("peers") or {}).items()
    }
    return {**{k: st.get(k) for k in keys}, "peers": peers}


def lab_netns_listed() -> list[str]:
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
    each(nodes, lambda node: node.systemctl("start", deploy.UNIT, timeout=60))


def stop_agents(nodes: Iterable[Node]) -> None:
    each(nodes, lambda node: node.systemctl("stop", deploy.UNIT, timeout=60))


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three nodes with the agent and /srv/data synced; all of it gone afterwards."""
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
        assert ORDER_LINE in config, config
        for node in lab.nodes.values():  # the sync refuses to push an empty source
            node.write_file(f"{SYNCED}/seed.txt", "the synced directory is not empty\n")
        print(f"\n3-node lab up and installed in {time.monotonic() - t0:.1f}s", flush=True)
        start_agents(lab.nodes.values())
        probe = Probe(PLAN, duration=3600)
        yield Cluster(lab, probe, config)
    finally:
        if probe is not None:
            probe.stop()
        control.down(PLAN)  # thaws and kills every node (whole cgroups) first
        left = control.leftovers(PLAN) + lab_netns_listed() + lab_processes()
        if shared is not None:
            shared.nodes = control.up(shared.plan).nodes
        assert not left, f"the 3-node lab left traces: {left}"


def restore(c: Cluster) -> None:
    """Every cable in, no cut, nobody frozen, every agent running with the config."""
    for node in c.nodes.values():
        if node.alive() and node.frozen():
            node.thaw()
    lab_faults.clear_all(PLAN)
    for node in c.nodes.values():
        node.run(["nft", "delete", "table", "inet", SSH_BLOCK], check=False)
        if node.run(["test", "-e", NO_RESTART], check=False).returncode == 0:
            node.run(["rm", "-f", NO_RESTART])
            node.systemctl("daemon-reload")
        node.systemctl("reset-failed", deploy.UNIT, check=False)
    if any(node.read_file(deploy.CONFIG_PATH) != c.config for node in c.nodes.values()):
        stop_agents(c.nodes.values())
        for node in c.nodes.values():
            node.write_file(deploy.CONFIG_PATH, c.config)
    stopped = [node for node in c.nodes.values() if not node.is_active(deploy.UNIT)]
    if stopped:
        start_agents(stopped)


@pytest.fixture
def restored(cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield cluster
    finally:
        restore(cluster)


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
    """Every standby among `nodes` (default all) reported in sync with the active's epoch."""
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
    """The cluster formed, with `active` ACTIVE and every standby in sync with it
    (handed to `active` with `switchover --to` when another node is active)."""
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
    """`switchover --to ACTIVE` on `current`; wait for the roles and the sync (of `nodes`)."""
    names = list(nodes or c.nodes)
    proc = c.command(current, "switchover", "--to", active)
    assert proc.returncode == 0, f"switchover --to {active}: {proc.stdout}{proc.stderr}"
    wanted = {n: "ACTIVE" if n == active else "STANDBY" for n in names}
    deploy.wait_roles({n: c[n] for n in names}, wanted, timeout=timeout)
    wait_for(f"in sync with {active}", lambda: equal_data(c, names), timeout)


def client_gap(c: Cluster, t0: float, t1: float) -> tuple[float, float]:
    """The client's longest gap in [t0, t1] in seconds, and where it began (after t0)."""
    times = [t0, *(a.recv for a in c.probe.snapshot(t0, t1)), t1]
    width, start = max((b - a, a) for a, b in itertools.pairwise(times))
    return width, start - t0


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


# -- the tests -----------------------------------------------------------------


def test_active_and_second_cut_off_at_once_the_third_promotes(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        fault = c.isolate("alpha", "beta")
        try:
            try:
                answer = c.probe.wait_answer_from("gamma", after=fault, timeout=10)
                failover: float | None = answer.recv - fault
            except TimeoutError:
                failover = None
            time.sleep(3.0)  # long enough for a second promotion to show
            roles = c.roles()
            kinds = {name: c.kinds(name, since) for name in c.nodes}
            evidence = c.evidence(since)
        finally:
            c.rejoin(fault, "alpha", "beta")
        try:
            back: float | None = deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, timeout=30
            )
        except LabError:
            back = None
        time.sleep(1.0)
    after = {name: c.kinds(name, since) for name in c.nodes}
    served = c.probe.who_answered(fault + 0.2, time.time())
    print(
        f"alpha and beta cut off: client answered by gamma "
        f"{'-' if failover is None else f'{failover * 1000:.0f} ms'} after the cut; roles "
        f"while cut {roles}; both STANDBY {'-' if back is None else f'{back:.1f}s'} after "
        f"rejoining; answers since the cut {dict(served)}; kinds while cut {kinds}, "
        f"in all {after}",
        flush=True,
    )
    assert failover is not None, f"the client never reached gamma\n{evidence}"
    assert roles["gamma"] == "ACTIVE" and "promote" in kinds["gamma"], f"{roles}\n{evidence}"
    assert failover < BOTH_CUT_WITHIN, f"gamma answered {failover:.2f}s after the cut\n{evidence}"
    # the cut-off nodes reach nobody: whatever they did, the client saw only gamma
    assert served.keys() <= {"gamma"}, f"{dict(served)}\n{evidence}"
    assert back is not None, f"alpha and beta did not rejoin as standbys\n{c.evidence(since)}"
    for name in ("alpha", "beta"):  # cut off, then back: neither may take it
        assert "promote" not in after[name], f"{name} promoted\n{c.evidence(since)}"
    check_vip(c, vips, since)


def said(c: Cluster, name: str, since: float) -> list[str]:
    """`name`'s decisions since `since`, each with its text when it is not routine."""
    routine = {"agent-stop", "plan-done", "standby", "peer-back", "promote"}
    return [
        kind if kind in routine else f"{kind}: {entry.get('MESSAGE', '')}"
        for entry in deploy.decisions(c[name], since)
        if (kind := str(entry["DECISION"]))
    ]


def test_rolling_restart_never_two_holders(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    report: list[str] = []
    gaps: dict[str, float] = {}
    with VipWatch(PLAN) as vips:
        for name in ("gamma", "beta", "alpha"):  # the active last
            before = c.roles()
            was_active = before[name] == "ACTIVE"
            pid = c[name].systemctl("show", "-p", "MainPID", "--value", deploy.UNIT).stdout
            at = time.time()
            c[name].systemctl("restart", deploy.UNIT, timeout=60)
            restarted = time.time() - at
            try:
                roles = deploy.wait_pair(c.nodes, timeout=30)
                wait_for("every standby in sync", lambda: equal_data(c), 30)
            except (AssertionError, LabError) as error:
                raise AssertionError(
                    f"no cluster after {name}'s restart: {error}\n{c.evidence(since)}"
                ) from error
            active = next(n for n, r in roles.items() if r == "ACTIVE")
            c.probe.wait_answer_from(active, after=time.time(), timeout=10)
            end = time.time()
            gap, where = client_gap(c, at, end)
            gaps[name] = gap
            new_pid = c[name].systemctl("show", "-p", "MainPID", "--value", deploy.UNIT).stdout
            report.append(
                f"{name} ({'ACTIVE' if was_active else 'STANDBY'}, PID {pid.strip()} -> "
                f"{new_pid.strip()}): restart took {restarted:.1f}s, re-formed with {active} "
                f"active {end - at:.1f}s after, client gap {gap * 1000:.0f} ms at "
                f"+{where:.2f}s, decided {said(c, name, at)}, others "
                f"{ {n: c.kinds(n, at) for n in c.nodes if n != name} }"
            )
            if not was_active:
                assert roles == before, f"{name}'s restart moved the service: {roles}\n" + (
                    c.evidence(since)
                )
        time.sleep(1.0)
    print("rolling restart:\n  " + "\n  ".join(report), flush=True)
    evidence = c.evidence(since)
    roles = c.roles()
    assert sorted(roles.values()) == ["ACTIVE", "STANDBY", "STANDBY"], f"{roles}\n{evidence}"
    # the active's SIGTERM hands over: the best candidate (beta) takes it
    assert roles["gamma"] == "STANDBY", f"{roles}\n{evidence}"
    assert gaps["alpha"] < RESTART_GAP, (
        f"client gap {gaps['alpha']:.2f}s over the active's restart\n{evidence}"
    )
    for name in ("gamma", "beta"):  # a standby's restart: the client never noticed
        assert gaps[name] < RESTART_GAP, f"client gap {gaps[name]:.2f}s on {name}\n{evidence}"
    check_vip(c, vips, since)


def agent_dead(node: Node) -> bool:
    return not node.is_active(deploy.UNIT)


def power_off_agents(c: Cluster) -> float:
    """Every agent SIGKILLed at one instant, the VIP and the service gone as after a power
    cut; systemd does not restart them. Returns the moment of the kill."""
    for node in c.nodes.values():  # beforehand: systemd must not restart the killed agents
        node.write_file(NO_RESTART, "[Service]\nRestart=no\n")
        node.systemctl("daemon-reload")
    services = {}
    for name, node in c.nodes.items():
        found = [p for p in node.cgroup.rglob(deploy.UNIT) if p.is_dir()]
        assert len(found) == 1, f"{name}: the agent's cgroup: {found}"
        services[name] = found[0]
    nodes = list(c.nodes.values())
    at = time.time()
    for node in nodes:  # microseconds apart: nobody runs any more
        node.freeze()
    try:
        for cg in services.values():
            (cg / "cgroup.kill").write_text("1")
    finally:
        for node in nodes:
            node.thaw()
    for name, node in c.nodes.items():
        wait_for(f"{name}'s agent dead", functools.partial(agent_dead, node), 10)
        node.run(
            ["ip", "addr", "del", f"{PLAN.vip}/{PLAN.prefix_len}", "dev", PLAN.iface("a")],
            check=False,
        )
        node.systemctl("stop", PLAN.demo_unit, check=False)
    for node in c.nodes.values():
        node.run(["rm", "-f", NO_RESTART])
        node.systemctl("daemon-reload")
        node.systemctl("reset-failed", deploy.UNIT, check=False)
    return at


def test_whole_site_power_loss_the_freshest_wins(restored: Cluster) -> None:
    c = restored
    settle(c, "gamma")
    text = f"written on gamma before the power loss {time.time()}\n"
    path = f"{SYNCED}/before-power-loss.txt"
    c["gamma"].write_file(path, text)
    for name in ("alpha", "beta"):
        wait_for(f"{path} on {name}", functools.partial(has_file, c[name], path, text), 20)
    wait_for("alpha and beta in sync with gamma", lambda: equal_data(c), 20)
    before = {name: brief_status(c.status(name)) for name in c.nodes}
    since = time.time()
    off = power_off_agents(c)
    states = {name: node.read_file(STATE).strip() for name, node in c.nodes.items()}
    holders = [name for name, node in c.nodes.items() if deploy.holds_vip(node, PLAN)]
    assert holders == [], f"the VIP outlived the power cut on {holders}"
    time.sleep(1.0)
    with VipWatch(PLAN) as vips:
        started = time.time()
        start_agents(c.nodes.values())
        try:
            took = deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, timeout=30
            )
            answer = c.probe.wait_answer_from("gamma", after=started, timeout=10)
        except (LabError, TimeoutError) as error:
            raise AssertionError(f"{error}\nstate files {states}\n{c.evidence(since)}") from error
        time.sleep(3.0)  # long enough for a second promotion to show
        roles = c.roles()
        kinds = {name: c.kinds(name, started) for name in c.nodes}
    files = {name: has_file(node, path, text) for name, node in c.nodes.items()}
    print(
        f"power loss: before {json.dumps(before)}; agents killed at +{off - since:.2f}s; "
        f"state files {states}; all started: roles {took:.1f}s later, client answered by "
        f"gamma {answer.recv - started:.1f}s after the start; roles 3 s later {roles}; "
        f"kinds {kinds}; {path} present {files}",
        flush=True,
    )
    evidence = f"state files {states}\n{c.evidence(since)}"
    assert roles == {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, (
        f"{roles}\n{evidence}"
    )
    for name in ("alpha", "beta"):
        assert "promote" not in kinds[name], f"{name} promoted\n{evidence}"
    assert files["gamma"], f"{path} lost on gamma"
    assert c.probe.who_answered(answer.recv, time.time()).keys() <= {"gamma"}, evidence
    check_vip(c, vips, since)


def in_sync_on(c: Cluster, active: str, standby: str) -> bool:
    """The active's status lists `standby` in sync and `standby` has its data epoch."""
    try:
        st, sb = c.status(active), c.status(standby)
    except LabError:
        return False
    peer = (st.get("peers") or {}).get(standby) or {}
    return peer.get("in_sync") is True and sb.get("data_epoch") == st.get("epoch")


def test_a_standby_behind_loses_until_it_caught_up(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    # order alpha, gamma, beta: gamma before beta among equals (a restart of every agent)
    config = c.config.replace(ORDER_LINE, GAMMA_SECOND)
    stop_agents(c.nodes.values())
    for node in c.nodes.values():
        node.write_file(deploy.CONFIG_PATH, config)
    start_agents(c.nodes.values())
    settle(c, "alpha")
    epochs = {"start": c.status("alpha")["epoch"]}

    # gamma away while the epoch moves on (to beta and back) and alpha writes files: its
    # agent stopped and its sshd out of reach (else the active's push still reaches it)
    c["gamma"].run(["nft", "-f", "-"], input=BLOCK_SSH)
    c["gamma"].systemctl("stop", deploy.UNIT, timeout=60)
    pair = ("alpha", "beta")
    switch_to(c, "alpha", "beta", nodes=pair)
    switch_to(c, "beta", "alpha", nodes=pair)
    c["alpha"].run(["python3", "-c", WRITE_FILES, f"{SYNCED}/while-gamma-down", "50", "20000"])
    wait_for("beta in sync with alpha", lambda: in_sync_on(c, "alpha", "beta"), 20)
    epochs["alpha again"] = c.status("alpha")["epoch"]
    gamma_state = c["gamma"].read_file(STATE).strip()

    # gamma's agent back, its sshd still out of reach: it cannot have caught up
    c["gamma"].systemctl("start", deploy.UNIT, timeout=60)
    wait_for(
        "alpha hearing gamma as a standby",
        lambda: (
            ((c.status("alpha").get("peers") or {}).get("gamma") or {}).get("role") == "STANDBY"
        ),
        20,
    )
    time.sleep(1.0)
    at_cut = {name: brief_status(c.status(name)) for name in ("alpha", "beta", "gamma")}
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        fault = c.isolate("alpha")
        alpha_cut = [fault]
        try:
            try:
                answer = c.probe.wait_answer_from("beta", after=fault, timeout=10)
                failover: float | None = answer.recv - fault
            except TimeoutError:
                failover = None
            time.sleep(3.0)  # long enough for gamma to promote if it wrongly would
            roles = c.roles()
            kinds = {name: c.kinds(name, fault) for name in c.nodes}
            evidence = c.evidence(since)
            behind = not ((at_cut["alpha"]["peers"].get("gamma") or {}).get("in_sync"))
            print(
                f"gamma behind: epochs {epochs}, gamma's state file {gamma_state}; at the "
                f"cut {json.dumps(at_cut)}; client answered by beta "
                f"{'-' if failover is None else f'{failover * 1000:.0f} ms'} after alpha "
                f"was cut off; roles {roles}; kinds {kinds}",
                flush=True,
            )
            assert behind, f"gamma was in sync at the cut: {json.dumps(at_cut)}"
            assert "promote" not in kinds["gamma"], f"gamma (behind) promoted\n{evidence}"
            assert roles["beta"] == "ACTIVE" and roles["gamma"] == "STANDBY", f"{roles}\n{evidence}"
            assert failover is not None, f"the client never reached beta\n{evidence}"

            # gamma's sshd reachable again: it catches up with beta, then wins
            c["gamma"].run(["nft", "delete", "table", "inet", SSH_BLOCK])
            unblocked = time.time()
            try:
                caught_up = wait_for(
                    "gamma in sync with beta", lambda: in_sync_on(c, "beta", "gamma"), 40
                )
            except AssertionError as error:
                raise AssertionError(f"{error}\n{c.evidence(unblocked)}") from error
            synced = {name: brief_status(c.status(name)) for name in ("beta", "gamma")}
            second = c.isolate("beta")
            try:
                try:
                    answer2 = c.probe.wait_answer_from("gamma", after=second, timeout=10)
                    failover2: float | None = answer2.recv - second
                except TimeoutError:
                    failover2 = None
                time.sleep(2.0)
                roles2 = c.roles()
                kinds2 = {name: c.kinds(name, second) for name in c.nodes}
                evidence2 = c.evidence(since)
            finally:
                c.rejoin(second, "beta")
        finally:
            c.rejoin(alpha_cut[0], "alpha")
        rejoined = time.time()
        try:
            back: float | None = deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, timeout=30
            )
        except LabError:
            back = None
        time.sleep(1.0)
    print(
        f"gamma caught up {caught_up:.1f}s after its sshd was reachable again "
        f"({json.dumps(synced)}); beta cut off: client answered by gamma "
        f"{'-' if failover2 is None else f'{failover2 * 1000:.0f} ms'} after; roles "
        f"{roles2}; kinds {kinds2}; alpha and beta STANDBY "
        f"{'-' if back is None else f'{back:.1f}s'} after rejoining "
        f"({rejoined - fault:.1f}s after the first cut)",
        flush=True,
    )
    assert roles2["gamma"] == "ACTIVE" and "promote" in kinds2["gamma"], f"{roles2}\n{evidence2}"
    assert failover2 is not None, f"the client never reached gamma\n{evidence2}"
    assert back is not None, f"alpha and beta did not rejoin as standbys\n{c.evidence(since)}"
    check_vip(c, vips, since)


def test_teardown_leaves_no_namespace_nor_process(cluster: Cluster) -> None:
    """The last test: the lab goes (the fixture's own teardown finds nothing left)."""
    cluster.probe.stop()
    t0 = time.monotonic()
    control.down(PLAN)
    print(f"3-node lab down in {time.monotonic() - t0:.1f}s", flush=True)
    assert lab_netns_listed() == []
    assert control.leftovers(PLAN) == []
    assert lab_processes() == []
    assert not list(cgroup2_root().glob(PREFIX + "*"))
