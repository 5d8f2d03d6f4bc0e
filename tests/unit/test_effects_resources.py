"""Resource runners against real shell scripts, init scripts and a fake systemctl.

The "services" are marker files (no daemons), except where a test needs a real
process (timeouts, background children); those are killed before the test ends.
Every script appends what it was asked to do to ``calls``, so idempotence is
checked by what actually ran.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mosqit_failover.config import Resource
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.resources import ResourceRunner, make_runner

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().split() if log.exists() else []


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- script kind ------------------------------------------------------------------


def script_resource(tmp_path: Path, **overrides: str | float) -> Resource:
    d = tmp_path
    fields: dict[str, str | float] = {
        "start": f"echo start >> {d}/calls; touch {d}/running",
        "stop": f"echo stop >> {d}/calls; rm -f {d}/running",
        "status": f"echo status >> {d}/calls; test -f {d}/running",
        "timeout": 5.0,
    }
    fields.update(overrides)
    return Resource(name="demo", kind="script", **fields)  # type: ignore[arg-type]


def test_script_start_stop_and_idempotence(tmp_path: Path) -> None:
    runner = make_runner(script_resource(tmp_path))
    assert runner.name == "demo"
    assert run(runner.running()) is False

    run(runner.start())
    assert (tmp_path / "running").exists()
    assert run(runner.running()) is True
    assert calls(tmp_path) == ["status", "status", "start", "status", "status"]

    (tmp_path / "calls").unlink()
    run(runner.start())  # already running: only the status check runs
    assert calls(tmp_path) == ["status"]

    (tmp_path / "calls").unlink()
    run(runner.stop())
    assert not (tmp_path / "running").exists()
    assert calls(tmp_path) == ["status", "stop", "status"]

    (tmp_path / "calls").unlink()
    run(runner.stop())  # already stopped
    assert calls(tmp_path) == ["status"]


def test_script_start_failure_reports_code_and_stderr(tmp_path: Path) -> None:
    runner = make_runner(
        script_resource(
            tmp_path,
            start="echo on-stdout; echo 'line one' >&2; echo 'port 1883 in use' >&2; exit 4",
        )
    )
    with pytest.raises(EffectError) as caught:
        run(runner.start())
    message = str(caught.value)
    assert "resource demo: start failed" in message
    assert "exited with code 4" in message
    assert "line one | port 1883 in use" in message
    assert "on-stdout" not in message.split("stderr:")[1]  # stderr wins over stdout


def test_script_failure_quotes_stdout_when_stderr_is_empty(tmp_path: Path) -> None:
    runner = make_runner(script_resource(tmp_path, stop="echo 'cannot stop: busy'; exit 1"))
    (tmp_path / "running").touch()
    with pytest.raises(EffectError, match="code 1; stdout: cannot stop: busy"):
        run(runner.stop())


def test_script_start_not_confirmed_by_status(tmp_path: Path) -> None:
    runner = make_runner(script_resource(tmp_path, start="true"))
    with pytest.raises(EffectError, match=r"started, but its status check .* exited with code 1"):
        run(runner.start())


def test_script_stop_not_confirmed_by_status(tmp_path: Path) -> None:
    (tmp_path / "running").touch()
    runner = make_runner(script_resource(tmp_path, stop="true"))
    with pytest.raises(EffectError, match="stopped, but its status check"):
        run(runner.stop())


def test_script_missing_command_is_named(tmp_path: Path) -> None:
    runner = make_runner(script_resource(tmp_path, status="mqtest-no-such-command --check"))
    for call in (runner.start, runner.stop, runner.running):
        with pytest.raises(EffectError, match=r"mqtest-no-such-command --check.* is not found"):
            run(call())


def test_script_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    runner = make_runner(
        script_resource(tmp_path, start=f"sleep 30 & echo $! > {pidfile}; wait", timeout=0.5)
    )
    began = time.monotonic()
    with pytest.raises(EffectError) as caught:
        run(runner.start())
    assert time.monotonic() - began < 3
    assert "did not finish within 0.5s" in str(caught.value)
    assert "sleep 30" in str(caught.value)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child), "the command's child survived the timeout"


def test_background_child_holding_the_output_does_not_hang(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    runner = make_runner(
        script_resource(
            tmp_path,
            start=f"sleep 30 & echo $! > {pidfile}; touch {tmp_path}/running",
            timeout=10,
        )
    )
    began = time.monotonic()
    try:
        run(runner.start())
        assert time.monotonic() - began < 2
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_commands_do_not_block_the_event_loop(tmp_path: Path) -> None:
    runner = make_runner(script_resource(tmp_path, start=f"sleep 0.3; touch {tmp_path}/running"))

    async def main() -> float:
        worst = 0.0
        done = False

        async def ticker() -> None:
            nonlocal worst
            last = time.monotonic()
            while not done:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                worst = max(worst, now - last)
                last = now

        task = asyncio.create_task(ticker())
        await runner.start()
        await runner.stop()
        done = True
        await task
        return worst

    assert run(main()) < 0.1


def test_cancelled_call_kills_its_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    runner = make_runner(
        script_resource(tmp_path, start=f"sleep 30 & echo $! > {pidfile}; wait", timeout=60)
    )

    async def main() -> None:
        task = asyncio.create_task(runner.start())
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)


# -- sysv kind ------------------------------------------------------------------

INIT_SCRIPT = """#!/bin/sh
# A fake LSB init script: state in marker files next to it.
D=$(dirname "$0")
echo "$1" >> "$D/calls"
case "$1" in
  start)
    if [ -e "$D/fail-start" ]; then echo "mosquitto: address already in use" >&2; exit 1; fi
    [ -e "$D/start-does-nothing" ] || touch "$D/running"; exit 0 ;;
  stop)
    [ -e "$D/stop-does-nothing" ] || rm -f "$D/running"; exit 0 ;;
  status)
    if [ -e "$D/status-code" ]; then exit "$(cat "$D/status-code")"; fi
    if [ -e "$D/running" ]; then echo running; exit 0; fi
    echo "not running"; exit 3 ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
"""


def sysv_runner(tmp_path: Path, script: str = "mosquitto") -> ResourceRunner:
    executable(tmp_path / "mosquitto", INIT_SCRIPT)
    resource = Resource(name="broker", kind="sysv", script=script, timeout=5.0)
    return make_runner(resource, initd=tmp_path)


def test_sysv_start_stop_and_idempotence(tmp_path: Path) -> None:
    runner = sysv_runner(tmp_path)
    run(runner.start())
    run(runner.start())
    assert run(runner.running()) is True
    run(runner.stop())
    run(runner.stop())
    assert run(runner.running()) is False
    assert calls(tmp_path) == [
        "status", "start", "status",  # start
        "status",  # start again: already running
        "status",  # running()
        "status", "stop", "status",  # stop
        "status",  # stop again: already stopped
        "status",  # running()
    ]  # fmt: skip


def test_sysv_absolute_script_path_ignores_initd(tmp_path: Path) -> None:
    executable(tmp_path / "mosquitto", INIT_SCRIPT)
    resource = Resource(name="broker", kind="sysv", script=str(tmp_path / "mosquitto"))
    runner = make_runner(resource, initd=Path("/nonexistent"))
    run(runner.start())
    assert (tmp_path / "running").exists()


def test_sysv_start_failure(tmp_path: Path) -> None:
    runner = sysv_runner(tmp_path)
    (tmp_path / "fail-start").touch()
    with pytest.raises(EffectError) as caught:
        run(runner.start())
    message = str(caught.value)
    assert f"`{tmp_path}/mosquitto start` exited with code 1" in message
    assert "address already in use" in message


@pytest.mark.parametrize(("code", "alive"), [("0", True), ("3", False), ("1", False), ("2", False)])
def test_sysv_dead_with_pid_or_lock_file_is_not_alive_for_the_monitor(
    tmp_path: Path, code: str, alive: bool
) -> None:
    """LSB status 1 and 2 (dead, its pid or lock file left) are a failure to the monitor,
    as to Pacemaker; to start and stop they stay unknown (the test below)."""
    runner = sysv_runner(tmp_path)
    (tmp_path / "status-code").write_text(code)
    assert run(runner.alive()) is alive
    (tmp_path / "status-code").write_text("4")
    with pytest.raises(EffectError, match=r"cannot tell whether it runs.*code 4"):
        run(runner.alive())


def test_sysv_unknown_status(tmp_path: Path) -> None:
    runner = sysv_runner(tmp_path)
    (tmp_path / "status-code").write_text("4")
    with pytest.raises(EffectError, match=r"cannot tell whether it runs.*code 4"):
        run(runner.running())
    # start tries anyway, but cannot confirm it
    with pytest.raises(EffectError, match="instead of 0"):
        run(runner.start())
    assert calls(tmp_path)[-3:] == ["status", "start", "status"]
    # stop tries anyway, and an unknown status (here "1": dead, pid file left)
    # is not taken as "stopped"
    (tmp_path / "status-code").write_text("1")
    with pytest.raises(EffectError, match="exited with code 1, which does not confirm"):
        run(runner.stop())
    assert calls(tmp_path)[-3:] == ["status", "stop", "status"]


def test_sysv_stop_not_confirmed(tmp_path: Path) -> None:
    runner = sysv_runner(tmp_path)
    run(runner.start())
    (tmp_path / "stop-does-nothing").touch()
    with pytest.raises(EffectError, match=r"stopped, but its status check .* code 0"):
        run(runner.stop())


def test_sysv_missing_script(tmp_path: Path) -> None:
    runner = sysv_runner(tmp_path, script="mqtest-nope")
    for call in (runner.start, runner.stop, runner.running):
        with pytest.raises(EffectError) as caught:
            run(call())
        message = str(caught.value)
        assert f"init script {tmp_path}/mqtest-nope not found" in message
        assert "resources.script" in message


def test_sysv_script_not_executable(tmp_path: Path) -> None:
    runner = sysv_runner(tmp_path)
    (tmp_path / "mosquitto").chmod(0o644)
    with pytest.raises(EffectError, match=f"run `chmod \\+x {tmp_path}/mosquitto`"):
        run(runner.start())


def test_sysv_timeout(tmp_path: Path) -> None:
    executable(tmp_path / "slow", "#!/bin/sh\nexec sleep 30\n")
    runner = make_runner(
        Resource(name="slow", kind="sysv", script="slow", timeout=0.3), initd=tmp_path
    )
    began = time.monotonic()
    with pytest.raises(EffectError, match=r"`.*/slow status` did not finish within 0.3s"):
        run(runner.running())
    assert time.monotonic() - began < 2


# -- systemd kind (a fake systemctl) --------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
# Logs its arguments; units are marker files; only mosquitto.service exists.
D=$(dirname "$0")
echo "$*" | tr ' ' '_' >> "$D/calls"
[ "$1" = is-active ] && unit=$3 || unit=$2
case "$1" in
  is-active) [ -e "$D/active-$unit" ] ;;
  start)
    if [ "$unit" != mosquitto.service ]; then
      echo "Failed to start $unit: Unit $unit not found." >&2; exit 5
    fi
    touch "$D/active-$unit" ;;
  stop) rm -f "$D/active-$unit" ;;
  show) case "$5" in
      mosquitto.service) echo loaded ;;
      masked.service) echo masked ;;
      *) echo not-found ;;
    esac ;;
  *) exit 1 ;;
esac
"""


def systemd_runner(tmp_path: Path, unit: str = "mosquitto.service") -> ResourceRunner:
    fake = executable(tmp_path / "systemctl", FAKE_SYSTEMCTL)
    resource = Resource(name="broker", kind="systemd", unit=unit, timeout=5.0)
    return make_runner(resource, systemctl=str(fake))


def test_systemd_commands(tmp_path: Path) -> None:
    runner = systemd_runner(tmp_path)
    run(runner.start())
    run(runner.start())
    assert run(runner.running()) is True
    run(runner.stop())
    run(runner.stop())
    assert run(runner.running()) is False
    check = "is-active_--quiet_mosquitto.service"
    # systemctl start is idempotent itself: no status check before it, on the failover path
    assert calls(tmp_path) == [
        "start_mosquitto.service", check,
        "start_mosquitto.service", check,
        check,
        check, "stop_mosquitto.service", check,
        check,
        check,
    ]  # fmt: skip


def test_systemd_missing_unit(tmp_path: Path) -> None:
    runner = systemd_runner(tmp_path, unit="mqtest-nope.service")
    with pytest.raises(EffectError) as caught:
        run(runner.start())
    message = str(caught.value)
    assert "systemd has no unit 'mqtest-nope.service'" in message
    assert "Unit mqtest-nope.service not found" in message
    assert "resources.unit" in message
    run(runner.stop())  # a unit that does not exist does not run: stopped already


def test_a_unit_systemd_does_not_know_is_found_missing_before_any_start(tmp_path: Path) -> None:
    """A typo'd unit passed check-config and reload, and the next switchover failed on
    both nodes in turn (a helper's finding)."""
    assert run(systemd_runner(tmp_path).missing()) is None
    problem = run(systemd_runner(tmp_path, unit="mosquitto.servce").missing())
    assert problem == (
        "resource broker: unit 'mosquitto.servce' is not known to systemd on this node: fix "
        "resources.unit or install the service (see `systemctl list-unit-files`)"
    )
    masked = run(systemd_runner(tmp_path, unit="masked.service").missing())
    assert masked is not None and "is masked on this node, so it cannot start" in masked
    template = run(systemd_runner(tmp_path, unit="openvpn@.service").missing())
    assert template == (
        "resource broker: 'openvpn@.service' is a template: name an instance of it, like "
        "openvpn@NAME.service"
    )
    assert all(c.startswith("show_") for c in calls(tmp_path))  # nothing started


def test_a_missing_or_unexecutable_init_script_is_found_missing(tmp_path: Path) -> None:
    assert run(sysv_runner(tmp_path).missing()) is None
    gone = run(sysv_runner(tmp_path, script="mosquito").missing())
    assert gone is not None and f"init script {tmp_path}/mosquito not found" in gone
    runner = sysv_runner(tmp_path)
    (tmp_path / "mosquitto").chmod(0o644)
    plain = run(runner.missing())
    assert plain is not None and "is not executable" in plain


def test_systemd_missing_systemctl(tmp_path: Path) -> None:
    resource = Resource(name="broker", kind="systemd", unit="mosquitto.service")
    runner = make_runner(resource, systemctl=str(tmp_path / "mqtest-no-systemctl"))
    with pytest.raises(EffectError, match=r"cannot run .*mqtest-no-systemctl.*needs systemd"):
        run(runner.running())


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind 'upstart'"):
        make_runner(Resource(name="x", kind="upstart"))


@pytest.mark.parametrize("kind", ["script", "sysv", "systemd"])
def test_concurrent_start_and_stop_are_serialized(tmp_path: Path, kind: str) -> None:
    factories: dict[str, Callable[[Path], ResourceRunner]] = {
        "script": lambda d: make_runner(script_resource(d)),
        "sysv": sysv_runner,
        "systemd": systemd_runner,
    }
    runner = factories[kind](tmp_path)

    async def main() -> None:
        await asyncio.gather(runner.start(), runner.start(), runner.stop(), runner.start())

    run(main())
    assert run(runner.running()) is True
    starts = [c for c in calls(tmp_path) if "start" in c]
    # the second start found it running (systemd: systemctl start is a no-op then)
    assert len(starts) == (3 if kind == "systemd" else 2)


def test_what_the_agent_runs_gets_a_services_umask_not_the_agents() -> None:
    """The agent's unit runs it with umask 0077 (its state and secrets); a service a
    script starts under that would make files only root can read."""
    from mosqit_failover.effects.resources import CHILD_UMASK, run_command

    before = os.umask(0o077)
    try:
        outcome = run(run_command(["sh", "-c", "umask"], 10.0))
    finally:
        os.umask(before)
    assert outcome.code == 0 and outcome.stdout.strip() == f"{CHILD_UMASK:04o}" == "0022"


def test_service_priority_undoes_what_the_agents_unit_gives_it() -> None:
    from mosqit_failover.priority import service_priority

    assert service_priority(0, os.SCHED_OTHER) == []
    assert service_priority(-10, os.SCHED_OTHER) == [
        *("nice", "-n", "10"),
        *("ionice", "-c", "2", "-n", "4"),
    ]
    assert service_priority(-10, os.SCHED_RR) == [
        *("chrt", "--other", "0"),
        *("nice", "-n", "10"),
        *("ionice", "-c", "2", "-n", "4"),
    ]


@pytest.mark.skipif(
    os.geteuid() != 0, reason="raising priorities needs root (make test runs as root)"
)
def test_a_resource_command_runs_with_a_services_priorities(tmp_path: Path) -> None:
    """As the unit runs the agent (nice -10, the real-time disk class), a script resource's
    commands, and the service they leave running, get nice 0 and the ordinary class."""
    import subprocess

    from mosqit_failover.effects.resources import run_command

    report = executable(
        tmp_path / "report",
        '#!/bin/sh\ncut -d" " -f19 /proc/$$/stat\nionice -p $$\nchrt -p $$\n',
    )
    pid = str(os.getpid())
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, -10)
    subprocess.run(["ionice", "-c", "1", "-n", "4", "-p", pid], check=True)
    try:
        plain = run(run_command([str(report)], 10.0))
        service = run(run_command([str(report)], 10.0, as_service=True))
        # a command that cannot run fails as a direct exec would, wrapped or not (a
        # helper's attack: the wrappers' execvp ran a file without #! through /bin/sh)
        bad = {
            "missing": (tmp_path / "missing", FileNotFoundError),
            "directory": (tmp_path, PermissionError),
            "no shebang": (executable(tmp_path / "plain", "echo ran\n"), OSError),
            "no interpreter": (executable(tmp_path / "bad", "#!/nonexistent/sh\n"), OSError),
        }
        for what, (path, error) in bad.items():
            seen = set()
            for wrapped in (False, True):
                with pytest.raises(error) as caught:
                    run(run_command([str(path)], 10.0, as_service=wrapped))
                seen.add((type(caught.value), caught.value.errno))
            assert len(seen) == 1, (what, seen)  # the same error either way
    finally:
        subprocess.run(["ionice", "-c", "0", "-p", pid], check=True)
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    assert plain.stdout.splitlines()[:2] == ["-10", "realtime: prio 4"], plain
    nice, io, *policy = service.stdout.splitlines()
    assert (nice, io) == ("0", "best-effort: prio 4"), service
    assert "SCHED_OTHER" in policy[0] and service.argv == (str(report),)


@pytest.mark.parametrize(("code", "alive"), [(0, True), (3, False), (1, None), (4, None)], ids=str)
def test_systemd_alive_takes_only_3_for_not_running(
    tmp_path: Path, code: int, alive: bool | None
) -> None:
    """systemctl is-active exits 3 for every state but active (inactive, failed,
    activating, no such unit); 1 is systemctl failing to ask, as during `daemon-reexec`,
    when the monitor restarted a running service (a helper's finding). Start and stop
    keep reading any non-zero code as "not running"."""
    fake = executable(
        tmp_path / "systemctl",
        f'#!/bin/sh\necho "Failed to retrieve unit state: Transport endpoint" >&2\nexit {code}\n',
    )
    resource = Resource(name="broker", kind="systemd", unit="mosquitto.service", timeout=5.0)
    runner = make_runner(resource, systemctl=str(fake))
    if alive is None:
        with pytest.raises(EffectError, match=rf"cannot tell whether it runs.*code {code}"):
            run(runner.alive())
    else:
        assert run(runner.alive()) is alive
    assert run(runner.running()) is (code == 0)
