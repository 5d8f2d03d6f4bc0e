"""What the benchmarks read off a lab node: a systemd unit's CPU and RSS, the agent's
message counts, on every node at once. Shared by bench.py and bench_multi.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from mosqit_failover.lab import deploy
from mosqit_failover.lab.node import Node


def on_each(nodes: dict[str, Node], fn: Callable[[Node], Any]) -> dict[str, Any]:
    """fn on every node at once (threads: one after another, eight nodes' measuring
    windows would not coincide); the first error is raised in the caller's thread."""
    out: dict[str, Any] = {}
    errors: list[BaseException] = []

    def one(name: str, node: Node) -> None:
        try:
            out[name] = fn(node)
        except BaseException as error:  # re-raised below
            errors.append(error)

    threads = [threading.Thread(target=one, args=item) for item in nodes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return out


def unit_cpu(node: Node, unit: str = deploy.UNIT, key: str = "usage_usec") -> tuple[float, float]:
    """(CPU seconds every process of ``unit`` used so far, monotonic time of the read).
    ``key`` of the cgroup's cpu.stat: ``usage_usec``, or ``user_usec`` / ``system_usec``
    for the split. Counted in microseconds, not in the 10 ms ticks of /proc/PID/stat
    (0.1 % of a core over 10 s)."""
    stat = node.read_file(f"/sys/fs/cgroup/system.slice/{unit}/cpu.stat")
    return int(stat.split(key, 1)[1].split()[0]) / 1e6, time.monotonic()


def cpu_percent(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Per node, % of one core between two ``on_each(.., unit_cpu)`` readings."""
    return {name: 100 * rate for name, rate in per_second(before, after).items()}


def unit_rss(node: Node, unit: str = deploy.UNIT) -> float:
    """The RSS of every process of ``unit``, in MB."""
    return _status_total(node, unit, "VmRSS") / 1024


def _status_total(node: Node, unit: str, key: str) -> int:
    """The sum of ``key`` in /proc/PID/status over every process of ``unit`` (a
    process gone meanwhile counts 0)."""
    cgroup = f"/sys/fs/cgroup/system.slice/{unit}"
    total = 0
    for pid in node.read_file(f"{cgroup}/cgroup.procs").split():
        status = node.run(["cat", f"/proc/{pid}/status"], check=False).stdout
        total += next((int(x.split()[1]) for x in status.splitlines() if x.startswith(key)), 0)
    return total


def unit_wakeups(node: Node, unit: str = deploy.UNIT) -> tuple[int, float]:
    """(voluntary context switches of every process of ``unit`` so far: each is a
    sleep that ended in a wake-up, monotonic time of the read)."""
    return _status_total(node, unit, "voluntary_ctxt_switches"), time.monotonic()


def unit_preemptions(node: Node, unit: str = deploy.UNIT) -> tuple[int, float]:
    """(involuntary context switches of every process of ``unit`` so far: the CPU
    taken from it while it ran, monotonic time of the read)."""
    return _status_total(node, unit, "nonvoluntary_ctxt_switches"), time.monotonic()


def per_second(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Per node, the rate between two readings of (a count, monotonic time), as
    ``on_each(.., unit_wakeups)`` or ``unit_cpu`` give."""
    return {n: (after[n][0] - c0) / (after[n][1] - t0) for n, (c0, t0) in before.items()}


def agent_messages(node: Node) -> tuple[int, int, float]:
    """(peer-link datagrams accepted + sent, echo probes sent + answered, monotonic time)."""
    st = deploy.status(node)
    link = st.get("peer_link") or {}
    probes = (st.get("probes") or {}).values()
    echoes = sum(int(p.get("sent", 0)) + int(p.get("answered", 0)) for p in probes)
    return int(link.get("accepted", 0)) + int(link.get("sent", 0)), echoes, time.monotonic()


def us_per(cpu_percent: float, rate: float) -> float:
    """CPU µs per event from a CPU share (% of one core) and a rate (events/s)."""
    return 1e4 * cpu_percent / rate if rate else float("nan")
