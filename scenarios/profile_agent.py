"""Idle footprint of the agent in the lab, and where its CPU goes (py-spy).

    MQLAB_PREFIX=mqcpu- python -m mosqit_failover.lab.scenarios.profile_agent [--seconds 30]
        [--rounds 1] [--interval 100ms | --profile fast] [--timing KEY=VALUE]...
        [--echo OLD_ECHO.py] [--pyspy FILE.txt|FILE.svg]

Builds the lab like `make bench` (control.up, deploy.install, deploy.start,
deploy.wait_pair), measures both agents at once as `make bench` does (the
CPU of each agent's unit from its cgroup over ``--seconds``, in microseconds;
the RSS of the unit's processes at the end) ``--rounds`` times, then each
one's user/system split and wake-ups per second over 10 s, optionally a
``py-spy record`` of the active agent (``.svg``: flame graph; otherwise
collapsed stacks, summarized hottest first), and always tears the lab down.

``--echo FILE`` runs the agents with FILE as ``mosqit_failover.probes.echo``
(e.g. ``git show HEAD:mosqit_failover/probes/echo.py > /tmp/echo_before.py``),
so two prober implementations can be compared under the same agent code.
Use your own MQLAB_PREFIX when someone else's lab may be up.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mosqit_failover.config import parse_duration
from mosqit_failover.lab import deploy
from mosqit_failover.lab.control import down, run_tool, up
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios import measure
from mosqit_failover.lab.topology import DEFAULT_PLAN

OVERRIDE_DIR = "/etc/mosqit-failover/profile"
LAUNCHER = """\
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("mosqit_failover.probes.echo", sys.argv.pop(1))
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # before the package imports its own echo
spec.loader.exec_module(module)
from mosqit_failover.cli import main

sys.exit(main())
"""


def use_echo(node: Node, source: Path) -> None:
    """Make the agent of ``node`` run with ``source`` as its echo prober module."""
    python = deploy.PYTHON  # the packaged agent's interpreter
    node.write_file(f"{OVERRIDE_DIR}/echo.py", source.read_text())
    node.write_file(f"{OVERRIDE_DIR}/launch.py", LAUNCHER)
    node.write_file(
        f"/etc/systemd/system/{deploy.UNIT}.d/profile-echo.conf",
        "[Service]\nExecStart=\n"
        f"ExecStart={python} {OVERRIDE_DIR}/launch.py {OVERRIDE_DIR}/echo.py agent "
        f"--config {deploy.CONFIG_PATH}\n",
    )
    node.systemctl("daemon-reload")


def footprint(nodes: dict[str, Node], seconds: float) -> dict[str, tuple[float, float]]:
    """Per node, (CPU % of one core of the agent's unit over ``seconds``, its RSS in MB)."""
    before = measure.on_each(nodes, measure.unit_cpu)
    time.sleep(seconds)
    cpu = measure.cpu_percent(before, measure.on_each(nodes, measure.unit_cpu))
    rss = measure.on_each(nodes, measure.unit_rss)
    return {name: (cpu[name], rss[name]) for name in nodes}


def detail(nodes: dict[str, Node], seconds: float) -> dict[str, str]:
    """Per node, the agent's user/system split and its wake-ups (voluntary context
    switches) and preemptions (involuntary ones) per second."""
    readers: dict[str, Callable[[Node], tuple[float, float]]] = {
        "user": lambda node: measure.unit_cpu(node, key="user_usec"),
        "system": lambda node: measure.unit_cpu(node, key="system_usec"),
        "wakeups": measure.unit_wakeups,
        "preempted": measure.unit_preemptions,
    }

    before = {what: measure.on_each(nodes, reader) for what, reader in readers.items()}
    time.sleep(seconds)
    rates = {
        what: measure.per_second(before[what], measure.on_each(nodes, reader))
        for what, reader in readers.items()
    }
    out: dict[str, str] = {}
    for name in nodes:
        rate = {what: rates[what][name] for what in readers}
        out[name] = (
            f"user {100 * rate['user']:.2f} %, system {100 * rate['system']:.2f} %, "
            f"{rate['wakeups']:.0f} wake-ups + {rate['preempted']:.0f} preemptions/s"
        )
    return out


def pyspy(node: Node, out: str, seconds: float, rate: int = 250) -> None:
    """``py-spy record`` of the agent, run inside the node (its mounts hold the interpreter)."""
    binary = Path(sys.executable).parent / "py-spy"  # the venv is bind-mounted into the node
    if not binary.exists():
        raise SystemExit("py-spy missing: .venv/bin/pip install py-spy")
    pid = str(deploy.main_pid(node))
    # /proc/PID/maps names the interpreter by its host path under the node's root,
    # which does not exist inside the node: make that path lead back to /.
    exe = node.run(["readlink", f"/proc/{pid}/exe"]).stdout.strip()
    real = os.path.realpath(deploy.PYTHON)  # the agent's interpreter, by its own path
    if exe != real and exe.endswith(real):
        root = exe[: -len(real)]
        link = 'test -e "$1" || { mkdir -p "$(dirname "$1")" && ln -s / "$1"; }'
        node.run(["sh", "-c", link, "sh", root])
    fmt = "flamegraph" if out.endswith(".svg") else "raw"
    inside = f"/tmp/profile-agent.{fmt}"
    argv = [str(binary), "record", "--pid", pid, "--duration", str(int(seconds))]
    argv += ["--rate", str(rate), "--format", fmt, "--output", inside, "--nonblocking", "--gil"]
    proc = node.run(argv, check=False, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"py-spy failed: {proc.stdout}{proc.stderr}")
    Path(out).write_text(node.read_file(inside))
    if fmt == "raw":
        summarize(Path(out), seconds * rate)


def host_pid(node: Node) -> int:
    """The host PID of the agent of ``node`` (same pid namespace as the node, NSpid match)."""
    inner = str(deploy.main_pid(node))
    pidns = os.readlink(f"/proc/{node.pid}/ns/pid")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != pidns:
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        nspid = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid")), [])
        if nspid and nspid[-1] == inner:
            return int(entry.name)
    raise RuntimeError(f"the agent of {node.name} (pid {inner} inside) is not visible here")


def perf(node: Node, out: str, seconds: float) -> None:
    """``perf record`` of the agent from the host, then the split by binary."""
    pid = str(host_pid(node))
    record = ["perf", "record", "-q", "-F", "997", "-g", "-o", out, "-p", pid]
    subprocess.run([*record, "--", "sleep", str(seconds)], check=True, capture_output=True)
    report = ["perf", "report", "-i", out, "--stdio", "--no-children", "--sort", "dso"]
    proc = subprocess.run([*report, "-g", "none"], check=True, capture_output=True, text=True)
    print("perf: samples by binary")
    print("\n".join(ln for ln in proc.stdout.splitlines() if ln.strip() and ln[0] != "#"))


def summarize(collapsed: Path, possible: float, top: int = 25) -> None:
    """Own and total sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"py-spy: {samples} busy samples of {possible:.0f} ({100 * samples / possible:.1f} %)")
    for title, counter in (("own time", own), ("including callees", total)):
        print(f"  {title} (% of busy samples):")
        for frame, n in counter.most_common(top):
            print(f"    {100 * n / samples:5.1f} %  {frame}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", default="100ms")
    parser.add_argument("--profile", help='a timing profile ("fast"); overrides --interval')
    parser.add_argument(
        "--timing",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another [timing] value, e.g. calm_heartbeat_networks=all (repeatable)",
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--echo", type=Path, help="run the agents with this echo module")
    parser.add_argument("--pyspy", help="record the active agent to this file")
    parser.add_argument("--pyspy-seconds", type=float, default=20.0)
    parser.add_argument("--pyspy-rate", type=int, default=250, help="samples a second")
    parser.add_argument("--perf", help="perf record the active agent to this file (host perf)")
    args = parser.parse_args(argv)
    plan = DEFAULT_PLAN
    heartbeat = f"{parse_duration(args.interval) * 500:.0f}ms"
    try:
        lab = up(plan)
        timing = {"interval": args.interval, "heartbeat": heartbeat}
        if args.profile:
            timing = {"profile": args.profile}
        timing.update(item.split("=", 1) for item in args.timing)
        deploy.install(lab.nodes, plan, timing=timing)
        if args.echo is not None:
            for node in lab.nodes.values():
                use_echo(node, args.echo)
        deploy.start(lab.nodes)
        roles = deploy.wait_pair(lab.nodes)
        active = lab[next(n for n, r in roles.items() if r == "ACTIVE")]
        standby = lab[next(n for n, r in roles.items() if r == "STANDBY")]
        time.sleep(args.settle)
        which = f"echo {args.echo}" if args.echo else "echo from the checkout"
        pair = {"active": active, "standby": standby}
        nodes = {n.name: n for n in pair.values()}
        for round_ in range(args.rounds):
            feet = footprint(nodes, args.seconds)
            said = ", ".join(
                f"{role} {n.name} CPU {feet[n.name][0]:.2f} % of one core, "
                f"RSS {feet[n.name][1]:.1f} MB"
                for role, n in pair.items()
            )
            print(f"round {round_ + 1} ({which}): {said}", flush=True)
        split = detail(nodes, 10.0)
        for role, node in pair.items():
            print(f"{role} {node.name}: {split[node.name]}", flush=True)
        print(f"active probes: {deploy.status(active).get('probes')}", flush=True)
        if args.pyspy:
            pyspy(active, args.pyspy, args.pyspy_seconds, args.pyspy_rate)
        if args.perf:
            perf(active, args.perf, args.pyspy_seconds)
    finally:
        down(plan)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("profile_agent", main))
