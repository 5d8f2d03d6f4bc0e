"""The package is upgraded on a running pair: the agent restarts in place, no switchover.

The active node is upgraded first, the way an operator does it (``apt-get install
./file.deb``), while the client probes the VIP. The postinst sends the running agent
SIGUSR2: it exits without handing over, systemd restarts it (``Restart=always``) and
the new agent adopts the VIP and the services it finds (``adopt``, ``reclaim``). The
standby must not promote, the client must not move to it, and the VIP sampler must
never see it on both nodes. Then the standby is upgraded (``dpkg -i``): its agent
restarts too, and no role changes. Both nodes end with the newer version installed.

The newer package is the one the lab installed (dist/, or MQLAB_PACKAGE) with only
its version raised (VERSION+upgradetest1; +upgradetest2 when played again in one lab),
built in a directory under the checkout's build/, which the nodes see through their
bind mount of the checkout. The lab's own install keeps a policy-rc.d in the node while
dpkg runs (it would forbid the restart); this upgrade runs with none, as on a server.
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from mosqit_failover.lab import deploy, netns
from mosqit_failover.lab.scenarios.harness import ROUTINE, LabScenario, Run
from mosqit_failover.wizards.package import APT

SUFFIX = "+upgradetest"  # and a number: sorts after the version it is appended to
MAX_GAP_MS = 500.0
# as an operator would run them (the wizard's apt options: no question, conffiles kept)
INSTALL = {"apt-get install": f"{APT} -y install", "dpkg -i": deploy.DPKG_INSTALL}
_VERSION = re.compile(r"^Version: *(\S+) *$", re.MULTILINE)


def build_newer(deb: Path, into: Path, installed: Iterable[str] = ()) -> tuple[Path, str]:
    """A copy of ``deb`` whose version is VERSION+upgradetestN, built in ``into``.

    N is 1, or one more than in any of the ``installed`` versions (the scenario played
    twice in one lab upgrades again). Returns (the new file, its version). Nothing else
    of the package changes."""
    tree = into / "tree"
    netns.run(["dpkg-deb", "-R", str(deb), str(tree)], timeout=300)
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    match = _VERSION.search(text)
    if match is None:
        raise RuntimeError(f"{deb.name}: no Version field in DEBIAN/control")
    done = re.compile(re.escape(match[1] + SUFFIX) + r"(\d+)")
    count = max((int(m[1]) for v in installed if (m := done.fullmatch(v))), default=0)
    version = f"{match[1]}{SUFFIX}{count + 1}"
    control.write_text(text[: match.start()] + f"Version: {version}" + text[match.end() :])
    newer = into / f"{deploy.PACKAGE}_{version.split(':')[-1]}_all.deb"
    netns.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(newer)], timeout=300)
    shutil.rmtree(tree)
    return newer, version


def _upgrade(run: Run, node: str, how: str, deb: Path) -> float:
    """Install ``deb`` on ``node`` with ``how`` (a key of INSTALL); return when it began."""
    present = run.lab[node].run(["test", "-e", deploy.POLICY_RC_D], check=False).returncode == 0
    run.expect(not present, f"{node}: {deploy.POLICY_RC_D} exists and would forbid the restart")
    at = run.fault(f"{how} {deb.name} on {node}")
    script = f'{INSTALL[how]} "$1"'
    proc = run.lab[node].run(["sh", "-c", script, "sh", str(deb)], check=False, timeout=300)
    output = (proc.stdout + proc.stderr).strip()
    run.expect(proc.returncode == 0, f"{node}: {how} {deb.name} failed: {output[-800:]}")
    return at


def _new_pid(run: Run, node: str, old_pid: int) -> int:
    """Wait for ``node``'s agent to run again under another PID; its PID then (or now)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        pid = run.agent_pid(node)
        if pid not in (0, old_pid) and run.lab[node].is_active(deploy.UNIT):
            return pid
        time.sleep(0.2)
    run.expect(False, f"{node}: the agent was not restarted (PID {old_pid})")
    return run.agent_pid(node)


def _decided(run: Run, node: str, first: list[str], since: float, timeout: float) -> list[str]:
    """``node``'s decisions since ``since``, once they start with ``first`` (or at timeout)."""
    deadline = time.time() + timeout
    kinds = run.kinds(node, since=since)
    while kinds[: len(first)] != first and time.time() < deadline:
        time.sleep(0.2)
        kinds = run.kinds(node, since=since)
    return kinds


def _sigusr2_at(run: Run, node: str, since: float) -> float | None:
    """When ``node``'s agent logged its restart in place on SIGUSR2 (None: it did not)."""
    for entry in run.lab[node].journal(identifier="mosqit-failover", since=since):
        if "restarting in place on SIGUSR2" in str(entry.get("MESSAGE", "")):
            return int(entry["__REALTIME_TIMESTAMP"]) / 1e6
    return None


def _gap(run: Run, t0: float, t1: float, restart: float | None) -> tuple[float, str]:
    """The client's longest gap in [t0, t1] in ms, and where it was (seconds after t0)."""
    times = [t0, *(a.recv for a in run.probe.snapshot(t0, t1)), t1]
    width, start = max((b - a, a) for a, b in itertools.pairwise(times))
    where = f"at +{start - t0:.2f}s"
    if restart is not None:
        where += f", SIGUSR2 at +{restart - t0:.2f}s"
    return width * 1000.0, where


def _installed(run: Run, node: str, what: str = "${Status} ${Version}") -> str:
    proc = run.lab[node].run(["dpkg-query", "-W", f"-f={what}", deploy.PACKAGE], check=False)
    return proc.stdout.strip()


def play(run: Run) -> None:
    active, standby = run.active, run.standby
    build = run.plan.project_dir / "build"  # under the checkout: the nodes see it
    build.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="lab-upgrade-", dir=build))
    try:
        deb = deploy.package_file(run.plan.project_dir)
        before = [_installed(run, name, "${Version}") for name in (active, standby)]
        newer, version = build_newer(deb, workdir, before)
        pids = {name: run.agent_pid(name) for name in (active, standby)}

        # the active first: its agent restarts in place, the standby stays out of it
        at = _upgrade(run, active, "apt-get install", newer)
        pid = _new_pid(run, active, pids[active])
        run.wait_roles({active: "ACTIVE", standby: "STANDBY"})
        _decided(run, active, ["adopt", "reclaim"], at, timeout=15)
        restart = _sigusr2_at(run, active, at)
        run.expect(restart is not None, f"{active}: no SIGUSR2 restart line")
        run.wait(2)  # a late move by the standby would show by now
        at2 = time.time()
        kinds = run.kinds(active, since=at, until=at2)
        others = run.kinds(standby, since=at, until=at2)
        gap, where = _gap(run, at, at2, restart)
        served = run.probe.who_answered(at, at2)
        print(
            f"   {active} upgraded: agent PID {pids[active]} -> {pid}, decided {kinds}; "
            f"{standby} decided {others}; longest client gap {gap:.0f} ms ({where}); "
            f"answers {dict(served)}",
            flush=True,
        )
        run.expect(kinds[:2] == ["adopt", "reclaim"], f"{active}'s new agent decided {kinds}")
        run.expect("promote" not in others, f"{standby} promoted: {others}")
        run.expect(set(others) <= ROUTINE, f"{standby} decided {others}")
        run.expect(run.agent_pid(standby) == pids[standby], f"{standby}'s agent restarted")
        run.expect(set(served) == {active}, f"the client was answered by {dict(served)}")
        run.expect(gap < MAX_GAP_MS, f"client gap {gap:.0f} ms on {active}'s upgrade")

        # then the standby: its agent restarts as well, and no role changes
        at3 = _upgrade(run, standby, "dpkg -i", newer)
        spid = _new_pid(run, standby, pids[standby])
        srestart = _sigusr2_at(run, standby, at3)
        run.expect(srestart is not None, f"{standby}: no SIGUSR2 restart line")
        run.wait(2)
        run.wait_roles({active: "ACTIVE", standby: "STANDBY"})
        end = time.time()
        gap2, where2 = _gap(run, at3, end, srestart)
        served2 = run.probe.who_answered(at3, end)
        decided = {name: run.kinds(name, since=at3) for name in (active, standby)}
        print(
            f"   {standby} upgraded: agent PID {pids[standby]} -> {spid}, decided "
            f"{decided[standby]}; {active} decided {decided[active]}; longest client gap "
            f"{gap2:.0f} ms ({where2}); answers {dict(served2)}",
            flush=True,
        )
        for name, its in decided.items():
            run.expect(set(its) <= ROUTINE, f"{name} decided {its} on {standby}'s upgrade")
        run.expect(run.agent_pid(active) == pid, f"{active}'s agent restarted again")
        run.expect(set(served2) == {active}, f"the client was answered by {dict(served2)}")
        run.expect(gap2 < MAX_GAP_MS, f"client gap {gap2:.0f} ms on {standby}'s upgrade")

        for name in (active, standby):
            installed = _installed(run, name)
            print(f"   {name}: dpkg-query -W: {installed}", flush=True)
            run.expect(
                installed == f"install ok installed {version}",
                f"{name}: {deploy.PACKAGE} is {installed!r}, not {version}",
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


SCENARIO = LabScenario(
    "package-upgrade",
    "the package is upgraded on the active, then the standby: agents restart in place",
    play,
    expected=frozenset({"adopt", "reclaim"}),
)
