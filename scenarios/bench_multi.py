"""`make bench`, three nodes and more: mosqit-failover against keepalived, one run.

    python -m mosqit_failover.lab.scenarios.bench_multi [--runs 8] [--nodes 2,3,5,8]
        (root; MQLAB_PREFIX=mqXX- beside other labs)

Part 1, one three-node lab (alpha, beta, gamma), our agent and then keepalived
protecting the same VIP and demo service, one tool at a time. Ours: order
alpha, beta, gamma, interval 100 ms. keepalived (lab/keepalived.py): VRRPv3,
unicast peers (every other node), track_interface on both uplinks, nopreempt,
advert interval 100 ms, priorities alpha 150 > beta 100 > gamma 50. Before each
run alpha is made the VIP holder again (ours: `switchover --to alpha`;
keepalived: restart the holder's keepalived, alpha has the highest priority).

- failover: alpha cut off (both switch ports down) -> the client's first
  answer from another node; RUNS runs; median, worst, ours/keepalived; which
  node took over (the second in order, beta, is the right one);
- seconds with two VIP holders, from the kernel (lab/vipwatch.py, every node
  sampled in turn; at each sample, a node holds when its own sample or its
  samples just before and just after found the VIP; an instant with two
  holders counts until the next sample). A node counts only while it could
  see the others: not while every cable of it was pulled (it reached neither
  the nodes nor the client). Standbys cut apart from each other both still
  reach the client, so they count. Three scenarios:
  * active cut off: the failover runs above (alpha cut off, beta takes over,
    alpha back after 1 s, 1.5 s more), the worst run;
  * active frozen 2 s (every process of alpha, Node.freeze), then 3 s;
  * partition: beta and gamma cut apart on both networks (both still reach
    alpha, the switches and the client), 2 s, alpha cut off, 3 s, alpha back,
    2 s, partition healed, 4 s.

Part 2, our agent only: labs of 2, 3, 5 and 8 nodes in turn (plan_for(n)),
formed, SETTLE seconds, then every agent's CPU over MEASURE seconds (usage_usec
of its unit's cgroup, as the pair bench) and RSS (every process of the unit):
mean over the nodes, the active and a standby, and the CPU per peer-link
datagram (accepted + sent, from `status`; with the echo probes too).

Prints a table like the pair bench's and a one-line JSON summary; no pass/fail.
Every lab is torn down at the end and on errors.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from mosqit_failover.lab import deploy, faults, keepalived
from mosqit_failover.lab.client import Answer, Probe
from mosqit_failover.lab.control import Lab, down, run_tool, up
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.scenarios.measure import (
    agent_messages,
    on_each,
    unit_cpu,
    unit_rss,
    us_per,
)
from mosqit_failover.lab.topology import NETS, LabPlan, plan_for
from mosqit_failover.lab.vipwatch import Sample, VipWatch

OURS, THEIRS = "mosqit-failover", "keepalived"
INTERVAL = 0.1  # our probe interval and keepalived's advert interval
TIMING = {"interval": "100ms", "heartbeat": "50ms"}
PRIORITIES = (150, 100, 50)  # keepalived: alpha > beta > gamma
CUT, FROZEN, PARTITION = "active cut off", "active frozen 2 s", "standbys apart + active cut off"
SCENARIOS = (CUT, FROZEN, PARTITION)

CutOff = tuple[float, float, str]  # (since, until, node): every cable of node pulled


@dataclass
class Tool:
    name: str
    start: Callable[[Lab, LabPlan], None]
    stop: Callable[[Lab], None]
    reset: Callable[[Lab, LabPlan], None]  # make the first node the only VIP holder
    failovers: list[float | None] = field(default_factory=list)  # ms, None: no answer
    took_over: list[str] = field(default_factory=list)  # per run: who answered first
    dual: dict[str, list[float]] = field(default_factory=dict)  # scenario -> seconds per run
    holders: dict[str, list[str]] = field(default_factory=dict)  # scenario -> VIP holders seen
    partition_failover: float | None = None
    partition_by: str = "-"


# -- our agent --------------------------------------------------------------------------


def _start_ours(lab: Lab, plan: LabPlan) -> None:
    deploy.install(lab.nodes, plan, timing=TIMING)
    deploy.start(lab.nodes)  # in order: alpha first
    deploy.wait_pair(lab.nodes, timeout=60)


def _stop_ours(lab: Lab) -> None:
    for node in lab.nodes.values():
        node.systemctl("stop", deploy.UNIT, check=False, timeout=60)
        deploy.forget_epochs(node)


def _reset_ours(lab: Lab, plan: LabPlan) -> None:
    first = plan.node_names[0]
    roles = deploy.wait_pair(lab.nodes, timeout=40)
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    if active != first:
        deploy.switch_over(lab[active], first, within=30)
        wanted = {n: "ACTIVE" if n == first else "STANDBY" for n in lab.nodes}
        deploy.wait_roles(lab.nodes, wanted, timeout=30)


# -- keepalived -------------------------------------------------------------------------


def keepalived_config(plan: LabPlan, node: str) -> str:
    """lab/keepalived.py's config with a priority per place in the order (150, 100, 50)."""
    priority = PRIORITIES[plan.node_names.index(node)]
    text = keepalived.config(plan, node, INTERVAL)
    return re.sub(r"^(\s*priority) \d+$", rf"\g<1> {priority}", text, count=1, flags=re.M)


def _start_keepalived(lab: Lab, plan: LabPlan) -> None:
    for name, node in lab.nodes.items():
        node.write_file(keepalived.CONF, keepalived_config(plan, name))
    keepalived.start(lab.nodes)  # in order: alpha first
    _wait_holders(lab, plan, 1, timeout=30)


def _stop_keepalived(lab: Lab) -> None:
    keepalived.stop(lab.nodes)


def _reset_keepalived(lab: Lab, plan: LabPlan) -> None:
    first = plan.node_names[0]
    for _ in range(4):
        holders = _wait_holders(lab, plan, 1, timeout=40)
        if holders == [first]:
            time.sleep(2.0)  # the others hear its adverts as BACKUP
            if _holders(lab, plan) == [first]:
                return
            continue
        # a stopping keepalived sends priority 0: the highest backup (alpha) takes over
        time.sleep(1.0)  # alpha's uplinks back from the previous run (no FAULT state)
        lab[holders[0]].systemctl("restart", keepalived.UNIT, timeout=30)
        deadline = time.time() + 10
        while time.time() < deadline and _holders(lab, plan) != [first]:
            time.sleep(0.1)
    raise LabError(f"keepalived: {first} is not the only VIP holder: {_holders(lab, plan)}")


# -- the VIP ----------------------------------------------------------------------------


def _holders(lab: Lab, plan: LabPlan) -> list[str]:
    return [name for name, node in lab.nodes.items() if deploy.holds_vip(node, plan)]


def _wait_holders(lab: Lab, plan: LabPlan, count: int, timeout: float) -> list[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(holders := _holders(lab, plan)) == count:
            return holders
        time.sleep(0.1)
    raise TimeoutError(f"not {count} VIP holder(s) within {timeout}s: {_holders(lab, plan)}")


def dual_seconds(
    samples: list[Sample], names: tuple[str, ...], cut_off: list[CutOff], after: float = 0.0
) -> tuple[float, set[str]]:
    """(seconds with two or more VIP holders, nodes seen holding from `after` on, both
    while not cut off), from vipwatch samples.

    At sample i a node holds the VIP when its own sample found it, or (another
    node's sample) its samples just before and just after both did. A node is
    left out while a cut-off interval of it covers that evidence. An instant
    with two holders lasts until the next sample."""
    per_node: dict[str, list[int]] = {name: [] for name in names}
    for i, sample in enumerate(samples):
        per_node[sample.node].append(i)

    def counts(name: str, lo: float, hi: float) -> bool:
        return not any(n == name and a <= lo and hi <= b for a, b, n in cut_off)

    seen = {
        s.node
        for s in samples
        if s.held and s.asked >= after and counts(s.node, s.asked, s.answered)
    }

    total = 0.0
    for i in range(len(samples) - 1):
        sample = samples[i]
        holding = 0
        for name in names:
            if name == sample.node:
                ok = sample.held and counts(name, sample.asked, sample.answered)
            else:
                idx = per_node[name]
                k = bisect.bisect_left(idx, i)
                if k == 0 or k == len(idx):
                    continue
                prev, nxt = samples[idx[k - 1]], samples[idx[k]]
                ok = prev.held and nxt.held and counts(name, prev.asked, nxt.answered)
            holding += ok
        if holding >= 2:
            total += samples[i + 1].asked - sample.asked
    return total, seen


def _first_other(probe: Probe, node: str, after: float, timeout: float) -> Answer | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for answer in probe.snapshot(after):
            if answer.node != node:
                return answer
        time.sleep(0.01)
    return None


def _prepared(lab: Lab, plan: LabPlan, probe: Probe, tool: Tool) -> str:
    first = plan.node_names[0]
    tool.reset(lab, plan)
    probe.wait_answer_from(first, after=time.time(), timeout=10)
    return first


def _record(
    tool: Tool, scenario: str, plan: LabPlan, vips: VipWatch, cut_off: list[CutOff], after: float
) -> None:
    """The scenario's seconds with two holders, and who held the VIP from the fault on."""
    seconds, seen = dual_seconds(list(vips.samples), plan.node_names, cut_off, after)
    if vips.errors:
        raise LabError("; ".join(vips.errors))
    tool.dual.setdefault(scenario, []).append(seconds)
    tool.holders.setdefault(scenario, [])
    tool.holders[scenario] = sorted(set(tool.holders[scenario]) | seen)


def failover_once(lab: Lab, plan: LabPlan, probe: Probe, tool: Tool) -> None:
    first = _prepared(lab, plan, probe, tool)
    with VipWatch(plan) as vips:
        time.sleep(0.5)
        t_cut = time.time()
        faults.isolate(plan, first)
        try:
            answer = _first_other(probe, first, t_cut, timeout=30)
            time.sleep(1.0)
        finally:
            faults.rejoin(plan, first)
        cut_off = [(t_cut, time.time(), first)]
        time.sleep(1.5)
    _record(tool, CUT, plan, vips, cut_off, t_cut)
    tool.failovers.append(None if answer is None else 1000 * (answer.recv - t_cut))
    tool.took_over.append(answer.node if answer else "nobody")


def frozen_once(lab: Lab, plan: LabPlan, probe: Probe, tool: Tool) -> None:
    first = _prepared(lab, plan, probe, tool)
    with VipWatch(plan) as vips:
        time.sleep(0.5)
        t_freeze = time.time()
        lab[first].freeze()
        try:
            time.sleep(2.0)
        finally:
            lab[first].thaw()
        time.sleep(3.0)
    _record(tool, FROZEN, plan, vips, [], t_freeze)


def partition_once(lab: Lab, plan: LabPlan, probe: Probe, tool: Tool) -> None:
    first, second, third = plan.node_names[:3]
    _prepared(lab, plan, probe, tool)
    answer = None
    with VipWatch(plan) as vips:
        try:
            time.sleep(0.5)
            for net in NETS:
                faults.cut(plan, net, [second], [third])
            time.sleep(2.0)
            t_cut = time.time()
            faults.isolate(plan, first)
            try:
                answer = _first_other(probe, first, t_cut, timeout=10)
                time.sleep(3.0)
            finally:
                faults.rejoin(plan, first)
            cut_off = [(t_cut, time.time(), first)]
            time.sleep(2.0)
        finally:
            for net in NETS:
                faults.heal(plan, net)
        time.sleep(4.0)
    _record(tool, PARTITION, plan, vips, cut_off, t_cut)
    if answer is not None:
        tool.partition_failover = 1000 * (answer.recv - t_cut)
        tool.partition_by = answer.node


def compare(lab: Lab, plan: LabPlan, tool: Tool, args: argparse.Namespace) -> None:
    print(f"== {tool.name} (3 nodes)", flush=True)
    t0 = time.monotonic()
    tool.start(lab, plan)
    try:
        with Probe(plan, duration=3600) as probe:
            for run in range(args.runs):
                failover_once(lab, plan, probe, tool)
                ms = tool.failovers[-1]
                print(
                    f"   {tool.name} cut-off run {run + 1}: "
                    f"{'-' if ms is None else f'{ms:.0f} ms'}, by {tool.took_over[-1]}, "
                    f"two holders {tool.dual[CUT][-1]:.3f} s",
                    flush=True,
                )
            for _ in range(args.dual_runs):
                frozen_once(lab, plan, probe, tool)
                print(f"   {tool.name} frozen: two holders {tool.dual[FROZEN][-1]:.3f} s")
                partition_once(lab, plan, probe, tool)
                print(
                    f"   {tool.name} partition: taken over by {tool.partition_by}, holders "
                    f"{','.join(tool.holders[PARTITION])}, two holders "
                    f"{tool.dual[PARTITION][-1]:.3f} s",
                    flush=True,
                )
    finally:
        faults.clear_all(plan)
        for node in lab.nodes.values():
            if node.frozen():
                node.thaw()
        tool.stop(lab)
    print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)


# -- footprint versus the number of nodes ---------------------------------------------------


@dataclass
class Footprint:
    nodes: int
    active: str
    standby: str
    cpu: dict[str, float]  # % of one core
    rss: dict[str, float]  # MB
    link_rate: dict[str, float]  # peer-link datagrams (accepted + sent) per second
    echo_rate: dict[str, float]  # echo probes sent + answered per second


def footprint(count: int, args: argparse.Namespace) -> Footprint:
    plan = plan_for(count)
    t0 = time.monotonic()
    try:
        lab = up(plan)
        deploy.install(lab.nodes, plan, timing=TIMING)
        on_each(lab.nodes, lambda node: node.systemctl("start", deploy.UNIT, timeout=60))
        roles = deploy.wait_pair(lab.nodes, timeout=90)
        formed = time.monotonic() - t0
        time.sleep(args.settle)
        cpu0, msg0 = on_each(lab.nodes, unit_cpu), on_each(lab.nodes, agent_messages)
        time.sleep(args.measure)
        msg1, cpu1 = on_each(lab.nodes, agent_messages), on_each(lab.nodes, unit_cpu)
        rss = on_each(lab.nodes, unit_rss)
        after = deploy.roles(lab.nodes)
    finally:
        down(plan)
    if after != roles:
        print(f"   WARNING: roles changed while measuring: {roles} -> {after}", flush=True)
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    standby = next(n for n in plan.node_names if roles[n] == "STANDBY")
    result = Footprint(
        count,
        active,
        standby,
        cpu={n: 100 * (cpu1[n][0] - cpu0[n][0]) / (cpu1[n][1] - cpu0[n][1]) for n in roles},
        rss=rss,
        link_rate={n: (msg1[n][0] - msg0[n][0]) / (msg1[n][2] - msg0[n][2]) for n in roles},
        echo_rate={n: (msg1[n][1] - msg0[n][1]) / (msg1[n][2] - msg0[n][2]) for n in roles},
    )
    print(
        f"   {count} nodes: formed {formed:.0f} s after up, CPU "
        + ", ".join(f"{n} {result.cpu[n]:.2f} %" for n in plan.node_names)
        + f" ({time.monotonic() - t0:.0f} s)",
        flush=True,
    )
    return result


# -- the report ---------------------------------------------------------------------------


def _ms(values: list[float | None], fn: Callable[[list[float]], float]) -> float:
    done = [v for v in values if v is not None]
    return fn(done) if done else float("nan")


def _fit(measured: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x over (nodes, x, y): (a, b); (nan, nan) with fewer than
    two node counts (runs of one count differ in x by noise only: no slope in that)."""
    if len({nodes for nodes, _, _ in measured}) < 2:
        return float("nan"), float("nan")
    points = [(x, y) for _, x, y in measured]
    mx, my = statistics.mean(x for x, _ in points), statistics.mean(y for _, y in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


W = 54  # the label column


def report_compare(
    ours: Tool, theirs: Tool, args: argparse.Namespace, summary: dict[str, Any]
) -> None:
    print(
        f"\nthree nodes (order/priority alpha > beta > gamma, 100 ms), failover = alpha, the "
        f"active, cut off -> first client answer from another node ({args.runs} runs each)"
    )
    print(f"{'':{W}}{OURS:>18}{THEIRS:>18}{'ratio':>8}")
    for label, fn in (("median", statistics.median), ("worst", max)):
        x, y = _ms(ours.failovers, fn), _ms(theirs.failovers, fn)
        print(f"{'failover ' + label + ' (ms)':{W}}{x:18.0f}{y:18.0f}{x / y:8.2f}")
        summary[f"failover_{label}_ms"] = {OURS: round(x), THEIRS: round(y)}
    for tool in (ours, theirs):
        missed = tool.failovers.count(None)
        if missed:
            print(f"   {tool.name}: {missed} run(s) without an answer from another node")

    def by(tool: Tool) -> str:
        counted = sorted(Counter(tool.took_over).items())
        return ",".join(f"{n} {k}/{len(tool.took_over)}" for n, k in counted)

    print(f"{'taken over by (beta: second in order)':{W}}{by(ours):>18}{by(theirs):>18}")
    summary["taken_over_by"] = {t.name: dict(Counter(t.took_over)) for t in (ours, theirs)}
    summary["dual_holder_s"], summary["holders_after_fault"] = {}, {}
    for scenario in SCENARIOS:
        x, y = max(ours.dual.get(scenario, [0.0])), max(theirs.dual.get(scenario, [0.0]))
        runs = len(ours.dual.get(scenario, []))
        label = f"two VIP holders (s), {scenario}" + (f", worst of {runs}" if runs > 1 else "")
        print(f"{label:{W}}{x:18.3f}{y:18.3f}")
        summary["dual_holder_s"][scenario] = {OURS: round(x, 3), THEIRS: round(y, 3)}
        held = {t.name: "+".join(t.holders.get(scenario, [])) or "-" for t in (ours, theirs)}
        label = "   held the VIP after the fault (not cut off)"
        print(f"{label:{W}}{held[OURS]:>18}{held[THEIRS]:>18}")
        summary["holders_after_fault"][scenario] = held
    a, b = ours.partition_failover, theirs.partition_failover
    print(
        f"{'   standbys apart: failover (ms), first answer':{W}}"
        f"{'-' if a is None else f'{a:.0f} {ours.partition_by}':>18}"
        f"{'-' if b is None else f'{b:.0f} {theirs.partition_by}':>18}"
    )
    summary["partition_failover"] = {
        t.name: {"ms": None if p is None else round(p), "first_answer": t.partition_by}
        for t, p in ((ours, a), (theirs, b))
    }


def report(
    ours: Tool, theirs: Tool, feet: list[Footprint], args: argparse.Namespace
) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": args.runs, "dual_runs": args.dual_runs}
    if args.runs > 0:
        report_compare(ours, theirs, args, summary)
    if feet:
        print(
            f"\nour agent vs number of nodes (idle; {args.settle:g} s settled, then CPU over "
            f"{args.measure:g} s; CPU in % of one core, RSS in MB; per node: peer-link "
            "datagrams accepted + sent /s, echo probes sent + answered /s, CPU µs per "
            "datagram)"
        )
        print(
            f"{'nodes':>5}{'CPU mean':>10}{'active':>8}{'standby':>9}{'RSS mean':>10}"
            f"{'active':>8}{'standby':>9}{'link/s':>9}{'echo/s':>8}{'µs/link':>9}"
            f"{'µs/(link+echo)':>16}"
        )
        summary["footprint"] = {}
        points: list[tuple[int, float, float]] = []
        for f in feet:
            names = list(f.cpu)
            cpu = statistics.mean(f.cpu.values())
            rss = statistics.mean(f.rss.values())
            link = statistics.mean(f.link_rate.values())
            echo = statistics.mean(f.echo_rate.values())
            per_link = statistics.mean(us_per(f.cpu[n], f.link_rate[n]) for n in names)
            per_all = statistics.mean(
                us_per(f.cpu[n], f.link_rate[n] + f.echo_rate[n]) for n in names
            )
            points.append((f.nodes, link + echo, cpu))
            print(
                f"{f.nodes:5d}{cpu:10.2f}{f.cpu[f.active]:8.2f}{f.cpu[f.standby]:9.2f}"
                f"{rss:10.1f}{f.rss[f.active]:8.1f}{f.rss[f.standby]:9.1f}"
                f"{link:9.0f}{echo:8.0f}{per_link:9.0f}{per_all:16.0f}"
            )
            summary["footprint"][str(f.nodes)] = {
                "active": f.active,
                "standby": f.standby,
                "cpu_mean_pct": round(cpu, 3),
                "cpu_active_pct": round(f.cpu[f.active], 3),
                "cpu_standby_pct": round(f.cpu[f.standby], 3),
                "rss_mean_mb": round(rss, 1),
                "rss_active_mb": round(f.rss[f.active], 1),
                "rss_standby_mb": round(f.rss[f.standby], 1),
                "link_per_s": round(link, 1),
                "echo_per_s": round(echo, 1),
                "us_per_link_msg": round(per_link),
                "us_per_msg_with_echo": round(per_all),
            }
        base, slope = _fit(points)
        if slope == slope:  # not nan
            print(
                f"fit over N: CPU % per node = {base:.2f} + {slope:.4f} x (datagrams/s, link "
                f"+ echo): {1e4 * slope:.0f} µs per extra datagram, {base:.2f} % with none"
            )
            summary["fit"] = {"base_pct": round(base, 3), "us_per_msg": round(1e4 * slope)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=8, help="cut-off failovers per tool")
    parser.add_argument("--dual-runs", type=int, default=1, help="frozen and partition runs")
    parser.add_argument("--nodes", default="2,3,5,8", help="lab sizes of the footprint part")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--measure", type=float, default=30.0, help="seconds of CPU measurement")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",") if n.strip()]

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    plan = plan_for(3)
    deploy.package_file(plan.project_dir)  # no package, or a stale one: say so first
    ours = Tool(OURS, _start_ours, _stop_ours, _reset_ours)
    theirs = Tool(THEIRS, _start_keepalived, _stop_keepalived, _reset_keepalived)
    started = time.monotonic()
    feet: list[Footprint] = []
    try:
        if args.runs > 0:
            t0 = time.monotonic()
            lab = up(plan)
            print(f"== 3-node lab up in {time.monotonic() - t0:.0f} s", flush=True)
            try:
                for tool in (ours, theirs):
                    compare(lab, plan, tool, args)
            finally:
                down(plan)
        print(f"== our agent at {', '.join(map(str, counts))} nodes", flush=True)
        for count in counts:
            feet.append(footprint(count, args))
    finally:
        down(plan_for(max([3, *counts])))  # every lab of this prefix, whatever its size
    summary = report(ours, theirs, feet, args)
    summary["seconds"] = round(time.monotonic() - started)
    print(f"\nbench_multi took {summary['seconds']} s")
    print(json.dumps({"bench_multi": summary}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_multi", main))
