"""Vip and Garp for real, in a throwaway pair of network namespaces.

The fixture makes ``mqtest-a-PID`` and ``mqtest-b-PID`` joined by a veth
(``veth0`` on both sides, 10.231.99.1/24 and .2/24) and always deletes them.
The code under test runs inside ``mqtest-a`` (``ip netns exec ... python -c``),
exactly as the agent runs inside a node's namespace in the lab; frames are
captured with an AF_PACKET socket inside ``mqtest-b``. No traffic leaves the
two namespaces. Skipped unless root.
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
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to make network namespaces",
)

VIP = "10.231.99.50"
IFNAME = "veth0"


@dataclass(frozen=True)
class Pair:
    a: str  # the namespace the code under test runs in
    b: str  # the namespace that watches
    mac_a: str


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = f"mqtest-a-{os.getpid()}", f"mqtest-b-{os.getpid()}"
    made: list[str] = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            made.append(ns)
        ip("link", "add", IFNAME, "netns", a, "type", "veth", "peer", "name", IFNAME, "netns", b)
        for ns, address in ((a, "10.231.99.1/24"), (b, "10.231.99.2/24")):
            ip("-n", ns, "addr", "add", address, "dev", IFNAME)
            ip("-n", ns, "link", "set", IFNAME, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        link = json.loads(ip("-n", a, "-j", "link", "show", IFNAME))
        yield Pair(a, b, link[0]["address"])
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        left = [ns for ns in namespaces() if ns in (a, b)]
        assert not left, f"namespaces left behind: {left}"


def in_ns(ns: str, code: str, timeout: float = 30) -> dict[str, object]:
    """Run Python code in namespace ns; it prints one JSON object as its last line."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def addresses(ns: str) -> list[str]:
    data = json.loads(ip("-n", ns, "-j", "-4", "addr", "show", "dev", IFNAME))
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"])


# -- Vip ------------------------------------------------------------------------

VIP_SCRIPT = """
import asyncio, ipaddress, json
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.vip import Vip

vip = Vip(ipaddress.IPv4Interface("{vip}/24"), "{ifname}")
out = {{}}
out["held_at_start"] = vip.held()

async def main():
    await vip.claim()
    await vip.claim()  # idempotent
    out["held_in_loop"] = vip.held()  # works with a running event loop too
asyncio.run(main())
out["held_after_claim"] = vip.held()
print(json.dumps(out))
"""


def test_vip_claim_is_idempotent_and_held_sees_it(pair: Pair) -> None:
    out = in_ns(pair.a, VIP_SCRIPT.format(vip=VIP, ifname=IFNAME))
    assert out == {"held_at_start": False, "held_in_loop": True, "held_after_claim": True}
    assert addresses(pair.a) == ["10.231.99.1/24", f"{VIP}/24"]


RELEASE_SCRIPT = """
import asyncio, ipaddress, json
from mosqit_failover.effects.vip import Vip

vip = Vip(ipaddress.IPv4Interface("{vip}/24"), "{ifname}")
out = {{"held_before": vip.held()}}
asyncio.run(vip.release())
asyncio.run(vip.release())  # idempotent
out["held_after"] = vip.held()
print(json.dumps(out))
"""


def test_vip_release_removes_every_prefix_and_is_idempotent(pair: Pair) -> None:
    ip("-n", pair.a, "addr", "add", f"{VIP}/24", "dev", IFNAME)
    ip("-n", pair.a, "addr", "add", f"{VIP}/32", "dev", IFNAME)  # left by an old config
    out = in_ns(pair.a, RELEASE_SCRIPT.format(vip=VIP, ifname=IFNAME))
    assert out == {"held_before": True, "held_after": False}
    assert addresses(pair.a) == ["10.231.99.1/24"]


MISSING_SCRIPT = """
import asyncio, ipaddress, json
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.vip import Vip

vip = Vip(ipaddress.IPv4Interface("{vip}/24"), "mqtest-nope0")
errors = []
for call in (vip.claim, vip.release):
    try:
        asyncio.run(call())
        errors.append(None)
    except EffectError as error:
        errors.append(str(error))
try:
    vip.held()
    errors.append(None)
except EffectError as error:
    errors.append(str(error))
print(json.dumps({{"errors": errors}}))
"""


def test_vip_missing_interface_is_named(pair: Pair) -> None:
    out = in_ns(pair.a, MISSING_SCRIPT.format(vip=VIP))
    errors = out["errors"]
    assert isinstance(errors, list) and len(errors) == 3
    for message in errors:
        assert message is not None
        assert "interface 'mqtest-nope0'" in message
        assert "does not exist" in message
        assert "vip.interface" in message


# -- Garp -----------------------------------------------------------------------

CAPTURE_SCRIPT = """
import json, select, socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
sock.bind(("{ifname}", 0))
print("ready", flush=True)
frames = []
deadline = time.monotonic() + {seconds}
watched = [sock, sys.stdin]
while time.monotonic() < deadline:
    ready = select.select(watched, [], [], max(0, deadline - time.monotonic()))[0]
    if sock in ready:
        data, _ = sock.recvfrom(2048)
        frames.append([time.monotonic(), data.hex()])
    if sys.stdin in ready and not sys.stdin.read():  # the sender is done: a last moment
        watched = [sock]
        deadline = min(deadline, time.monotonic() + 0.3)
print(json.dumps({{"frames": frames}}))
"""


class Capture:
    """ARP frames arriving on veth0 in a namespace, until `frames()` is asked for (the
    sender is done) or for `seconds` at most: a slow start of the sender on a loaded
    machine must not cut the burst short."""

    def __init__(self, ns: str, seconds: float) -> None:
        code = CAPTURE_SCRIPT.format(ifname=IFNAME, seconds=seconds)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        assert ready.strip() == "ready", self.proc.stderr.read() if self.proc.stderr else ""

    def frames(self) -> list[tuple[float, bytes]]:
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        data = json.loads(out.strip().splitlines()[-1])
        return [(t, bytes.fromhex(h)) for t, h in data["frames"]]


GARP_SCRIPT = """
import asyncio, ipaddress, json, time
from mosqit_failover.effects.garp import Garp

async def main():
    garp = Garp(ipaddress.IPv4Address("{vip}"), "{ifname}", count={count}, interval={interval})
    began = time.monotonic()
    await garp.announce()
    returned = time.monotonic()
    {between}
    await garp.wait()
    garp.close()
    return {{"began": began, "returned": returned}}

print(json.dumps(asyncio.run(main())))
"""


def announce(ns: str, count: int, interval: float, between: str = "pass") -> dict[str, float]:
    code = GARP_SCRIPT.format(
        vip=VIP, ifname=IFNAME, count=count, interval=interval, between=between
    )
    out = in_ns(ns, code)
    return {k: float(v) for k, v in out.items()}  # type: ignore[arg-type]


def check_garp(frame: bytes, mac: str) -> None:
    mac_bytes = bytes.fromhex(mac.replace(":", ""))
    vip = bytes(int(x) for x in VIP.split("."))
    assert len(frame) == 60  # padded to the Ethernet minimum
    assert frame[0:6] == b"\xff" * 6  # broadcast
    assert frame[6:12] == mac_bytes
    assert frame[12:14] == b"\x08\x06"  # ARP
    assert frame[14:22] == bytes.fromhex("0001 0800 06 04 0001")  # Ethernet/IPv4 request
    assert frame[22:28] == mac_bytes  # sender MAC
    assert frame[28:32] == vip  # sender IP
    assert frame[32:38] == bytes(6)  # target MAC
    assert frame[38:42] == vip  # target IP = sender IP: gratuitous
    assert frame[42:] == bytes(18)


def test_garp_first_frame_at_once_then_the_burst(pair: Pair) -> None:
    capture = Capture(pair.b, seconds=30.0)
    times = announce(pair.a, count=5, interval=0.15)
    frames = capture.frames()
    assert len(frames) == 5
    for _, frame in frames:
        check_garp(frame, pair.mac_a)
    arrivals = [t for t, _ in frames]
    assert times["returned"] - times["began"] < 0.05  # announce() does not wait for the burst
    assert arrivals[0] <= times["returned"] + 0.05  # the first was sent before it returned
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(0.12 < gap < 0.5 for gap in gaps), gaps


def test_garp_updates_the_neighbours_arp_cache(pair: Pair) -> None:
    # b believes the VIP is elsewhere (the old owner); the announcement must fix that.
    old = "02:00:00:00:00:99"
    ip("-n", pair.b, "neigh", "replace", VIP, "lladdr", old, "dev", IFNAME, "nud", "stale")
    announce(pair.a, count=1, interval=0)
    deadline = time.monotonic() + 2
    while True:
        entry = json.loads(ip("-n", pair.b, "-j", "neigh", "show", VIP, "dev", IFNAME))
        if entry and entry[0].get("lladdr") == pair.mac_a:
            break
        assert time.monotonic() < deadline, f"neighbour entry not updated: {entry}"
        time.sleep(0.05)


def test_garp_new_announce_cancels_the_unfinished_burst(pair: Pair) -> None:
    capture = Capture(pair.b, seconds=30.0)
    # Second announce 0.05s into a 5 x 0.2s burst: 1 frame of the first, 5 of the second.
    announce(
        pair.a, count=5, interval=0.2, between="await asyncio.sleep(0.05); await garp.announce()"
    )
    frames = capture.frames()
    assert len(frames) == 6
    arrivals = [t for t, _ in frames]
    assert arrivals[1] - arrivals[0] < 0.15


GARP_ERROR_SCRIPT = """
import asyncio, ipaddress, json
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.garp import Garp

async def main():
    errors = []
    for ifname in ("mqtest-nope0", "{ifname}"):
        garp = Garp(ipaddress.IPv4Address("{vip}"), ifname)
        try:
            await garp.announce()
            errors.append(None)
        except EffectError as error:
            errors.append(str(error))
        garp.close()
    return {{"errors": errors}}

print(json.dumps(asyncio.run(main())))
"""


def test_garp_missing_or_down_interface(pair: Pair) -> None:
    ip("-n", pair.a, "link", "set", IFNAME, "down")
    out = in_ns(pair.a, GARP_ERROR_SCRIPT.format(vip=VIP, ifname=IFNAME))
    errors = out["errors"]
    assert isinstance(errors, list)
    missing, down = (str(e) for e in errors)
    assert "interface 'mqtest-nope0' does not exist" in missing
    assert f"interface '{IFNAME}' is down" in down


ARP_ASK_SCRIPT = """
import ipaddress, json, logging
from mosqit_failover.effects.garp import ArpAsk

logged = []
logging.basicConfig(level=logging.WARNING, handlers=[logging.Handler()])
logging.getLogger().handlers[0].emit = lambda record: logged.append(record.getMessage())
out = {{}}
for ifname in ("mqtest-nope0", "{ifname}"):
    ours, theirs = ipaddress.IPv4Address("10.231.99.1"), ipaddress.IPv4Address("10.231.99.2")
    asker = ArpAsk(ours, theirs, ifname)
    asker.ask()
    asker.ask()
    out[ifname] = {{"sent": asker.sent, "error": asker.last_error}}
    asker.close()
out["logged"] = logged
print(json.dumps(out))
"""


def test_an_arp_request_of_ours_gives_the_neighbour_our_address_at_once(pair: Pair) -> None:
    """What ends a switch's silence under loss (config.SWITCH_ARP_AFTER): the neighbour
    lost its entry for us and waits for its own broadcasts a second apart; a request of
    ours that reaches it settles the entry at once. A missing interface is said once and
    raises nothing (the prober goes on)."""
    ip("-n", pair.b, "neigh", "flush", "dev", IFNAME)
    capture = Capture(pair.b, seconds=30.0)
    out = in_ns(pair.a, ARP_ASK_SCRIPT.format(ifname=IFNAME))
    frames = capture.frames()
    assert out[IFNAME] == {"sent": 2, "error": None}
    missing = out["mqtest-nope0"]
    assert isinstance(missing, dict) and missing["sent"] == 0
    assert "interface 'mqtest-nope0' does not exist" in str(missing["error"])
    assert out["logged"] == [missing["error"]]  # once, not for every ask
    mac = bytes.fromhex(pair.mac_a.replace(":", ""))
    request = frames[0][1]
    assert request[6:12] == mac and request[20:22] == b"\x00\x01"  # from us, a request
    assert request[28:32] == bytes([10, 231, 99, 1]) and request[38:42] == bytes([10, 231, 99, 2])
    entry = json.loads(ip("-n", pair.b, "-j", "neigh", "show", "10.231.99.1", "dev", IFNAME))
    assert entry and entry[0].get("lladdr") == pair.mac_a, entry


def test_no_namespace_left_behind() -> None:
    # Runs after the tests above (file order): their finalizers removed everything.
    assert not [ns for ns in namespaces() if ns.startswith(f"mqtest-a-{os.getpid()}")]
    assert not [ns for ns in namespaces() if ns.startswith(f"mqtest-b-{os.getpid()}")]
