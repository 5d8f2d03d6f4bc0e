"""`make bench`: mosqit-failover against keepalived, in the same lab, in one run.

Both tools protect the same VIP and demo service on the same two systemd
nodes, one tool at a time (they would fight over the VIP). keepalived runs
VRRPv3 with unicast peers, track_interface on both uplinks, nopreempt (like
our default: no failback), its advert interval equal to our probe interval,
and notify scripts that start/stop the demo service.

Measured for each tool:
- failover: the VIP holder is cut off (both switch ports down) -> first client
  answer from the other node; RUNS runs at 100 ms and at 1 s; median, worst;
- false failovers during LOSS seconds of 30 % random loss on both networks;
- seconds with two VIP holders when the holder is frozen for 2 s;
- idle CPU (% of one core) of the tool's whole unit at 100 ms on the VIP holder and
  on the other node, the holder's RSS, and the platform's floor for our idle traffic
  (scenarios/wakeup_floor.py: a bare asyncio loop sending and receiving the same
  packets, measured right after ours, then the same loop in C).

Then the fast profile (`timing.profile = "fast"`, 20 ms probes) against
keepalived with 20 ms adverts (docs/timing.md): failover median/worst over
--fast-runs cuts, false failovers during --loss-seconds (300) of 30 % loss on
both networks, idle CPU and RSS on each node (and, for our agent, its message
rates). `--only fast` runs that section alone, `--only standard` the rest.
Prints numbers and our/keepalived ratios; no pass/fail (targets: README,
docs/timing.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mosqit_failover.lab import deploy, faults, keepalived
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab, down, run_tool, up
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios import wakeup_floor
from mosqit_failover.lab.scenarios.harness import agent_vip_spans, overlap
from mosqit_failover.lab.scenarios.measure import (
    agent_messages,
    cpu_percent,
    on_each,
    unit_cpu,
    unit_rss,
    us_per,
)
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, LabPlan

OURS, THEIRS = "mosqit-failover", "keepalived"


@dataclass
class Tool:
    name: str
    unit: str
    start: Callable[[Lab, LabPlan, float], None]
    stop: Callable[[Lab], None]
    promotions: Callable[[Node, float], int]  # times the node became the VIP holder since t
    spans: Callable[[Node, float, float], list[tuple[float, float]]]
    start_fast: Callable[[Lab, LabPlan], None]
    # prints what tells why a false failover happened (None: the tool's logs do not say)
    explain: Callable[[Lab, float], None] | None = None
    failovers: dict[float, list[float]] = field(default_factory=dict)  # interval -> ms
    false_failovers: int = 0
    frozen_dual: float = 0.0
    idle_cpu: float = 0.0  # the VIP holder's
    idle_rss: float = 0.0
    # the other node's, measured in the same window: of two nodes one follows the
    # other's heartbeat and wakes half as often (docs/timing.md); keepalived's backup
    idle_cpu_other: float = 0.0
    # a bare asyncio loop with the same idle packets, right after (scenarios/wakeup_floor.py)
    floor: dict[str, float] = field(default_factory=dict)
    floor_c: dict[str, float] = field(default_factory=dict)  # the same loop in C
    fast: FastResult | None = None


@dataclass
class FastResult:
    """One tool's numbers with the fast profile (ours) or 20 ms adverts (keepalived)."""

    failovers: list[float] = field(default_factory=list)  # ms
    decided: list[float] = field(default_factory=list)  # ms to the takeover decision
    false_failovers: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # node -> % of one core
    rss: dict[str, float] = field(default_factory=dict)  # node -> MB
    loss_cpu: dict[str, float] = field(default_factory=dict)  # node -> % during the loss
    rates: dict[str, tuple[float, float]] = field(default_factory=dict)  # node -> link, echo /s
    load: list[str] = field(default_factory=list)  # the host's load while measuring
    floor: dict[str, float] = field(default_factory=dict)  # see Tool.floor
    floor_c: dict[str, float] = field(default_factory=dict)


def _start_ours(lab: Lab, plan: LabPlan, interval: float) -> None:
    half = f"{interval * 500:.0f}ms"
    deploy.install(
        lab.nodes, plan, timing={"interval": f"{interval * 1000:.0f}ms", "heartbeat": half}
    )
    deploy.start(lab.nodes)
    deploy.wait_pair(lab.nodes, timeout=40)


FAST_ADVERT = 0.02  # keepalived's advert interval against the fast profile's probes


def _start_ours_fast(lab: Lab, plan: LabPlan) -> None:
    deploy.install(lab.nodes, plan, timing={"profile": "fast"})
    deploy.start(lab.nodes)
    deploy.wait_pair(lab.nodes, timeout=40)


def _start_keepalived_fast(lab: Lab, plan: LabPlan) -> None:
    _start_keepalived(lab, plan, FAST_ADVERT)


def _stop_ours(lab: Lab) -> None:
    for node in lab.nodes.values():
        node.systemctl("stop", deploy.UNIT, check=False, timeout=60)
        deploy.forget_epochs(node)


def _start_keepalived(lab: Lab, plan: LabPlan, interval: float) -> None:
    keepalived.install(lab.nodes, plan, interval)
    keepalived.start(lab.nodes)
    _wait_one_holder(lab, plan, timeout=30)


def _stop_keepalived(lab: Lab) -> None:
    keepalived.stop(lab.nodes)


def _our_promotions(node: Node, since: float) -> int:
    return sum(1 for e in deploy.decisions(node, since) if e["DECISION"] in ("promote",))


def _explain_ours(lab: Lab, since: float) -> None:
    """Our agents' lines that tell why a false failover happened (the lab and its journals
    are gone after the run): each role change with its reason, and any stall."""
    for name, node in lab.nodes.items():
        for entry in node.journal(identifier="mosqit-failover", since=since):
            text = str(entry.get("MESSAGE", ""))
            if " -> " in text or "stalled" in text or "was not scheduled" in text:
                at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - since
                print(f"     {name} +{at:.3f}s {text[:300]}", flush=True)


def _their_promotions(node: Node, since: float) -> int:
    return sum(
        1
        for e in node.journal(unit=keepalived.UNIT, since=since)
        if "Entering MASTER STATE" in str(e.get("MESSAGE", ""))
    )


TOOLS = [
    Tool(
        OURS,
        deploy.UNIT,
        _start_ours,
        _stop_ours,
        _our_promotions,
        agent_vip_spans,
        _start_ours_fast,
        explain=_explain_ours,
    ),
    Tool(
        THEIRS,
        keepalived.UNIT,
        _start_keepalived,
        _stop_keepalived,
        _their_promotions,
        keepalived.vip_spans,
        _start_keepalived_fast,
    ),
]


def _holders(lab: Lab, plan: LabPlan) -> list[str]:
    return [name for name, node in lab.nodes.items() if deploy.holds_vip(node, plan)]


def _wait_one_holder(lab: Lab, plan: LabPlan, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        holders = _holders(lab, plan)
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.2)
    raise TimeoutError(f"no single VIP holder within {timeout}s: {_holders(lab, plan)}")


def _settle(lab: Lab, plan: LabPlan, tool: Tool, interval: float) -> str:
    """Wait until the pair is calm again: one holder, the other a ready backup."""
    holder = _wait_one_holder(lab, plan, timeout=40)
    if tool.name == OURS:
        deploy.wait_pair(lab.nodes, timeout=40)
    else:
        time.sleep(max(3.0, 4 * interval))  # track_interface up again, BACKUP adverts heard
    return _wait_one_holder(lab, plan, timeout=10) if holder else holder


def failover_once(lab: Lab, plan: LabPlan, probe: Probe, tool: Tool, interval: float) -> float:
    return failover_timed(lab, plan, probe, tool, interval)[0]


def failover_timed(
    lab: Lab, plan: LabPlan, probe: Probe, tool: Tool, interval: float
) -> tuple[float, float | None]:
    """(ms from the cut to the first client answer from the other node, ms from the cut to
    its decision to take over, from its journal: the failover without the service start)."""
    holder = _settle(lab, plan, tool, interval)
    other = next(n for n in lab.nodes if n != holder)
    probe.wait_answer_from(holder, after=time.time(), timeout=10)
    time.sleep(0.5)
    t_cut = time.time()
    faults.isolate(plan, holder)
    answer = probe.wait_answer_from(other, after=t_cut, timeout=30)
    time.sleep(0.3)
    faults.rejoin(plan, holder)
    decided = _decided_at(lab[other], tool, t_cut)
    return 1000 * (answer.recv - t_cut), None if decided is None else 1000 * (decided - t_cut)


def _decided_at(node: Node, tool: Tool, since: float) -> float | None:
    """When the node decided to take over (our promote decision, keepalived's MASTER)."""
    if tool.name == OURS:
        entries = [e for e in deploy.decisions(node, since) if e["DECISION"] == "promote"]
    else:
        entries = [
            e
            for e in node.journal(unit=keepalived.UNIT, since=since)
            if "Entering MASTER STATE" in str(e.get("MESSAGE", ""))
        ]
    if not entries:
        return None
    first = entries[0]  # the sender's own clock when journald has it
    return int(first.get("_SOURCE_REALTIME_TIMESTAMP") or first["__REALTIME_TIMESTAMP"]) / 1e6


def false_failovers(lab: Lab, plan: LabPlan, tool: Tool, seconds: float) -> int:
    _settle(lab, plan, tool, 0.1)
    t0 = time.time()
    for net in NETS:
        faults.loss(plan, net, 30)
    time.sleep(seconds)
    for net in NETS:
        faults.clear_loss(plan, net)
    time.sleep(2)
    count = sum(tool.promotions(node, t0) for node in lab.nodes.values())
    if count and tool.explain is not None:
        tool.explain(lab, t0)
    return count


def frozen_dual_seconds(lab: Lab, plan: LabPlan, tool: Tool) -> float:
    holder = _settle(lab, plan, tool, 0.1)
    t0 = time.time()
    lab[holder].freeze()
    time.sleep(2.0)
    lab[holder].thaw()
    time.sleep(5.0)
    end = time.time()
    # spans from the whole journal (the holder claimed the VIP before t0), counted from t0
    first, second = (tool.spans(node, 0.0, end) for node in lab.nodes.values())
    return sum(max(0.0, hi - max(lo, t0)) for lo, hi in overlap(first, second))


def unit_footprint(node: Node, unit: str, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS MB) of every process of a unit, over `seconds`."""
    before, start = unit_cpu(node, unit)
    time.sleep(seconds)
    after, end = unit_cpu(node, unit)
    return 100 * (after - before) / (end - start), unit_rss(node, unit)


def measure(lab: Lab, plan: LabPlan, probe: Probe, tool: Tool, args: argparse.Namespace) -> None:
    for interval in (0.1, 1.0):
        tool.start(lab, plan, interval)
        times = []
        for run in range(args.runs):
            times.append(failover_once(lab, plan, probe, tool, interval))
            print(f"   {tool.name} @{interval:g}s run {run + 1}: {times[-1]:.0f} ms", flush=True)
        tool.failovers[interval] = times
        if interval == 0.1:
            tool.false_failovers = false_failovers(lab, plan, tool, args.loss)
            tool.frozen_dual = frozen_dual_seconds(lab, plan, tool)
            holder = _settle(lab, plan, tool, interval)
            idle = on_each(lab.nodes, lambda node: unit_footprint(node, tool.unit, args.idle))
            tool.idle_cpu, tool.idle_rss = idle[holder]
            tool.idle_cpu_other = max(cpu for name, (cpu, _) in idle.items() if name != holder)
        tool.stop(lab)
        if interval == 0.1 and tool.name == OURS:
            tool.floor, tool.floor_c = _floors(lab, plan, interval, args.idle, peer_echo=False)


def _floors(
    lab: Lab, plan: LabPlan, interval: float, seconds: float, *, peer_echo: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """The floor (% of a core per node) of the Python loop, then of the C loop."""
    found = []
    for language, loop in (("python", "a bare asyncio loop"), ("c", "the same loop in C")):
        floors = wakeup_floor.measure(
            lab, plan, interval, seconds, peer_echo=peer_echo, language=language
        )
        shown = ", ".join(
            f"{n} {f.cpu:.2f} % ({f.sent:.0f} packets sent/s, {f.received:.0f} received/s)"
            for n, f in sorted(floors.items())
        )
        print(f"   floor ({loop}, the same idle packets): {shown} ({_load()})", flush=True)
        found.append({name: seen.cpu for name, seen in floors.items()})
    return found[0], found[1]


FLOOR_NOTE = (
    "floor: a bare asyncio loop sending and receiving the same idle packets, no logic, "
    "measured right after ours; its ratio is ours / floor. in C: the same loop in C "
    "(with HMAC), what a C helper for the calm steady state would cost at least"
)
CALM = 6.0  # the agent's heartbeat slows to calm_heartbeat after 5 s without trouble


def _load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure_fast(
    lab: Lab, plan: LabPlan, probe: Probe, tool: Tool, args: argparse.Namespace
) -> FastResult:
    """Failovers, false failovers at 30 % loss and each node's idle footprint, with the
    fast profile (ours) or 20 ms adverts (keepalived)."""
    result = FastResult(load=[_load()])
    if args.realtime:
        _realtime(lab, tool.unit, True)
    tool.start_fast(lab, plan)
    try:
        for run in range(args.fast_runs):
            answered, decided = failover_timed(lab, plan, probe, tool, FAST_ADVERT)
            result.failovers.append(answered)
            if decided is not None:
                result.decided.append(decided)
            shown = "?" if decided is None else f"{decided:.0f}"
            print(
                f"   {tool.name} fast run {run + 1}: {answered:.0f} ms, decided after {shown} ms "
                f"({_load()})",
                flush=True,
            )
        result.load.append(_load())
        # the CPU under loss too: every missed echo is trouble, and trouble is the fast
        # heartbeat (docs/timing.md), so this is the profile's busiest steady state
        before = on_each(lab.nodes, lambda node: unit_cpu(node, tool.unit))
        result.false_failovers = false_failovers(lab, plan, tool, args.loss_seconds)
        after = on_each(lab.nodes, lambda node: unit_cpu(node, tool.unit))
        result.loss_cpu = cpu_percent(before, after)
        print(
            f"   {tool.name} fast: {result.false_failovers} false failover(s) in "
            f"{args.loss_seconds:g}s at 30% loss, CPU "
            + ", ".join(f"{n} {c:.1f} %" for n, c in sorted(result.loss_cpu.items()))
            + f" ({_load()})",
            flush=True,
        )
        result.load.append(_load())
        _settle(lab, plan, tool, FAST_ADVERT)
        time.sleep(CALM)
        counts = on_each(lab.nodes, agent_messages) if tool.name == OURS else {}
        footprint = on_each(lab.nodes, lambda node: unit_footprint(node, tool.unit, args.idle))
        if counts:
            after = on_each(lab.nodes, agent_messages)
            for name, (link0, echo0, t0) in counts.items():
                link1, echo1, t1 = after[name]
                result.rates[name] = ((link1 - link0) / (t1 - t0), (echo1 - echo0) / (t1 - t0))
        result.load.append(_load())
        for name, (cpu, rss) in sorted(footprint.items()):
            result.cpu[name], result.rss[name] = cpu, rss
            print(
                f"   {tool.name} fast idle {name}: {cpu:.2f} % of a core, {rss:.1f} MB", flush=True
            )
    finally:
        tool.stop(lab)
        if args.realtime:
            _realtime(lab, tool.unit, False)
    if tool.name == OURS:  # the fast profile echoes its peer every slot
        result.floor, result.floor_c = _floors(lab, plan, FAST_ADVERT, args.idle, peer_echo=True)
    return result


REALTIME_DROPIN = "/etc/systemd/system/{unit}.d/50-bench-realtime.conf"


def _realtime(lab: Lab, unit: str, on: bool) -> None:
    """Run the unit with round-robin real-time scheduling (or undo it): what docs/timing.md
    suggests for the fast profile on a host that other work keeps busy."""
    path = REALTIME_DROPIN.format(unit=unit)
    for node in lab.nodes.values():
        if on:
            node.run(["mkdir", "-p", path.rsplit("/", 1)[0]])
            node.write_file(path, "[Service]\nCPUSchedulingPolicy=rr\nCPUSchedulingPriority=10\n")
        else:
            node.run(["rm", "-f", path], check=False)
        node.systemctl("daemon-reload")


def _commit() -> str:
    """The checkout's commit (the agent in the lab is its package: deploy refuses a stale one)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        return "?"


def report_fast(ours: FastResult, theirs: FastResult, args: argparse.Namespace) -> None:
    print(
        f'\nfast profile (timing.profile = "fast", 20 ms probes) against keepalived '
        f"(advert_int {FAST_ADVERT:g}), {args.fast_runs} cuts each, checkout at {args.commit} "
        "when the run started" + (", both units real-time (rr 10)" if args.realtime else "")
    )
    print(f"{'':34}{OURS:>18}{THEIRS:>14}{'ratio':>8}")
    for name, fn in (("median", statistics.median), ("worst", max)):
        x, y = fn(ours.failovers), fn(theirs.failovers)
        print(f"{'failover @20ms ' + name + ' (ms)':34}{x:18.0f}{y:14.0f}{x / y:8.2f}")
    if ours.decided and theirs.decided:
        for name, fn in (("median", statistics.median), ("worst", max)):
            x, y = fn(ours.decided), fn(theirs.decided)
            print(f"{'decided to take over ' + name + ' (ms)':34}{x:18.0f}{y:14.0f}{x / y:8.2f}")
    label = f"false failovers, {args.loss_seconds:g}s at 30% loss"
    print(f"{label:34}{ours.false_failovers:18d}{theirs.false_failovers:14d}")
    for node in sorted(ours.cpu):
        x, y = ours.cpu[node], theirs.cpu.get(node, 0.0)
        ratio = f"{x / y:8.1f}" if y else ""
        print(f"{'idle CPU ' + node + ' (% of a core)':34}{x:18.2f}{y:14.2f}{ratio}")
    for node in sorted(ours.floor):
        x, floor = ours.cpu.get(node, 0.0), ours.floor[node]
        print(f"{'floor ' + node + ' (% of a core)':34}{floor:18.2f}{'':14}{x / floor:8.1f}")
    for node in sorted(ours.floor_c):
        x, floor = ours.cpu.get(node, 0.0), ours.floor_c[node]
        print(f"{'  in C ' + node + ' (% of a core)':34}{floor:18.2f}{'':14}{x / floor:8.1f}")
    if ours.floor:
        print(FLOOR_NOTE)
    for node in sorted(ours.loss_cpu):
        x, y = ours.loss_cpu[node], theirs.loss_cpu.get(node, 0.0)
        ratio = f"{x / y:8.1f}" if y else ""
        print(f"{'CPU at 30% loss ' + node + ' (%)':34}{x:18.2f}{y:14.2f}{ratio}")
    for node in sorted(ours.rss):
        x, y = ours.rss[node], theirs.rss.get(node, 0.0)
        ratio = f"{x / y:8.1f}" if y else ""
        print(f"{'idle RSS ' + node + ' (MB)':34}{x:18.1f}{y:14.1f}{ratio}")
    for node, (link, echo) in sorted(ours.rates.items()):
        cpu_us = us_per(ours.cpu[node], link + echo)
        print(
            f"our {node} at idle: {link:.0f} peer datagrams/s, {echo:.0f} echo probes+replies/s, "
            f"{cpu_us:.0f} us of CPU per datagram"
        )
    print(f"host load (1, 5, 15 min): ours {', '.join(ours.load)}")
    print(f"{'':30}keepalived {', '.join(theirs.load)}")


def report(ours: Tool, theirs: Tool, args: argparse.Namespace) -> None:
    print(
        f"\nfailover = holder cut off -> first client answer from the other node "
        f"({args.runs} runs each)"
    )
    print(f"{'':34}{OURS:>18}{THEIRS:>14}{'ratio':>8}")
    for interval in (0.1, 1.0):
        a, b = ours.failovers[interval], theirs.failovers[interval]
        for name, fn in (("median", statistics.median), ("worst", max)):
            x, y = fn(a), fn(b)
            label = f"failover @{interval:g}s {name} (ms)"
            print(f"{label:34}{x:18.0f}{y:14.0f}{x / y:8.2f}")
    rows = [
        (
            f"false failovers, {args.loss:g}s at 30% loss",
            ours.false_failovers,
            theirs.false_failovers,
        ),
        ("two VIP holders, 2 s freeze (s)", ours.frozen_dual, theirs.frozen_dual),
    ]
    for label, x, y in rows:
        print(f"{label:34}{x:18.3g}{y:14.3g}")
    cpu_a, cpu_b = ours.idle_cpu, theirs.idle_cpu
    rss_a, rss_b = ours.idle_rss, theirs.idle_rss
    print(f"{'idle CPU @100ms (% of a core)':34}{cpu_a:18.2f}{cpu_b:14.2f}{cpu_a / cpu_b:8.1f}")
    other_a, other_b = ours.idle_cpu_other, theirs.idle_cpu_other
    ratio = f"{other_a / other_b:8.1f}" if other_b else ""
    print(f"{'  the other node (standby, backup)':34}{other_a:18.2f}{other_b:14.2f}{ratio}")
    if ours.floor:
        floor = sum(ours.floor.values()) / len(ours.floor)
        print(f"{'floor @100ms (% of a core)':34}{floor:18.2f}{'':14}{cpu_a / floor:8.1f}")
    if ours.floor_c:
        floor = sum(ours.floor_c.values()) / len(ours.floor_c)
        print(f"{'  in C (% of a core)':34}{floor:18.2f}{'':14}{cpu_a / floor:8.1f}")
    if ours.floor:
        print(FLOOR_NOTE)
    print(f"{'idle RSS (MB)':34}{rss_a:18.1f}{rss_b:14.1f}{rss_a / rss_b:8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="failovers per tool and interval")
    parser.add_argument(
        "--loss", type=float, default=180.0, help="seconds of 30%% loss (the 100 ms section)"
    )
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    parser.add_argument(
        "--only",
        choices=("all", "standard", "fast"),
        default="all",
        help="standard: the 100 ms and 1 s sets; fast: the fast profile against keepalived "
        "at 20 ms adverts (default: both)",
    )
    parser.add_argument(
        "--fast-runs", type=int, default=20, help="failovers per tool with the fast profile"
    )
    parser.add_argument(
        "--loss-seconds",
        type=float,
        default=300.0,
        help="seconds of 30%% loss in the fast-profile section (a short one for a smoke run)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="fast section: run both tools' units with CPUSchedulingPolicy=rr (a busy host)",
    )
    args = parser.parse_args(argv)
    args.commit = _commit()  # the package deployed is this tree's (deploy refuses a stale one)
    plan = DEFAULT_PLAN
    ours, theirs = TOOLS
    try:
        lab = up(plan)
        with Probe(plan, duration=24 * 3600) as probe:
            if args.only in ("all", "standard"):
                for tool in (ours, theirs):
                    print(f"== {tool.name}", flush=True)
                    measure(lab, plan, probe, tool, args)
            if args.only in ("all", "fast"):
                for tool in (ours, theirs):
                    print(f"== {tool.name}, fast profile", flush=True)
                    tool.fast = measure_fast(lab, plan, probe, tool, args)
    finally:
        down(plan)
    if args.only in ("all", "standard"):
        report(ours, theirs, args)
    if ours.fast is not None and theirs.fast is not None:
        report_fast(ours.fast, theirs.fast, args)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench", main))
