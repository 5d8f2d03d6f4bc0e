"""`wizard deploy` and `wizard resources` over the three-node lab (alpha, beta, gamma).

The nodes start without the package, with sshd taking the lab-only root password;
the wizard runs from the client namespace with a temporary HOME. It is run with
--no-wait: what the wizard itself guarantees (one config with the order on every
node, the sync key of each node authorized with the forced command on every other
node and every host key learned, the units enabled and the agents running) is
checked on its own; that the three agents form a cluster, and that a re-deploy
over the running cluster keeps it and waits for it, are tests of their own.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosqit_failover.lab import control, deploy
from mosqit_failover.lab.topology import PROJECT_DIR
from tests.lab.test_lab_multi import PLAN, lab3  # noqa: F401  (lab3: the fixture)
from tests.lab.test_wizards import PASSWORD, wizard

pytestmark = pytest.mark.lab

CONFIG = "/etc/mosqit-failover/mosqit-failover.toml"
SYNC_KEY = "/etc/mosqit-failover/sync_key"
SSHD_CONF = "/etc/ssh/sshd_config.d/mqwiz-lab.conf"
ADDRESSES = [spec.addr_a for spec in PLAN.nodes]


@pytest.fixture(scope="module")
def three(
    lab3: control.Lab,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[control.Lab, Path]]:
    """sshd with password login on the three nodes, no package, no config; a temp HOME."""
    deploy.package_file(PROJECT_DIR)  # "run make deb" rather than a wizard error
    for node in lab3.nodes.values():
        node.systemctl("disable", "--now", deploy.UNIT, check=False, timeout=60)
        node.run(["dpkg", "--purge", deploy.PACKAGE], check=False, timeout=120)
        node.run(["rm", "-rf", "/var/lib/mosqit-failover", "/etc/mosqit-failover"], check=False)
        node.run(["rm", "-f", "/root/.ssh/authorized_keys", "/root/.ssh/known_hosts"])
        node.write_file(SSHD_CONF, "PermitRootLogin yes\nPasswordAuthentication yes\n")
        node.run(["chpasswd"], input=f"root:{PASSWORD}\n")
        node.start_sshd()
        node.systemctl("restart", "ssh.service")
    home = tmp_path_factory.mktemp("wizard-home-3")
    try:
        yield lab3, home
    finally:
        for node in reversed(list(lab3.nodes.values())):
            node.systemctl("disable", "--now", deploy.UNIT, check=False, timeout=60)
            node.systemctl("stop", "ssh.service", check=False)
            node.run(["rm", "-f", SSHD_CONF], check=False)


def answers(home: Path) -> Path:
    path = home / "answers.toml"
    path.write_text(
        f"nodes = {ADDRESSES!r}\n".replace("'", '"')
        + 'accept_new_host_keys = true\nswitch_a = "10.231.1.1"\nswitch_b = "10.231.2.1"\n'
        f'cluster = "shop3"\nvip = "10.231.1.50"\npackage = "{deploy.package_file(PROJECT_DIR)}"\n'
    )
    return path


def test_two_nodes_of_one_host_name_are_refused(three: tuple[control.Lab, Path]) -> None:
    """(The client reaches the nodes on network A only: one node at two addresses, the
    same host key twice, is refused by the unit tests.)"""
    lab, home = three
    every = [arg for a in ADDRESSES for arg in ("--node", a)]
    lab["gamma"].run(["hostname", "beta"])
    try:
        proc = wizard(lab.plan, home, "deploy", "--unattended", "--accept-new-host-keys", *every)
    finally:
        lab["gamma"].run(["hostname", "gamma"])
    assert proc.returncode == 1, proc
    assert proc.stderr.strip() == (
        f"mosqit-failover wizard: {ADDRESSES[1]} and {ADDRESSES[2]} are both called 'beta': give "
        "each node its own host name (hostnamectl set-hostname NAME) and re-run. Nothing was "
        "changed."
    )
    for node in lab.nodes.values():
        assert node.run(["test", "-e", CONFIG], check=False).returncode != 0


def test_deploy_three_nodes(three: tuple[control.Lab, Path]) -> None:
    lab, home = three
    started = time.monotonic()
    proc = wizard(
        lab.plan, home, "deploy", "--answers", str(answers(home)), "--unattended",
        "--no-resources", "--no-wait",
    )  # fmt: skip
    print(f"\nwizard deploy over three nodes: {time.monotonic() - started:.1f}s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Takeover order: alpha > beta > gamma" in proc.stdout
    for name in ("alpha", "beta", "gamma"):
        for other in ("alpha", "beta", "gamma"):
            if other != name:  # the table has a row per node and network
                assert f"{other} answers on b" in proc.stdout
    texts = {name: node.read_file(CONFIG) for name, node in lab.nodes.items()}
    assert len(set(texts.values())) == 1, texts
    raw = tomllib.loads(texts["alpha"])
    assert raw["cluster"]["order"] == ["alpha", "beta", "gamma"]
    assert "preferred" not in raw["cluster"]
    assert sorted(raw["nodes"]) == ["alpha", "beta", "gamma"]
    for node in lab.nodes.values():
        assert node.systemctl("is-enabled", deploy.UNIT, check=False).returncode == 0
        assert node.systemctl("is-active", deploy.UNIT, check=False).returncode == 0


def test_every_node_logs_in_to_every_other_with_the_forced_command(
    three: tuple[control.Lab, Path],
) -> None:
    """The sync key of each node is authorized on each other with the receiver as forced
    command (an arbitrary command is refused by the receiver: exit 77, not run), and the
    host key of each other node is known on both networks (BatchMode, strict checking)."""
    lab, _home = three
    failed = []
    for name, node in lab.nodes.items():
        for spec in PLAN.nodes:
            if spec.name == name:
                continue
            for address in (spec.addr_a, spec.addr_b):
                ssh = ["ssh", "-i", SYNC_KEY, "-o", "BatchMode=yes"]
                ssh += ["-o", "StrictHostKeyChecking=yes", f"root@{address}", "id"]
                proc = node.run(ssh, check=False, timeout=30)
                if proc.returncode != 77 or not proc.stderr.startswith("mosqit-sync refused:"):
                    failed.append(f"{name} -> {spec.name} {address}: {proc.returncode} {proc}")
    assert not failed, failed


def test_resources_lists_every_node_and_refuses_without_one(
    three: tuple[control.Lab, Path],
) -> None:
    lab, home = three
    every = [arg for a in ADDRESSES for arg in ("--node", a)]
    proc = wizard(lab.plan, home, "resources", "--list", *every)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head = next(line for line in proc.stdout.splitlines() if line.startswith("#  name"))
    assert all(name in head for name in ("alpha (", "beta (", "gamma ("))
    proc = wizard(lab.plan, home, "resources", "--add-dir", "/srv", *every[:4])
    assert proc.returncode == 1, proc
    assert "the config is for nodes alpha, beta, gamma, but the nodes reached are alpha, beta: " \
        "give every node" in proc.stderr  # fmt: skip
    texts = {node.read_file(CONFIG) for node in lab.nodes.values()}
    assert len(texts) == 1 and "[[sync]]" not in texts.pop()


def test_the_three_agents_form_a_cluster(three: tuple[control.Lab, Path]) -> None:
    lab, _home = three
    deadline = time.monotonic() + 60
    roles: dict[str, str] = {}
    while time.monotonic() < deadline:
        roles = deploy.roles(lab.nodes)
        if sorted(roles.values()) == ["ACTIVE", "STANDBY", "STANDBY"]:
            return
        time.sleep(1)
    raise AssertionError(f"no cluster within 60s: {roles}")


def test_a_redeploy_over_the_running_cluster_keeps_it_and_waits_for_it(
    three: tuple[control.Lab, Path],
) -> None:
    lab, home = three
    before = {name: node.read_file(CONFIG) for name, node in lab.nodes.items()}
    pids = {name: deploy.main_pid(node) for name, node in lab.nodes.items()}
    proc = wizard(
        lab.plan, home, "deploy", "--answers", str(answers(home)), "--unattended",
        "--no-resources",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alpha, beta and gamma already run the cluster shop3" in proc.stdout
    assert "The cluster is up: " in proc.stdout
    assert {name: node.read_file(CONFIG) for name, node in lab.nodes.items()} == before
    for name, node in lab.nodes.items():  # no agent restarted
        assert deploy.main_pid(node) == pids[name], name
