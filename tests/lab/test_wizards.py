"""The wizards against real sshd in the lab nodes, run from the client namespace.

Password login is enabled inside the lab nodes only (their own
/etc/ssh/sshd_config.d and root password, in the nodes' overlays); the
wizard runs with a temporary HOME, so its known_hosts is a temp file. The
nodes start without the Debian package (purged); the wizard runs from the
checkout, so it finds the package `make deb` built in ./dist. The tests run in
order: interactive deploy (pseudo-terminal; it installs the package on both
nodes), unattended deploy, the resource wizard while the pair serves (a synced
directory added and removed by reload, no agent restart), then the bad-input
cases: a wrong password typed again, the connection to the second node dropping
between the two nodes' config writes, nodes naming their VIP port differently,
and a node whose apt cannot get a dependency of the package.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from mosqit_failover.lab import deploy, faults, netns
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import PROJECT_DIR, LabPlan

pytestmark = pytest.mark.lab

PASSWORD = "lab-only-pw"
CONFIG = "/etc/mosqit-failover/mosqit-failover.toml"
EXTRA_UNIT = "mqwiz-extra.service"


@pytest.fixture(scope="module")
def pair(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """sshd with password login in both nodes, no mosqit-failover package; a temp HOME."""
    deploy.package_file(lab.plan.project_dir)  # "run make deb" rather than a wizard error
    for name in ("beta", "alpha"):  # agents and epochs left by other tests: a fresh pair
        lab[name].systemctl("disable", "--now", deploy.UNIT, check=False, timeout=60)
        lab[name].run(["dpkg", "--purge", deploy.PACKAGE], check=False, timeout=120)
        lab[name].run(["rm", "-rf", "/var/lib/mosqit-failover"], check=False)
    for node in lab.nodes.values():
        node.write_file(
            "/etc/ssh/sshd_config.d/mqwiz-lab.conf",
            "PermitRootLogin yes\nPasswordAuthentication yes\n",
        )
        node.run(["chpasswd"], input=f"root:{PASSWORD}\n")
        node.start_sshd()
        node.systemctl("restart", "ssh.service")  # one left running by other tests: new config
    home = tmp_path_factory.mktemp("wizard-home")
    try:
        yield lab, home
    finally:
        for name in ("beta", "alpha"):  # standby side first: no handover dance at the end
            lab[name].systemctl("disable", "--now", deploy.UNIT, check=False, timeout=60)
            lab[name].systemctl("stop", "ssh.service", check=False)
            lab[name].run(["rm", "-f", "/etc/ssh/sshd_config.d/mqwiz-lab.conf"], check=False)


def _argv(
    plan: LabPlan,
    home: Path,
    *args: str,
    entry: tuple[str, ...] = ("-m", "mosqit_failover.wizards.cli"),
) -> list[str]:
    return [
        "ip", "netns", "exec", plan.client_ns, "env", f"HOME={home}",
        f"PYTHONPATH={plan.project_dir}", sys.executable, *entry, *args,
    ]  # fmt: skip


def wizard(
    plan: LabPlan,
    home: Path,
    *args: str,
    password: str | None = PASSWORD,
    entry: tuple[str, ...] = ("-m", "mosqit_failover.wizards.cli"),
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MOSQIT_WIZARD_PASSWORD"}
    if password is not None:
        env["MOSQIT_WIZARD_PASSWORD"] = password
    env.update(extra_env or {})
    return subprocess.run(
        _argv(plan, home, *args, entry=entry),
        capture_output=True,
        text=True,
        timeout=300,  # an install of the package included
        env=env,
        cwd=plan.project_dir,  # where ./dist holds the package
        stdin=subprocess.DEVNULL,
        check=False,
    )


def dialog(
    argv: list[str], steps: list[tuple[str, str | None]], cwd: Path | None = None
) -> tuple[int | None, str]:
    """Run a wizard at a pseudo-terminal: wait for each prompt, type the reply (None: none).

    The password comes from the dialog only. Returns (exit status, the last output)."""
    env = {k: v for k, v in os.environ.items() if k != "MOSQIT_WIZARD_PASSWORD"}
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=120, env=env, cwd=cwd)
    try:
        for prompt, reply in steps:
            child.expect(prompt)
            if reply is not None:
                child.sendline(reply)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    return child.exitstatus, str(child.before)


NODES = ("--node1", "10.231.1.11", "--node2", "10.231.1.12")


def answers(home: Path, extra: str = "") -> Path:
    path = home / "answers.toml"
    path.write_text(
        'node1 = "10.231.1.11"\nnode2 = "10.231.1.12"\naccept_new_host_keys = true\n'
        'switch_a = "10.231.1.1"\nswitch_b = "10.231.2.1"\ncluster = "shop"\n'
        f'vip = "10.231.1.50"\npackage = "{deploy.package_file(PROJECT_DIR)}"\n{extra}'
    )
    return path


def test_interactive_deploy(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    # the package the lab runs (the same as ./dist's unless MQLAB_PACKAGE names another)
    package = str(deploy.package_file(lab.plan.project_dir))
    status, before = dialog(
        _argv(lab.plan, home, "deploy", "--package", package),
        [
            ("first node", "10.231.1.11"),
            ("second node", "10.231.1.12"),
            ("another node", ""),  # empty: a pair
            ("Log in as", ""),
            ("ssh port", ""),
            ("Log in with", "password"),
            ("Password of root", PASSWORD),
            ("10.231.1.11's key", "yes"),
            ("10.231.1.12's key", "yes"),
            ("alpha has none, beta has none", None),
            ("Install it on alpha and beta", ""),  # the default: yes
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
        ],
        cwd=lab.plan.project_dir,
    )
    assert status == 0, before
    roles = deploy.roles(lab.nodes)
    assert sorted(roles.values()) == ["ACTIVE", "STANDBY"]
    version = _version(deploy.package_file(lab.plan.project_dir))
    for node in lab.nodes.values():  # the package's unit runs the agent, none of the wizard's
        assert _installed(node) == version
        unit = node.systemctl("show", "-p", "FragmentPath", "--value", deploy.UNIT).stdout
        assert unit.strip() == f"/lib/systemd/system/{deploy.UNIT}", unit
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
        # as an operator's terminal has it: a test run started in the background of a
        # shell (`make test &`) ignores SIGINT, and the wizard would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
    # the pair is deployed and running: a re-deploy keeps its config and secret
    assert "Keeping config and secret" in dry.stdout, dry.stdout
    assert "would write /etc/mosqit-failover/secret" not in dry.stdout
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


def test_a_reinstalled_node_gets_the_running_node_s_config(pair: tuple[Lab, Path]) -> None:
    """beta reinstalled (no package, no config, no secret) beside a running alpha: a
    re-run gives beta alpha's config and secret, resources included, and leaves alpha's
    agent running as it was. It rendered a new config over alpha before (a helper's
    finding), which dropped alpha's resources and sync and changed its secret."""
    lab, home = pair
    alpha, beta = lab["alpha"], lab["beta"]
    if not alpha.is_active(deploy.UNIT):
        alpha.systemctl("start", deploy.UNIT, timeout=60)
    beta.systemctl("disable", "--now", deploy.UNIT, check=False, timeout=150)
    beta.run(["dpkg", "--purge", deploy.PACKAGE], check=False, timeout=120)
    beta.run(["rm", "-rf", "/etc/mosqit-failover", "/var/lib/mosqit-failover"])
    kept = alpha.read_file(CONFIG)
    assert lab.plan.demo_unit in kept  # the resource an earlier test added
    secret = alpha.read_file("/etc/mosqit-failover/secret")
    pid = deploy.main_pid(alpha)
    r = wizard(lab.plan, home, "deploy", "--unattended", "--answers", str(answers(home)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "beta has no config and no secret: it gets alpha's" in r.stdout, r.stdout
    assert "The pair is up" in r.stdout, r.stdout
    assert beta.read_file(CONFIG) == kept == alpha.read_file(CONFIG)
    assert beta.read_file("/etc/mosqit-failover/secret") == secret
    assert deploy.main_pid(alpha) == pid  # neither restarted nor told to reload


def test_resources_while_serving(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    roles = deploy.roles(lab.nodes)
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    standby = next(n for n in lab.nodes if n != active)
    unit = "[Unit]\nDescription=wizard test\n[Service]\nExecStart=/bin/sleep infinity\n"
    for node in lab.nodes.values():
        node.write_file(f"/etc/systemd/system/{EXTRA_UNIT}", unit)
        node.systemctl("daemon-reload")
    lab[active].run(["mkdir", "-p", "/srv/wiz", "/srv/wiz2"])
    lab[active].write_file("/srv/wiz/a.txt", "hello\n")
    lab[active].write_file("/srv/wiz2/b.txt", "second\n")
    pids = {n: deploy.main_pid(node) for n, node in lab.nodes.items()}
    since = time.time()
    with Probe(lab.plan, duration=180) as probe:
        time.sleep(0.5)
        t0 = time.time()
        steps = [
            ("--add-unit", EXTRA_UNIT, "--name", "extra"),
            ("--add-dir", "/srv/wiz", "--exclude", "*.tmp"),  # the first: the sync starts
            ("--add-dir", "/srv/wiz2"),  # beside a running one: one more engine
            ("--move", "extra", "--to", "1"),
            ("--remove", "/srv/wiz"),  # its engine stops, the other goes on
            ("--remove", "/srv/wiz2"),  # the last: the sync stops
            ("--remove", "extra", "--stop-removed"),
        ]
        marks: list[tuple[float, str]] = []
        for step in steps:
            marks.append((time.time(), " ".join(step)))
            result = wizard(lab.plan, home, "resources", *NODES, *step)
            assert result.returncode == 0, result.stdout + result.stderr
            if step[0] == "--add-unit":
                assert lab[active].is_active(EXTRA_UNIT)
                assert not lab[standby].is_active(EXTRA_UNIT)
            if step[0] == "--add-dir":
                copy = {"/srv/wiz": "/srv/wiz/a.txt", "/srv/wiz2": "/srv/wiz2/b.txt"}[step[1]]
                deadline = time.monotonic() + 10
                while lab[standby].run(["cat", copy], check=False).returncode:
                    assert time.monotonic() < deadline, f"{step[1]} was not synced"
                    time.sleep(0.2)
            if step == ("--add-dir", "/srv/wiz2"):
                assert "added /srv/wiz2 (full sync first)" in result.stdout, result.stdout
            if step == ("--remove", "/srv/wiz"):
                assert "stopped /srv/wiz (the copy on" in result.stdout, result.stdout
                lab[active].write_file("/srv/wiz/after.txt", "not pushed\n")
                lab[active].write_file("/srv/wiz2/after.txt", "pushed\n")
                deadline = time.monotonic() + 10
                while lab[standby].run(["cat", "/srv/wiz2/after.txt"], check=False).returncode:
                    assert time.monotonic() < deadline, "/srv/wiz2 is no longer synced"
                    time.sleep(0.2)
        t1 = time.time()
        time.sleep(0.5)
        gap = probe.longest_gap_ms(t0, t1)
        heard = [t0, *(a.recv for a in probe.snapshot(t0, t1)), t1]
        silent_from = max(itertools.pairwise(heard), key=lambda p: p[1] - p[0])[0]
        during = [what for at, what in marks if at <= silent_from][-1:]
        who = probe.who_answered(t0, t1)
    assert not lab[active].is_active(EXTRA_UNIT)
    # the sync was reconfigured in place: no agent restarted on either node
    assert {n: deploy.main_pid(node) for n, node in lab.nodes.items()} == pids
    for name, node in lab.nodes.items():
        lines = [str(e.get("MESSAGE")) for e in node.journal(unit=deploy.UNIT, since=since)]
        restarts = [m for m in lines if m.startswith(("agent starting", "agent stopped"))]
        restarts += [m for m in lines if m.startswith(("Started ", "Stopping ", "Stopped "))]
        assert restarts == [], f"{name}: {restarts}"
    synced = [m for m in _messages(lab[active], since) if m.startswith("sync reconfigured")]
    assert len(synced) == 3, synced  # /srv/wiz2 added, /srv/wiz stopped, /srv/wiz2 stopped
    # a removed directory is left as it is on the standby, and no longer pushed
    assert lab[standby].read_file("/srv/wiz/a.txt") == "hello\n"
    assert lab[standby].run(["test", "-e", "/srv/wiz/after.txt"], check=False).returncode
    assert set(who) == {active}, who
    assert gap < 1000, f"client saw a {gap:.0f} ms gap, {silent_from - t0:.1f}s in, during {during}"
    cfg = lab[active].read_file(CONFIG)
    assert "extra" not in cfg and "/srv/wiz" not in cfg and lab.plan.demo_unit in cfg
    print(f"resource wizard: {len(steps)} changes, no restart, longest client gap {gap:.0f} ms")


def _messages(node: Node, since: float) -> list[str]:
    return [str(e.get("MESSAGE")) for e in node.journal(identifier="mosqit-failover", since=since)]


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

    # sshd and the agent are never resources (a standby stops its resources): refused by
    # the config's rules before the nodes are asked (a helper's attack: /etc/init.d/ssh
    # was taken, and the next switchover stopped the old active's sshd)
    r = run("resources", *NODES, "--add-sysv", "/etc/init.d/ssh")
    assert r.returncode == 1 and "/etc/init.d/ssh starts sshd" in r.stderr, r.stderr
    r = run("resources", *NODES, "--add-unit", "mosqit-failover.service")
    assert r.returncode == 1 and "is the agent itself" in r.stderr, r.stderr
    assert "disable --now" not in r.stderr, r.stderr
    _unchanged(lab, before)

    # beta's config directory full: said as the write that failed, alpha rolled back
    full = (
        "d=/etc/mosqit-failover; rm -rf /run/mqfull; mkdir /run/mqfull && cp -a $d/. /run/mqfull/"
        " && mount -t tmpfs -o size=64k,mode=0755 mqfull $d && cp -a /run/mqfull/. $d/"
        " && (dd if=/dev/zero of=$d/filler bs=1k count=256 2>/dev/null; true)"
    )
    lab["beta"].run(["sh", "-c", full])
    try:
        r = run("resources", *NODES, "--add-unit", EXTRA_UNIT, "--name", "extra")
    finally:
        lab["beta"].run(["sh", "-c", "umount /etc/mosqit-failover; rm -rf /run/mqfull"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"beta: writing {CONFIG} failed (" in r.stderr, r.stderr
    assert "No space left on device); free space in /etc/mosqit-failover there" in r.stderr
    assert "alpha: undone: wrote" in r.stderr, r.stderr
    _unchanged(lab, before)


def test_wrong_password_is_asked_again(pair: tuple[Lab, Path]) -> None:
    lab, home = pair
    argv = _argv(lab.plan, home, "resources", *NODES, "--user", "root", "--port", "22")
    status, before = dialog(
        argv,
        [
            ("Log in with", "password"),
            ("Password of root", "wrong-1"),
            ("refused: wrong password", None),
            (r"Password of root on 10.231.1.11 \(try 2 of 3\)", "wrong-2"),
            (r"\(try 3 of 3\)", PASSWORD),
            ("connected to 10.231.1.12", None),  # the password that worked, on node2 too
            ("What now", "done"),
        ],
    )
    assert status == 0, before


DROP_DRIVER = """
import json, os, subprocess, sys
from mosqit_failover.wizards import changes, cli

fired = []

def drop_beta(change):
    if change.node == "alpha" and change.what.startswith("wrote") and not fired:
        fired.append(change)
        subprocess.run(json.loads(os.environ["MQWIZ_DROP"]), check=True)
        print("[test] the ssh connection to beta was killed", flush=True)

changes.Changes.hook = drop_beta
sys.exit(cli.main(sys.argv[1:]))
"""

# in beta: kill the sshd processes serving the client's (the wizard's) connection
KILL_SESSION = (
    "pids=$(ss -Htnp state established '( sport = :22 )' dst 10.231.1.100 "
    "| grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); test -n \"$pids\" && kill -9 $pids"
)


def test_connection_dropping_between_the_two_writes(pair: tuple[Lab, Path]) -> None:
    """The first node is written, then beta's sshd session is killed: alpha is rolled back."""
    lab, home = pair
    before = {n: node.read_file(CONFIG) for n, node in lab.nodes.items()}
    driver = home / "drop_driver.py"
    driver.write_text(DROP_DRIVER)
    kill = json.dumps(lab["beta"].nsenter(["sh", "-c", KILL_SESSION]))
    r = wizard(
        lab.plan, home, "resources", *NODES, "--add-unit", EXTRA_UNIT, "--name", "extra",
        entry=(str(driver),), extra_env={"MQWIZ_DROP": kill},
    )  # fmt: skip
    assert "the ssh connection to beta was killed" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 1, r.stdout + r.stderr
    assert (
        "writing the new config to beta failed: the connection to beta (10.231.1.12) dropped"
        in r.stderr
    ), r.stderr
    assert (
        "What was changed and undone:\n"
        "  alpha: undone: wrote /etc/mosqit-failover/mosqit-failover.toml\n"
        "No node is left changed; no agent was told to reload." in r.stderr
    ), r.stderr
    _unchanged(lab, before)
    assert not any(node.is_active(EXTRA_UNIT) for node in lab.nodes.values())
    print(f"connection drop: {r.stderr.strip()}")


def _rename(node: Node, old: str, new: str) -> None:
    node.run(["ip", "link", "set", old, "down"])
    node.run(["ip", "link", "set", old, "name", new])
    node.run(["ip", "link", "set", new, "up"])


def test_nodes_naming_the_vip_port_differently(pair: tuple[Lab, Path]) -> None:
    """beta's port on network A is lan0: each node gets its own VIP interface, and serves."""
    lab, home = pair
    for name in ("beta", "alpha"):
        lab[name].systemctl("stop", deploy.UNIT, timeout=60)
    _rename(lab["beta"], "eth0", "lan0")
    try:
        r = wizard(lab.plan, home, "deploy", "--unattended", "--answers", str(answers(home)))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "name their port on network A differently (alpha eth0, beta lan0)" in r.stdout
        assert "VIP 10.231.1.50/24 on alpha eth0, beta lan0" in r.stdout, r.stdout
        cfg = lab["alpha"].read_file(CONFIG)
        assert cfg == lab["beta"].read_file(CONFIG) and 'vip_interface = "lan0"' in cfg
        roles = deploy.wait_pair(lab.nodes)
        if roles["beta"] != "ACTIVE":
            lab["alpha"].run([deploy.AGENT, "switchover", "--config", CONFIG])
            deploy.wait_roles(lab.nodes, {"alpha": "STANDBY", "beta": "ACTIVE"}, timeout=30)
        held = lab["beta"].run(["ip", "-4", "-o", "addr", "show", "dev", "lan0"]).stdout
        assert "10.231.1.50/24" in held, held
        ping = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lab.plan.client_ns,
                "ping",
                "-c",
                "3",
                "-W",
                "1",
                "10.231.1.50",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert ping.returncode == 0, ping.stdout
    finally:
        for name in ("alpha", "beta"):
            lab[name].systemctl("stop", deploy.UNIT, check=False, timeout=60)
        lab["beta"].run(["ip", "addr", "del", "10.231.1.50/24", "dev", "lan0"], check=False)
        _rename(lab["beta"], "lan0", "eth0")


def _version(deb: Path) -> str:
    return netns.run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


def _installed(node: Node) -> str:
    """The installed version of the package in ``node``, "" when it is not installed."""
    query = ["dpkg-query", "-W", "-f=${Status}|${Version}", deploy.PACKAGE]
    status, _, version = node.run(query, check=False).stdout.partition("|")
    return version if status == "install ok installed" else ""


def _lacking_dependency(deb: Path, home: Path) -> Path:
    """A copy of the package that also depends on a package no apt source has."""
    root = home / "absent-dep"
    netns.run(["rm", "-rf", str(root)])
    netns.run(["dpkg-deb", "-R", str(deb), str(root)])
    control = root / "DEBIAN" / "control"
    text = control.read_text()
    control.write_text(text.replace("Depends: ", "Depends: python3-mqwiz-absent, ", 1))
    out = home / deb.name
    netns.run(["dpkg-deb", "-b", str(root), str(out)], timeout=120)
    return out


def _state(node: Node) -> str:
    """What the failed install must leave as it was: package, files, the staging dir."""
    script = (
        f"dpkg-query -W -f='${{Status}} ${{Version}}' {deploy.PACKAGE} 2>&1; echo; "
        "ls -la /etc/mosqit-failover /etc/systemd/system 2>&1; "
        "ls -d /var/tmp/mosqit-failover-package.* 2>&1; "
        "cat /etc/mosqit-failover/mosqit-failover.toml 2>&1"
    )
    return node.run(["sh", "-c", script], check=False).stdout


def test_a_node_whose_apt_cannot_get_a_dependency(pair: tuple[Lab, Path]) -> None:
    """beta lacks the package and its apt finds no python3-mqwiz-absent: one line, no change."""
    lab, home = pair
    deb = deploy.package_file(lab.plan.project_dir)
    if _installed(lab["alpha"]) != _version(deb):  # alpha has it: only beta needs it
        deploy.install_package(lab["alpha"], deb)
    lab["beta"].systemctl("stop", deploy.UNIT, check=False, timeout=60)
    lab["beta"].run(["dpkg", "--purge", deploy.PACKAGE], timeout=120)
    broken = _lacking_dependency(deb, home)
    before = {n: _state(node) for n, node in lab.nodes.items()}
    r = wizard(
        lab.plan, home, "deploy", "--unattended", "--answers", str(answers(home)),
        "--package", str(broken),
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr == (
        "mosqit-failover wizard: beta: apt cannot get what mosqit-failover needs: "
        "python3-mqwiz-absent (not installable). Add a Debian source that has it to beta's "
        "/etc/apt/sources.list (Debian 12: bookworm main) and run apt-get update there, or "
        "install it by hand; then re-run. Nothing was changed.\n"
    ), r.stderr
    assert {n: _state(node) for n, node in lab.nodes.items()} == before
    assert _installed(lab["beta"]) == ""
    print(f"missing dependency: {r.stderr.strip()}")
