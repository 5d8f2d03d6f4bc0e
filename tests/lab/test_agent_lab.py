"""The agent, end to end, in the lab: real systemd nodes, real VIP, real client.

Each test starts from a formed pair (whichever node is active), injects a fault
the way it happens, and checks from the client's side (who answers at the VIP,
how long the outage was) and from each node's journal (the decision lines).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mosqit_failover.lab import deploy, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.topology import NETS, LabPlan

pytestmark = pytest.mark.lab


@dataclass
class Pair:
    lab: Lab
    plan: LabPlan
    probe: Probe
    active: str = ""
    standby: str = ""

    def decisions(self, node: str, since: float) -> list[dict[str, str]]:
        return deploy.decisions(self.lab[node], since=since)

    def kinds(self, node: str, since: float) -> list[str]:
        return [e["DECISION"] for e in self.decisions(node, since)]

    def holds_vip(self, node: str) -> bool:
        return deploy.holds_vip(self.lab[node], self.plan)

    def status(self, node: str) -> dict[str, object]:
        return deploy.status(self.lab[node])


def _restore(lab: Lab, plan: LabPlan) -> None:
    faults.clear_all(plan)
    for node in lab.nodes.values():
        if node.frozen():
            node.thaw()


@pytest.fixture(scope="module")
def pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Pair]:
    deploy.install(lab.nodes, lab_plan)
    deploy.start(lab.nodes)
    deploy.wait_pair(lab.nodes, timeout=30)
    probe = Probe(lab_plan, duration=1200)
    try:
        yield Pair(lab, lab_plan, probe)
    finally:
        probe.stop()
        _restore(lab, lab_plan)
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=60)


@pytest.fixture
def formed(pair: Pair) -> Iterator[Pair]:
    """The pair formed and serving the client, and every fault undone afterwards."""
    _restore(pair.lab, pair.plan)
    roles = deploy.wait_pair(pair.lab.nodes, timeout=40)
    pair.active = next(n for n, r in roles.items() if r == "ACTIVE")
    pair.standby = next(n for n, r in roles.items() if r == "STANDBY")
    pair.probe.wait_answer_from(pair.active, after=time.time(), timeout=10)
    yield pair
    _restore(pair.lab, pair.plan)


def test_the_active_node_serves_the_client_at_the_vip_and_holds_it_alone(formed: Pair) -> None:
    t0 = time.time()
    time.sleep(1.0)
    assert set(formed.probe.who_answered(t0, time.time())) == {formed.active}
    assert formed.holds_vip(formed.active)
    assert not formed.holds_vip(formed.standby)
    assert formed.lab[formed.active].is_active(formed.plan.demo_unit)
    assert not formed.lab[formed.standby].is_active(formed.plan.demo_unit)


def test_active_node_cut_off_the_standby_takes_over(formed: Pair) -> None:
    old, new = formed.active, formed.standby
    t_cut = time.time()
    for net in NETS:
        faults.port_down(formed.plan, old, net)
    answer = formed.probe.wait_answer_from(new, after=t_cut, timeout=10)
    failover = answer.recv - t_cut
    assert failover < 2.0, f"failover took {failover:.3f}s"
    promote = [e for e in formed.decisions(new, t_cut) if e["DECISION"] == "promote"]
    assert promote and f"peer {old} gone: echo replies missed" in promote[0]["MESSAGE"]
    deadline = time.time() + 5
    while formed.holds_vip(old) and time.time() < deadline:
        time.sleep(0.1)
    assert not formed.holds_vip(old)
    assert "demote-isolated" in formed.kinds(old, t_cut)
    for net in NETS:
        faults.port_up(formed.plan, old, net)
    deploy.wait_roles(formed.lab.nodes, {new: "ACTIVE", old: "STANDBY"}, timeout=20)
    assert "promote" not in formed.kinds(old, t_cut)


def test_one_switch_lost_both_nodes_go_manual_and_the_active_keeps_serving(formed: Pair) -> None:
    t0 = time.time()
    faults.switch_down(formed.plan, "b")
    time.sleep(4)
    for node in (formed.active, formed.standby):
        assert "manual" in formed.kinds(node, t0), formed.decisions(node, t0)
    assert formed.status(formed.active)["mode"] == "MANUAL"
    faults.switch_up(formed.plan, "b")
    deploy.wait_roles(formed.lab.nodes, {formed.active: "ACTIVE", formed.standby: "STANDBY"})
    time.sleep(3)  # link_rise, then back to automatic
    t1 = time.time()
    assert set(formed.probe.who_answered(t0, t1)) == {formed.active}
    assert formed.probe.longest_gap_ms(t0, t1) < 500
    assert "promote" not in formed.kinds(formed.standby, t0)
    assert "automatic" in formed.kinds(formed.active, t0)


def test_both_switches_off_the_active_stands_down_and_the_freshest_returns(formed: Pair) -> None:
    t0 = time.time()
    for net in NETS:
        faults.switch_down(formed.plan, net)
    deadline = time.time() + 5
    while formed.holds_vip(formed.active) and time.time() < deadline:
        time.sleep(0.1)
    assert not formed.holds_vip(formed.active)
    assert not formed.lab[formed.active].is_active(formed.plan.demo_unit)
    time.sleep(2)
    assert "demote-isolated" in formed.kinds(formed.active, t0)
    assert "promote" not in formed.kinds(formed.standby, t0)
    assert not formed.holds_vip(formed.standby)
    for net in NETS:
        faults.switch_up(formed.plan, net)
    # the last active has the higher epoch: its data is the freshest, it comes back
    deploy.wait_roles(formed.lab.nodes, {formed.active: "ACTIVE", formed.standby: "STANDBY"}, 20)
    assert "promote" not in formed.kinds(formed.standby, t0)


def test_agent_killed_on_the_active_is_restarted_and_reclaims_without_a_switchover(
    formed: Pair,
) -> None:
    node = formed.lab[formed.active]
    t0 = time.time()
    node.systemctl("kill", "--signal=SIGKILL", deploy.UNIT)
    deploy.wait_roles(formed.lab.nodes, {formed.active: "ACTIVE"}, timeout=20)
    time.sleep(1)
    kinds = formed.kinds(formed.active, t0)
    assert kinds[:2] == ["adopt", "reclaim"], formed.decisions(formed.active, t0)
    assert "promote" not in formed.kinds(formed.standby, t0)
    assert not formed.holds_vip(formed.standby)
    t1 = time.time()
    assert set(formed.probe.who_answered(t0, t1)) == {formed.active}
    assert formed.probe.longest_gap_ms(t0, t1) < 500  # the service never stopped


FORGE = r"""
import json, socket, sys, time
from mosqit_failover.authkeys import load_keyring, parse_secret_text, generate_secret_text
from mosqit_failover.events import PeerView, Role
from mosqit_failover.wire import Sender
src, dst, port, me = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
real = load_keyring("/etc/mosqit-failover/secret")
wrong = parse_secret_text(generate_secret_text())
view = PeerView(me, Role.ACTIVE, 99, (("a", True), ("b", True)), False, False, False, False)
genuine = Sender("lab", me, real).encode(view, time.time())
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((src, 0))
packets = {
    "bad-mac": Sender("lab", me, wrong).encode(view, time.time()),
    "stale": Sender("lab", me, real).encode(view, time.time() - 3600),
    "bad-magic": b"XX" + genuine[2:],
    "truncated": genuine[:40],
    "oversized": genuine + b"\0" * 600,
    "wrong-cluster": Sender("other", me, real).encode(view, time.time()),
}
for name, data in packets.items():
    sock.sendto(data, (dst, port))
print(json.dumps(sorted(packets)))
"""


def test_forged_replayed_and_malformed_packets_change_nothing(formed: Pair) -> None:
    attacker, victim = formed.active, formed.standby
    spec_a, spec_v = formed.plan.node(attacker), formed.plan.node(victim)
    before = formed.status(victim)
    t0 = time.time()
    # from the attacker node's own address, so only the message itself can give it away
    node = formed.lab[attacker]
    node.run(
        [formed.plan.python, "-c", FORGE, spec_a.addr("a"), spec_v.addr("a"), "5405", attacker]
    )
    # a replay: capture one genuine datagram on the wire and send it again twice
    replay = node.run(
        [formed.plan.python, "-c", REPLAY, spec_a.addr("b"), spec_v.addr("b"), "5405"],
        timeout=20,
    )
    assert json.loads(replay.stdout)["replayed"] == 2
    time.sleep(1.0)
    after = formed.status(victim)
    link_before, link_after = before["peer_link"], after["peer_link"]
    assert isinstance(link_before, dict) and isinstance(link_after, dict)
    dropped = {k: v - link_before["dropped"].get(k, 0) for k, v in link_after["dropped"].items()}
    for reason in ("bad-mac", "stale", "bad-magic", "truncated", "oversized", "wrong-cluster"):
        assert dropped.get(reason, 0) >= 1, (reason, dropped)
    assert dropped.get("replayed", 0) >= 1, dropped
    assert after["role"] == "STANDBY" and after["epoch"] == before["epoch"]
    assert formed.kinds(victim, t0) == []
    assert formed.status(attacker)["role"] == "ACTIVE"


REPLAY = r"""
import json, socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
# sniff one of the real agent's datagrams to the peer, then send it again twice
# ETH_P_ALL: only taps of every protocol see outgoing frames
raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
raw.settimeout(10)
while True:
    frame, link = raw.recvfrom(2048)
    if link[1] != 0x0800:
        continue
    ihl = (frame[0] & 15) * 4
    if frame[9] == 17 and socket.inet_ntoa(frame[16:20]) == dst:
        if int.from_bytes(frame[ihl + 2:ihl + 4], "big") == port:
            payload = frame[ihl + 8:]
            break
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((src, 0))
for _ in range(2):
    sock.sendto(payload, (dst, port))
print(json.dumps({"replayed": 2}))
"""
