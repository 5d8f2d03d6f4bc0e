"""Multi-server mode on a real lab of three nodes (docs/multi-server.md).

alpha, beta and gamma (order = ["alpha", "beta", "gamma"]) run the packaged agent
as systemd units with one synced directory, /srv/data; the client pings the VIP
the whole module long and the VIP is sampled from the kernel of every node
(vipwatch) while a test plays its faults. Proven here:

1. formation: alpha ACTIVE, beta and gamma STANDBY, alpha's status lists both
   peers, a file written on alpha reaches both standbys;
2. the active cut off: exactly one standby (beta, the first by order at equal
   data) promotes, gamma does not, the client gets beta within 2 s, the old
   active rejoins as STANDBY;
3. a frozen standby (gamma) never delays the sync to the other (beta), and
   catches up once thawed;
4. a partition among the standbys (beta and gamma cannot hear each other), then
   the active cut off: only beta promotes, gamma says `partitioned` and waits;
5. `switchover --to gamma`: gamma takes over, beta stays STANDBY.

No two nodes that can see each other ever hold the VIP at the same sample (a node
with both cables pulled reaches nobody, so it is left out while cut off; two
standbys cut from each other still both reach the client: they are judged).

The lab has its own plan of three nodes under the session's prefix (run it with
its own, e.g. ``MQLAB_PREFIX=mqms-``). Like ``test_lab_multi``'s ``lab3`` it
replaces the session's two-node lab when one is up and rebuilds it afterwards.
Every test restores the lab (cables, cuts, frozen nodes) when it ends; the last
one takes the lab down and checks that no namespace of the prefix (``ip netns
list``) nor any process in one is left (the fixture checks it again).
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
from typing import Any

import pytest

from mosqit_failover.lab import control, deploy, faults, sshkeys
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.netns import LabError, run
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, PREFIX, plan_for
from mosqit_failover.lab.vipwatch import VipWatch
from tests.lab.conftest import lab_unavailable

pytestmark = pytest.mark.lab

PLAN = plan_for(3)
ORDER = ("alpha", "beta", "gamma")
SYNCED = "/srv/data"
PARTITIONED = "partitioned"  # kinds.DecisionKind.PARTITIONED: a better candidate not heard
TREE = (
    "cd \"$1\" && find . -mindepth 1 -printf '%P %y %m %U %s\\n' | sort && "
    "find . -type f -print0 | sort -z | xargs -0r md5sum"
)
WAVES, WAVE_GAP, BETA_WITHIN = 3, 2.5, 5.0  # the frozen-standby test's writes
PARTITION_KEPT = 4.0  # the partition test: alpha back, beta and gamma still cut apart
# files the active writes while a standby is frozen (python3 in the node)
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

    def isolate(self, name: str) -> float:
        """Pull both of `name`'s cables; the moment just before (failover counts from it)."""
        at = time.time()
        faults.isolate(PLAN, name)
        return at

    def rejoin(self, name: str, since: float) -> None:
        faults.rejoin(PLAN, name)
        self.cut_off.append((since, time.time(), name))

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
    """The namespaces of this prefix that ``ip netns list`` shows."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def start_agents(nodes: Iterable[Node]) -> None:
    """Start the agent on every node at the same moment (the order elects, not the start)."""
    errors: list[BaseException] = []

    def start(node: Node) -> None:
        try:
            node.systemctl("start", deploy.UNIT, timeout=60)
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


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
        sshkeys.install_config(lab.nodes, PLAN, [SYNCED])
        print(f"\n3-node lab up and installed in {time.monotonic() - t0:.1f}s", flush=True)
        start_agents(lab.nodes.values())
        probe = Probe(PLAN, duration=3600)
        yield Cluster(lab, probe)
    finally:
        if probe is not None:
            probe.stop()
        control.down(PLAN)  # thaws and kills every node (whole cgroups) first
        left = control.leftovers(PLAN) + lab_netns_listed() + lab_processes()
        if shared is not None:
            shared.nodes = control.up(shared.plan).nodes
        assert not left, f"the 3-node lab left traces: {left}"


def restore(c: Cluster) -> None:
    """Every cable in, no cut, no loss, nobody frozen."""
    for node in c.nodes.values():
        if node.alive() and node.frozen():
            node.thaw()
    faults.clear_all(PLAN)  # every port up (rejoins), cuts healed, loss cleared


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


def wait_file(node: Node, path: str, text: str, timeout: float) -> float:
    return wait_for(f"{path} on {node.name}", lambda: has_file(node, path, text), timeout)


def tree(node: Node, path: str) -> str:
    """The tree's listing and checksums; "" while it cannot be read."""
    proc = node.run(["sh", "-c", TREE, "sh", path], check=False, timeout=60)
    return proc.stdout if proc.returncode == 0 else ""


def wait_tree(node: Node, path: str, want: str, timeout: float) -> float:
    what = f"{path} on {node.name} as on the active"
    return wait_for(what, lambda: tree(node, path) == want, timeout)


def trees_equal(c: Cluster) -> bool:
    trees = {tree(node, SYNCED) for node in c.nodes.values()}
    return len(trees) == 1 and "" not in trees


def equal_data(c: Cluster) -> bool:
    """Every standby reported in sync with the active's epoch (the same data_epoch)."""
    try:
        states = {name: c.status(name) for name in c.nodes}
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
            proc = c.command(current, "switchover", "--to", active)
            assert proc.returncode == 0, f"switchover --to {active}: {proc.stdout}{proc.stderr}"
            wanted = {n: "ACTIVE" if n == active else "STANDBY" for n in c.nodes}
            deploy.wait_roles(c.nodes, wanted, timeout=timeout)
            wait_for("every standby in sync after the switchover", lambda: equal_data(c), timeout)
        c.probe.wait_answer_from(active, after=time.time(), timeout=10)
    except (AssertionError, LabError, TimeoutError) as error:
        raise AssertionError(
            f"the cluster did not settle with {active} active: {error}\n{c.evidence(since)}"
        ) from error


def sync_peers(c: Cluster) -> dict[str, dict[str, Any]]:
    """The active alpha's per-standby sync breakdown of /srv/data (state, pending, lag)."""
    dirs = c.status("alpha").get("sync", {}).get("dirs", [])
    peers: dict[str, dict[str, Any]] = next(
        (d.get("peers", {}) for d in dirs if d.get("path") == SYNCED), {}
    )
    return {
        name: {k: p.get(k) for k in ("state", "in_sync", "pending", "lag_seconds")}
        for name, p in peers.items()
    }


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


def test_formation_one_active_two_standbys_and_sync_to_both(restored: Cluster) -> None:
    c, since = restored, time.time() - 120
    try:
        roles = deploy.wait_pair(c.nodes, timeout=60)
    except LabError as error:
        raise AssertionError(f"{error}\n{c.evidence(since)}") from error
    assert roles == {"alpha": "ACTIVE", "beta": "STANDBY", "gamma": "STANDBY"}, (
        f"{roles}\n{c.evidence(since)}"
    )
    st = c.status("alpha")
    peers = st.get("peers") or {}
    assert set(peers) == {"beta", "gamma"}, json.dumps(brief_status(st))
    assert all(peers[p]["role"] == "STANDBY" and peers[p]["heard"] for p in peers), json.dumps(
        brief_status(st)
    )
    assert [peers[p]["rank"] for p in ("beta", "gamma")] == sorted(
        peers[p]["rank"] for p in ("beta", "gamma")
    ), json.dumps(brief_status(st))

    text = f"formation {time.time()}\n"
    path = f"{SYNCED}/formation.txt"
    c["alpha"].write_file(path, text)
    took = {name: wait_file(c[name], path, text, 30) for name in ("beta", "gamma")}
    print(
        f"formation: {roles}; {path} reached beta in {took['beta']:.1f}s, "
        f"gamma in {took['gamma']:.1f}s",
        flush=True,
    )
    c.probe.wait_answer_from("alpha", after=time.time(), timeout=10)


def test_active_cut_off_one_standby_promotes(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    marker, text = f"{SYNCED}/before-cut.txt", "written before alpha's cables are pulled\n"
    c["alpha"].write_file(marker, text)
    for name in ("beta", "gamma"):
        wait_file(c[name], marker, text, 20)
    wait_for("beta and gamma in sync with alpha", lambda: equal_data(c), 20)

    since = time.time()
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        fault = c.isolate("alpha")
        try:
            try:
                answer = c.probe.wait_answer_from("beta", after=fault, timeout=10)
            except TimeoutError as error:
                raise AssertionError(f"{error}\n{c.evidence(since)}") from error
            failover = answer.recv - fault
            time.sleep(3.0)  # long enough for a second promotion to show
            roles = c.roles()
            kinds = {name: c.kinds(name, since) for name in c.nodes}
        finally:
            c.rejoin("alpha", fault)
        rejoined = time.time()
        try:
            back = deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "ACTIVE", "gamma": "STANDBY"}, timeout=30
            )
        except LabError as error:
            raise AssertionError(f"alpha did not rejoin: {error}\n{c.evidence(since)}") from error
        time.sleep(1.0)
    print(
        f"active cut off: client answered by beta {failover * 1000:.0f} ms after the cut, "
        f"outage {c.probe.longest_gap_ms(fault - 0.5, rejoined):.0f} ms; roles {roles}; "
        f"alpha STANDBY {back:.1f}s after rejoining; kinds {kinds}",
        flush=True,
    )
    evidence = c.evidence(since)
    assert roles["beta"] == "ACTIVE" and roles["gamma"] == "STANDBY", f"{roles}\n{evidence}"
    assert "promote" in kinds["beta"], evidence
    assert "promote" not in kinds["gamma"], f"gamma promoted too\n{evidence}"
    assert failover < 2.0, f"the client reached beta {failover:.2f}s after the cut\n{evidence}"
    # (a reply alpha sent just before its cables went may still arrive: 0.2 s margin)
    assert c.probe.who_answered(fault + 0.2, time.time()).keys() <= {"beta"}, evidence
    check_vip(c, vips, since)


def test_frozen_standby_never_delays_the_other(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    folder = f"{SYNCED}/while-gamma-frozen"
    took: list[float] = []
    c["gamma"].freeze()
    try:
        frozen_at = time.monotonic()
        # waves of files a few seconds apart: by the later ones the push to gamma has
        # long been stuck on its frozen sshd, and a shared push would hold beta's back
        for wave in range(WAVES):
            if wave:
                time.sleep(WAVE_GAP)
            sub = f"{folder}/wave{wave}"
            c["alpha"].run(["python3", "-c", WRITE_FILES, sub, "20", "20000"], timeout=60)
            want = tree(c["alpha"], sub)
            assert want, f"no tree of {sub} on alpha"
            try:
                took.append(wait_tree(c["beta"], sub, want, BETA_WITHIN))
            except AssertionError as error:
                raise AssertionError(f"{error}\n{c.evidence(since)}") from error
        # the per-standby breakdown shows gamma behind and beta caught up
        lags = wait_for(
            "alpha's status showing gamma behind",
            lambda: (sync_peers(c).get("gamma", {}).get("pending") or 0) > 0,
            5,
        )
        breakdown = sync_peers(c)
        assert c["gamma"].frozen(), "gamma thawed before beta had the files"
        frozen_for = time.monotonic() - frozen_at
    finally:
        c["gamma"].thaw()
    try:
        caught_up = wait_for(
            f"{SYNCED} equal on alpha, beta and gamma after the thaw",
            lambda: trees_equal(c),
            40,
            period=0.5,
        )
    except AssertionError as error:
        listing = {n: tree(node, folder).count("\n") for n, node in c.nodes.items()}
        raise AssertionError(f"{error}; lines per node {listing}\n{c.evidence(since)}") from error
    print(
        f"gamma frozen {frozen_for:.1f}s: beta had each wave of 20 files "
        f"{', '.join(f'{t:.1f}s' for t in took)} after it was written; alpha's sync view "
        f"({lags:.1f}s after) {json.dumps(breakdown)}; gamma caught up {caught_up:.1f}s "
        "after the thaw",
        flush=True,
    )
    assert breakdown["beta"]["pending"] == 0, f"beta behind: {breakdown}"
    roles = c.roles()
    assert roles == {"alpha": "ACTIVE", "beta": "STANDBY", "gamma": "STANDBY"}, (
        f"{roles}\n{c.evidence(since)}"
    )


def test_partition_among_standbys_only_the_better_promotes(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        for net in NETS:
            faults.cut(PLAN, net, ["beta"], ["gamma"])
        # gamma no longer hears beta, which alpha (heard by gamma) still hears
        said = None
        try:
            wait_for(
                "gamma's partitioned decision",
                lambda: PARTITIONED in c.kinds("gamma", since),
                10,
                period=0.3,
            )
            said = time.time() - since
        except AssertionError:
            pass  # judged below, with the journals
        time.sleep(1.0)
        before = c.roles()
        fault = c.isolate("alpha")
        try:
            try:
                answer = c.probe.wait_answer_from("beta", after=fault, timeout=10)
                failover: float | None = answer.recv - fault
            except TimeoutError:
                failover = None
            time.sleep(4.0)  # long enough for gamma to promote if it wrongly would
            roles = c.roles()
            kinds = {name: c.kinds(name, since) for name in c.nodes}
            evidence = c.evidence(since)
        finally:
            c.rejoin("alpha", fault)
        # alpha back (the partition still there): gamma hears a witness again that
        # has not heard beta yet; it must still leave the service to beta
        time.sleep(PARTITION_KEPT)
        rejoined_roles = c.roles()
        for net in NETS:
            faults.heal(PLAN, net)
        healed = time.time()
        try:
            deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "ACTIVE", "gamma": "STANDBY"}, timeout=30
            )
            back: str = f"{time.time() - healed:.1f}s"
        except LabError as error:
            back = f"NOT: {error}"
        time.sleep(1.0)
    after_all = {name: c.kinds(name, since) for name in c.nodes}
    print(
        f"partition: roles before the cut {before}, after {roles}; gamma said "
        f"{PARTITIONED} {'-' if said is None else f'{said:.1f}s'} after the cut; client "
        f"answered by beta {'-' if failover is None else f'{failover * 1000:.0f} ms'} "
        f"after alpha was cut off; alpha back, partition kept: {rejoined_roles}; formed "
        f"again after healing: {back}; kinds while alpha was cut off {kinds}, in all "
        f"{after_all}",
        flush=True,
    )
    assert before == {"alpha": "ACTIVE", "beta": "STANDBY", "gamma": "STANDBY"}, (
        f"the partition alone changed roles: {before}\n{evidence}"
    )
    assert PARTITIONED in kinds["gamma"], f"gamma never said {PARTITIONED}\n{evidence}"
    assert "promote" not in kinds["gamma"], f"gamma promoted past beta\n{evidence}"
    assert roles["gamma"] == "STANDBY", f"{roles}\n{evidence}"
    assert "promote" in kinds["beta"] and roles["beta"] == "ACTIVE", f"{roles}\n{evidence}"
    assert failover is not None, f"the client never reached beta\n{evidence}"
    both = dual_holders(vips, c.cut_off)
    evidence = c.evidence(since) + (
        f"\nVIP on two nodes that see each other or the client at {len(both)} sample(s) "
        f"({both[0]} .. {both[-1]}, since {since:.2f})"
        if both
        else ""
    )
    assert "promote" not in after_all["gamma"], (
        f"gamma promoted after alpha came back or the partition healed\n{evidence}"
    )
    assert rejoined_roles["gamma"] == "STANDBY", f"{rejoined_roles}\n{evidence}"
    assert not back.startswith("NOT"), f"after healing: {back}\n{evidence}"
    check_vip(c, vips, since)


def test_switchover_to_a_named_node(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        asked = time.time()
        proc = c.command("alpha", "switchover", "--to", "gamma")
        assert proc.returncode == 0, f"switchover --to gamma: {proc.stdout}{proc.stderr}"
        try:
            took = deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, timeout=20
            )
            answer = c.probe.wait_answer_from("gamma", after=asked, timeout=10)
        except (LabError, TimeoutError) as error:
            raise AssertionError(f"{error}\n{c.evidence(since)}") from error
        time.sleep(3.0)  # beta must stay a standby, not only at first
        roles = c.roles()
        kinds = {name: c.kinds(name, since) for name in c.nodes}
    outage = c.probe.longest_gap_ms(asked, time.time())
    print(
        f"switchover --to gamma: {proc.stdout.strip()!r}; roles {took:.1f}s later, client "
        f"answered by gamma {(answer.recv - asked) * 1000:.0f} ms after the command, "
        f"outage {outage:.0f} ms; kinds {kinds}",
        flush=True,
    )
    evidence = c.evidence(since)
    assert roles == {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, (
        f"{roles}\n{evidence}"
    )
    assert "promote" not in kinds["beta"], f"beta promoted\n{evidence}"
    assert c.probe.who_answered(answer.recv, time.time()).keys() <= {"gamma"}, evidence
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
