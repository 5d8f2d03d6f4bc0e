"""mosqit_failover.netlink, Vip and LinkMonitor against the real kernel, in one throwaway namespace.

The fixture makes ``mqe-nl-PID-N`` with a veth pair ``d0``/``d1`` inside it
(both up, 10.9.8.1/24 on d0) and always deletes it. One subprocess runs inside
it (``ip netns exec``): the link dump is compared with ``ip -j link``, the
VIP is added, found, added again, removed and removed again, and the link
monitor follows d0's carrier while the script takes d1 down and up and
deletes the pair. Takes well under 2 s; needs root and iproute2 only.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to make a network namespace",
)

ROOT = Path(__file__).resolve().parents[2]
_COUNTER = itertools.count()


def ip(*argv: str) -> str:
    return subprocess.run(
        ["ip", *argv], check=True, capture_output=True, text=True, timeout=10
    ).stdout


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"mqe-nl-{os.getpid()}-{next(_COUNTER)}"
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ip("-n", ns, "addr", "add", "10.9.8.1/24", "dev", "d0")
        for ifname in ("d0", "d1", "lo"):
            ip("-n", ns, "link", "set", ifname, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in listed.split(), f"namespace {ns} left behind"


SCRIPT = """
import asyncio, ipaddress, json, subprocess, sys, time
from mosqit_failover import netlink as nl
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.vip import Vip
from mosqit_failover.probes.links import LinkMonitor, carrier_of

out = {"pyroute2": "pyroute2" in sys.modules}

def ip(*argv):
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout

def held_by_ip():
    data = json.loads(ip("-j", "-4", "addr", "show", "dev", "d0"))
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"])

async def links():
    async with nl.RouteSocket() as rt:
        return [
            {"ifindex": link.index, "ifname": link.ifname, "operstate": link.operstate_name,
             "carrier": carrier_of(link)}
            for link in await rt.dump_links()
        ]

out["links"] = asyncio.run(links())
out["ip_links"] = json.loads(ip("-j", "link", "show"))

vip = Vip(ipaddress.IPv4Interface("10.9.8.50/24"), "d0")
steps = [("held", vip.held())]
async def vip_steps():
    await vip.claim()
    steps.append(("claimed", held_by_ip()))
    steps.append(("held in loop", vip.held()))
    await vip.claim()
    ip("addr", "add", "10.9.8.50/32", "dev", "d0")  # left by an older configuration
    await vip.release()
    steps.append(("released", held_by_ip()))
    await vip.release()
asyncio.run(vip_steps())
steps.append(("held", vip.held()))
try:
    Vip(ipaddress.IPv4Interface("10.9.8.50/24"), "nope0").held()
except EffectError as error:
    steps.append(("missing", str(error)))
out["vip"] = steps

async def monitor():
    reports = []
    changed = asyncio.Event()
    def report(network, carrier):
        reports.append([network, carrier, time.monotonic()])
        changed.set()
    async def wait(count):
        while len(reports) < count:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 3)
    mon = LinkMonitor({"a": "d0", "b": "lo"}, report)
    task = asyncio.create_task(mon.run())
    await wait(2)
    times = {}
    for n, argv in enumerate(
        (["link", "set", "d1", "down"], ["link", "set", "d1", "up"], ["link", "del", "d0"])
    ):
        times[" ".join(argv)] = time.monotonic()
        ip(*argv)
        await wait(3 + n)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return reports, times, mon.reconnects

reports, times, reconnects = asyncio.run(monitor())
out["reports"] = [r[:2] for r in reports]
out["latencies"] = [r[2] - t for r, t in zip(reports[2:], times.values())]
out["reconnects"] = reconnects
print(json.dumps(out))
"""


def test_netlink_vip_and_links_in_a_namespace(namespace: str) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", textwrap.dedent(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nin the namespace: {elapsed:.2f}s, carrier latencies {out['latencies']}")

    assert out["pyroute2"] is False

    listed = out["ip_links"]
    assert sorted((link["ifindex"], link["ifname"]) for link in out["links"]) == sorted(
        (link["ifindex"], link["ifname"].split("@")[0]) for link in listed
    )
    for link in listed:
        ours = next(mine for mine in out["links"] if mine["ifindex"] == link["ifindex"])
        assert ours["operstate"] == link["operstate"]
        assert ours["carrier"] is ("LOWER_UP" in link["flags"])
    by_name = {link["ifname"]: link for link in out["links"]}
    assert by_name["d0"]["operstate"] == "UP" and by_name["d0"]["carrier"] is True
    assert by_name["lo"]["operstate"] == "UNKNOWN" and by_name["lo"]["carrier"] is True

    assert out["vip"] == [
        ["held", False],
        ["claimed", ["10.9.8.1/24", "10.9.8.50/24"]],
        ["held in loop", True],
        ["released", ["10.9.8.1/24"]],
        ["held", False],
        [
            "missing",
            "interface 'nope0' for VIP 10.9.8.50/24 does not exist; fix vip.interface "
            "(or nodes.NAME.vip_interface) or create the interface (see `ip link`)",
        ],
    ]

    assert out["reports"] == [["a", True], ["b", True], ["a", False], ["a", True], ["a", False]]
    assert out["reconnects"] == 0
    assert all(latency < 0.5 for latency in out["latencies"]), out["latencies"]
    assert elapsed < 5, f"took {elapsed:.2f}s"


ALTNAME_SCRIPT = """
import asyncio, ipaddress, json
from mosqit_failover.effects.vip import Vip
vip = Vip(ipaddress.IPv4Interface("10.9.7.5/24"), "vipnic0")
asyncio.run(vip.claim())
held = vip.held()
asyncio.run(vip.release())
print(json.dumps({"held": held, "after": vip.held()}))
"""


def test_a_vip_interface_named_by_an_alternative_name_is_found(namespace: str) -> None:
    """udev gives NICs alternative names (enp3s0 beside eth0) and the kernel finds a link
    by any of them; the answer names the link by its main name (found by the breaker:
    the VIP was said not to exist)."""
    ip("-n", namespace, "link", "property", "add", "dev", "d0", "altname", "vipnic0")
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", ALTNAME_SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"held": True, "after": False}
    assert "10.9.7.5/24" not in ip("-n", namespace, "addr", "show", "dev", "d0")


def test_an_event_socket_asks_for_a_large_receive_buffer(namespace: str) -> None:
    code = (
        "import socket\nfrom mosqit_failover import netlink as nl\n"
        "with nl.RouteSocket(groups=1) as rt:\n"
        "    print(rt._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 2 * 2**20  # the kernel doubles what it was asked for
