"""The client's probe of the VIP.

``python -m mosqit_failover.lab.client --target IP`` (run in ``mqlab-client``)
sends a datagram ``SEQ`` every ``--interval`` seconds and prints one JSON line
per answer: ``{"seq", "sent", "recv", "node"}`` (wall-clock times, comparable
with the nodes' journals), then ``{"done": true, "sent": N}``. It stops by
itself after ``--duration`` seconds or ``--count`` requests.

:class:`Probe` runs it as a subprocess from the harness and answers the
questions tests ask: who answered in a window, the longest gap without answers,
the first answer from a node after a time.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import select
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from subprocess import Popen
from typing import TextIO

from .netns import spawn
from .topology import LabPlan


@dataclass(frozen=True)
class Answer:
    seq: int
    sent: float
    recv: float
    node: str


def probe_loop(
    target: str, port: int, interval: float, duration: float, count: int, out: TextIO
) -> int:
    """Send/receive until duration or count is reached; return how many were sent."""
    write, flush = out.write, out.flush
    sent_at: dict[int, float] = {}
    seq = 0
    start = time.time()
    next_send = start
    stop_at = start + duration
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        while True:
            now = time.time()
            if now >= stop_at:
                break
            if now >= next_send and seq < count:
                seq += 1
                sent_at[seq] = now
                with contextlib.suppress(OSError):  # unreachable: counts as unanswered
                    sock.sendto(str(seq).encode(), (target, port))
                next_send += interval
                if next_send < now:  # we fell behind: do not burst
                    next_send = now + interval
            elif seq >= count and now >= next_send + 1.0:
                break  # last request had a second to be answered
            wait = max(0.0, min(next_send, stop_at) - time.time())
            ready, _, _ = select.select([sock], [], [], wait)
            while ready:
                try:
                    data, _ = sock.recvfrom(2048)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                recv = time.time()
                node, _, payload = data.decode(errors="replace").partition(" ")
                try:
                    n = int(payload)
                except ValueError:
                    continue
                line = {"seq": n, "sent": sent_at.get(n, 0.0), "recv": recv, "node": node}
                write(json.dumps(line) + "\n")
            flush()
    write(json.dumps({"done": True, "sent": seq}) + "\n")
    flush()
    return seq


class Probe:
    """The client probe running in ``mqlab-client``, read by a thread."""

    def __init__(
        self,
        plan: LabPlan,
        target: str | None = None,
        interval: float = 0.01,
        duration: float = 60.0,
        count: int = 1_000_000,
    ) -> None:
        self.answers: list[Answer] = []
        self.sent: int | None = None
        self._lock = threading.Lock()
        argv = [
            plan.python,
            "-m",
            "mosqit_failover.lab.client",
            "--target",
            target or plan.vip,
            "--port",
            str(plan.demo_port),
            "--interval",
            str(interval),
            "--duration",
            str(duration),
            "--count",
            str(count),
        ]
        self.started = time.time()
        self._proc: Popen[str] = spawn(
            argv,
            ns=plan.client_ns,
            cwd=plan.project_dir,
            env={"PYTHONPATH": str(plan.project_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True, name="lab-probe")
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            item = json.loads(line)
            with self._lock:
                if item.get("done"):
                    self.sent = int(item["sent"])
                else:
                    self.answers.append(
                        Answer(item["seq"], item["sent"], item["recv"], item["node"])
                    )

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the probe (if still running) and wait for the last lines."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait(timeout)
        self._reader.join(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the probe stops by itself."""
        self._proc.wait(timeout)
        self._reader.join(5.0)

    def snapshot(self, t0: float = 0.0, t1: float = float("inf")) -> list[Answer]:
        """Answers received in [t0, t1]."""
        with self._lock:
            return [a for a in self.answers if t0 <= a.recv <= t1]

    def who_answered(self, t0: float = 0.0, t1: float = float("inf")) -> Counter[str]:
        return Counter(a.node for a in self.snapshot(t0, t1))

    def longest_gap_ms(self, t0: float | None = None, t1: float | None = None) -> float:
        """Longest time without any answer in [t0, t1] (edges count), in ms."""
        start = self.started if t0 is None else t0
        end = time.time() if t1 is None else t1
        times = [start, *(a.recv for a in self.snapshot(start, end)), end]
        return max(b - a for a, b in itertools.pairwise(times)) * 1000.0

    def first_answer_from(self, node: str, after: float = 0.0) -> Answer | None:
        for a in self.snapshot(after):
            if a.node == node:
                return a
        return None

    def wait_answer_from(self, node: str, after: float = 0.0, timeout: float = 5.0) -> Answer:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (a := self.first_answer_from(node, after)) is not None:
                return a
            time.sleep(0.01)
        raise TimeoutError(f"no answer from {node} within {timeout}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lab client: probe a UDP service")
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    try:
        probe_loop(args.target, args.port, args.interval, args.duration, args.count, sys.stdout)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
