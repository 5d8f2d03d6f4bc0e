"""The platform's floor for the agent's idle traffic: what a bare asyncio loop costs,
on this host and at this moment, sending and receiving the packets the agent does.

The idle CPU of a Python agent on a VM is mostly the price of its idle packets and
of the loop that handles them (halving the wake-ups for the same packets changed
nothing measurable: docs/timing.md, "The floor"); even a timer alone is not free: on
the two-core VM of 2026-12-03, a C loop doing nothing but ``clock_nanosleep`` 50 times
a second used 0.22 % of a core, a Python ``time.sleep`` loop 0.45-0.59 %, an asyncio
timer 0.86-0.93 %. A target in % of a core, and a host whose speed halves for hours,
need that floor beside each measurement. :func:`measure` runs, in every lab node, a
loop with no logic (no HMAC, no core, no logging) that does the agent's idle pattern of
the timing under test:

- a timer every ``interval`` (the probe slot): one heartbeat-sized UDP datagram to the
  peer, on the networks in turn (calm heartbeats, ``calm_heartbeat_networks =
  "alternate"``), and the slot's ICMP echo requests (the peer's on each network when
  the peer echo runs every slot, the answering switches' every ``switch_every``-th slot,
  their calm pace);
- a reader on the UDP socket (the peer's datagrams) and one on each raw ICMP socket
  (the replies), each draining what is queued;
- the second node's slot following the first node's heartbeat as the agent's does
  while calm (``echo._Cadence.follow``: the next slot runs in the arrival's wake-up, or
  moves toward it by ``FOLLOW_REACH`` intervals; while following, its timer waits
  ``FOLLOW_GRACE`` intervals for the heartbeat), so that it wakes once a slot.

The same loop in C (``wakeup_floor.c``, built with the host's ``cc`` into the
checkout's ``build/``, with an HMAC-SHA256 over every heartbeat sent and received)
says what the same packets cost outside CPython: the floor of a C helper for the calm
steady state (docs/timing.md, "The floor in C").

Run it with the agent stopped: the agent's raw sockets would get copies of its ICMP.
``python -m mosqit_failover.lab.scenarios.wakeup_floor [--interval 100ms] [--peer-echo]
[--language python|c]`` prints the floor of both lab nodes; ``make bench`` prints both
beside each idle CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosqit_failover.config import FOLLOW_GRACE, FOLLOW_REACH, Timing, parse_duration
from mosqit_failover.lab.control import Lab, down, run_tool, up
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios.measure import (
    cpu_percent,
    on_each,
    per_second,
    unit_cpu,
    unit_wakeups,
)
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, LabPlan

UNIT = "mqlab-wakeup-floor.service"
SCRIPT_PATH = "/run/mqlab-wakeup-floor.py"
COUNTS_PATH = "/run/mqlab-wakeup-floor.json"  # packets sent and received, written at exit
PORT = 5499  # not the agent's: the floor may run beside a stopped agent's config
HEARTBEAT_BYTES = 136  # a calm heartbeat's datagram (strace of the agent, 2026-12-03)
C_SOURCE = Path(__file__).with_name("wakeup_floor.c")
LANGUAGES = ("python", "c")

# Runs inside a node with Debian's python3 and nothing but the standard library.
SCRIPT = r"""
import asyncio, json, signal, socket, struct, sys

spec = json.loads(sys.argv[1])
interval, port = spec["interval"], spec["port"]
PAYLOAD = b"mosqit-failover!"


def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def request(ident, seq):
    bare = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + PAYLOAD
    return struct.pack("!BBHHH", 8, 0, checksum(bare), ident, seq) + PAYLOAD


counts = {"sent": 0, "received": 0, "followed": 0}


def drain(sock):
    while True:
        try:
            sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        counts["received"] += 1


async def main():
    loop = asyncio.get_running_loop()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    udp.setblocking(False)
    state = {"timer": None, "last": -1e9, "following": False}

    def follow():
        # the agent's probe cadence (echo._Cadence.follow): the first node's heartbeat
        # woke us, the next slot runs in this wake-up if due soon (or a little overdue)
        due = start + slot * interval
        now = loop.time()
        if due - now < -grace():
            return
        reach = spec["follow_reach"] * interval
        moved = max(now, due - reach, state["last"] + interval - reach)
        if moved > now:
            if moved < due:
                shift(due - moved)
                arm()
            return
        shift(due - now)
        counts["followed"] += 1
        tick(followed=True)

    def udp_readable(sock):
        drain(sock)
        if spec["follow"]:
            follow()

    loop.add_reader(udp.fileno(), udp_readable, udp)
    raws = {}
    for source, _, _ in spec["echo"]:
        if source not in raws:
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            raw.bind((source, 0))
            raw.setsockopt(255, 1, struct.pack("=I", ~1 & 0xFFFFFFFF))  # echo replies only
            raw.setblocking(False)
            loop.add_reader(raw.fileno(), drain, raw)
            raws[source] = raw
    beat = b"\0" * spec["heartbeat_bytes"]
    start, slot = loop.time(), 0

    def shift(by):
        nonlocal start
        start -= by + 1e-6

    def grace():
        return spec["follow_grace"] * interval if state["following"] else 0.0

    def arm():
        if state["timer"] is not None:
            state["timer"].cancel()
        state["timer"] = loop.call_at(start + slot * interval + grace(), tick)

    def tick(followed=False):
        nonlocal slot
        for source, target, every in spec["echo"]:
            if slot % every == 0:
                raws[source].sendto(request(0x4D51, slot & 0xFFFF), (target, 0))
                counts["sent"] += 1
        beat_to = spec["beat_to"]
        udp.sendto(beat, (beat_to[slot % len(beat_to)], port))
        counts["sent"] += 1
        slot += 1
        state["last"] = loop.time()
        state["following"] = followed
        arm()

    state["timer"] = loop.call_at(start, tick)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    await done.wait()
    with open(spec["counts"], "w") as out:
        json.dump(counts, out)


asyncio.run(main())
"""


def node_spec(
    plan: LabPlan, node: str, interval: float, peer_echo: bool, switch_every: int
) -> dict[str, object]:
    """What ``node``'s floor loop sends: its one peer's addresses, the switches'."""
    me = plan.node(node)
    peer = next(plan.node(n) for n in plan.node_names if n != node)
    echo: list[tuple[str, str, int]] = []
    for net in NETS:
        if peer_echo:
            echo.append((me.addr(net), peer.addr(net), 1))
        echo.append((me.addr(net), plan.switch_addr(net), switch_every))
    return {
        "interval": interval,
        "port": PORT,
        "heartbeat_bytes": HEARTBEAT_BYTES,
        "beat_to": [peer.addr(net) for net in NETS],
        "echo": echo,
        "counts": COUNTS_PATH,
        "follow": node != plan.node_names[0],  # the agent follows the first node
        "follow_reach": FOLLOW_REACH,
        "follow_grace": FOLLOW_GRACE,
    }


def build_c(plan: LabPlan) -> Path:
    """The C loop, compiled into the checkout (which every node sees) when its source
    is newer than the binary."""
    binary = plan.project_dir / "build" / "wakeup-floor-c"
    if binary.exists() and binary.stat().st_mtime >= C_SOURCE.stat().st_mtime:
        return binary
    compiler = shutil.which("cc")
    if compiler is None:
        raise LabError("the C floor needs a C compiler: apt-get install gcc (make install does)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    argv = [compiler, "-O2", "-Wall", "-o", str(binary), str(C_SOURCE), "-lm", "-ldl"]
    built = subprocess.run(argv, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise LabError(f"compiling {C_SOURCE.name} failed: {built.stderr.strip()[-500:]}")
    return binary


def c_argv(binary: Path, spec: dict[str, Any]) -> list[str]:
    """The C loop's command line for ``spec`` (its order: wakeup_floor.c's comment)."""
    argv = [str(binary), *(str(spec[k]) for k in ("interval", "port", "heartbeat_bytes"))]
    argv += ["1" if spec["follow"] else "0", str(spec["follow_reach"]), str(spec["follow_grace"])]
    argv += [spec["counts"], *spec["beat_to"]]
    for source, target, every in spec["echo"]:
        argv += [source, target, str(every)]
    return argv


def start(node: Node, spec: dict[str, object], binary: Path | None = None) -> None:
    """Start the floor loop in ``node``: the Python one, or the C ``binary``."""
    node.run(["systemctl", "reset-failed", UNIT], check=False)
    argv = ["systemd-run", "--quiet", f"--unit={UNIT}", "--"]
    if binary is None:
        node.write_file(SCRIPT_PATH, SCRIPT)
        node.run([*argv, "python3", SCRIPT_PATH, json.dumps(spec)])
    else:
        node.run([*argv, *c_argv(binary, spec)])


def stop(node: Node) -> dict[str, int]:
    """Stop the loop; the packets it sent and received (empty if it wrote none)."""
    node.run(["systemctl", "stop", UNIT], check=False)
    node.run(["systemctl", "reset-failed", UNIT], check=False)
    try:
        counts = json.loads(node.read_file(COUNTS_PATH))
    except (OSError, ValueError, subprocess.CalledProcessError):
        return {}
    node.run(["rm", "-f", COUNTS_PATH], check=False)
    return {k: int(v) for k, v in counts.items()}


@dataclass
class Floor:
    """One node's floor: CPU (% of one core) and the packets per second it handled."""

    cpu: float
    sent: float  # heartbeat datagrams + echo requests
    received: float  # the peer's datagrams + echo replies
    followed: float = 0.0  # slots moved into the wake-up of the peer's heartbeat
    wakeups: float = 0.0  # voluntary context switches (sleeps that ended)


def measure(
    lab: Lab,
    plan: LabPlan,
    interval: float,
    seconds: float,
    *,
    peer_echo: bool,
    switch_timeout: float = Timing.switch_timeout,
    language: str = "python",
) -> dict[str, Floor]:
    """Each node's floor over ``seconds`` of the idle pattern at ``interval`` (the
    switches probed as often as the agent would with ``switch_timeout``), by the loop
    in ``language`` (python: asyncio as the agent's; c: wakeup_floor.c)."""
    timing = dataclasses.replace(Timing(), interval=interval, switch_timeout=switch_timeout)
    binary = build_c(plan) if language == "c" else None
    # the bench's timings share the slots; an answering switch at its calm pace
    switch_every = timing.switch_calm_every if timing.switch_probe_every else 1
    counts: dict[str, dict[str, int]] = {}
    began = time.monotonic()
    try:
        for name, node in lab.nodes.items():
            start(node, node_spec(plan, name, interval, peer_echo, switch_every), binary)
        time.sleep(2.0)  # the loop started, the sockets open
        before = on_each(lab.nodes, lambda node: unit_cpu(node, UNIT))
        woken = on_each(lab.nodes, lambda node: unit_wakeups(node, UNIT))
        time.sleep(seconds)
        after = on_each(lab.nodes, lambda node: unit_cpu(node, UNIT))
        wakeups = per_second(woken, on_each(lab.nodes, lambda node: unit_wakeups(node, UNIT)))
    finally:
        for name, node in lab.nodes.items():
            counts[name] = stop(node)
    lived = time.monotonic() - began
    return {
        name: Floor(
            cpu,
            counts[name].get("sent", 0) / lived,
            counts[name].get("received", 0) / lived,
            counts[name].get("followed", 0) / lived,
            wakeups[name],
        )
        for name, cpu in cpu_percent(before, after).items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", default="100ms")
    parser.add_argument(
        "--peer-echo", action="store_true", help="echo the peer every slot (the fast profile)"
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--language", choices=LANGUAGES, default="python")
    args = parser.parse_args(argv)
    plan = DEFAULT_PLAN
    interval = parse_duration(args.interval)
    try:
        lab = up(plan)
        floor = measure(
            lab, plan, interval, args.seconds, peer_echo=args.peer_echo, language=args.language
        )
    finally:
        down(plan)
    loop = "a bare asyncio loop" if args.language == "python" else "the same loop in C"
    for name, seen in sorted(floor.items()):
        print(
            f"{name}: {loop} with the agent's idle traffic: {seen.cpu:.2f} % of a "
            f"core, {seen.sent:.0f} packets sent/s, {seen.received:.0f} received/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("wakeup_floor", main))
