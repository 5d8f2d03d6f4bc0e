"""One target the kernel refuses to route to never costs the other probers of the same
source address their replies (they share one raw socket). Found by the breaker: a
blackhole or prohibit route to the peer (EINVAL, EACCES) closed the shared socket at
every slot, and the switch, which answered every ping, missed them all: the node took
its uplink for lost. Needs root for two network namespaces; deleted in any case."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to make network namespaces",
)

ROOT = Path(__file__).resolve().parents[2]
_COUNTER = itertools.count()

PROBE = """
import asyncio
from mosqit_failover.probes.echo import EchoProber
async def main():
    got = {"switch": [], "peer": []}
    probers = [
        EchoProber("switch-a", "10.99.0.1", "10.99.0.3", 0.05, got["switch"].append, timeout=0.04),
        EchoProber("peer-a", "10.99.0.1", "10.99.0.2", 0.05, got["peer"].append, timeout=0.04),
    ]
    tasks = [asyncio.create_task(p.run()) for p in probers]
    await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(len(got["switch"]), got["switch"].count(False), len(got["peer"]), got["peer"].count(True))
asyncio.run(main())
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    n = next(_COUNTER)
    here, there = f"mqu-eh-{os.getpid()}-{n}", f"mqu-et-{os.getpid()}-{n}"
    try:
        sh("ip", "netns", "add", here)
        sh("ip", "netns", "add", there)
        sh(
            "ip",
            "-n",
            here,
            "link",
            "add",
            "d0",
            "type",
            "veth",
            "peer",
            "name",
            "d1",
            "netns",
            there,
        )
        sh("ip", "-n", here, "addr", "add", "10.99.0.1/24", "dev", "d0")
        sh("ip", "-n", there, "addr", "add", "10.99.0.2/24", "dev", "d1")
        sh("ip", "-n", there, "addr", "add", "10.99.0.3/24", "dev", "d1")
        for ns, ifname in ((here, "d0"), (there, "d1"), (here, "lo"), (there, "lo")):
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        yield here, there
    finally:
        for ns in (here, there):
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


@pytest.mark.parametrize("route", ["blackhole", "prohibit"])
def test_a_refused_target_never_silences_the_others(pair: tuple[str, str], route: str) -> None:
    here, _ = pair
    sh("ip", "-n", here, "route", "add", route, "10.99.0.2/32")
    out = subprocess.run(
        ["ip", "netns", "exec", here, sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    switch, switch_missed, peer, peer_answered = map(int, out.stdout.split())
    assert switch >= 10 and peer >= 10
    assert peer_answered == 0  # the refused target misses, as it must
    assert switch_missed <= 1, out.stderr  # the switch answers (one slot of slack)
    assert "re-opening the socket" not in out.stderr
