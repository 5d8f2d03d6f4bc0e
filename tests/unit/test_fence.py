"""Fencing: the [fencing] table, the Fencer (initiator) and the fence verb (target).

The Fencer runs real subprocesses: a local script is the power-fence command
(the command line is the interface), and the ssh fence goes to loopback
addresses on a port where nothing listens. The target runs the real forced
command inside a throwaway network namespace (a dummy eth0 holding the VIP),
with a script resource and a stand-in process named like the agent. The ssh
fence against a real sshd and the real agent is in tests/lab/test_fence_lab.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.config import ConfigError, Fencing
from mosqit_failover.effects.fence import FenceOutcome, Fencer
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import commands
from mosqit_failover.sync.fence_target import is_agent

BASE = """
[cluster]
name = "t"
state_dir = "{state}"
[vip]
address = "127.0.0.50/24"
interface = "eth0"
[networks.a]
subnet = "127.0.0.0/24"
[networks.b]
subnet = "127.0.1.0/24"
[nodes.alpha]
a = {{ interface = "eth0", address = "127.0.0.11" }}
b = {{ interface = "eth1", address = "127.0.1.11" }}
[nodes.beta]
a = {{ interface = "eth0", address = "127.0.0.12" }}
b = {{ interface = "eth1", address = "127.0.1.12" }}
"""


def parse(extra: str = "", state: str = "/var/lib/mosqit-failover") -> configuration.Config:
    return configuration.parse(extra + "\n" + BASE.format(state=state))


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(extra)
    return caught.value.problems


# -- [fencing] ------------------------------------------------------------------------


def test_fencing_defaults_to_the_ssh_fence_with_the_sync_key() -> None:
    assert parse().fencing == Fencing()
    assert Fencing().ssh and Fencing().on_failure == "wait"
    assert (Fencing().timeout, Fencing().retry, Fencing().ssh_port) == (10.0, 5.0, 22)
    synced = parse('[[sync]]\npath = "/srv/data"\nssh_key = "/root/.ssh/k"\n')
    assert synced.fencing.ssh_key == "/root/.ssh/k"
    assert parse().fencing.ssh_key == "/etc/mosqit-failover/sync_key"


def test_a_full_fencing_table() -> None:
    cfg = parse(
        """
[fencing]
ssh = true
ssh_key = "/etc/mosqit-failover/fence_key"
ssh_user = "fence"
ssh_port = 2222
timeout = "20s"
on_failure = "promote"
retry = "500ms"
[fencing.power]
beta = "fence_ipmilan --ip 10.0.9.1 --username admin --password-script 'cat /etc/pw' --action off"
alpha = "/usr/sbin/fence_ipmilan --ip 10.0.9.2 --action 'off'"
"""
    )
    f = cfg.fencing
    assert (f.ssh, f.ssh_key, f.ssh_user, f.ssh_port) == (
        True,
        "/etc/mosqit-failover/fence_key",
        "fence",
        2222,
    )
    assert (f.timeout, f.on_failure, f.retry) == (20.0, "promote", 0.5)
    assert f.power_command("beta").startswith("fence_ipmilan --ip 10.0.9.1")
    assert f.power_command("alpha") == "/usr/sbin/fence_ipmilan --ip 10.0.9.2 --action 'off'"
    assert parse('[fencing]\nssh = false\npower = { beta = "fence_x" }\n').fencing.power == (
        ("beta", "fence_x"),
    )
    assert parse('[fencing]\nssh = false\non_failure = "promote"\n').fencing.ssh is False


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("colour = 1", "fencing.colour: unknown key; allowed here: on_failure, power, retry,"),
        ("ssh = 1", "fencing.ssh = 1: must be true or false"),
        ('ssh_key = "keys/k"', "fencing.ssh_key = 'keys/k': must be an absolute path"),
        ('ssh_user = "a b"', "fencing.ssh_user = 'a b': must be a name"),
        ("ssh_port = 0", "fencing.ssh_port = 0: must be a whole number from 1 to 65535"),
        ('timeout = "10"', "fencing.timeout = '10': must be a duration with a unit"),
        ('timeout = "2h"', "fencing.timeout = '2h': must be between 1s and 600s"),
        ('retry = "0s"', "fencing.retry = '0s': must be between 0.1s and 3600s"),
        ('on_failure = "ignore"', "fencing.on_failure = 'ignore': must be \"wait\""),
        ('power = "fence_x"', "fencing.power = 'fence_x': must be a table"),
        ('power = { gamma = "fence_x" }', "fencing.power.gamma: not a node of this config"),
        ('power = { beta = "" }', "fencing.power.beta = '': must be a non-empty string"),
        ("power = { beta = 5 }", "fencing.power.beta = 5: must be a non-empty string"),
        ('power = { beta = "./fence_x off" }', "must start with an absolute path or a program"),
        ('power = { beta = "../fence_x" }', "must start with an absolute path or a program"),
        ('power = { beta = "/a/../b" }', "must start with an absolute path or a program"),
        ('power = { beta = "fence_x \'off" }', "cannot be split"),
        ("ssh = false", "fencing.ssh = False: with no power command no fence can succeed"),
    ],
)
def test_bad_fencing_tables_name_the_key_and_the_fix(table: str, expected: str) -> None:
    found = problems(f"[fencing]\n{table}\n")
    assert len(found) == 1 and expected in found[0], found


def test_fencing_must_be_a_table() -> None:
    assert problems("fencing = 5\n") == ["fencing = 5: must be a table ([fencing])"]


# -- the Fencer -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _power_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fence_test"
    script.write_text(f'#!/bin/sh\necho "$$" > {tmp_path}/pid\necho "$@" > {tmp_path}/args\n{body}')
    script.chmod(0o755)
    return script


def _live_group(pgid: int) -> list[int]:
    live = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[2]) == pgid and stat[0] != "Z":
                live.append(int(entry.name))
    return live


def _fencer(tmp_path: Path, fencing: str) -> Fencer:
    return Fencer(parse(f"[fencing]\n{fencing}\n", str(tmp_path / "state")), "alpha")


def _fence(fencer: Fencer, epoch: int = 7) -> tuple[FenceOutcome, float]:
    start = time.monotonic()
    outcome = asyncio.run(fencer.fence(epoch))
    return outcome, time.monotonic() - start


def test_the_power_fence_command_runs_split_and_exit_0_is_fenced(tmp_path: Path) -> None:
    script = _power_script(tmp_path, "echo powered off\n")
    fencer = _fencer(
        tmp_path, f"ssh = false\npower = {{ beta = \"{script} --action off --ip '10.0.9.1 x'\" }}"
    )
    outcome, _ = _fence(fencer)
    assert outcome == FenceOutcome(True, "ssh fence: off; power fence (fence_test): fenced")
    assert (tmp_path / "args").read_text() == "--action off --ip 10.0.9.1 x\n"


def test_a_failing_power_fence_is_not_fenced_and_says_why(tmp_path: Path) -> None:
    script = _power_script(
        tmp_path, "echo 'Failed: Unable to obtain correct plug status' >&2\nexit 1\n"
    )
    outcome, _ = _fence(_fencer(tmp_path, f'ssh = false\npower = {{ beta = "{script}" }}'))
    assert not outcome.fenced
    assert outcome.detail == (
        "ssh fence: off; power fence (fence_test): failed (exit 1; "
        "stderr: Failed: Unable to obtain correct plug status)"
    )


def test_a_power_fence_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    script = _power_script(tmp_path, "sleep 60 &\nwait\n")  # a child in its group too
    fencer = _fencer(tmp_path, f'ssh = false\ntimeout = "1s"\npower = {{ beta = "{script}" }}')
    outcome, took = _fence(fencer)
    assert not outcome.fenced and "power fence (fence_test): no answer within" in outcome.detail
    assert took < 2.5, took
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    deadline = time.monotonic() + 3  # nothing of its process group is left (zombies aside)
    while _live_group(pid):
        assert time.monotonic() < deadline, _live_group(pid)
        time.sleep(0.05)


def test_a_missing_power_fence_program_is_reported(tmp_path: Path) -> None:
    outcome, _ = _fence(_fencer(tmp_path, 'ssh = false\npower = { beta = "/nonexistent/fence_x" }'))
    assert not outcome.fenced
    assert "power fence (fence_x): cannot run /nonexistent/fence_x:" in outcome.detail


def test_an_unreachable_ssh_fence_tries_each_network_then_the_power_fence(tmp_path: Path) -> None:
    script = _power_script(tmp_path, "exit 0\n")
    port = _free_port()
    fencer = _fencer(tmp_path, f'ssh_port = {port}\npower = {{ beta = "{script}" }}')
    outcome, took = _fence(fencer)
    assert outcome.fenced, outcome
    via_a, via_b, power = outcome.detail.split("; ")
    assert via_a.startswith("ssh fence via 127.0.0.12: unreachable (")
    assert "ssh: connect to host 127.0.0.12" in via_a
    assert via_b.startswith("via 127.0.1.12: unreachable (") and "Connection refused" in via_b
    assert power == "power fence (fence_test): fenced"
    assert took < 5, took


def test_a_network_whose_session_hangs_does_not_keep_the_other_from_fencing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 30 % loss the first network's ssh session took the whole fencing.timeout in a
    lab run, and the second network was never tried."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(
        "#!/bin/sh\n"
        'for word in "$@"; do case "$word" in *127.0.0.12*) '
        f"echo $$ > {tmp_path}/hung; exec sleep 60;; esac; done\n"
        'echo "fenced: VIP removed, 2 resources stopped"\n'
    )
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    outcome, took = _fence(_fencer(tmp_path, 'timeout = "20s"'))
    assert outcome == FenceOutcome(
        True,
        "ssh fence via 127.0.0.12: stopped (answered via another network); "
        "via 127.0.1.12: fenced (VIP removed, 2 resources stopped); power fence: not configured",
    )
    assert 0.9 < took < 5, took  # the second session started a STAGGER after the first
    hung = int((tmp_path / "hung").read_text())
    deadline = time.monotonic() + 3
    while _live_group(hung):
        assert time.monotonic() < deadline, _live_group(hung)
        time.sleep(0.05)


def test_no_fence_configured_that_works_is_never_fenced(tmp_path: Path) -> None:
    port = _free_port()
    outcome, _ = _fence(_fencer(tmp_path, f'ssh_port = {port}\ntimeout = "2s"'))
    assert not outcome.fenced
    assert outcome.detail.endswith("; power fence: not configured")
    assert outcome.detail.count("unreachable") == 2


def test_a_cancelled_fence_kills_its_command(tmp_path: Path) -> None:
    script = _power_script(tmp_path, "exec sleep 60\n")
    fencer = _fencer(tmp_path, f'ssh = false\ntimeout = "30s"\npower = {{ beta = "{script}" }}')

    async def cancel() -> None:
        task = asyncio.create_task(fencer.fence(7))
        while not (tmp_path / "pid").exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)


def test_the_ssh_fence_command_line() -> None:
    peer = commands.Peer("10.1.0.2", "root", 22, "/k", 3, Path("none"))
    argv = commands.fence_argv(peer, 12)
    assert argv[0] == "ssh" and argv[-2:] == ["root@10.1.0.2", "mosqit-sync 12 --fence"]
    for option in ("BatchMode=yes", "ConnectTimeout=3", "ControlPath=none", "ControlMaster=no"):
        assert option in argv


# -- the fence verb on the fenced node ---------------------------------------------------


def test_the_agent_is_recognised_by_its_command_line() -> None:
    assert is_agent(["/usr/bin/python3", "/usr/local/bin/mosqit-failover", "agent", "--config"])
    assert is_agent(["/usr/local/bin/mosqit-failover", "agent"])
    assert is_agent(["python3", "-m", "mosqit_failover.cli", "agent"])
    assert not is_agent(["/usr/local/bin/mosqit-failover", "sync-receive", "--config", "x"])
    assert not is_agent(["python3", "-m", "mosqit_failover.sync.receive", "--config", "x"])
    assert not is_agent(["/usr/sbin/sshd", "-D"])
    assert not is_agent(["sleep", "mosqit-failover", "agent"][:1])


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to make a network namespace",
)


class Node:
    """A fenced node: a namespace with eth0 (VIP held) and eth1, config, state, resources."""

    def __init__(self, tmp_path: Path, ns: str) -> None:
        self.tmp, self.ns = tmp_path, ns
        self.state_dir = tmp_path / "state"
        self.state = StateFile(self.state_dir / "state.json")
        self.state.save(6, Role.ACTIVE)
        (tmp_path / "etc").mkdir()
        self.config = tmp_path / "etc" / "mosqit-failover.toml"
        resources = "".join(
            f'[[resources]]\nname = "{name}"\nkind = "script"\n'
            f'start = "touch {tmp_path}/{name}.running"\n'
            f'stop = "{stop}"\n'
            f'status = "test -e {tmp_path}/{name}.running"\n'
            for name, stop in (
                ("db", f"echo stop db >> {tmp_path}/order; rm -f {tmp_path}/db.running"),
                ("app", f"echo stop app >> {tmp_path}/order; rm -f {tmp_path}/app.running"),
            )
        )
        self.config.write_text(BASE.format(state=self.state_dir) + resources)
        for name in ("db", "app"):
            (tmp_path / f"{name}.running").touch()

    def ip(self, *argv: str) -> str:
        return subprocess.run(
            ["ip", "-n", self.ns, *argv], check=True, capture_output=True, text=True
        ).stdout

    def holds_vip(self) -> bool:
        return "127.0.0.50/24" in self.ip("-4", "-o", "addr", "show", "dev", "eth0")

    def fence(self, epoch: int, node: str = "alpha") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SSH_ORIGINAL_COMMAND": f"mosqit-sync {epoch} --fence"}
        receiver = [sys.executable, "-m", "mosqit_failover.sync.receive"]
        return subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                *receiver,
                "--config",
                str(self.config),
                "--node",
                node,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def agent(self) -> subprocess.Popen[bytes]:
        """A stand-in process whose command line is the agent's, stopped like a hung one."""
        program = self.tmp / "bin" / "mosqit-failover"
        program.parent.mkdir(exist_ok=True)
        program.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(300)\n")
        program.chmod(0o755)
        proc = subprocess.Popen([str(program), "agent", "--config", str(self.config)])
        (self.state_dir / "agent.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while b"agent" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGSTOP)
        return proc


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    ns = f"mqtest-fence-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        made = Node(tmp_path, ns)
        for ifname, other in (("eth0", "eth8"), ("eth1", "eth9")):  # veth: no dummy module here
            made.ip("link", "add", ifname, "type", "veth", "peer", "name", other)
            for link in (ifname, other):
                made.ip("link", "set", link, "up")
        made.ip("addr", "add", "127.0.0.11/24", "dev", "eth0")
        made.ip("addr", "add", "127.0.0.50/24", "dev", "eth0")
        yield made
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@needs_netns
def test_a_newer_fencer_gets_everything_given_up(node: Node) -> None:
    agent = node.agent()
    try:
        proc = node.fence(7)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert agent.wait(timeout=5) == -signal.SIGKILL
    finally:
        agent.kill()
    assert proc.stdout.splitlines() == [
        "state: WAITING persisted with epoch 6 (was ACTIVE)",
        f"agent: PID {agent.pid} killed (SIGKILL)",
        "vip: 127.0.0.50/24 removed from eth0",
        "resource app: stopped",
        "resource db: stopped",
        "fenced: VIP removed, 2 resources stopped",
    ]
    assert node.state.load() == (6, Role.WAITING)
    assert not node.holds_vip()
    assert (node.tmp / "order").read_text() == "stop app\nstop db\n"  # reverse order
    again = node.fence(8)  # idempotent: nothing left to do is success
    assert again.returncode == 0, again
    assert again.stdout.splitlines()[-1] == "fenced: VIP not held, 2 resources stopped"


@needs_netns
def test_a_fence_whose_session_drops_is_finished_all_the_same(node: Node) -> None:
    """At 30 % loss a fencer's ssh session can die while the fence runs; stopping at the
    first write to the closed session left the VIP and services up with the agent gone."""
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": "mosqit-sync 7 --fence"}
    receiver = [sys.executable, "-m", "mosqit_failover.sync.receive"]
    argv = ["ip", "netns", "exec", node.ns, *receiver, "--config", str(node.config)]
    proc = subprocess.Popen([*argv, "--node", "alpha"], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # the fencer is gone before the first line
    proc.wait(timeout=60)
    assert not node.holds_vip()
    assert (node.tmp / "order").read_text() == "stop app\nstop db\n"
    assert node.state.load() == (6, Role.WAITING)


@needs_netns
def test_a_second_session_of_the_same_fence_does_not_stop_anything_again(node: Node) -> None:
    """The fencer tries both networks; under loss both sessions can get through."""
    first = node.fence(7)
    assert first.returncode == 0, (first.stdout, first.stderr)
    second = node.fence(7)
    assert second.returncode == 0, (second.stdout, second.stderr)
    assert second.stdout.splitlines() == [
        "fenced: VIP removed, 2 resources stopped, by an earlier session of the same fence"
    ]
    assert (node.tmp / "order").read_text() == "stop app\nstop db\n"
    node.ip("addr", "add", "127.0.0.50/24", "dev", "eth0")  # started again meanwhile
    third = node.fence(7)
    assert third.stdout.splitlines()[-1] == "fenced: VIP removed, 2 resources stopped"
    assert not node.holds_vip()
    done = node.state_dir / "fenced"
    epoch, own, _, summary = done.read_text().split(" ", 3)
    done.write_text(f"{epoch} {own} {time.time() - 60:.3f} {summary}")  # a retry, later
    assert node.fence(7).stdout.splitlines()[-1] == "fenced: VIP not held, 2 resources stopped"
    assert node.fence(8).stdout.splitlines()[-1] == "fenced: VIP not held, 2 resources stopped"


@needs_netns
def test_a_stale_fencer_is_refused_and_nothing_changes(node: Node) -> None:
    agent = node.agent()
    try:
        for epoch in (6, 5, 0):
            proc = node.fence(epoch)
            assert proc.returncode == 77 and proc.stdout == "", proc
            assert proc.stderr.startswith("mosqit-sync refused: the fencer's epoch"), proc.stderr
            assert "not newer than this node's 6" in proc.stderr
        assert agent.poll() is None
    finally:
        agent.kill()
        agent.wait()
    assert node.state.load() == (6, Role.ACTIVE)
    assert node.holds_vip()
    assert (node.tmp / "db.running").exists() and (node.tmp / "app.running").exists()


@needs_netns
def test_a_failed_stop_is_exit_1_and_the_rest_is_still_done(node: Node) -> None:
    text = node.config.read_text().replace(
        f'stop = "echo stop db >> {node.tmp}/order; rm -f {node.tmp}/db.running"',
        'stop = "echo cannot stop db >&2; exit 1"',
    )
    node.config.write_text(text)
    sleeper = subprocess.Popen(["sleep", "300"])  # the pid file names something else
    (node.state_dir / "agent.pid").write_text(f"{sleeper.pid}\n")
    try:
        proc = node.fence(7)
        assert sleeper.poll() is None  # not the agent: left alone
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 1, proc
    lines = proc.stdout.splitlines()
    assert (
        lines[1]
        == f"agent: not running (PID {sleeper.pid} is 'sleep 300', not the agent; left alone)"
    )
    assert lines[4].startswith("resource db: stop failed: `echo cannot stop db >&2; exit 1` ")
    assert lines[4].endswith("exited with code 1; stderr: cannot stop db")
    assert lines[-1].startswith("not fenced: resource db: stop failed:")
    assert not node.holds_vip() and not (node.tmp / "app.running").exists()
    assert node.state.load() == (6, Role.WAITING)


@needs_netns
def test_a_node_that_is_not_in_the_config_is_refused(node: Node) -> None:
    proc = node.fence(7, node="gamma")
    assert proc.returncode == 77 and "'gamma' is not a node of this config" in proc.stderr
    assert node.holds_vip() and node.state.load() == (6, Role.ACTIVE)


def test_the_fence_lines_are_json_free_text() -> None:
    # the initiator reads only the last line; nothing on the wire is parsed as data
    assert json.dumps("fenced: VIP removed, 2 resources stopped")


@needs_netns
def test_a_node_whose_agent_answers_is_not_fenced(node: Node) -> None:
    """A fence that reaches a node after its agent woke (an ssh session queued in a frozen
    kernel), or when only UDP is blocked between the nodes, must give up nothing."""
    from mosqit_failover.control import ControlServer

    sock = node.tmp / "run" / "control.sock"
    text = node.config.read_text().replace(
        "[cluster]\n", f'[cluster]\ncontrol_socket = "{sock}"\n', 1
    )
    node.config.write_text(text)
    ready = threading.Event()
    done = asyncio.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        server = ControlServer(sock, lambda request: {"ok": True, "status": {}})
        await server.start()
        ready.set()
        await done.wait()
        await server.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        proc = node.fence(7)
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join(10)
    assert proc.returncode == 77, proc
    assert "answers on its control socket" in proc.stderr
    assert node.state.load() == (6, Role.ACTIVE)
    assert node.holds_vip()
    assert (node.tmp / "db.running").exists() and (node.tmp / "app.running").exists()


# -- a named peer among several ---------------------------------------------------------

GAMMA = """
[nodes.gamma]
a = { interface = "eth0", address = "127.0.0.13" }
b = { interface = "eth1", address = "127.0.1.13" }
"""


def _three(tmp_path: Path, fencing: str) -> Fencer:
    text = BASE.format(state=tmp_path / "state").replace(
        'name = "t"\n', 'name = "t"\norder = ["alpha", "beta", "gamma"]\n'
    )
    return Fencer(configuration.parse(f"[fencing]\n{fencing}\n{text}{GAMMA}"), "alpha")


def test_fencing_a_named_peer_uses_its_addresses_and_its_power_command(tmp_path: Path) -> None:
    script = _power_script(tmp_path, "exit 0\n")
    other = tmp_path / "fence_other"
    other.write_text(f"#!/bin/sh\ntouch {tmp_path}/wrong\nexit 0\n")
    other.chmod(0o755)
    port = _free_port()
    fencer = _three(
        tmp_path, f'ssh_port = {port}\npower = {{ beta = "{other}", gamma = "{script} g" }}'
    )
    outcome = asyncio.run(fencer.fence(7, peer="gamma"))
    assert outcome.fenced, outcome
    via_a, via_b, power = outcome.detail.split("; ")
    assert via_a.startswith("ssh fence via 127.0.0.13: unreachable (")
    assert via_b.startswith("via 127.0.1.13: unreachable (")
    assert power == "power fence (fence_test): fenced"
    assert (tmp_path / "args").read_text() == "g\n" and not (tmp_path / "wrong").exists()


def test_a_peer_not_configured_for_power_gets_none_even_if_another_has_one(
    tmp_path: Path,
) -> None:
    script = _power_script(tmp_path, "exit 0\n")
    port = _free_port()
    fencer = _three(tmp_path, f'ssh_port = {port}\ntimeout = "2s"\npower = {{ beta = "{script}" }}')
    outcome = asyncio.run(fencer.fence(7, peer="gamma"))
    assert not outcome.fenced and outcome.detail.endswith("; power fence: not configured")
    assert "via 127.0.0.13" in outcome.detail and not (tmp_path / "args").exists()


@pytest.mark.parametrize(
    ("peer", "said"),
    [
        (None, "fence failed: no peer named (3 nodes: the peer to fence must be named)"),
        ("alpha", "fence failed: 'alpha' is this node"),
        ("delta", "fence failed: 'delta' is not a node of this config"),
    ],
)
def test_a_fence_without_a_valid_peer_fails_without_trying(
    tmp_path: Path, peer: str | None, said: str
) -> None:
    script = _power_script(tmp_path, "exit 0\n")
    fencer = _three(tmp_path, f'ssh = false\npower = {{ beta = "{script}", gamma = "{script}" }}')
    assert asyncio.run(fencer.fence(7, peer=peer)) == FenceOutcome(False, said)
    assert not (tmp_path / "args").exists()


def test_a_pair_fences_its_peer_by_default_or_by_name(tmp_path: Path) -> None:
    script = _power_script(tmp_path, "exit 0\n")
    fencer = _fencer(tmp_path, f'ssh = false\npower = {{ beta = "{script}" }}')
    expected = FenceOutcome(True, "ssh fence: off; power fence (fence_test): fenced")
    assert asyncio.run(fencer.fence(7)) == expected
    assert asyncio.run(fencer.fence(7, peer="beta")) == expected
