"""`make bench`: failover time and footprint of the agent, measured in the lab.

Failover time: the active node is cut off (both its switch ports down) and
the clock runs until the client gets its first answer at the VIP from the
other node. Repeated RUNS times, alternating which node is active. Then the
agent's idle CPU (% of one core) and RSS on the active node over a quiet
minute. Prints a table; numbers, not pass/fail (targets live in the README).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from mosqit_failover.lab import deploy, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab, down, up
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, LabPlan


def failover_once(lab: Lab, plan: LabPlan, probe: Probe) -> tuple[float, float]:
    """Cut the active off; return (ms to the first answer from the standby, outage ms)."""
    roles = deploy.wait_pair(lab.nodes, timeout=40)
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    standby = next(n for n, r in roles.items() if r == "STANDBY")
    probe.wait_answer_from(active, after=time.time(), timeout=10)
    time.sleep(0.5)
    t_cut = time.time()
    for net in NETS:
        faults.port_down(plan, active, net)
    answer = probe.wait_answer_from(standby, after=t_cut, timeout=15)
    time.sleep(0.3)
    outage = probe.longest_gap_ms(t_cut - 0.2, time.time())
    for net in NETS:
        faults.port_up(plan, active, net)
    deploy.wait_roles(lab.nodes, {standby: "ACTIVE", active: "STANDBY"}, timeout=30)
    return 1000 * (answer.recv - t_cut), outage


def agent_footprint(lab: Lab, node: str, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS MB) of the agent on `node` over `seconds`."""
    target = lab[node]
    pid = target.systemctl("show", "-p", "MainPID", "--value", deploy.UNIT).stdout.strip()
    ticks = int(target.run(["getconf", "CLK_TCK"]).stdout)

    def cpu() -> float:
        fields = target.read_file(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    start_cpu, start = cpu(), time.monotonic()
    time.sleep(seconds)
    used = cpu() - start_cpu
    elapsed = time.monotonic() - start
    status = target.read_file(f"/proc/{pid}/status")
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return 100 * used / elapsed, rss_kb / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", default="100ms", help="probe interval for the agent")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    args = parser.parse_args(argv)
    plan = DEFAULT_PLAN
    try:
        lab = up(plan)
        deploy.install(
            lab.nodes, plan, timing={"interval": args.interval, "heartbeat": _half(args.interval)}
        )
        deploy.start(lab.nodes)
        deploy.wait_pair(lab.nodes)
        results = []
        with Probe(plan, duration=3600) as probe:
            for run in range(args.runs):
                failover, outage = failover_once(lab, plan, probe)
                results.append((failover, outage))
                print(
                    f"run {run + 1:2}: failover {failover:6.0f} ms, outage {outage:6.0f} ms",
                    flush=True,
                )
        roles = deploy.wait_pair(lab.nodes)
        active = next(n for n, r in roles.items() if r == "ACTIVE")
        cpu, rss = agent_footprint(lab, active, args.idle)
    finally:
        down(plan)
    times = [f for f, _ in results]
    print(
        f"\nmosqit-failover, probe interval {args.interval}, {args.runs} runs "
        "(active cut off -> first client answer from the standby):"
    )
    print(
        f"  failover median {statistics.median(times):.0f} ms, worst {max(times):.0f} ms, "
        f"best {min(times):.0f} ms"
    )
    print(f"  idle agent on the active node: CPU {cpu:.2f} % of one core, RSS {rss:.1f} MB")
    return 0


def _half(interval: str) -> str:
    from mosqit_failover.config import parse_duration

    return f"{parse_duration(interval) * 500:.0f}ms"


if __name__ == "__main__":
    sys.exit(main())
