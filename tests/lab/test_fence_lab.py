"""Fencing in the lab: the real agent, real sshd with the sync key's forced command, and a
power fence through the real fence_ipmilan against an IPMI BMC simulator (ipmi_sim).

- ssh fence: the active node's agent is SIGSTOPped (hung, its kernel still
  answers): a stale epoch is refused and changes nothing; a newer one leaves
  the node without VIP and services, WAITING in state.json, its agent killed.
- power fence: the peer's sshd is down, so the ssh fence finds no one on
  either network and fence_ipmilan (lanplus) asks the BMC simulator, running
  in the lab's client namespace, to power the peer off; its chassis control
  freezes the peer node's whole cgroup (the lab's power-off: nothing of the
  node runs any more). A stale epoch refused over ssh never reaches the BMC.

The Fencer runs inside a node with the node's own config, as the agent runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.lab import deploy, sshkeys
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.netns import NETNS_DIR, LabError
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import LabPlan
from tests.lab.test_sync_lab import Pair as SyncPair

pytestmark = pytest.mark.lab

DIRS = ["/srv/data"]
STATE_DIR = "/var/lib/mosqit-failover"
IPMI_PORT = 623
IPMI_PASSWORD_FILE = "/etc/mosqit-failover/ipmi_pw"
DROP_IN = f"/etc/systemd/system/{deploy.UNIT}.d/fence-test.conf"

FENCE = r"""
import asyncio, json, sys
from pathlib import Path
from mosqit_failover import config
from mosqit_failover.effects.fence import Fencer
cfg = config.load(Path(sys.argv[1]))
outcome = asyncio.run(Fencer(cfg, sys.argv[2]).fence(int(sys.argv[3])))
print(json.dumps({"fenced": outcome.fenced, "detail": outcome.detail}))
"""


def power_command(plan: LabPlan) -> str:
    return (
        f"fence_ipmilan --ip {plan.client_addr} --ipport {IPMI_PORT} --username admin "
        f"--password-script 'cat {IPMI_PASSWORD_FILE}' --lanplus --cipher 3 --action off"
    )


def fencing_table(plan: LabPlan) -> str:
    power = "".join(f'{spec.name} = "{power_command(plan)}"\n' for spec in plan.nodes)
    return f'\n[fencing]\ntimeout = "30s"\n\n[fencing.power]\n{power}'


@dataclass
class Pair(SyncPair):
    """The sync tests' pair (active, standby), with what the fence tests read."""

    def fence(self, by: str, epoch: int) -> dict[str, Any]:
        """The Fencer's outcome, run in node ``by`` against its peer."""
        proc = self.lab[by].run(
            [deploy.PYTHON, "-c", FENCE, deploy.CONFIG_PATH, by, str(epoch)], timeout=90
        )
        result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        return result

    def state(self, node: Node) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(node.read_file(f"{STATE_DIR}/state.json"))
        return result

    def epoch(self, node: Node) -> int:
        """The node's persisted epoch (0 for a node that never saved one, as StateFile reads)."""
        proc = node.run(["cat", f"{STATE_DIR}/state.json"], check=False)
        return int(json.loads(proc.stdout)["epoch"]) if proc.returncode == 0 else 0

    def maintenance(self, node: Node, on: bool) -> None:
        node.run([deploy.AGENT, "maintenance", "--config", deploy.CONFIG_PATH,
                  "on" if on else "off"])  # fmt: skip


@pytest.fixture(scope="module")
def pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Pair]:
    sshkeys.setup(lab.nodes, lab_plan)
    config = sshkeys.install_config(lab.nodes, lab_plan, DIRS) + fencing_table(lab_plan)
    for node in lab.nodes.values():
        node.write_file(deploy.CONFIG_PATH, config)
        node.write_file(IPMI_PASSWORD_FILE, "fence-secret\n", mode=0o600)
    deploy.start(lab.nodes)
    try:
        yield Pair(lab, lab_plan)
    finally:
        for node in lab.nodes.values():
            if node.frozen():
                node.thaw()
            node.run(["rm", "-f", DROP_IN], check=False)
            node.systemctl("daemon-reload", check=False)
            node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


@pytest.fixture
def formed(pair: Pair) -> Pair:
    roles = deploy.wait_pair(pair.lab.nodes, timeout=60)
    pair.active = next(n for n, r in roles.items() if r == "ACTIVE")
    pair.standby = next(n for n, r in roles.items() if r == "STANDBY")
    return pair


def _agent_pid(node: Node) -> int:
    """The agent's PID, as the agent writes it to state_dir/agent.pid (MainPID: the same)."""
    main = deploy.main_pid(node)
    assert main > 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        proc = node.run(["cat", f"{STATE_DIR}/agent.pid"], check=False)
        if proc.stdout.strip() == str(main):
            return main
        time.sleep(0.2)
    raise AssertionError(f"{STATE_DIR}/agent.pid does not name the agent's PID {main}")


def _process_state(node: Node, pid: int) -> str:
    """The state letter of a process in the node ('' once it is gone or a zombie)."""
    proc = node.run(["cat", f"/proc/{pid}/stat"], check=False)
    if proc.returncode != 0:
        return ""
    state = proc.stdout.rpartition(")")[2].split()[0]
    return "" if state in ("Z", "X") else state


def test_a_hung_active_is_fenced_over_ssh_and_a_stale_epoch_changes_nothing(
    formed: Pair,
) -> None:
    a, b, plan = formed.a, formed.b, formed.plan
    formed.maintenance(b, True)  # only this test fences: the standby's agent stays put
    # a killed agent stays down, so what the fence left can be looked at
    a.write_file(DROP_IN, "[Service]\nRestart=no\n")
    a.systemctl("daemon-reload")
    pid = _agent_pid(a)
    before = formed.state(a)
    assert before["role"] == "ACTIVE" and deploy.holds_vip(a, plan)
    assert a.is_active(plan.demo_unit)
    a.run(["kill", "-STOP", str(pid)])
    try:
        assert _process_state(a, pid) == "T"
        for stale in (before["epoch"], before["epoch"] - 1):
            outcome = formed.fence(formed.standby, stale)
            assert not outcome["fenced"], outcome
            assert outcome["detail"].startswith(
                f"ssh fence via {plan.node(formed.active).addr('a')}: refused (mosqit-sync "
                f"refused: the fencer's epoch {stale} is not newer than this node's "
                f"{before['epoch']} (ACTIVE)"
            ), outcome
            assert outcome["detail"].endswith(
                "; power fence: not tried (the peer holds a newer epoch)"
            ), outcome
            assert formed.state(a) == before
            assert deploy.holds_vip(a, plan) and a.is_active(plan.demo_unit)
            assert _process_state(a, pid) == "T"
        started = time.time()
        outcome = formed.fence(formed.standby, before["epoch"] + 1)
        assert outcome == {
            "fenced": True,
            "detail": f"ssh fence via {plan.node(formed.active).addr('a')}: fenced "
            "(VIP removed, 1 resource stopped); power fence: not needed",
        }
        assert formed.state(a) == {**before, "role": "WAITING"}
        assert not deploy.holds_vip(a, plan)
        assert not a.is_active(plan.demo_unit)
        assert _process_state(a, pid) == ""
        assert a.journal(identifier="mosqit-failover", since=started, grep="fenced by the peer")
    finally:
        if _process_state(a, pid):
            a.run(["kill", "-CONT", str(pid)], check=False)
        a.run(["rm", "-f", DROP_IN])
        a.systemctl("daemon-reload")
        a.systemctl("reset-failed", deploy.UNIT, check=False)
        a.systemctl("start", deploy.UNIT, timeout=60)
        formed.maintenance(b, False)
    deploy.wait_pair(formed.lab.nodes, timeout=60)


CHASSIS = """\
#!/bin/sh
# ipmi_sim chassis control: DEVICE get PARM... | DEVICE set PARM VALUE...
# power 0 = the node's cgroup frozen (nothing of it runs), 1 = thawed
echo "$*" >> {log}
shift
op=$1; shift
case $op in
  get) for parm in "$@"; do
         [ "$parm" = power ] || {{ echo "no $parm"; exit 1; }}
         if grep -q 'frozen 1' {cgroup}/cgroup.events; then echo power:0; else echo power:1; fi
       done ;;
  set) while [ $# -ge 2 ]; do
         [ "$1" = power ] || {{ echo "cannot set $1"; exit 1; }}
         if [ "$2" = 0 ]; then frozen=1; else frozen=0; fi
         echo $frozen > {cgroup}/cgroup.freeze
         shift 2
       done ;;
  *) exit 1 ;;
esac
"""

LAN_CONF = """\
name "{name}"
set_working_mc 0x20
  startlan 1
    addr {address} {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{chassis} 0x20"
  user 2 true "admin" "fence-secret" admin 10 md5
"""

EMU = "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
EMU += "mc_enable 0x20\n"


POWER_TOOLS = {"ipmi_sim": "openipmi", "fence_ipmilan": "fence-agents", "ipmitool": "ipmitool"}
# `make install` puts ipmi_sim beside the virtualenv's python (the package itself would
# enable an IPMI driver boot script on this machine)
TOOL_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"


@pytest.fixture
def bmc(formed: Pair, tmp_path: Path) -> Iterator[Path]:
    """A simulated BMC for the standby node, in the client namespace; yields its chassis log."""
    found = {tool: shutil.which(tool, path=TOOL_PATH) for tool in POWER_TOOLS}
    missing = sorted({POWER_TOOLS[tool] for tool, path in found.items() if path is None})
    if missing:
        pytest.skip(f"the power fence test needs the Debian packages {' '.join(missing)}")
    target = formed.b
    log = tmp_path / "chassis.log"
    chassis = tmp_path / "chassis"
    chassis.write_text(CHASSIS.format(log=log, cgroup=target.cgroup))
    chassis.chmod(0o755)
    conf = tmp_path / "lan.conf"
    conf.write_text(
        LAN_CONF.format(name=f"mqfen{os.getpid()}", address=formed.plan.client_addr,
                        port=IPMI_PORT, chassis=chassis)
    )  # fmt: skip
    (tmp_path / "sim.emu").write_text(EMU)
    (tmp_path / "state").mkdir()
    # nsenter --net only: the chassis script must see the host's cgroup tree
    sim = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR / formed.plan.client_ns}", str(found["ipmi_sim"]), "-n",
         "-c", str(conf), "-f", str(tmp_path / "sim.emu"), "-s", str(tmp_path / "state")],
        stdin=subprocess.DEVNULL,
        stdout=(tmp_path / "sim.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        status = shlex.split(power_command(formed.plan).replace("--action off", "--action status"))
        deadline = time.monotonic() + 20
        while True:
            proc = formed.a.run(status, check=False, timeout=20)
            if "Status: ON" in proc.stdout:
                break
            if time.monotonic() > deadline or sim.poll() is not None:
                sim_log = (tmp_path / "sim.log").read_text()
                raise LabError(f"the BMC simulator does not answer: {proc}; {sim_log}")
            time.sleep(0.5)
        yield log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sim.pid, signal.SIGTERM)  # the session started for it: only the simulator
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(sim.pid, signal.SIGKILL)
            sim.wait()
        if target.frozen():
            target.thaw()


def test_the_power_fence_powers_off_a_peer_that_ssh_cannot_reach(formed: Pair, bmc: Path) -> None:
    x, y, plan = formed.a, formed.b, formed.plan
    epoch = formed.epoch(x)
    # the peer answers over ssh and holds a newer epoch than the fencer: no power-off
    stale = formed.fence(formed.active, formed.epoch(y))
    assert not stale["fenced"] and "refused (mosqit-sync refused:" in stale["detail"], stale
    assert stale["detail"].endswith("power fence: not tried (the peer holds a newer epoch)")
    assert not y.frozen() and "set" not in bmc.read_text()
    y.systemctl("stop", "ssh.service")
    try:
        started = time.monotonic()
        outcome = formed.fence(formed.active, epoch + 1)
        took = time.monotonic() - started
        parts = outcome["detail"].split("; ")
        spec = plan.node(formed.standby)
        assert outcome["fenced"], outcome
        assert parts[0].startswith(f"ssh fence via {spec.addr('a')}: unreachable ("), parts
        assert parts[1].startswith(f"via {spec.addr('b')}: unreachable ("), parts
        assert parts[2] == "power fence (fence_ipmilan): fenced", parts
        assert y.frozen()  # powered off: nothing of the node runs
        assert "set power 0" in bmc.read_text()
        print(f"\npower fence through fence_ipmilan and the BMC simulator: {took:.1f}s")
    finally:
        if y.frozen():
            y.thaw()
        y.systemctl("start", "ssh.service")
    deploy.wait_pair(formed.lab.nodes, timeout=60)


def test_the_fence_verb_refuses_extra_words_over_ssh(formed: Pair) -> None:
    peer = formed.plan.node(formed.standby).addr("a")
    ssh = ["ssh", "-i", sshkeys.SYNC_KEY, "-o", "BatchMode=yes", f"root@{peer}"]
    epoch = formed.epoch(formed.a) + 1
    for command in (f"mosqit-sync {epoch} --fence now", f"mosqit-sync {epoch}² --fence"):
        proc = formed.a.run([*ssh, command], check=False)
        assert proc.returncode == 77, proc
        assert proc.stderr.startswith("mosqit-sync refused:") and "Traceback" not in proc.stderr
    assert deploy.roles(formed.lab.nodes)[formed.standby] == "STANDBY"
