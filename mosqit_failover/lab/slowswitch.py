"""A switch whose CPU answers echo slowly: the lab's switch addresses answered late.

Real switches answer ICMP to their own address from a busy, policed control plane
(tens of milliseconds under load); the lab's bridges answer from the kernel in
microseconds. :class:`SlowSwitch` turns the kernel's echo replies off in the switch
namespace (``net.ipv4.icmp_echo_ignore_all``: that namespace only) and runs this module
there, which answers each echo request to a switch address itself, ``delay`` later,
from that address. Requests to any other address of the namespace go unanswered
meanwhile (the switch namespace has no other).

Run as ``python -m mosqit_failover.lab.slowswitch ADDRESS=SECONDS ...``; it prints
``ready`` once its socket is open and answers until killed.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import select
import socket
import struct
import sys
import time
from types import TracebackType

from mosqit_failover.probes.echo import ones_complement_sum

from .netns import LabError, run, spawn
from .topology import NETS, LabPlan, Net

ECHO_REQUEST, ECHO_REPLY = 8, 0
SYSCTL = "net.ipv4.icmp_echo_ignore_all"


def reply_to(packet: bytes) -> tuple[str, str, bytes] | None:
    """(requester, address asked, the echo reply's ICMP bytes) for an IPv4 echo request."""
    header = (packet[0] & 0x0F) * 4
    icmp = packet[header:]
    if len(icmp) < 8 or icmp[0] != ECHO_REQUEST:
        return None
    body = bytes([ECHO_REPLY, 0, 0, 0]) + icmp[4:]
    reply = body[:2] + struct.pack("!H", ~ones_complement_sum(body) & 0xFFFF) + body[4:]
    return socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20]), reply


def answer(delays: dict[str, float]) -> None:
    """Answer echo requests to the addresses in ``delays``, each that much later."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    due: list[tuple[float, int, str, bytes]] = []
    order = itertools.count()
    print("ready", flush=True)
    while True:
        wait = max(0.0, due[0][0] - time.monotonic()) if due else None
        if select.select([sock], [], [], wait)[0]:
            packet = sock.recv(65535)
            parsed = reply_to(packet)
            if parsed is not None and parsed[1] in delays:
                requester, asked, reply = parsed
                heapq.heappush(
                    due, (time.monotonic() + delays[asked], next(order), requester, reply)
                )
        while due and due[0][0] <= time.monotonic():
            _, _, requester, reply = heapq.heappop(due)
            # the route to the requester leaves by its network's bridge: the source is
            # that network's switch address, the one it asked
            sock.sendto(reply, (requester, 0))


class SlowSwitch:
    """While entered, the switch of each network in ``delays`` answers echo that many
    seconds late (0: at once, but from this process); a network left out does not
    answer at all. Leaving restores the kernel's replies."""

    def __init__(self, plan: LabPlan, delays: dict[Net, float]) -> None:
        self.plan = plan
        self.delays = delays

    def __enter__(self) -> SlowSwitch:
        argv = [self.plan.python, "-m", "mosqit_failover.lab.slowswitch"]
        argv += [f"{self.plan.switch_addr(n)}={self.delays[n]}" for n in NETS if n in self.delays]
        env = {"PYTHONPATH": str(self.plan.project_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self._proc = spawn(argv, ns=self.plan.switch_ns, cwd=self.plan.project_dir, env=env)
        try:
            assert self._proc.stdout is not None
            if self._proc.stdout.readline().strip() != "ready":  # "" if it died
                raise LabError("the slow switch's responder did not start")
            # the kernel's replies off only once ours run (for a moment both answer: a
            # prober takes the first reply and drops the other)
            run(["sysctl", "-q", "-w", f"{SYSCTL}=1"], ns=self.plan.switch_ns)
        except BaseException:
            self._end()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._end()

    def _end(self) -> None:
        try:
            run(["sysctl", "-q", "-w", f"{SYSCTL}=0"], ns=self.plan.switch_ns)
        finally:
            self._proc.kill()
            self._proc.wait()


def main(argv: list[str]) -> None:
    delays: dict[str, float] = {}
    for word in argv:
        address, _, seconds = word.partition("=")
        delays[address] = float(seconds)
    with contextlib.suppress(KeyboardInterrupt):
        answer(delays)


if __name__ == "__main__":
    main(sys.argv[1:])
