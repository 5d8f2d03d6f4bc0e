"""The deploy and resource wizards over three nodes or more, without a lab.

The nodes are `FakeNode`s: a dict of files, a unit state and ping answers, behind the
wizard's own login seam (`deploy.connect`). A whole `deploy.deploy` runs over them:
which nodes are asked, which are refused (given twice, nine of them), the takeover
order, the connectivity between every two nodes, the sync keys for every pair and the
rollback over every node when the third one drops midway.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Any, cast

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.wizards import changes as changes_module
from mosqit_failover.wizards import checks, configedit, deploy, package, resources
from mosqit_failover.wizards.prompts import AnswerError, Asker
from mosqit_failover.wizards.ssh import KnownHosts, Login, Result, Session, SshError

NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota")
PING = re.compile(r'-I (\S+) (\S+) >/dev/null 2>&1; echo "(\S+) \$\?"')
UNIT = deploy.UNIT
AUTHORIZED = "/root/.ssh/authorized_keys"
KNOWN = "/root/.ssh/known_hosts"


def ip_addr(index: int, nets: int = 2) -> str:
    """`ip -j addr show` of node ``index``: eth0 in 10.0.1.0/24, eth1 in 10.0.2.0/24."""
    items = [
        {
            "ifname": f"eth{n}",
            "flags": ["UP", "LOWER_UP"],
            "addr_info": [
                {"family": "inet", "local": f"10.0.{n + 1}.{11 + index}", "prefixlen": 24}
            ],
        }
        for n in range(nets)
    ]
    return json.dumps(items)


class FakeNode:
    """One node as the wizard sees it over ssh."""

    def __init__(self, index: int, name: str | None = None, nets: int = 2) -> None:
        self.index = index
        self.name = name or NAMES[index]
        self.label = f"node{index + 1}"
        self.host = f"10.0.1.{11 + index}"
        self.login = Login(password="pw")
        self.host_key = f"SHA256:key-of-{self.name}"
        self.nets = nets
        self.alive = True
        self.closed = False
        self.files: dict[str, str] = {
            "/etc/ssh/ssh_host_ed25519_key.pub": f"ssh-ed25519 HOST{self.name} root@{self.name}\n"
        }
        self.modes: dict[str, int] = {}
        self.active = self.enabled = False
        self.role = "ACTIVE" if index == 0 else "STANDBY"
        self.silent: set[str] = set()  # addresses that do not answer this node's pings
        self.drop_on_write = ""  # writing this path drops the connection
        self.changed: list[str] = []  # commands and writes that change the node

    def _check(self) -> None:
        if not self.alive:
            raise SshError(f"the connection to {self.label} ({self.host}) dropped (closed)")

    def close(self) -> None:
        self.closed = True

    def run(
        self, command: str, timeout: float = 30.0, input: str | None = None, check: bool = False
    ) -> Result:
        self._check()
        if command == checks.FACTS_COMMAND:
            out = f"{self.name}\n{ip_addr(self.index, self.nets)}\n/usr/bin/mosqit-failover\n"
            return Result(0, out + "#!/usr/bin/python3\n", "")
        if command == package.QUERY:
            return Result(0, "install ok installed\t0.3.0", "")
        if command.startswith("systemctl is-active"):
            return Result(0 if self.active else 3, "", "")
        if command.startswith("systemctl is-enabled"):
            return Result(0 if self.enabled else 1, "", "")
        if command.startswith("test -x "):
            return Result(0 if command.split()[2] in self.files else 1, "", "")
        if command.startswith("readlink -f -- "):  # no symlinks here: every path is its own
            return Result(0, shlex.split(command)[-1] + "\n", "")
        if "ip neigh del" in command:
            return Result(0, "[]", "")
        if "ping" in command:
            lines = [
                f"{key} {1 if target in self.silent else 0}"
                for _iface, target, key in PING.findall(command)
            ]
            return Result(0, "\n".join(lines) + "\n", "")
        if command.startswith("mosqit-failover status"):
            if not self.active:
                return Result(3, "", "")
            return Result(0, json.dumps({"role": self.role}), "")
        self.changed.append(command)
        if "ssh-keygen" in command:
            self.files[deploy.SYNC_KEY] = "private"
            self.files[deploy.SYNC_KEY + ".pub"] = f"ssh-ed25519 SYNC{self.name} mosqit-sync@x\n"
        elif command.startswith(f"rm -f {deploy.SYNC_KEY}"):
            self.files.pop(deploy.SYNC_KEY, None)
            self.files.pop(deploy.SYNC_KEY + ".pub", None)
        elif command == f"systemctl start {UNIT}":
            self.active = True
        elif command == f"systemctl stop {UNIT}":
            self.active = False
        elif command == f"systemctl enable {UNIT}":
            self.enabled = True
        elif command == f"systemctl disable {UNIT}":
            self.enabled = False
        return Result(0, "", "")

    def read(self, path: str) -> str | None:
        self._check()
        return self.files.get(path)

    def mode(self, path: str) -> int | None:
        self._check()
        return self.modes.get(path, 0o600) if path in self.files else None

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        self._check()
        if path == self.drop_on_write:
            self.alive = False
            self._check()
        self.changed.append(f"write {path}")
        self.files[path] = text
        self.modes[path] = mode

    def remove(self, path: str) -> None:
        self._check()
        self.changed.append(f"rm {path}")
        self.files.pop(path, None)


def fleet(count: int) -> dict[str, FakeNode]:
    """``count`` fresh nodes by address (alpha 10.0.1.11, beta 10.0.1.12...)."""
    return {n.host: n for n in (FakeNode(i) for i in range(count))}


ANSWERS: dict[str, Any] = {
    "password": "pw",
    "switch_a": "10.0.1.1",
    "switch_b": "10.0.2.1",
    "cluster": "shop",
    "vip": "10.0.1.50",
}


def run_deploy(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    nodes: dict[str, FakeNode],
    answers: dict[str, Any],
    hosts: list[str] | None = None,
    wait: bool = True,
) -> str:
    """deploy.deploy over ``nodes`` (unattended); the output. No package in ./dist."""
    monkeypatch.chdir(tmp_path)
    connected: list[str] = []

    def connect(label: str, host: str, login: Login, *_: Any) -> Session:
        connected.append(host)
        node = nodes.get(host)
        if node is None:
            raise SshError(f"cannot reach {label} ({host}:22): no answer. Nothing was changed.")
        node.label = label
        return cast(Session, node)

    monkeypatch.setattr(deploy, "connect", connect)
    out = io.StringIO()
    given = {**ANSWERS, "nodes": hosts if hosts is not None else list(nodes), **answers}
    asker = Asker(given, False, out=out)
    deploy.deploy(asker, cast(KnownHosts, None), False, wait=wait)
    return out.getvalue()


# ---- three nodes deployed --------------------------------------------------------------


def test_three_nodes_get_one_config_with_the_order_and_keys_for_every_pair(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(3)
    said = run_deploy(monkeypatch, tmp_path, nodes, {})
    assert "Takeover order: alpha > beta > gamma" in said
    assert "The cluster is up: alpha ACTIVE, beta STANDBY, gamma STANDBY" in said
    texts = {n.files[deploy.CONFIG_PATH] for n in nodes.values()}
    secrets = {n.files[deploy.SECRET_PATH] for n in nodes.values()}
    assert len(texts) == 1 and len(secrets) == 1
    text = texts.pop()
    assert 'order = ["alpha", "beta", "gamma"]' in text and "preferred" not in text
    cfg = configuration.parse(text)
    assert cfg.order == ("alpha", "beta", "gamma")
    assert [n.name for n in cfg.peers_of("beta")] == ["alpha", "gamma"]
    assert str(cfg.node("gamma").on("b").address) == "10.0.2.13"
    for node in nodes.values():
        assert node.active and node.enabled
        peers = [p for p in nodes.values() if p is not node]
        lines = node.files[AUTHORIZED].splitlines()
        assert len(lines) == 2
        for peer, line in zip(peers, lines, strict=True):
            forced = deploy.receiver_command("/usr/bin/python3")
            assert line == f'command="{forced}",restrict ssh-ed25519 SYNC{peer.name} mosqit-sync@x'
        known = node.files[KNOWN].splitlines()
        assert known == [
            f"10.0.{net}.{11 + peer.index} ssh-ed25519 HOST{peer.name}"
            for peer in peers
            for net in (1, 2)
        ]


def test_no_wait_leaves_the_cluster_started_whether_it_forms_or_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(3)
    for node in nodes.values():
        node.role = "STANDBY"  # no node goes ACTIVE: waiting would time out and roll back
    said = run_deploy(monkeypatch, tmp_path, nodes, {}, wait=False)
    assert "not waiting for the cluster to form (--no-wait)" in said
    assert all(n.active and n.enabled and deploy.CONFIG_PATH in n.files for n in nodes.values())


def test_the_order_asked_is_written_and_a_wrong_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(4)
    said = run_deploy(monkeypatch, tmp_path, nodes, {"order": ["delta", "alpha", "gamma", "beta"]})
    assert "Takeover order: delta > alpha > gamma > beta" in said
    cfg = configuration.parse(nodes["10.0.1.11"].files[deploy.CONFIG_PATH])
    assert cfg.order == ("delta", "alpha", "gamma", "beta") and cfg.preferred == "delta"

    names = ["alpha", "beta", "gamma"]

    def order(text: str) -> list[str]:
        return deploy.ask_order(Asker({"order": text}, False), names)

    assert order("gamma beta alpha") == ["gamma", "beta", "alpha"]
    with pytest.raises(AnswerError, match="omega: not a node here"):
        order("alpha, beta, omega")
    with pytest.raises(AnswerError, match="beta given twice: list every node once"):
        order("alpha, beta, beta, gamma")
    with pytest.raises(AnswerError, match="gamma missing: list every node once"):
        order("alpha, beta")
    assert deploy.ask_order(Asker({}, False), ["alpha", "beta"]) == ["alpha", "beta"]


def test_a_pair_keeps_preferred_and_is_asked_nothing_new(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(2)
    said = run_deploy(monkeypatch, tmp_path, nodes, {})
    assert "Takeover order" not in said and "The pair is up" in said
    text = nodes["10.0.1.11"].files[deploy.CONFIG_PATH]
    assert text.startswith("# mosqit-failover pair, written by")
    assert 'preferred = "alpha"' in text and "order" not in text
    for node in nodes.values():
        assert len(node.files[AUTHORIZED].splitlines()) == 1


# ---- which nodes ---------------------------------------------------------------------


def test_nodes_from_flags_numbered_answers_or_the_prompt() -> None:
    assert deploy.ask_hosts(Asker({"nodes": ["a1", "a2", "a3"]}, False)) == ["a1", "a2", "a3"]
    numbered = {"node1": "a1", "node2": "a2", "node3": "a3"}
    assert deploy.ask_hosts(Asker(numbered, False)) == ["a1", "a2", "a3"]
    with pytest.raises(AnswerError, match="node4 is given but node3 is not"):
        deploy.ask_hosts(Asker({"node1": "a1", "node2": "a2", "node4": "a4"}, False))
    with pytest.raises(AnswerError, match="give them one way"):
        deploy.ask_hosts(Asker({"nodes": ["a1", "a2"], "node1": "a1"}, False))
    typed = iter(["a1", "a2", "a3", "a4", ""])
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    out = io.StringIO()
    assert deploy.ask_hosts(Asker({}, True, out=out, read=read)) == ["a1", "a2", "a3", "a4"]
    assert prompts[2] == "Address of another node (node 3; empty to finish): "
    assert prompts[4] == "Address of another node (node 5; empty to finish): "
    # at the terminal, the 8th node is the last one asked
    typed = iter(f"a{i}" for i in range(1, 20))
    assert len(deploy.ask_hosts(Asker({}, True, out=out, read=lambda _p: next(typed)))) == 8


def test_a_node_given_twice_or_nine_nodes_are_refused_before_any_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(3)
    hosts = ["10.0.1.11", "10.0.1.12", "10.0.1.11"]
    with pytest.raises(AnswerError) as caught:
        run_deploy(monkeypatch, tmp_path, nodes, {}, hosts)
    assert str(caught.value) == (
        "10.0.1.11 is given twice (node 1 and node 3): give each node once"
    )
    with pytest.raises(AnswerError, match=r"ALPHA.example is given twice \(node 1 and node 2\)"):
        deploy.ask_hosts(Asker({"nodes": ["alpha.example", "ALPHA.example"]}, False))
    nine = [f"10.0.1.{11 + i}" for i in range(9)]
    with pytest.raises(AnswerError) as caught:
        run_deploy(monkeypatch, tmp_path, fleet(9), {}, nine)
    assert str(caught.value) == "9 node(s) given: a cluster has 2 to 8 nodes; give 1 fewer"
    with pytest.raises(
        AnswerError, match=r"1 node\(s\) given: a cluster has 2 to 8 nodes; give an"
    ):
        run_deploy(monkeypatch, tmp_path, fleet(1), {})
    for node in nodes.values():
        assert node.changed == [] and node.label.startswith("node")


def test_one_machine_at_two_addresses_and_two_nodes_of_one_name_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(3)
    twin = FakeNode(0)
    twin.host = "10.0.2.11"  # alpha again, by its address on network B
    nodes[twin.host] = twin
    hosts = ["10.0.1.11", "10.0.1.12", "10.0.2.11"]
    with pytest.raises(deploy.WizardError) as caught:
        run_deploy(monkeypatch, tmp_path, nodes, {}, hosts)
    assert str(caught.value).startswith(
        "10.0.1.11 and 10.0.2.11 show the same host key (SHA256:key-of-alpha): the same node "
        "given twice (give each node once, by one address), or a clone"
    )
    assert "\n" not in str(caught.value)
    assert all(n.closed for n in nodes.values() if n.host in hosts)

    nodes = fleet(3)
    nodes["10.0.1.13"].name = "beta"  # another machine called beta
    nodes["10.0.1.13"].host_key = "SHA256:other"
    with pytest.raises(deploy.Aborted) as aborted:
        run_deploy(monkeypatch, tmp_path, nodes, {})
    assert aborted.value.report() == (
        "10.0.1.12 and 10.0.1.13 are both called 'beta': give each node its own host name "
        "(hostnamectl set-hostname NAME) and re-run. Nothing was changed."
    )
    assert all(n.changed == [] and n.closed for n in nodes.values())


# ---- both networks between every two nodes ----------------------------------------------


def test_a_path_missing_between_two_nodes_on_one_network_is_named_and_nothing_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(3)
    nodes["10.0.1.12"].silent = {"10.0.2.13"}  # beta does not hear gamma on network B
    nodes["10.0.1.13"].silent = {"10.0.2.12"}  # nor gamma beta; both hear alpha on B
    with pytest.raises(deploy.Aborted) as aborted:
        run_deploy(monkeypatch, tmp_path, nodes, {})
    report = aborted.value.report()
    assert report.splitlines()[0] == "the networks are not ready; nothing was changed:"
    assert report.splitlines()[1:] == [
        "  gamma: beta answers on b: NO ANSWER; fix: no path between gamma and beta on "
        "network b: check both nodes' ports on switch B (VLAN, firewall: ICMP)",
        "  beta: gamma answers on b: NO ANSWER; fix: no path between beta and gamma on "
        "network b: check both nodes' ports on switch B (VLAN, firewall: ICMP)",
    ]
    assert all(n.changed == [] for n in nodes.values())


def test_the_table_has_a_row_per_node_and_network_and_a_dash_for_itself() -> None:
    nodes = {n.name: n for n in fleet(3).values()}
    facts = {name: checks.gather(cast(Session, n)) for name, n in nodes.items()}
    networks = checks.discover(facts)
    for net, switch in zip(networks, ("10.0.1.1", "10.0.2.1"), strict=True):
        net.switch = ipaddress.IPv4Address(switch)
    rows = checks.connectivity(cast(dict[str, Session], nodes), facts, networks)
    table = checks.render(rows, list(nodes))
    assert [r.check for r in rows][:5] == [
        "uplink a carrier",
        "switch A 10.0.1.1 answers",
        "alpha answers on a",
        "beta answers on a",
        "gamma answers on a",
    ]
    line = next(t for t in table.splitlines() if t.startswith("beta answers on b"))
    assert line.split()[4:] == ["ok", "answers", "-", "ok", "answers"]
    assert checks.failed(rows) == []


def test_a_node_without_network_b_is_named() -> None:
    facts = {
        n.name: checks.gather(cast(Session, n))
        for n in (FakeNode(0), FakeNode(1), FakeNode(2, nets=1))
    }
    with pytest.raises(checks.CheckError) as caught:
        checks.discover(facts)
    assert "every node needs two" in str(caught.value)
    assert "gamma has no address in 10.0.2.0/24 (which alpha has on eth1)" in str(caught.value)
    assert "alpha has no" not in str(caught.value)


# ---- the third node drops midway -------------------------------------------------------


def test_the_third_node_dropping_midway_rolls_back_the_first_two(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nodes = fleet(3)
    before = {host: dict(n.files) for host, n in nodes.items()}
    gamma = nodes["10.0.1.13"]
    gamma.drop_on_write = deploy.CONFIG_PATH
    with pytest.raises(deploy.Aborted) as aborted:
        run_deploy(monkeypatch, tmp_path, nodes, {})
    report = aborted.value.report().splitlines()
    assert report[0].startswith("the connection to gamma (10.0.1.13) dropped")
    assert report[1] == "What was changed, and what the rollback did:"
    undone = report[2:-1]
    # gamma's write could not be undone: the report ends saying what is left, and where
    assert report[-1] == (
        "Left changed on gamma: what is marked NOT undone. Re-run the wizard once it is "
        f"reachable (it checks what each node has), or put {deploy.CONFIG_PATH} and "
        f"{deploy.SECRET_PATH} back by hand."
    )
    for name in ("alpha", "beta"):
        mine = [line for line in undone if line.startswith(f"  {name}: ")]
        assert f"  {name}: undone: wrote {deploy.CONFIG_PATH}" in mine
        assert f"  {name}: undone: wrote {deploy.SECRET_PATH}" in mine
        assert f"  {name}: undone: enable {UNIT}" in mine
        assert f"  {name}: undone: wrote {AUTHORIZED}" in mine
        assert all(": NOT undone: " not in line for line in mine), mine
    assert any(line.startswith("  gamma: NOT undone: ") for line in undone)
    for host in ("10.0.1.11", "10.0.1.12"):
        node = nodes[host]
        assert node.files == before[host], host  # keys, config, secret: all gone again
        assert not node.enabled and not node.active


# ---- the resource wizard over every node --------------------------------------------------


def _cluster_text(count: int = 3) -> str:
    facts = {n.name: checks.gather(cast(Session, n)) for n in fleet(count).values()}
    networks = checks.discover(facts)
    vip = ipaddress.IPv4Interface("10.0.1.50/24")
    return configedit.render_config("shop", networks, vip, "eth0", list(facts))


def _cluster(count: int = 3) -> dict[str, FakeNode]:
    text = _cluster_text(count)
    nodes = {n.name: n for n in fleet(count).values()}
    for node in nodes.values():
        node.label = node.name
        node.files[deploy.CONFIG_PATH] = text
        node.active = True
    return nodes


def test_resources_need_every_node_and_one_config(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = _cluster()
    sessions = cast(dict[str, Session], nodes)
    pair = resources.read_pair(sessions)
    assert pair.active == "alpha" and set(pair.roles) == {"alpha", "beta", "gamma"}
    two = {k: v for k, v in sessions.items() if k != "gamma"}
    with pytest.raises(deploy.WizardError, match=r"the config is for nodes alpha, beta, gamma, "
                       r"but the nodes reached are alpha, beta: give every node"):  # fmt: skip
        resources.read_pair(two)
    nodes["gamma"].files[deploy.CONFIG_PATH] += "# edited by hand\n"
    with pytest.raises(deploy.WizardError, match=r"differs between the nodes \(alpha and beta "
                       r"have one; gamma have one\); nothing was changed"):  # fmt: skip
        resources.read_pair(sessions)


def test_a_resource_is_added_on_every_node_and_a_third_write_failing_rolls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes = _cluster()
    sessions = cast(dict[str, Session], nodes)
    pair = resources.read_pair(sessions)
    new = configedit.append(pair.text, "resources", {"name": "db", "kind": "systemd", "unit": "db"})
    said: list[str] = []
    resources.write_both(pair, new, said.append)
    assert {n.files[deploy.CONFIG_PATH] for n in nodes.values()} == {new}

    nodes = _cluster()
    sessions = cast(dict[str, Session], nodes)
    pair = resources.read_pair(sessions)

    def cut_gamma(change: changes_module.Change) -> None:
        if change.node == "beta":  # gamma drops after beta's write, before its own
            nodes["gamma"].alive = False

    monkeypatch.setattr(changes_module.Changes, "hook", cut_gamma)
    with pytest.raises(deploy.WizardError) as caught:
        resources.write_both(pair, new, said.append)
    assert str(caught.value).splitlines() == [
        "writing the new config to gamma failed: the connection to gamma (10.0.1.13) dropped "
        "(closed)",
        "What was changed and undone:",
        f"  beta: undone: wrote {deploy.CONFIG_PATH}",
        f"  alpha: undone: wrote {deploy.CONFIG_PATH}",
        "No node is left changed; no agent was told to reload.",
    ]
    assert {n.files[deploy.CONFIG_PATH] for n in nodes.values()} == {pair.text}


def test_a_script_missing_on_one_of_three_is_named() -> None:
    nodes = _cluster()
    pair = resources.read_pair(cast(dict[str, Session], nodes))
    for name in ("alpha", "beta"):
        nodes[name].files["/etc/init.d/db"] = "#!/bin/sh\n"
    with pytest.raises(deploy.WizardError, match="exists on alpha, beta but not on gamma"):
        resources.validate_resource(pair, {"kind": "sysv", "script": "/etc/init.d/db"})
