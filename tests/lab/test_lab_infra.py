"""The lab itself, for real: namespaces, systemd nodes, faults, client probe."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mosqit_failover.lab import control, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.netns import list_lab_netns, run
from mosqit_failover.lab.node import Node, cgroup2_root
from mosqit_failover.lab.topology import NETS, PREFIX

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_clean")]


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pings(node: Node, addr: str, count: int = 1) -> bool:
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1", addr]
    return node.run(argv, check=False).returncode == 0


def running(pid: int) -> bool:
    """True while a pid exists and is not a zombie (the host's init reaps those)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_nodes_boot_systemd_as_pid1_with_journald(lab: control.Lab) -> None:
    for name, node in lab.nodes.items():
        assert node.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        state = node.systemctl("is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), node.systemctl("--failed", check=False).stdout
        assert node.run(["hostname"]).stdout.strip() == name
        token = f"mqlab-journal-{uuid.uuid4().hex}"
        since = time.time() - 1
        node.run(["systemd-cat", "-t", "mqlab-test"], input=token + "\n")

        def logged(node: Node = node, token: str = token, since: float = since) -> bool:
            entries = node.journal(identifier="mqlab-test", since=since, fields=["MESSAGE"])
            return any(e.get("MESSAGE") == token for e in entries)

        wait_for(logged, what=f"{token} in {name}'s journal")
        entry = node.journal(identifier="mqlab-test", grep=token)[0]
        assert entry["_HOSTNAME"] == name


def test_alpha_pings_beta_and_switches_on_both_networks(lab: control.Lab) -> None:
    plan, alpha = lab.plan, lab["alpha"]
    beta = plan.node("beta")
    for net in NETS:
        assert pings(alpha, beta.addr(net)), f"alpha cannot ping beta on {net}"
        assert pings(alpha, plan.switch_addr(net)), f"alpha cannot ping switch {net}"


def test_client_reaches_both_nodes_on_a(lab: control.Lab) -> None:
    for spec in lab.plan.nodes:
        argv = ["ping", "-n", "-q", "-c", "1", "-W", "1", spec.addr_a]
        assert run(argv, ns=lab.plan.client_ns, check=False).returncode == 0, spec.name


def test_port_down_gives_no_carrier_and_up_restores(lab: control.Lab) -> None:
    alpha = lab["alpha"]
    faults.port_down(lab.plan, "alpha", "b")
    wait_for(lambda: "NO-CARRIER" in alpha.link_state("eth1")[1], what="NO-CARRIER on eth1")
    assert alpha.link_state("eth0")[0], "eth0 must keep its carrier"
    faults.port_up(lab.plan, "alpha", "b")
    wait_for(lambda: alpha.link_state("eth1")[0], what="carrier back on eth1")
    assert "LOWER_UP" in alpha.link_state("eth1")[1]
    assert pings(alpha, lab.plan.node("beta").addr_b)


def test_switch_down_cuts_every_port(lab: control.Lab) -> None:
    nodes = list(lab.nodes.values())
    faults.switch_down(lab.plan, "a")
    wait_for(lambda: not any(n.link_state("eth0")[0] for n in nodes), what="eth0 down")
    assert all(n.link_state("eth1")[0] for n in nodes)
    faults.switch_up(lab.plan, "a")
    wait_for(lambda: all(n.link_state("eth0")[0] for n in nodes), what="eth0 up")


def test_cut_link_between_nodes_keeps_switch_reachable(lab: control.Lab) -> None:
    plan, alpha = lab.plan, lab["alpha"]
    faults.cut(plan, "b")
    assert not pings(alpha, plan.node("beta").addr_b)
    assert pings(alpha, plan.switch_addr_b)
    assert pings(alpha, plan.node("beta").addr_a)
    faults.heal(plan, "b")
    assert pings(alpha, plan.node("beta").addr_b)


def test_packet_loss_drops_a_share_of_pings(lab: control.Lab) -> None:
    plan, alpha = lab.plan, lab["alpha"]
    target = plan.node("beta").addr_a
    assert pings(alpha, target)  # ARP resolved before the loss starts
    faults.loss(plan, "a", 50)
    argv = ["ping", "-n", "-q", "-c", "200", "-i", "0.005", "-W", "0.3", target]
    out = alpha.run(argv, check=False, timeout=30).stdout
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    sent, received = int(m.group(1)), int(m.group(2))
    assert sent == 200
    lost = 1 - received / sent
    # loss is per frame, in both directions: expect 1 - 0.5**2 = 75 % of round trips lost
    assert 0.55 <= lost <= 0.92, out
    faults.clear_loss(plan, "a")
    assert pings(alpha, target, count=5)


def test_demo_service_answers_the_client_at_the_node_address(lab: control.Lab) -> None:
    plan = lab.plan
    for node in lab.nodes.values():
        node.systemctl("start", plan.demo_unit)
    try:
        for spec in plan.nodes:
            with Probe(plan, target=spec.addr_a, interval=0.01, count=50, duration=5) as probe:
                probe.wait(10)
            assert probe.sent == 50
            assert probe.who_answered() == {spec.name: 50}
            assert probe.first_answer_from(spec.name) is not None
            first, last = probe.answers[0].recv, probe.answers[-1].recv
            assert probe.longest_gap_ms(first, last) < 200
        entries = lab["alpha"].journal(unit=plan.demo_unit, fields=["MESSAGE"])
        assert any("Started" in str(e.get("MESSAGE")) for e in entries)
    finally:
        for node in lab.nodes.values():
            node.systemctl("stop", plan.demo_unit)


def test_freeze_stops_every_process_and_thaw_resumes(lab: control.Lab) -> None:
    plan, beta = lab.plan, lab["beta"]
    beta.systemctl("start", plan.demo_unit)
    try:
        with Probe(plan, target=plan.node("beta").addr_a, interval=0.01, duration=3) as probe:
            probe.wait_answer_from("beta", timeout=3)
            beta.freeze()
            frozen_at = time.time()
            assert beta.frozen()
            assert pings(lab["alpha"], plan.node("beta").addr_a)  # the kernel still answers
            time.sleep(0.5)
            assert not probe.snapshot(frozen_at + 0.05, time.time())
            beta.thaw()
            thawed_at = time.time()
            probe.wait_answer_from("beta", after=thawed_at, timeout=2)
            assert probe.longest_gap_ms(frozen_at, time.time()) >= 450
        # exit status 1 for "degraded": read the state, not the status
        state = beta.systemctl("is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), state
    finally:
        beta.systemctl("stop", plan.demo_unit)


def test_write_file_stays_inside_the_node(lab: control.Lab) -> None:
    path = f"/etc/mqlab-test-{uuid.uuid4().hex}.conf"
    lab["alpha"].write_file(path, "x = 1\n", mode=0o600)
    assert lab["alpha"].read_file(path) == "x = 1\n"
    assert lab["alpha"].run(["stat", "-c", "%a", path]).stdout.strip() == "600"
    assert not Path(path).exists(), "a node write reached the host"
    assert lab["beta"].run(["test", "-e", path], check=False).returncode != 0


def test_teardown_leaves_nothing_then_rebuilds(lab: control.Lab) -> None:
    plan = lab.plan
    pids = [n.pid for n in lab.nodes.values()]
    t0 = time.monotonic()
    control.down(plan)
    took = time.monotonic() - t0
    assert list_lab_netns() == []
    assert not list(cgroup2_root().glob(PREFIX + "*"))
    assert not plan.state_dir.exists()
    assert control.lab_mounts(plan) == []
    wait_for(lambda: not any(running(pid) for pid in pids), what="node processes gone")
    assert control.leftovers(plan) == []
    assert control.down(plan) == []  # idempotent
    assert took < 10
    fresh = control.up(plan)  # later tests (and other modules) get a lab again
    lab.nodes = fresh.nodes
    assert set(lab.nodes) == set(plan.node_names)
