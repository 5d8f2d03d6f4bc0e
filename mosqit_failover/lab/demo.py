"""`mosqit-failover lab demo`: the reference design's failure cases, live, in the lab.

Builds the lab, installs and starts the agent on both nodes (as systemd
units), starts a client that asks the VIP who serves it every 10 ms, then
injects the faults one after another and prints, for each case, what the
client saw beside each node's decision lines read from its journal.
Everything is torn down at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from . import deploy, faults, sshkeys
from .client import Probe
from .control import Lab, down, up
from .netns import LabError
from .topology import DEFAULT_PLAN, NETS, LabPlan, Net, plan_for

SYNCED = "/srv/data"


@dataclass(frozen=True)
class Case:
    title: str
    inject: Callable[[LabPlan, str, str], None]  # (plan, active, standby)
    repair: Callable[[LabPlan, str, str], None]
    hold: float  # seconds the fault lasts
    expect: str


def _switch(net: Net, up_: bool) -> Callable[[LabPlan, str, str], None]:
    def act(plan: LabPlan, active: str, standby: str) -> None:
        (faults.switch_up if up_ else faults.switch_down)(plan, net)

    return act


def _cut_active(up_: bool) -> Callable[[LabPlan, str, str], None]:
    def act(plan: LabPlan, active: str, standby: str) -> None:
        for net in NETS:
            (faults.port_up if up_ else faults.port_down)(plan, active, net)

    return act


def _both_switches(up_: bool) -> Callable[[LabPlan, str, str], None]:
    def act(plan: LabPlan, active: str, standby: str) -> None:
        for net in NETS:
            (faults.switch_up if up_ else faults.switch_down)(plan, net)

    return act


CASES = [
    Case(
        "1a. switch B fails, then comes back",
        _switch("b", False),
        _switch("b", True),
        8.0,
        "both nodes go MANUAL; the active keeps serving the client; no switchover",
    ),
    Case(
        "1b. switch A fails (the VIP's network), then comes back",
        _switch("a", False),
        _switch("a", True),
        8.0,
        "both nodes go MANUAL, no switchover; the client sits on switch A, so it "
        "cannot reach anyone until A is back, then the same node answers",
    ),
    Case(
        "2. the active node is cut off (both its switch ports down)",
        _cut_active(False),
        _cut_active(True),
        8.0,
        "the standby promotes after 3 missed echoes; the cut-off node stands down; "
        "when it returns it becomes the standby",
    ),
    Case(
        "3. split brain: both switches off, then back",
        _both_switches(False),
        _both_switches(True),
        8.0,
        "the active stops services and releases the VIP; both wait; on return the "
        "node with the freshest data (highest epoch) becomes active again",
    ),
]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _show_case(lab: Lab, probe: Probe, case: Case, t0: float, t_fault: float, t1: float) -> None:
    who = probe.who_answered(t0, t1)
    answered = ", ".join(f"{node} {count}x" for node, count in who.most_common()) or "nobody"
    gap = probe.longest_gap_ms(t_fault, t1)
    _say(f"   client: answers at the VIP from {answered}; longest gap after the fault {gap:.0f} ms")
    before = probe.who_answered(t0, t_fault)
    old = before.most_common(1)[0][0] if before else None
    for answering in who:
        first = probe.first_answer_from(answering, t_fault) if answering != old else None
        if first is not None:
            after_ms = 1000 * (first.recv - t_fault)
            _say(f"   failover: first answer from {answering} {after_ms:.0f} ms after the fault")
    for name, node in lab.nodes.items():
        for entry in deploy.decisions(node, since=t0):
            at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - t_fault
            _say(f"   {name:6} {at:+8.3f}s  {entry.get('MESSAGE', '')}")


def _show_sync(lab: Lab, active: str, standby: str, name: str) -> None:
    """Write a file on the active node; show when it is on the standby (every other node
    given as "a,b")."""
    path = f"{SYNCED}/{name}"
    t0 = time.time()
    lab[active].write_file(path, f"written on {active} at {time.ctime(t0)}\n")
    waiting = standby.split(",")
    deadline = t0 + 15
    while waiting and time.time() < deadline:
        for node in list(waiting):
            if lab[node].run(["test", "-f", path], check=False).returncode == 0:
                waiting.remove(node)
                _say(
                    f"   sync: {path} written on {active}, on {node} after "
                    f"{1000 * (time.time() - t0):.0f} ms"
                )
        time.sleep(0.05)
    for node in waiting:
        _say(f"   sync: {path} did not reach {node} within 15 s")


def _active_standby(lab: Lab) -> tuple[str, str]:
    """The active node and the standbys ("beta" in a pair, "beta,gamma" with three)."""
    roles = deploy.wait_pair(lab.nodes, timeout=40)
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    standby = ",".join(n for n, r in roles.items() if r == "STANDBY")
    return active, standby


def _start(plan: LabPlan) -> Lab:
    lab = up(plan)
    names = ", ".join(spec.name for spec in plan.nodes)
    _say(f"lab up in {lab.timings.get('up', 0):.1f}s ({names}); installing the agent")
    sshkeys.setup(lab.nodes, plan)
    sshkeys.install_config(lab.nodes, plan, [SYNCED])
    deploy.start(lab.nodes)
    return lab


def _play(lab: Lab, plan: LabPlan, probe: Probe, case: Case) -> None:
    active, standby = _active_standby(lab)
    _say(f"== {case.title}  (active: {active}, standby: {standby})")
    _say(f"   expected: {case.expect}")
    t0 = time.time()
    time.sleep(1.0)
    t_fault = time.time()
    case.inject(plan, active, standby)
    time.sleep(case.hold)
    if len(plan.nodes) > 2:  # the third node receives sync from the new active meanwhile
        roles = deploy.roles(lab.nodes)
        new = next((n for n, r in roles.items() if r == "ACTIVE"), "")
        rest = ",".join(n for n, r in roles.items() if r == "STANDBY")
        if new and rest:
            _show_sync(lab, new, rest, "while-cut-off.txt")
    case.repair(plan, active, standby)
    new_active, _ = _active_standby(lab)
    probe.wait_answer_from(new_active, after=time.time(), timeout=15)
    time.sleep(1.0)
    _show_case(lab, probe, case, t0, t_fault, time.time())
    new_active, new_standby = _active_standby(lab)
    _show_sync(lab, new_active, new_standby, f"after-case-{case.title.split('.')[0]}.txt")
    _say()


THREE_NODES = Case(
    "4. three nodes (order alpha, beta, gamma): the active is cut off",
    _cut_active(False),
    _cut_active(True),
    8.0,
    "the second in order promotes, the third stays standby and receives sync from the new "
    "active; the cut-off node returns as a standby",
)


def _three_node_case() -> None:
    plan = plan_for(3)
    _say("building a three-node lab: alpha, beta, gamma on the same two switches")
    lab = _start(plan)
    active, standby = _active_standby(lab)
    _say(f"cluster formed: {active} ACTIVE, {standby} STANDBY; VIP {plan.vip}")
    _show_sync(lab, active, standby, "hello-three.txt")
    with Probe(plan, duration=120) as probe:
        probe.wait_answer_from(active, after=time.time(), timeout=10)
        _play(lab, plan, probe, THREE_NODES)
    down(plan)


def run_demo(plan: LabPlan = DEFAULT_PLAN) -> int:
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    deploy.package_file(plan.project_dir)  # no package, or a stale one: say so before building
    try:
        _say("building the lab: switches A and B, nodes alpha and beta (systemd), a client")
        lab = _start(plan)
        active, standby = _active_standby(lab)
        _say(f"pair formed: {active} ACTIVE, {standby} STANDBY; VIP {plan.vip}")
        _show_sync(lab, active, standby, "hello.txt")
        _say()
        with Probe(plan, duration=600) as probe:
            probe.wait_answer_from(active, after=time.time(), timeout=10)
            for case in CASES:
                _play(lab, plan, probe, case)
        if plan is DEFAULT_PLAN:
            down(plan)  # one lab per prefix: the pair makes room for three nodes
            _three_node_case()
        _say("all cases done")
        return 0
    except KeyboardInterrupt:
        _say("interrupted: tearing the lab down")
        return 130
    except LabError as error:
        print(f"lab demo: {error}", file=sys.stderr)
        return 1
    finally:
        removed = down(plan)
        _say(f"lab torn down ({len(removed)} items removed)")
