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
   promotes;
5. a standby that falls behind after it was in sync withdraws the epoch: beta and
   gamma both recorded alpha's epoch, then beta's sshd is out of alpha's reach while
   alpha writes a file (gamma gets it); beta's data epoch drops below the epoch
   (``data-epoch-withdrawn``); alpha cut off: gamma promotes with the file although
   beta is earlier in order (before the withdrawal beta tied with gamma and won).

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
import time
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import control, deploy
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.node import Node, cgroup2_root
from mosqit_failover.lab.topology import PREFIX
from mosqit_failover.lab.vipwatch import VipWatch
from tests.lab import multi
from tests.lab.multi import (
    PLAN,
    SYNCED,
    WRITE_FILES,
    brief_status,
    check_vip,
    equal_data,
    has_file,
    settle,
    start_agents,
    stop_agents,
    switch_to,
    wait_for,
)

pytestmark = pytest.mark.lab

STATE = "/var/lib/mosqit-failover/state.json"
# a runtime drop-in that keeps systemd from restarting a killed agent (power is off)
NO_RESTART = "mqlab-power-off"  # a drop-in (deploy.drop_in)
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

# -- the cluster (tests/lab/multi.py) ---------------------------------------


class Cluster(multi.Cluster):
    def rejoin(self, since: float, *names: str) -> None:
        """Every cable of `names` back in (one batch); they were cut off since `since`."""
        self.reconnect(since, *names)


def prepare(lab: control.Lab, config: str) -> None:
    """Before the agents start: the config's order checked, /srv/data seeded."""
    assert ORDER_LINE in config, config
    for node in lab.nodes.values():  # the sync refuses to push an empty source
        node.write_file(f"{SYNCED}/seed.txt", "the synced directory is not empty\n")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three nodes with the agent and /srv/data synced; all of it gone afterwards."""
    yield from multi.cluster_lab(request, Cluster, prepare)


def restore_agents(c: Cluster) -> None:
    """After multi.restore (cables, cuts, frozen nodes): no ssh block, no power-off
    drop-in, every agent running with the config."""
    for node in c.nodes.values():
        node.run(["nft", "delete", "table", "inet", SSH_BLOCK], check=False)
        if node.run(["test", "-e", deploy.drop_in_path(NO_RESTART)], check=False).returncode == 0:
            deploy.drop_in(node, NO_RESTART, None)
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
    yield from multi.restoring(cluster, restore_agents)


# -- waiting for things ------------------------------------------------------


def client_gap(c: Cluster, t0: float, t1: float) -> tuple[float, float]:
    """The client's longest gap in [t0, t1] in seconds, and where it began (after t0)."""
    times = [t0, *(a.recv for a in c.probe.snapshot(t0, t1)), t1]
    width, start = max((b - a, a) for a, b in itertools.pairwise(times))
    return width, start - t0


# -- the tests -----------------------------------------------------------------


def test_active_and_second_cut_off_at_once_the_third_promotes(restored: Cluster) -> None:
    c = restored
    settle(c, "alpha")
    since = time.time()
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        fault = c.isolate("alpha", "beta")
        try:
            # long enough for a second promotion to show
            failover, roles, kinds, evidence = c.after_cut(fault, "gamma", 3.0, since, since)
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
            pid = deploy.main_pid(c[name])
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
            new_pid = deploy.main_pid(c[name])
            report.append(
                f"{name} ({'ACTIVE' if was_active else 'STANDBY'}, PID {pid} -> "
                f"{new_pid}): restart took {restarted:.1f}s, re-formed with {active} "
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
        deploy.drop_in(node, NO_RESTART, "[Service]\nRestart=no\n")
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
        deploy.drop_in(node, NO_RESTART, None)
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
    c["gamma"].systemctl("stop", deploy.UNIT, timeout=150)
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
            # long enough for gamma to promote if it wrongly would
            failover, roles, kinds, evidence = c.after_cut(fault, "beta", 3.0, since)
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
                failover2, roles2, kinds2, evidence2 = c.after_cut(second, "gamma", 2.0, since)
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


def withdrawn_on(c: Cluster, active: str, standby: str) -> bool:
    """The active's status lists `standby` not in sync and `standby`'s data epoch is below
    the active's epoch (withdrawn, docs/sync-mode.md "Data epoch withheld")."""
    try:
        st, sb = c.status(active), c.status(standby)
    except LabError:
        return False
    peer = (st.get("peers") or {}).get(standby) or {}
    return peer.get("in_sync") is False and sb.get("data_epoch") == st["epoch"] - 1


def test_a_standby_that_falls_behind_withdraws_and_loses(restored: Cluster) -> None:
    """beta and gamma both in sync with alpha (both recorded its epoch); beta's sshd then
    out of alpha's reach, so the pushes to beta fail while alpha writes a file that gamma
    gets; alpha cut off: gamma, later in the order, takes over with the file; beta, which
    kept the epoch before the withdrawal and won by the order, does not."""
    c = restored
    settle(c, "alpha")
    since = time.time()
    for name in ("beta", "gamma"):
        wait_for(f"{name} in sync with alpha", functools.partial(in_sync_on, c, "alpha", name), 20)
    epoch = c.status("alpha")["epoch"]
    c["beta"].run(["nft", "-f", "-"], input=BLOCK_SSH)
    text = f"written on alpha while beta is behind {time.time()}\n"
    path = f"{SYNCED}/beta-behind.txt"
    c["alpha"].write_file(path, text)
    wait_for(f"{path} on gamma", functools.partial(has_file, c["gamma"], path, text), 20)
    try:  # a hung push to beta counts after BEHIND_AFTER (30 s) at the latest
        took = wait_for("beta withdrawn", functools.partial(withdrawn_on, c, "alpha", "beta"), 60)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{c.evidence(since)}") from error
    at_cut = {name: brief_status(c.status(name)) for name in c.nodes}
    withdrawn = [e.get("MESSAGE", "") for e in deploy.decisions(c["beta"], since)]
    with VipWatch(PLAN) as vips:
        time.sleep(0.3)
        fault = c.isolate("alpha")
        try:
            # long enough for beta to promote if it wrongly would
            failover, roles, kinds, evidence = c.after_cut(fault, "gamma", 3.0, since)
        finally:
            c.rejoin(fault, "alpha")
        try:
            deploy.wait_roles(
                c.nodes, {"alpha": "STANDBY", "beta": "STANDBY", "gamma": "ACTIVE"}, timeout=30
            )
        except LabError as error:
            raise AssertionError(f"{error}\n{c.evidence(since)}") from error
        time.sleep(1.0)
    print(
        f"beta behind in epoch {epoch}: withdrawn {took:.1f}s after its sshd was blocked "
        f"({[m for m in withdrawn if 'withdrawn' in m]}); at the cut {json.dumps(at_cut)}; "
        f"client answered by gamma {'-' if failover is None else f'{failover * 1000:.0f} ms'}"
        f" after alpha was cut off; roles {roles}; kinds {kinds}",
        flush=True,
    )
    assert any(f"data epoch {epoch} withdrawn" in m for m in withdrawn), evidence
    assert "promote" not in kinds["beta"], f"beta (behind) promoted\n{evidence}"
    assert roles["gamma"] == "ACTIVE" and "promote" in kinds["gamma"], f"{roles}\n{evidence}"
    assert failover is not None, f"the client never reached gamma\n{evidence}"
    assert has_file(c["gamma"], path, text), f"{path} lost on gamma"
    check_vip(c, vips, since)


def test_teardown_leaves_no_namespace_nor_process(cluster: Cluster) -> None:
    """The last test: the lab goes (the fixture's own teardown finds nothing left)."""
    multi.take_down(cluster)
    assert not list(cgroup2_root().glob(PREFIX + "*"))
