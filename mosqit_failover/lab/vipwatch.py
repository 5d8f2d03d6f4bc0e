"""Sample who holds the VIP, from the kernel, independently of the agents' journals.

One small helper process per node runs in that node's network namespace and,
on each request line, runs ``ip -o -4 addr show`` and answers ``1`` (the VIP
is on one of the node's interfaces) or ``0``. A thread asks the nodes in turn
(alpha, beta, alpha, ...; alpha, beta, gamma, alpha, ... with three) every
``period`` seconds, so the samples are totally ordered in time: sample i
finished before sample i+1 was asked for.

A sample of node X counts as *both held* when X holds the VIP and so does
another node in its samples just before and just after it: that node held
it on both sides of X's sample (it is assumed not to have dropped and re-added
it within one sampling period), so at that moment both held it. No false
alarm from a handover in which one releases before the other adds.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

from .netns import LabError
from .topology import LabPlan

# the helper inside a node's netns: one `ip` per request line, "1" or "0" back
HELPER = """
import subprocess, sys
needle = " " + sys.argv[1] + "/"
for _ in sys.stdin:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    sys.stdout.write("1\\n" if needle in out.stdout else "0\\n" if out.returncode == 0 else "?\\n")
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class Sample:
    node: str
    asked: float  # wall clock, comparable with the journals and the probe
    answered: float
    held: bool


class VipWatch:
    """Samples the VIP on every node of ``plan`` until :meth:`stop`."""

    def __init__(self, plan: LabPlan, period: float = 0.05) -> None:
        self.plan = plan
        self.period = period
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._procs: dict[str, subprocess.Popen[str]] = {}
        for spec in plan.nodes:
            self._procs[spec.name] = subprocess.Popen(
                ["ip", "netns", "exec", spec.netns, plan.python, "-I", "-c", HELPER, plan.vip],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        self._thread = threading.Thread(target=self._loop, daemon=True, name="vip-watch")
        self._thread.start()

    def __enter__(self) -> VipWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ask(self, name: str) -> Sample:
        proc = self._procs[name]
        stdin: IO[str] | None = proc.stdin
        stdout: IO[str] | None = proc.stdout
        if stdin is None or stdout is None:
            raise LabError("vip-watch helper without pipes")
        asked = time.time()
        stdin.write("\n")
        stdin.flush()
        answer = stdout.readline().strip()
        if answer not in ("0", "1"):
            raise LabError(f"vip-watch on {name}: helper answered {answer!r}")
        return Sample(name, asked, time.time(), answer == "1")

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for name in self._procs:
                    self.samples.append(self._ask(name))
                self._stop.wait(self.period)
        except (OSError, ValueError, LabError) as error:
            if not self._stop.is_set():
                self.errors.append(f"vip-watch stopped: {error}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for proc in self._procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
            if proc.stdout is not None:
                proc.stdout.close()

    def both_held(self) -> list[Sample]:
        """The samples at which two nodes held the VIP (see the module's doc)."""
        out = []
        samples = list(self.samples)
        others = {spec.name for spec in self.plan.nodes}
        for i, sample in enumerate(samples):
            if not sample.held:
                continue
            for other in others - {sample.node}:
                before = next((s for s in reversed(samples[:i]) if s.node == other), None)
                after = next((s for s in samples[i + 1 :] if s.node == other), None)
                if before is not None and after is not None and before.held and after.held:
                    out.append(sample)
                    break
        return out

    def cycle(self) -> float:
        """The mean time between two samples of the same node (0 with fewer than two)."""
        first = [s for s in self.samples if s.node == self.plan.nodes[0].name]
        if len(first) < 2:
            return 0.0
        return (first[-1].asked - first[0].asked) / (len(first) - 1)

    def holders(self, t0: float = 0.0, t1: float = float("inf")) -> dict[str, int]:
        """How many samples in [t0, t1] found the VIP on each node."""
        out = {spec.name: 0 for spec in self.plan.nodes}
        for s in self.samples:
            if s.held and t0 <= s.asked <= t1:
                out[s.node] += 1
        return out
