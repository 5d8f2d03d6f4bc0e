"""Running a failure scenario against the lab and reporting what happened.

A scenario (one module each in this package) plays faults into a running
pair through a `Run`, which records when the nodes could not see each other.
Afterwards the report is computed from the outside: the client's answers at
the VIP, and each node's journal (decision lines, VIP added/removed notes).

Reported per run: failover time (fault -> first answer from the other node),
the client-visible outage, seconds in which two nodes that could see each
other both held the VIP, decision kinds the scenario did not expect, and the
problems its own checks found. Besides the journals, the VIP is sampled on both
nodes from the kernel (`ip -o addr`, every 50 ms, see
:mod:`mosqit_failover.lab.vipwatch`) while a scenario plays: a sample at which
both held it, outside the times the nodes could not see each other, fails a
scenario that allows no dual holding.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mosqit_failover.authkeys import generate_secret_text
from mosqit_failover.lab import deploy, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import NETS, LabPlan, Net
from mosqit_failover.lab.vipwatch import Sample, VipWatch

SYNCED = "/srv/data"  # the synced directory of the lab pair
TREE = (
    "cd {path} && find . -printf '%P %y %m %U %s\\n' | sort && "
    "find . -type f -print0 | sort -z | xargs -0r md5sum"
)

# kinds of decision any scenario may see without it being "unexpected" (the data epoch's
# are bookkeeping of the freshest-data rule, recorded after every promotion, not moves)
ROUTINE = frozenset({"standby", "waiting", "plan-done", "peer-back", "resumed", "automatic"})
ROUTINE |= {"data-epoch-recorded", "data-epoch-withdrawn"}


@dataclass(frozen=True)
class LabScenario:
    name: str
    summary: str
    play: Callable[[Run], None]
    expected: frozenset[str]  # decision kinds this scenario may cause besides ROUTINE
    fresh: bool = False  # stop both agents, wipe their state, start again before playing
    dual_vip_allowed: float = 0.0  # seconds two nodes that see each other may both hold it


@dataclass
class Run:
    lab: Lab
    plan: LabPlan
    probe: Probe
    active: str = ""
    standby: str = ""
    started: float = 0.0
    fault_at: float | None = None
    problems: list[str] = field(default_factory=list)
    apart: list[tuple[float, float]] = field(default_factory=list)  # nodes could not see each other
    _apart_since: float | None = None
    _frozen: set[str] = field(default_factory=set)
    _stopped_agents: set[str] = field(default_factory=set)
    _secrets: dict[str, str] = field(default_factory=dict)  # node -> its original secret

    # -- what a scenario says -------------------------------------------

    def fault(self, text: str) -> float:
        """Mark the moment the (first) fault is injected."""
        now = time.time()
        if self.fault_at is None:
            self.fault_at = now
        print(f"   {now - self.started:7.2f}s  fault: {text}", flush=True)
        return now

    def expect(self, ok: bool, text: str) -> None:
        if not ok:
            self.problems.append(text)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def roles(self) -> dict[str, str]:
        return deploy.roles(self.lab.nodes)

    def wait_roles(self, wanted: dict[str, str], timeout: float = 30.0) -> bool:
        try:
            deploy.wait_roles(self.lab.nodes, wanted, timeout)
            return True
        except Exception as error:
            self.problems.append(str(error))
            return False

    def kinds(self, node: str, since: float | None = None, until: float | None = None) -> list[str]:
        return [e["DECISION"] for e in self.decisions(node, since, until)]

    def decisions(
        self, node: str, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Decision lines of `node` in [since (default: the start), until]."""
        entries = deploy.decisions(self.lab[node], since or self.started)
        return [e for e in entries if until is None or _at(e) <= until]

    def status(self, node: str) -> dict[str, Any]:
        return deploy.status(self.lab[node])

    def nagios(self, node: str) -> tuple[int, str]:
        """(exit code, output line) of check_mosqit_failover on `node`."""
        proc = self.lab[node].run([deploy.CHECK_COMMAND], check=False)
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def agent_pid(self, node: str) -> int:
        return deploy.main_pid(self.lab[node])

    def start_agents(self) -> None:
        """Start the agent on every node at the same moment."""
        threads = [
            threading.Thread(target=node.systemctl, args=("start", deploy.UNIT))
            for node in self.lab.nodes.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def restart_agent(self, node: str) -> None:
        self.lab[node].systemctl("restart", deploy.UNIT, timeout=60)

    # -- faults that change whether the nodes see each other ----------------

    def _apart(self, apart: bool) -> None:
        now = time.time()
        if apart and self._apart_since is None:
            self._apart_since = now
        elif not apart and self._apart_since is not None:
            self.apart.append((self._apart_since, now))
            self._apart_since = None

    def cut_off(self, node: str) -> None:
        self.fault(f"{node}'s cables to both switches pulled")
        faults.isolate(self.plan, node)
        self._apart(True)

    def reconnect(self, node: str) -> None:
        faults.rejoin(self.plan, node)
        self._apart(False)

    def port(self, node: str, net: Net, up: bool) -> None:
        if not up:
            self.fault(f"{node}'s cable to switch {net} pulled")
        (faults.port_up if up else faults.port_down)(self.plan, node, net)

    def switch(self, net: Net, up: bool) -> None:
        if not up:
            self.fault(f"switch {net} off")
        (faults.switch_up if up else faults.switch_down)(self.plan, net)

    def both_switches(self, up: bool) -> None:
        for net in NETS:
            self.switch(net, up)
        self._apart(not up)

    def cut_between(self, nets: tuple[Net, ...], broken: bool) -> None:
        for net in nets:
            if broken:
                self.fault(f"path between the nodes on {net} dropped (switches reachable)")
                faults.cut(self.plan, net)
            else:
                faults.heal(self.plan, net)
        if len(nets) == len(NETS):
            self._apart(broken)

    def loss(self, percent: int) -> None:
        if percent:
            self.fault(f"{percent}% random loss on both networks")
        for net in NETS:
            (faults.loss(self.plan, net, percent) if percent else faults.clear_loss(self.plan, net))

    def freeze(self, node: str, frozen: bool) -> None:
        # not "apart": the peer still sees the frozen node's kernel (ICMP, ARP, TCP
        # handshakes) and must not take the VIP it may still hold (the fence rule)
        if frozen:
            self.fault(f"every process on {node} frozen")
            self.lab[node].freeze()
        else:
            self.lab[node].thaw()

    def kill_agent(self, node: str) -> None:
        self.fault(f"agent on {node} killed with SIGKILL")
        self.lab[node].systemctl("kill", "--signal=SIGKILL", deploy.UNIT)

    def stop_agent(self, node: str, stopped: bool) -> None:
        """SIGSTOP (or SIGCONT) the agent's main process only: the node runs on."""
        if stopped:
            self.fault(f"agent on {node} stopped with SIGSTOP (the rest of the node runs)")
            self._stopped_agents.add(node)
        else:
            self._stopped_agents.discard(node)
        signal = "SIGSTOP" if stopped else "SIGCONT"
        self.lab[node].systemctl(
            "kill", "--kill-whom=main", f"--signal={signal}", deploy.UNIT, check=stopped
        )

    def change_secret(self, node: str) -> None:
        """Give `node` another shared secret (the agent reads it when it starts)."""
        if node not in self._secrets:
            self._secrets[node] = self.lab[node].read_file(deploy.SECRET_PATH)
        self.lab[node].write_file(deploy.SECRET_PATH, generate_secret_text(), mode=0o600)

    def restore_secret(self, node: str) -> None:
        """Put `node`'s original secret back (restart its agent to use it)."""
        original = self._secrets.pop(node, None)
        if original is not None:
            self.lab[node].write_file(deploy.SECRET_PATH, original, mode=0o600)

    def command(self, node: str, *argv: str) -> str:
        self.fault(f"operator on {node}: mosqit-failover {' '.join(argv)}")
        proc = self.lab[node].run(
            [deploy.AGENT, *argv, "--config", deploy.CONFIG_PATH], check=False
        )
        return proc.stdout + proc.stderr

    def restore(self) -> None:
        faults.clear_all(self.plan)
        for node in self.lab.nodes.values():
            if node.frozen():
                node.thaw()
        for name in list(self._stopped_agents):
            self.stop_agent(name, stopped=False)
        for name in list(self._secrets):  # a scenario that failed before restoring them
            self.restore_secret(name)
            self.restart_agent(name)
        self._apart(False)


@dataclass(frozen=True)
class Report:
    name: str
    failover_ms: float | None
    outage_ms: float
    dual_vip_s: float
    unexpected: list[str]
    problems: list[str]
    dirs_equal: bool | None = None
    vip_samples: int = 0  # kernel samples of the VIP on both nodes (vipwatch)
    vip_both: int = 0  # samples at which both nodes held it (while seeing each other)
    vip_cycle_ms: float = 0.0  # mean time between two samples of one node
    journal: tuple[str, ...] = ()  # both agents' lines, kept when the scenario failed

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> Iterator[str]:
        failover = "-" if self.failover_ms is None else f"{self.failover_ms:.0f} ms"
        yield (
            f"{self.name}: failover {failover}, client outage {self.outage_ms:.0f} ms, "
            f"both held the VIP while seeing each other {self.dual_vip_s:.3f} s, "
            f"unexpected transitions {len(self.unexpected)}, synced dirs equal: "
            f"{'-' if self.dirs_equal is None else 'yes' if self.dirs_equal else 'NO'}"
        )
        yield (
            f"   VIP sampled {self.vip_samples} times (each node every "
            f"{self.vip_cycle_ms:.0f} ms): both held it in {self.vip_both} sample(s)"
        )
        for line in self.unexpected:
            yield f"   unexpected: {line}"
        for problem in self.problems:
            yield f"   PROBLEM: {problem}"
        if self.journal:
            yield "   the agents' journals since the start (the last lines of each node):"
            for line in self.journal:
                yield f"   | {line}"


def agent_vip_spans(
    node: Node, since: float, end: float, held: bool = False
) -> list[tuple[float, float]]:
    """When the agent on `node` held the VIP, from its journal since `since`; `held`:
    it held the VIP at `since` already (the active node of a formed pair)."""
    entries = node.journal(identifier="mosqit-failover", since=since)
    return vip_intervals(entries, end, held_from=since if held else None)


def _at(entry: dict[str, Any]) -> float:
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def _released(entry: dict[str, Any]) -> bool:
    """Whether a journal entry says the VIP left the node: the agent's own note, the
    fence's line (the peer's `mosqit-sync --fence` ran here, no agent involved), or a
    restarted agent that found no VIP."""
    if entry.get("VIP") == "removed":
        return True
    message = str(entry.get("MESSAGE", ""))
    if "FENCED_BY_EPOCH" in entry:
        return "VIP removed" in message or "VIP not held" in message
    return message.startswith("agent starting as ") and "holding VIP: False" in message


def vip_intervals(
    entries: list[dict[str, Any]], end: float, held_from: float | None = None
) -> list[tuple[float, float]]:
    """When a node held the VIP, from its journal's VIP added/removed notes; from
    `held_from` on, if given, before any note (a holder that hangs writes none)."""
    spans: list[tuple[float, float]] = []
    since: float | None = held_from
    for entry in entries:
        at = _at(entry)
        if entry.get("VIP") == "added" and since is None:
            since = at
        elif since is not None and _released(entry):
            spans.append((since, at))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def overlap(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out = []
    for (a0, a1), (b0, b1) in itertools.product(a, b):
        lo, hi = max(a0, b0), min(a1, b1)
        if lo < hi:
            out.append((lo, hi))
    return out


def minus(spans: list[tuple[float, float]], holes: list[tuple[float, float]]) -> float:
    """Total length of `spans` outside `holes` (the holes do not overlap each other)."""
    total = 0.0
    for lo, hi in spans:
        length = hi - lo
        for h0, h1 in holes:
            length -= max(0.0, min(hi, h1) - max(lo, h0))
        total += max(0.0, length)
    return total


def prepare(lab: Lab, plan: LabPlan, scenario: LabScenario) -> None:
    """A formed pair, from scratch when the scenario asks for it."""
    if scenario.fresh:
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=60)
            deploy.forget_epochs(node)
        return
    faults.clear_all(plan)
    deploy.wait_pair(lab.nodes, timeout=40)


def play(lab: Lab, plan: LabPlan, probe: Probe, scenario: LabScenario) -> Report:
    prepare(lab, plan, scenario)
    run = Run(lab, plan, probe, started=time.time())
    if not scenario.fresh:
        roles = deploy.wait_pair(lab.nodes, timeout=40)
        run.active = next(n for n, r in roles.items() if r == "ACTIVE")
        run.standby = next(n for n, r in roles.items() if r == "STANDBY")
        probe.wait_answer_from(run.active, after=time.time(), timeout=10)
        marker = f"{SYNCED}/{scenario.name}.txt"
        lab[run.active].write_file(marker, f"{scenario.name}\n")
        # on the standby before the fault: a write the sync had no time to carry is lost
        # by any asynchronous replication, and the standby would promote with an empty
        # copy, which (rightly) it never pushes over the old active's files
        deadline = time.time() + 20
        while lab[run.standby].run(["test", "-e", marker], check=False).returncode != 0:
            if time.time() > deadline:
                run.problems.append(f"{marker} did not reach {run.standby} in 20 s")
                break
            time.sleep(0.2)
    print(f"== {scenario.name}: {scenario.summary}", flush=True)
    with VipWatch(plan) as vips:
        try:
            scenario.play(run)
        except Exception as error:  # a broken expectation of the harness itself: report it
            run.problems.append(f"{type(error).__name__}: {error}")
        finally:
            run.restore()
        time.sleep(1.0)
    report = _report(run, scenario, time.time(), vips)
    equal = trees_equal(lab, timeout=15)
    if not equal:
        report.problems.append(f"{SYNCED} differs between the nodes")
    # the lab is torn down after the run: what each agent said is the only way to
    # tell a rare ending apart from a bug afterwards
    journal = tuple(agent_lines(lab, run.started)) if report.problems else ()
    return Report(**{**report.__dict__, "dirs_equal": equal, "journal": journal})


JOURNAL_LINES_KEPT = 80  # per node, the last ones: a scenario's fault is near its end


def agent_lines(lab: Lab, since: float) -> Iterator[str]:
    """Each node's agent journal since `since`, one line per entry, node by node."""
    for name, node in lab.nodes.items():
        entries = node.journal(identifier="mosqit-failover", since=since)
        for entry in entries[-JOURNAL_LINES_KEPT:]:
            stamp = time.strftime("%H:%M:%S", time.localtime(_at(entry)))
            millis = int(_at(entry) * 1000) % 1000
            yield f"{name} {stamp}.{millis:03d} {entry.get('MESSAGE', '')!s}"


def trees_equal(lab: Lab, timeout: float) -> bool:
    """Whether the synced directory is the same on both nodes (waiting for the sync)."""
    deadline = time.time() + timeout
    while True:
        trees = {
            node.run(["sh", "-c", TREE.format(path=SYNCED)], check=False).stdout
            for node in lab.nodes.values()
        }
        if len(trees) == 1 or time.time() > deadline:
            return len(trees) == 1
        time.sleep(0.5)


def _sampled_both(run: Run, vips: VipWatch) -> list[Sample]:
    """Samples at which both nodes held the VIP, outside the times they were apart."""
    return [
        s
        for s in vips.both_held()
        if not any(lo <= s.asked and s.answered <= hi for lo, hi in run.apart)
    ]


def _report(run: Run, scenario: LabScenario, end: float, vips: VipWatch) -> Report:
    t0 = run.started
    fault = run.fault_at if run.fault_at is not None else t0
    before = run.probe.who_answered(t0, fault)
    old = before.most_common(1)[0][0] if before else None
    firsts = [
        answer.recv
        for n in run.probe.who_answered(fault, end)
        if n != old and (answer := run.probe.first_answer_from(n, fault)) is not None
    ]
    failover = (min(firsts) - fault) * 1000 if firsts and old else None
    outage = run.probe.longest_gap_ms(max(t0, fault - 0.5), end)
    holding = {
        name: agent_vip_spans(node, t0, end, held=name == run.active)
        for name, node in run.lab.nodes.items()
    }
    first, second = holding.values()
    dual = minus(overlap(first, second), run.apart)
    unexpected = []
    for name, node in run.lab.nodes.items():
        for entry in deploy.decisions(node, since=t0):
            if entry["DECISION"] not in ROUTINE | scenario.expected:
                unexpected.append(f"{name}: {entry['MESSAGE']}")
    problems = list(run.problems)
    if dual > scenario.dual_vip_allowed:
        problems.append(
            f"both nodes held the VIP while seeing each other for {dual:.3f} s "
            f"(allowed {scenario.dual_vip_allowed:g} s)"
        )
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected transition(s)")
    both = _sampled_both(run, vips)
    cycle = vips.cycle()
    problems += vips.errors
    if not vips.samples:
        problems.append("the VIP was never sampled")
    if both and (not scenario.dual_vip_allowed or len(both) * cycle > scenario.dual_vip_allowed):
        times = ", ".join(f"{s.asked - t0:.2f}s" for s in both[:5])
        problems.append(
            f"the kernel showed the VIP on both nodes in {len(both)} sample(s) "
            f"(at {times}{', ...' if len(both) > 5 else ''} after the start)"
        )
    return Report(
        scenario.name,
        failover,
        outage,
        dual,
        unexpected,
        problems,
        vip_samples=len(vips.samples),
        vip_both=len(both),
        vip_cycle_ms=cycle * 1000,
    )
