"""The agent in the lab: the pair serves the client, and forged packets change nothing.

The failure cases themselves are the scenario suite (scenarios/, run by
tests/lab/test_scenarios.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from mosqit_failover.lab import deploy, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.netns import run
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios.measure import on_each, per_second, unit_wakeups
from mosqit_failover.lab.topology import LabPlan

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
            node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


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


def test_a_second_agent_started_by_hand_is_refused_and_changes_nothing(formed: Pair) -> None:
    """A helper's finding: a second agent beside the unit's bound the peer port again,
    released the active's VIP and services when it exited, and deleted the running
    agent's control socket and pid file."""
    for name in (formed.active, formed.standby):
        node = formed.lab[name]
        pid = deploy.main_pid(node)
        since = time.time()
        second = node.run([deploy.AGENT, "agent", "--config", deploy.CONFIG_PATH], check=False)
        assert second.returncode == 78, second.stdout + second.stderr
        assert f"another mosqit-failover agent runs on this node (pid {pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert deploy.main_pid(node) == pid
        assert formed.status(name)["role"] == ("ACTIVE" if name == formed.active else "STANDBY")
        assert formed.kinds(name, since) == []
    t0 = time.time()
    time.sleep(1.0)
    assert set(formed.probe.who_answered(t0, time.time())) == {formed.active}
    assert formed.holds_vip(formed.active) and not formed.holds_vip(formed.standby)


def test_an_active_node_that_lost_its_state_file_does_not_start(formed: Pair) -> None:
    """A helper's finding: with /var/lib/mosqit-failover deleted, the active started at
    epoch 0, released the VIP and services, took over again in epoch 1 beside a peer at
    a higher epoch, and the next handover's sync deleted what it took meanwhile."""
    node, state = formed.lab[formed.active], "/var/lib/mosqit-failover/state.json"
    maintenance = [deploy.AGENT, "maintenance", "--config", deploy.CONFIG_PATH]
    both = [formed.lab[formed.standby], node]
    for each in both:  # the standby leaves the stopped agent's node alone meanwhile
        each.run([*maintenance, "on"])
    saved = node.read_file(state)
    try:
        node.systemctl("stop", deploy.UNIT, timeout=150)  # in maintenance: keeps what it holds
        assert formed.holds_vip(formed.active)
        node.run(["rm", "-f", state])
        since = time.time()
        node.systemctl("start", deploy.UNIT, check=False, timeout=60)
        deadline = time.monotonic() + 20
        while node.systemctl("is-failed", "--quiet", deploy.UNIT, check=False).returncode:
            assert time.monotonic() < deadline, "the agent started without its state file"
            time.sleep(0.2)
        said = " ".join(str(e.get("MESSAGE")) for e in node.journal(deploy.UNIT, since=since))
        assert f"the state file {state} is missing, but this node holds the VIP" in said, said
        assert "Traceback" not in said
        assert formed.holds_vip(formed.active)  # nothing released by the refused start
        assert node.is_active(formed.plan.demo_unit)
    finally:
        node.write_file(state, saved)
        node.systemctl("reset-failed", deploy.UNIT, check=False)
        node.systemctl("start", deploy.UNIT, check=False, timeout=60)
        for each in both:
            each.run([*maintenance, "off"], check=False)


def test_a_vip_changed_by_a_restart_takes_the_old_one_away(formed: Pair) -> None:
    """The VIP is changed with maintenance on, a restart and maintenance off: the
    restarted agent left the old address on the interface, and after a switchover both
    nodes held it (a helper's finding)."""
    lab, plan = formed.lab, formed.plan
    old, new = plan.vip, plan.vip.rsplit(".", 1)[0] + ".51"
    maintenance = [deploy.AGENT, "maintenance", "--config", deploy.CONFIG_PATH]
    nodes = [lab[formed.standby], lab[formed.active]]
    config = nodes[0].read_file(deploy.CONFIG_PATH)
    assert f'"{old}/' in config

    def renumber(text: str) -> None:
        for node in nodes:
            node.run([*maintenance, "on"])
            node.write_file(deploy.CONFIG_PATH, text)
        for node in nodes:  # the standby first: the active's restart adopts what it holds
            node.systemctl("restart", deploy.UNIT, timeout=150)
        deploy.wait_pair(lab.nodes, timeout=40)
        for node in nodes:
            node.run([*maintenance, "off"])

    def held(node: Node) -> str:
        return node.run(["ip", "-4", "-o", "addr", "show", "dev", plan.iface("a")]).stdout

    try:
        renumber(config.replace(f'"{old}/', f'"{new}/'))
        active = held(lab[formed.active])
        assert f" {new}/" in active and f" {old}/" not in active, active
        assert f" {old}/" not in held(lab[formed.standby])
        said = " ".join(str(e.get("MESSAGE")) for e in lab[formed.active].journal(deploy.UNIT))
        assert f"removed the VIP {old}/24 on {plan.iface('a')}, added under an earlier" in said
    finally:
        renumber(config)
    active = held(lab[formed.active])
    assert f" {old}/" in active and f" {new}/" not in active, active


def test_check_config_on_a_node_names_a_unit_systemd_does_not_know(formed: Pair) -> None:
    """A typo'd unit passed check-config and reload, and the next switchover failed on
    both nodes in turn (a helper's finding)."""
    node = formed.lab[formed.standby]
    config = node.read_file(deploy.CONFIG_PATH)
    typo = '\n[[resources]]\nname = "typo"\nkind = "systemd"\nunit = "mqlab-dmeo.service"\n'
    node.write_file("/tmp/typo.toml", config + typo)
    argv = [deploy.AGENT, "check-config", "/tmp/typo.toml", "--node", formed.standby]
    checked = node.run(argv, check=False)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "resource typo: unit 'mqlab-dmeo.service' is not known to systemd" in checked.stderr
    good = node.run([*argv[:2], deploy.CONFIG_PATH, "--node", formed.standby], check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    by_name = node.run([*argv[:2], deploy.CONFIG_PATH], check=False)  # found by host name
    assert by_name.returncode == 0, by_name.stdout + by_name.stderr
    # a host renamed to its peer's name ran as the peer (a helper's finding)
    node.run(["hostname", formed.active])
    try:
        mixed = node.run([*argv[:2], deploy.CONFIG_PATH], check=False)
    finally:
        node.run(["hostname", formed.standby])
    assert mixed.returncode == 2, mixed.stdout + mixed.stderr
    assert f"none of node {formed.active}'s addresses" in mixed.stderr, mixed.stderr


def _wait(what: str, condition: Callable[[], bool], timeout: float = 15.0) -> float:
    """Seconds until `condition` held; fails naming `what` after `timeout`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"{what}: not within {timeout:g} s"
        time.sleep(0.2)
    return time.monotonic() - began


@pytest.fixture
def monitored(formed: Pair) -> Iterator[Pair]:
    """The pair with the monitor looking every second and `restarts = 1` for demo; the
    config restored afterwards."""
    unit, nodes = formed.plan.demo_unit, list(formed.lab.nodes.values())
    config = nodes[0].read_file(deploy.CONFIG_PATH)
    fast = config.replace("[timing]\n", '[timing]\nmonitor_interval = "1s"\n', 1)
    fast = fast.replace(f'unit = "{unit}"\n', f'unit = "{unit}"\nrestarts = 1\n', 1)
    reload = [deploy.AGENT, "reload", "--config", deploy.CONFIG_PATH]

    def configure(text: str) -> None:
        for node in nodes:
            node.write_file(deploy.CONFIG_PATH, text)
            node.run(reload)

    configure(fast)  # the reload ends the monitor's wait under the old interval
    try:
        yield formed
    finally:
        configure(config)


def test_the_monitor_keeps_the_vip_and_service_on_the_active_and_off_the_standby(
    monitored: Pair,
) -> None:
    """README, "Resource monitoring": a service started by hand on the standby, a VIP
    added there, the VIP deleted on the active, the service stopped on the active (once
    restarted, then past its restarts handed over)."""
    formed = monitored
    lab, plan = formed.lab, formed.plan
    active, standby = lab[formed.active], lab[formed.standby]
    unit, vip, iface = plan.demo_unit, f"{plan.vip}/{plan.prefix_len}", plan.iface("a")
    since = time.time()
    standby.systemctl("start", unit)
    _wait("the service stopped on the standby", lambda: not standby.is_active(unit))
    standby.run(["ip", "addr", "add", vip, "dev", iface])
    _wait("the VIP gone from the standby", lambda: not formed.holds_vip(formed.standby))
    assert formed.kinds(formed.standby, since) == ["held-astray", "plan-done"] * 2
    assert formed.status(formed.standby)["role"] == "STANDBY"

    active.run(["ip", "addr", "del", vip, "dev", iface])
    _wait("the VIP back on the active", lambda: formed.holds_vip(formed.active))
    formed.probe.wait_answer_from(formed.active, after=time.time(), timeout=10)
    active.systemctl("stop", unit)
    _wait("the service restarted on the active", lambda: active.is_active(unit))
    # the active may have seen the standby answer for the VIP before it let it go
    assert [k for k in formed.kinds(formed.active, since) if k != "vip-conflict"] == [
        "vip-lost",
        "plan-done",
        "resource-restart",
        "plan-done",
    ]
    assert formed.status(formed.active)["resource_failures"] == {"demo": 1}

    active.systemctl("stop", unit)  # its second failure: past restarts = 1
    deploy.wait_roles(lab.nodes, {formed.active: "STANDBY", formed.standby: "ACTIVE"}, 20)
    assert standby.is_active(unit) and not active.is_active(unit)
    said = formed.decisions(formed.active, since)
    failed = [e["MESSAGE"] for e in said if e["DECISION"] == "resource-failed"]
    assert len(failed) == 1 and f"handing over to {formed.standby}" in failed[0], failed
    formed.probe.wait_answer_from(formed.standby, after=time.time(), timeout=10)
    assert not formed.status(formed.active)["candidate"]  # start_failure_backoff


def test_another_host_answering_for_the_vip_is_said_and_the_vip_announced_again(
    monitored: Pair,
) -> None:
    """A node that held the VIP astray answered the client's ARP beside the active, and
    after it let the address go the client kept its MAC for 36 s (a helper's finding):
    the active's look asks ARP who has the VIP, says who else answers, and announces
    the VIP again once that stopped."""
    formed = monitored
    plan, standby = formed.plan, formed.lab[formed.standby]
    vip, iface = f"{plan.vip}/{plan.prefix_len}", plan.iface("a")
    mac = standby.run(["cat", f"/sys/class/net/{iface}/address"]).stdout.strip()
    maintenance = [deploy.AGENT, "maintenance", "--config", deploy.CONFIG_PATH]
    since = time.time()
    standby.run([*maintenance, "on"])  # it keeps what it holds: no held-astray
    try:
        standby.run(["ip", "addr", "add", vip, "dev", iface])

        def said() -> list[str]:
            return [
                str(e["MESSAGE"])
                for e in formed.decisions(formed.active, since)
                if e["DECISION"] == "vip-conflict"
            ]

        _wait("the active saying another host answers", lambda: len(said()) == 1)
        assert f"is answered by another host too (MAC {mac})" in said()[0], said()
        standby.run(["ip", "addr", "del", vip, "dev", iface])
        _wait("the active announcing the VIP again", lambda: len(said()) == 2)
        assert "no other host answers for the VIP" in said()[1], said()
        formed.probe.wait_answer_from(formed.active, after=time.time(), timeout=5)
        assert formed.kinds(formed.standby, since) == ["maintenance"]
    finally:
        standby.run(["ip", "addr", "del", vip, "dev", iface], check=False)
        standby.run([*maintenance, "off"])


def test_in_a_calm_pair_one_node_wakes_once_a_slot(formed: Pair) -> None:
    """docs/timing.md, "Following the peer's heartbeat": once the pair is calm (5 s
    without trouble), the second node in cluster.order runs its probe slot, and its
    heartbeat, in the wake-up of the first's heartbeat: about 10 wake-ups a second at the standard
    timing, where each node had 20 (its slot, then the other's heartbeat). Counted
    (voluntary context switches), not timed."""
    nodes = {n: formed.lab[n] for n in (formed.active, formed.standby)}
    rate: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = on_each(nodes, unit_wakeups)
        time.sleep(4.0)
        rate = per_second(before, on_each(nodes, unit_wakeups))
        if min(rate.values()) <= 15:
            break
    assert min(rate.values()) <= 15, rate


FORGE = r"""
import json, socket, sys, time
from mosqit_failover.authkeys import load_keyring, parse_secret_text, generate_secret_text
from mosqit_failover.events import PeerView, Role
from mosqit_failover.wire import MAX_DATAGRAM, Sender, binding
src, dst, port, me = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
real = load_keyring("/etc/mosqit-failover/secret")
wrong = parse_secret_text(generate_secret_text())
view = PeerView(me, Role.ACTIVE, 99, (("a", True), ("b", True)), False, False, False, False)
bound = binding(src, dst)  # signed as the node's agent signs, addresses and all
genuine = Sender("lab", me, real).encode(view, time.time(), bound=bound)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((src, 0))
packets = {
    "bad-mac": Sender("lab", me, wrong).encode(view, time.time(), bound=bound),
    "stale": Sender("lab", me, real).encode(view, time.time() - 3600, bound=bound),
    "bad-magic": b"XX" + genuine[2:],
    "unknown-version": genuine[:2] + b"\x01" + genuine[3:],  # version 1: no ack
    "truncated": genuine[:40],
    "oversized": genuine + b"\0" * (MAX_DATAGRAM + 1 - len(genuine)),
    "wrong-cluster": Sender("other", me, real).encode(view, time.time(), bound=bound),
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
    for reason in (
        "bad-mac",
        "stale",
        "bad-magic",
        "unknown-version",
        "truncated",
        "oversized",
        "wrong-cluster",
    ):
        assert dropped.get(reason, 0) >= 1, (reason, dropped)
    assert dropped.get("replayed", 0) >= 1, dropped
    assert after["role"] == "STANDBY" and after["epoch"] == before["epoch"]
    assert formed.kinds(victim, t0) == []
    assert formed.status(attacker)["role"] == "ACTIVE"


SNIFF = r"""
import json, socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
# sniff one of the real agent's datagrams to the peer
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
"""

SEND = r"""
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((src, 0))
for _ in range(2):
    sock.sendto(payload, (dst, port))
"""

# send it again twice
REPLAY = SNIFF + SEND + 'print(json.dumps({"replayed": 2}))\n'
# print it (hex), to be sent later by REPLAY_LATER
CAPTURE = SNIFF + "print(payload.hex())\n"
REPLAY_LATER = (
    "import json, socket, sys\n"
    "src, dst, port, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), "
    "bytes.fromhex(sys.argv[4])\n" + SEND
)


def test_a_datagram_recorded_before_an_agent_restart_is_not_accepted_after_it(
    formed: Pair,
) -> None:
    """Wire v2: the ack of the receiver's boot id. A genuine datagram captured before
    the standby's agent restarts is replayed, still fresh, once the pair has formed
    again: it is dropped as unconfirmed (its ack is the previous start's boot id)."""
    attacker, victim = formed.active, formed.standby
    spec_a, spec_v = formed.plan.node(attacker), formed.plan.node(victim)
    src, dst = spec_a.addr("b"), spec_v.addr("b")
    node = formed.lab[attacker]
    captured = node.run([formed.plan.python, "-c", CAPTURE, src, dst, "5405"], timeout=20)
    captured_at = time.time()
    payload = captured.stdout.strip()
    assert len(payload) > 100, captured.stdout

    formed.lab[victim].systemctl("restart", deploy.UNIT, timeout=60)
    deploy.wait_roles(formed.lab.nodes, {attacker: "ACTIVE", victim: "STANDBY"}, timeout=20)
    before = formed.status(victim)
    link_before = before["peer_link"]
    assert isinstance(link_before, dict) and link_before["accepted"] > 0  # handshake done
    t0 = time.time()
    assert t0 - captured_at < 25, "too slow: the capture would be stale, proving nothing"
    node.run([formed.plan.python, "-c", REPLAY_LATER, src, dst, "5405", payload])
    dropped: dict[str, int] = {}
    give_up = time.monotonic() + 10
    while dropped.get("unconfirmed", 0) < 2 and time.monotonic() < give_up:
        time.sleep(0.2)  # polling the status until the agent has read them
        after = formed.status(victim)
        link_after = after["peer_link"]
        assert isinstance(link_after, dict)
        dropped = {
            k: v - link_before["dropped"].get(k, 0) for k, v in link_after["dropped"].items()
        }
    assert dropped.get("unconfirmed", 0) == 2, dropped  # both copies, and nothing genuine
    assert after["role"] == "STANDBY" and after["epoch"] == before["epoch"]
    assert formed.kinds(victim, t0) == []


FILTER_TABLE = "mqtest_echo"


def test_icmp_echo_filtered_on_one_network_is_said_and_moves_nothing(formed: Pair) -> None:
    """A firewall on the standby drops ICMP echo requests arriving on network b (the
    heartbeats still pass): the active's probes of it there miss for good. The active
    says so once, naming the network and the fix, keeps the VIP, and says when the
    echo passes again (docs/safety.md, "Under heavy loss")."""
    standby = formed.lab[formed.standby]
    iface = formed.plan.iface("b")
    rules = (
        f"table inet {FILTER_TABLE} {{\n chain input {{\n"
        "  type filter hook input priority 0;\n"
        f'  iifname "{iface}" icmp type echo-request drop\n }}\n}}\n'
    )
    t0 = time.time()
    standby.run(["nft", "-f", "-"], input=rules)
    try:
        # a calm pair does not probe (echo on demand): a late heartbeat turns it on
        standby.freeze()
        time.sleep(0.2)
        standby.thaw()
        lines: list[dict[str, str]] = []
        give_up = time.monotonic() + 30  # said after ECHO_FILTER_SECONDS (10 s) of misses
        while not lines and time.monotonic() < give_up:
            time.sleep(0.5)
            seen = formed.decisions(formed.active, t0)
            lines = [e for e in seen if e["DECISION"] == "echo-blocked"]
        assert lines, formed.decisions(formed.active, t0)
        text = lines[0]["MESSAGE"]
        assert f"peer {formed.standby}'s messages arrive on network b but no echo reply" in text
        assert "let ICMP echo requests and replies pass between the nodes on b" in text
        peers = formed.status(formed.active)["peers"]
        assert isinstance(peers, dict) and peers[formed.standby]["echo_blocked"] == ["b"]
    finally:
        standby.run(["nft", "delete", "table", "inet", FILTER_TABLE], check=False)
    healed = time.time()
    again = f"peer {formed.standby} answers echo on network b again"
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        if any(again in e["MESSAGE"] for e in formed.decisions(formed.active, healed - 1)):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(formed.decisions(formed.active, healed - 1))
    assert formed.kinds(formed.active, t0) == ["echo-blocked", "echo-blocked"]
    assert formed.kinds(formed.standby, t0) == []
    assert formed.holds_vip(formed.active) and not formed.holds_vip(formed.standby)


def test_a_switch_that_lost_the_actives_address_answers_before_the_uplink_counts_lost(
    formed: Pair,
) -> None:
    """Under loss a switch's kernel now and then loses its ARP entry for a node (three
    re-checks lost) and answers nothing until one of its broadcasts, a second apart,
    gets an answer through: at 30 % loss that left switch a silent 2.4 s now and then,
    and the active handed over ("lost uplink a which peer ... still has"). Here the
    entry is deleted and the active's ARP frames dropped for 1.5 s; the active's own ARP
    requests for the switch after three misses (config.SWITCH_ARP_AFTER) end the
    silence at once. Before them it handed over in 2 of 3 such trials."""
    plan, active = formed.plan, formed.active
    spec = plan.node(active)
    chain = ["bridge", plan.nft_table, "loss_a"]
    for _ in range(2):
        time.sleep(7)  # calm again: the switch probed every 4th slot
        t0 = time.time()
        drop = ["nft", "add", "rule", *chain, "iifname", spec.port("a"), "ether", "type", "arp"]
        run([*drop, "drop"], ns=plan.switch_ns)
        run(["ip", "neigh", "del", spec.addr("a"), "dev", plan.bridge("a")], ns=plan.switch_ns)
        time.sleep(1.5)
        faults.clear_loss(plan, "a")
        time.sleep(3)
        assert formed.kinds(active, t0) == [], formed.decisions(active, t0)
        assert formed.kinds(formed.standby, t0) == []
    probes = formed.status(active)["probes"]
    assert isinstance(probes, dict) and probes["switch-a"]["arp_asked"] > 0, probes
