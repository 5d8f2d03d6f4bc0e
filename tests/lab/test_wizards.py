"""The wizards against real sshd in the lab nodes, run from the client namespace.

Password login is enabled inside the lab nodes only (their own
/etc/ssh/sshd_config.d and root password, in the nodes' overlays); the
wizard runs with a temporary HOME, so its known_hosts is a temp file. The
tests run in order: interactive deploy (pseudo-terminal), unattended deploy,
the resource wizard while the pair serves, then the bad-input cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from mosqit_failover.lab import deploy, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.topology import LabPlan

pytestmark = pytest.mark.lab

PASSWORD = "lab-only-pw"
CONFIG = "/etc/mosqit-failover/mosqit-failover.toml"
EXTRA_UNIT = "mqwiz-extra.service"


@pytest.fixture(scope="module")
def pair(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """sshd with password login in both nodes, mosqit-failover installed; a temp HOME."""
    binary = Path(sys.executable).parent / "mosqit-failover"
    for node in lab.nodes.values():
        node.write_file(
            "/etc/ssh/sshd_config.d/mqwiz-lab.conf",
            "PermitRootLogin yes\nPasswordAuthentication yes\n",
        )
        node.run(["chpasswd"], input=f"root:{PASSWORD}\n")
        node.start_sshd()
        node.run(["ln", "-sfn", str(binary), "/usr/local/bin/mosqit-failover"])
    home = tmp_path_factory.mktemp("wizard-home")
    try:
        yield lab, home
    finally:
        for name in ("beta", "alpha"):  # standby side first: no handover dance at the end
            lab[name].systemctl("disable", "--now", deploy.UNIT, check=False, timeout=60)
            lab[name].systemctl("stop", "ssh.service", check=False)
            lab[name].run(["rm", "-f", "/etc/ssh/sshd_config.d/mqwiz-lab.conf"], check=False)


def _argv(plan: LabPlan, home: Path, *args: str) -> list[str]:
    return [
        "ip", "netns", "exec", plan.client_ns, "env", f"HOME={home}",
        f"PYTHONPATH={plan.project_dir}", sys.executable, "-m", "wizards.cli", *args,
    ]  # fmt: skip


def wizard(
    plan: LabPlan, home: Path, *args: str, password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MOSQIT_WIZARD_PASSWORD"}
    if password is not None:
        env["MOSQIT_WIZARD_PASSWORD"] = password
    return subprocess.run(
        _argv(plan, home, *args),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


NODES = ("--node1", "10.231.1.11", "--node2", "10.231.1.12")


def answers(home: Path, extra: str = "") -> Path:
    path = home / "answers.toml"
    path.write_text(
        'node1 = "10.231.1.11"\nnode2 = "10.231.1.12"\naccept_new_host_keys = true\n'
        'switch_a = "10.231.1.1"\nswitch_b = "10.231.2.1"\ncluster = "shop"\n'
        f'vip = "10.231.1.50"\n{extra}'
    )
    return path


def test_interactive_deploy(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    child = pexpect.spawn(
        _argv(lab.plan, home, "deploy")[0], _argv(lab.plan, home, "deploy")[1:],
        encoding="utf-8", timeout=60,
    )  # fmt: skip
    try:
        for prompt, reply in [
            ("first node", "10.231.1.11"),
            ("second node", "10.231.1.12"),
            ("Log in as", ""),
            ("ssh port", ""),
            ("Log in with", "password"),
            ("Password of root", PASSWORD),
            ("10.231.1.11's key", "yes"),
            ("10.231.1.12's key", "yes"),
            ("network A", "10.231.1.1"),
            ("network B", "10.231.2.1"),
            ("Cluster", "shop"),
            ("VIP", "10.231.1.100"),  # the client's address: answers ARP
            ("already in use", None),
            ("VIP", "10.231.1.50"),
            ("Interface for the VIP", "eth7"),
            ("missing on alpha", None),
            ("Interface for the VIP", ""),
            ("What now", "done"),
        ]:
            child.expect(prompt)
            if reply is not None:
                child.sendline(reply)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    roles = deploy.roles(lab.nodes)
    assert sorted(roles.values()) == ["ACTIVE", "STANDBY"]
    configs = {n.read_file(CONFIG) for n in lab.nodes.values()}
    assert len(configs) == 1
    assert lab["alpha"].run(["stat", "-c", "%a", deploy.SECRET_PATH]).stdout.strip() == "600"
    keys = lab["alpha"].read_file("/root/.ssh/authorized_keys")
    assert "restrict ssh-ed25519" in keys and "mosqit-sync@beta" in keys


def test_ctrl_c_at_a_prompt(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    before = lab["alpha"].read_file(CONFIG)
    argv = _argv(lab.plan, home, "deploy", *NODES, "--user", "root", "--port", "22")
    argv += ["--switch-a", "10.231.1.1"]
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        encoding="utf-8",
        timeout=60,
        env={**os.environ, "MOSQIT_WIZARD_PASSWORD": PASSWORD},
    )
    try:
        child.expect("network B")
        child.sendcontrol("c")
        child.expect("interrupted")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    assert "Nothing was changed" in (child.before or "")
    assert lab["alpha"].read_file(CONFIG) == before


def test_unattended_deploy_dry_run_then_real(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    before = {n: node.read_file(CONFIG) for n, node in lab.nodes.items()}
    dry = wizard(
        lab.plan, home, "deploy", "--unattended", "--dry-run", "--answers", str(answers(home))
    )
    assert dry.returncode == 0, dry.stderr
    assert "would write /etc/mosqit-failover/secret" in dry.stdout
    assert {n: node.read_file(CONFIG) for n, node in lab.nodes.items()} == before
    extra = '[[actions]]\naction = "add"\nkind = "systemd"\nunit = "%s"\nname = "demo"\n'
    real = wizard(
        lab.plan,
        home,
        "deploy",
        "--unattended",
        "--answers",
        str(answers(home, extra % lab.plan.demo_unit)),
    )
    assert real.returncode == 0, real.stdout + real.stderr
    assert "The pair is up" in real.stdout
    active = next(n for n, r in deploy.roles(lab.nodes).items() if r == "ACTIVE")
    assert lab[active].is_active(lab.plan.demo_unit)
    assert not any(lab[n].is_active(lab.plan.demo_unit) for n in lab.nodes if n != active)


def test_resources_while_serving(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    roles = deploy.roles(lab.nodes)
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    standby = next(n for n in lab.nodes if n != active)
    unit = "[Unit]\nDescription=wizard test\n[Service]\nExecStart=/bin/sleep infinity\n"
    for node in lab.nodes.values():
        node.write_file(f"/etc/systemd/system/{EXTRA_UNIT}", unit)
        node.systemctl("daemon-reload")
    lab[active].run(["mkdir", "-p", "/srv/wiz"])
    lab[active].write_file("/srv/wiz/a.txt", "hello\n")
    with Probe(lab.plan, duration=90) as probe:
        time.sleep(0.5)
        t0 = time.time()
        steps = [
            ("--add-unit", EXTRA_UNIT, "--name", "extra"),
            ("--add-dir", "/srv/wiz", "--exclude", "*.tmp"),
            ("--move", "extra", "--to", "1"),
            ("--remove", "/srv/wiz"),
            ("--remove", "extra", "--stop-removed"),
        ]
        for step in steps:
            result = wizard(lab.plan, home, "resources", *NODES, *step)
            assert result.returncode == 0, result.stdout + result.stderr
            if step[0] == "--add-unit":
                assert lab[active].is_active(EXTRA_UNIT)
                assert not lab[standby].is_active(EXTRA_UNIT)
            if step[0] == "--add-dir":
                deadline = time.monotonic() + 10
                while lab[standby].run(["cat", "/srv/wiz/a.txt"], check=False).returncode:
                    assert time.monotonic() < deadline, "the directory was not synced"
                    time.sleep(0.2)
        t1 = time.time()
        time.sleep(0.5)
        gap = probe.longest_gap_ms(t0, t1)
        who = probe.who_answered(t0, t1)
    assert not lab[active].is_active(EXTRA_UNIT)
    assert set(who) == {active}, who
    assert gap < 1000, f"client saw a {gap:.0f} ms gap"
    cfg = lab[active].read_file(CONFIG)
    assert "extra" not in cfg and "/srv/wiz" not in cfg and lab.plan.demo_unit in cfg
    print(f"resource wizard: 5 changes, longest client gap {gap:.0f} ms")


def _unchanged(lab: Lab, before: dict[str, str]) -> None:
    assert {n: node.read_file(CONFIG) for n, node in lab.nodes.items()} == before


def test_bad_input(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    before = {n: node.read_file(CONFIG) for n, node in lab.nodes.items()}

    def run(*args: str, pw: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        return wizard(lab.plan, home, *args, password=pw)

    r = run("resources", "--list", *NODES, pw="wrong")
    assert r.returncode == 1 and "wrong password" in r.stderr, r.stderr
    r = run("resources", "--list", "--node1", "10.231.1.99", "--node2", "10.231.1.12")
    assert r.returncode == 1 and "cannot reach node1 (10.231.1.99:22)" in r.stderr, r.stderr
    r = run("deploy", "--unattended", "--answers", str(answers(home)), "--vip", "10.231.1.100")
    assert r.returncode == 1 and "already in use" in r.stderr, r.stderr
    r = run("deploy", "--unattended", "--answers", str(answers(home)), "--vip-interface", "eth7")
    assert r.returncode == 1 and "'eth7' is missing on" in r.stderr, r.stderr
    lab["alpha"].write_file(
        "/etc/systemd/system/mqwiz-only.service", "[Service]\nExecStart=/bin/true\n"
    )
    lab["alpha"].systemctl("daemon-reload")
    r = run("resources", *NODES, "--add-unit", "mqwiz-only.service")
    assert r.returncode == 1 and "exists on alpha but not on beta" in r.stderr, r.stderr
    _unchanged(lab, before)

    faults.port_down(lab.plan, "beta", "b")
    try:
        r = run("deploy", "--unattended", "--answers", str(answers(home)))
    finally:
        faults.port_up(lab.plan, "beta", "b")
    assert r.returncode == 1 and "beta: uplink b carrier: eth1 NO CARRIER" in r.stderr, r.stderr
    assert "plug the cable to switch B" in r.stderr and "nothing was changed" in r.stderr
    _unchanged(lab, before)

    lab["alpha"].run(["sh", "-c", "rm -f /etc/ssh/ssh_host_*_key* && ssh-keygen -A -q"])
    lab["alpha"].systemctl("restart", "ssh.service")
    r = run("resources", "--list", *NODES)
    assert r.returncode == 1 and "CHANGED" in r.stderr, r.stderr
    r = run("resources", "--list", *NODES, "--accept-changed-host-key", "10.231.1.11")
    assert r.returncode == 0 and "demo" in r.stdout, r.stderr
    _unchanged(lab, before)
