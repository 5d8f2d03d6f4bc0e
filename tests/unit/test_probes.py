"""The probes against real links: two throwaway network namespaces and a veth pair.

Namespace ``mqprobe-PID-N-x`` holds ``pa`` (10.231.98.1/24), ``mqprobe-PID-N-y``
holds its peer ``pb`` (10.231.98.2/24). The probe runs inside ``x`` in a
subprocess (tests/unit/probe_driver.py) that prints one JSON line per report;
the test changes the world from outside and watches the lines. Traffic only
ever goes to addresses inside these namespaces. Needs root; skipped otherwise.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosqit_failover.probes import echo
from tests.unit.jsonl_process import JsonLinesProcess, Record

PREFIX = "mqprobe-"
HERE_IP = "10.231.98.1"
PEER_IP = "10.231.98.2"
NOBODY_IP = "10.231.98.3"  # in the veth subnet, held by no one
DRIVER = Path(__file__).with_name("probe_driver.py")
PYTHON = sys.executable


def _ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def _sweep_stale() -> None:
    """Delete mqprobe- namespaces left by an earlier run that was killed."""
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _ip("netns", "del", name, check=False)


class Driver(JsonLinesProcess):
    """One probe_driver.py process inside a namespace, its JSON lines in a queue."""

    def __init__(self, ns: str, *args: str) -> None:
        super().__init__(["ip", "netns", "exec", ns, PYTHON, str(DRIVER), *args])

    def check(self, record: Record) -> None:
        assert "crash" not in record, record

    def finish(self, timeout: float = 10.0) -> Record:
        """Close stdin (the driver stops its probe) and return the summary record."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        end = self.records[-1] if self.records else {}
        assert end.get("end") is True, f"{end} {self.read_stderr()}"
        assert self.proc.returncode == 0
        return end

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class NetPair:
    """Two namespaces joined by a veth pair; spawns drivers in ``x``."""

    def __init__(self, tag: str) -> None:
        self.x = f"{PREFIX}{os.getpid()}-{tag}-x"
        self.y = f"{PREFIX}{os.getpid()}-{tag}-y"
        self.drivers: list[Driver] = []

    def create(self) -> None:
        _ip("netns", "add", self.x)
        _ip("netns", "add", self.y)
        # Distinct ifindexes matter: the kernel's linkwatch treats a carrier
        # change as urgent (notified at once) only for devices whose iflink
        # differs from their own index; with pa and pb both index 2 a carrier
        # loss is batched up to 1 s, as on a physical NIC.
        _ip(
            "link",
            "add",
            "pa",
            "index",
            "20",
            "type",
            "veth",
            "peer",
            "name",
            "pb",
            "index",
            "30",
            "netns",
            self.y,
            ns=self.x,
        )
        _ip("addr", "add", f"{HERE_IP}/24", "dev", "pa", ns=self.x)
        _ip("addr", "add", f"{PEER_IP}/24", "dev", "pb", ns=self.y)
        for ns, dev in ((self.x, "pa"), (self.y, "pb")):
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "set", dev, "up", ns=ns)

    def destroy(self) -> None:
        for driver in self.drivers:
            driver.kill()
        for ns in (self.x, self.y):
            _ip("netns", "del", ns, check=False)

    def driver(self, *args: str) -> Driver:
        driver = Driver(self.x, *args)
        self.drivers.append(driver)
        return driver

    def echo(self, interval: float, seconds: float, *extra: str, target: str = PEER_IP) -> Driver:
        return self.driver("echo", HERE_IP, target, str(interval), str(seconds), *extra)

    def wait_answered(self) -> None:
        """Until x can ping y (veth carrier and addresses settle in a few ms)."""
        deadline = time.monotonic() + 5
        while True:
            proc = subprocess.run(
                ["ip", "netns", "exec", self.x, "ping", "-c1", "-W1", PEER_IP],
                capture_output=True,
                check=False,
            )
            if proc.returncode == 0:
                return
            assert time.monotonic() < deadline, "veth pair never became reachable"


@pytest.fixture
def net(request: pytest.FixtureRequest) -> Iterator[NetPair]:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and raw ICMP sockets")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (the ip command)")
    _sweep_stale()
    pair = NetPair(str(abs(hash(request.node.nodeid)) % 100000))
    try:
        pair.create()
    except (RuntimeError, OSError) as exc:
        pair.destroy()
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        yield pair
    finally:
        pair.destroy()
        left = [n for n in _ip("netns", "list", check=False).split() if n in (pair.x, pair.y)]
        assert not left, f"namespaces left behind: {left}"


def _no_duplicates(records: list[Record]) -> None:
    last: dict[str, bool] = {}
    for record in records:
        if "network" in record:
            assert last.get(record["network"]) != record["carrier"], f"duplicate {record}"
            last[record["network"]] = record["carrier"]


# -- LinkMonitor ---------------------------------------------------------------


def test_link_monitor_follows_carrier(net: NetPair) -> None:
    # lo: LOWER_UP with operstate UNKNOWN, which counts as carrier
    mon = net.driver("link", "a=pa,b=ghost,c=lo", "15")
    net.wait_answered()
    mon.wait_for(lambda r: r.get("network") == "a" and r["carrier"] is True, 5)
    mon.wait_for(lambda r: r.get("network") == "b" and r["carrier"] is False, 5)
    mon.wait_for(lambda r: r.get("network") == "c" and r["carrier"] is True, 5)
    time.sleep(0.2)  # the monitor is now waiting on netlink

    # the peer goes down: pa loses carrier (NO-CARRIER), it is still admin up
    t0 = time.monotonic()
    _ip("link", "set", "pb", "down", ns=net.y)
    down = mon.wait_for(lambda r: r.get("network") == "a", 2)
    latency = down["t"] - t0
    print(f"\nlink down detected in {latency * 1000:.1f} ms (including the ip command)")
    assert down["carrier"] is False
    assert latency < 0.2

    t0 = time.monotonic()
    _ip("link", "set", "pb", "up", ns=net.y)
    up = mon.wait_for(lambda r: r.get("network") == "a", 2)
    assert up["carrier"] is True
    print(f"link up detected in {(up['t'] - t0) * 1000:.1f} ms")

    # an interface that appears is reported (a second veth pair, both ends up)
    _ip("link", "add", "ghost", "type", "veth", "peer", "name", "ghost-p", "netns", net.y, ns=net.x)
    _ip("link", "set", "ghost-p", "up", ns=net.y)
    _ip("link", "set", "ghost", "up", ns=net.x)
    assert mon.wait_for(lambda r: r.get("network") == "b", 2)["carrier"] is True

    # deleted interfaces lose carrier
    _ip("link", "del", "ghost", ns=net.x)
    assert mon.wait_for(lambda r: r.get("network") == "b", 2)["carrier"] is False
    _ip("link", "del", "pa", ns=net.x)
    assert mon.wait_for(lambda r: r.get("network") == "a", 2)["carrier"] is False

    end = mon.finish()
    assert end["reconnects"] == 0
    _no_duplicates(mon.records)
    reports = [(r["network"], r["carrier"]) for r in mon.records if "network" in r]
    assert reports == [
        ("a", True),
        ("b", False),
        ("c", True),
        ("a", False),
        ("a", True),
        ("b", True),
        ("b", False),
        ("a", False),
    ]


def test_link_monitor_reports_admin_down_and_rename(net: NetPair) -> None:
    mon = net.driver("link", "a=pa", "10")
    mon.wait_for(lambda r: r.get("network") == "a" and r["carrier"] is True, 5)
    _ip("link", "set", "pa", "down", ns=net.x)
    assert mon.wait_for(lambda r: r.get("network") == "a", 2)["carrier"] is False
    _ip("link", "set", "pa", "name", "pa-old", ns=net.x)
    _ip("link", "set", "pa-old", "up", ns=net.x)
    time.sleep(0.3)  # pa-old regains carrier, but it is not pa: nothing reported
    _ip("link", "set", "pa-old", "down", ns=net.x)
    _ip("link", "set", "pa-old", "name", "pa", ns=net.x)
    _ip("link", "set", "pa", "up", ns=net.x)
    assert mon.wait_for(lambda r: r.get("network") == "a", 2)["carrier"] is True
    mon.finish()
    _no_duplicates(mon.records)
    assert [r["carrier"] for r in mon.records if "network" in r] == [True, False, True]


def test_link_monitor_reopens_netlink_after_overflow(net: NetPair, tmp_path: Path) -> None:
    """A stalled agent during a link storm: ENOBUFS, re-open, re-read the state."""
    mon = net.driver("link", "a=pa", "10")
    mon.wait_for(lambda r: r.get("network") == "a" and r["carrier"] is True, 5)
    batch = tmp_path / "flap"
    batch.write_text("link set pa down\nlink set pa up\n" * 1500 + "link set pa down\n")
    os.kill(mon.proc.pid, signal.SIGSTOP)
    try:
        _ip("-batch", str(batch), ns=net.x)  # ~3000 events: overflows the socket buffer
    finally:
        os.kill(mon.proc.pid, signal.SIGCONT)
    assert mon.wait_for(lambda r: r.get("network") == "a", 5)["carrier"] is False
    end = mon.finish()
    assert end["reconnects"] >= 1
    assert "re-opening" in mon.read_stderr()
    _no_duplicates(mon.records)


# -- EchoProber ----------------------------------------------------------------


def _oks(driver: Driver) -> list[bool]:
    return [r["ok"] for r in driver.records if "ok" in r]


def _wait_misses(driver: Driver, n: int, timeout: float) -> None:
    misses = 0

    def pred(record: Record) -> bool:
        nonlocal misses
        misses = 0 if record.get("ok") else misses + 1
        return misses >= n

    driver.wait_for(pred, timeout)


def test_echo_answers(net: NetPair) -> None:
    net.wait_answered()
    echo = net.echo(0.1, 1.05)
    echo.proc.wait(timeout=10)
    end = echo.finish()
    assert _oks(echo) and all(_oks(echo)), echo.records
    assert end["answered"] >= 9
    assert end["sent"] - end["answered"] <= 1  # the last one may still be in flight
    assert end["consecutive_misses"] == 0
    assert end["last_rtt"] is not None and 0 < end["last_rtt"] < 0.05
    assert end["errors"] == 0


def test_echo_misses_when_peer_address_removed(net: NetPair) -> None:
    net.wait_answered()
    echo = net.echo(0.1, 15)
    echo.wait_for(lambda r: r.get("ok") is True, 3)
    _ip("addr", "del", f"{PEER_IP}/24", "dev", "pb", ns=net.y)
    _wait_misses(echo, 3, 2)
    _ip("addr", "add", f"{PEER_IP}/24", "dev", "pb", ns=net.y)
    echo.wait_for(lambda r: r.get("ok") is True, 3)  # answers again once the address is back
    end = echo.finish()
    assert end["sent"] > end["answered"] >= 2


def test_echo_misses_when_link_down(net: NetPair) -> None:
    net.wait_answered()
    echo = net.echo(0.1, 15)
    echo.wait_for(lambda r: r.get("ok") is True, 3)
    _ip("link", "set", "pb", "down", ns=net.y)  # pa: NO-CARRIER
    _wait_misses(echo, 3, 2)
    _ip("link", "set", "pb", "up", ns=net.y)
    echo.wait_for(lambda r: r.get("ok") is True, 5)
    echo.finish()


def test_echo_survives_network_unreachable(net: NetPair) -> None:
    net.wait_answered()
    echo = net.echo(0.1, 15)
    echo.wait_for(lambda r: r.get("ok") is True, 3)
    # our own address (and with it the route) goes: sends fail with ENETUNREACH
    # and the socket bound to it cannot be re-created until it comes back
    _ip("addr", "del", f"{HERE_IP}/24", "dev", "pa", ns=net.x)
    _wait_misses(echo, 5, 2)
    _ip("addr", "add", f"{HERE_IP}/24", "dev", "pa", ns=net.x)
    echo.wait_for(lambda r: r.get("ok") is True, 5)
    end = echo.finish()
    assert end["errors"] >= 1
    print("\n" + echo.read_stderr())
    assert "unreachable" in echo.read_stderr().lower(), echo.read_stderr()


def test_echo_cadence(net: NetPair) -> None:
    net.wait_answered()
    # answered at 50 ms, and unanswered with a 200 ms timeout (4 probes in flight)
    fast = net.echo(0.05, 2)
    lost = net.echo(0.05, 2, "0.2", target=NOBODY_IP)
    fast.proc.wait(timeout=10)
    lost.proc.wait(timeout=10)
    fast_end, lost_end = fast.finish(), lost.finish()
    assert 36 <= fast_end["sent"] <= 42, fast_end
    assert fast_end["answered"] >= fast_end["sent"] - 2
    assert 36 <= lost_end["sent"] <= 42, lost_end
    assert lost_end["answered"] == 0
    # every probe that reached its timeout was reported as a miss
    assert lost_end["sent"] - 5 <= len(_oks(lost)) <= lost_end["sent"]
    assert not any(_oks(lost))
    times = [r["t"] for r in fast.records if "ok" in r]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.15, gaps


def test_echo_retries_confirm_a_miss_at_once_then_keep_the_cadence(net: NetPair) -> None:
    net.wait_answered()
    # 0.5 s apart, 50 ms timeout, 2 retries: misses at +0.05, +0.10, +0.15, then +0.55, +1.05
    lost = net.echo(0.5, 1.2, "0.05", "2", target=NOBODY_IP)
    lost.proc.wait(timeout=10)
    end = lost.finish()
    times = [r["t"] for r in lost.records if "ok" in r]
    assert not any(_oks(lost))
    assert end["retried"] == 2, end
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 3, times
    assert all(0.04 <= g < 0.2 for g in gaps[:2]), gaps  # the retries: one timeout apart
    assert gaps[2] > 0.3, gaps  # then the cadence again: the streak's retries are spent
    # an answer re-arms the retries
    ok = net.echo(0.1, 1.0, "0.05", "2")
    ok.proc.wait(timeout=10)
    assert ok.finish()["retried"] == 0


def test_echo_retries_each_slot_give_every_slot_its_chances(net: NetPair) -> None:
    """The switch's prober (retry_each_slot): every slot's probe is retried, so a target
    judged by the time since its last answer gets retries + 1 tries per slot, not only
    in the first slot after an answer."""
    net.wait_answered()
    # 0.4 s apart, 50 ms timeout, 2 retries: +0, +0.05, +0.10, then +0.4, +0.45, +0.5, ...
    lost = net.echo(0.4, 1.6, "0.05", "2", "1", "each-slot", target=NOBODY_IP)
    lost.proc.wait(timeout=10)
    end = lost.finish()
    assert not any(_oks(lost))
    slots = end["sent"] - end["retried"]
    # two retries in every slot (the run may end inside the last one); without
    # retry_each_slot there would be two in all
    assert slots >= 3 and end["retried"] >= 2 * slots - 2, end
    times = [r["t"] for r in lost.records if "ok" in r]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [g > 0.2 for g in gaps[:6]] == [False, False, True, False, False, True], gaps


@pytest.mark.parametrize("answered", [True, False])
def test_echo_on_demand_probes_at_once_and_only_while_on(net: NetPair, answered: bool) -> None:
    """set_active: off sends nothing; on sends one probe at once (between slots) whose
    report comes by its timeout, then every slot; off again stops the slots."""
    net.wait_answered()
    target = PEER_IP if answered else NOBODY_IP
    # 300 ms slots, 50 ms timeout; on at 0.45 s (mid-slot), off at 1.05 s, 1.5 s in all
    run = net.driver("echo-demand", HERE_IP, target, "0.3", "0.05", "0.45", "1.05", "1.5")
    run.proc.wait(timeout=10)
    end = run.finish()
    start = next(r["t"] for r in run.records if r.get("started"))
    on = next(r["t"] for r in run.records if r.get("active") is True)
    off = next(r["t"] for r in run.records if r.get("active") is False)
    reports = [r["t"] for r in run.records if "ok" in r]
    assert all(on <= t <= off + 0.06 for t in reports), (start, on, off, reports)
    assert reports and reports[0] - on < (0.02 if answered else 0.08), (on, reports)
    # at once, then the slots at 0.6 and 0.9 s: three probes, each one report
    assert end["sent"] == 3 == len(reports), (end, reports)
    assert all(r["ok"] is answered for r in run.records if "ok" in r)


def test_echo_every_nth_slot(net: NetPair) -> None:
    net.wait_answered()
    slow = net.echo(0.05, 1.0, "0.05", "0", "4")  # a probe every 4th 50 ms slot
    slow.proc.wait(timeout=10)
    end = slow.finish()
    assert 4 <= end["sent"] <= 6, end
    times = [r["t"] for r in slow.records if "ok" in r]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.15 < g < 0.25 for g in gaps), gaps


def test_echo_calm_every_probes_an_answering_target_less_often_a_silent_one_at_full_pace(
    net: NetPair,
) -> None:
    """The switch's prober (calm_every): every 4th 50 ms slot while answered; once the
    replies stop, every slot again (with its retries) until the next answer."""
    net.wait_answered()
    # 50 ms slots, 40 ms timeout, 1 retry, every slot, calm every 4th: 2.4 s in all
    run = net.echo(0.05, 2.4, "0.04", "1", "1", "each-slot", "4")
    run.wait_for(lambda r: r.get("ok") is True, 3)
    time.sleep(0.9)
    _ip("route", "add", "blackhole", f"{HERE_IP}/32", ns=net.y)  # y stops answering
    cut = time.monotonic()
    try:
        run.proc.wait(timeout=10)
    finally:
        _ip("route", "del", "blackhole", f"{HERE_IP}/32", ns=net.y, check=False)
    end = run.finish()
    answered = [r["t"] for r in run.records if r.get("ok") is True]
    missed = [r["t"] for r in run.records if r.get("ok") is False]
    # after the first answer (the first probe may come at any slot): 200 ms, calm
    gaps = [b - a for a, b in itertools.pairwise(answered[1:])]
    assert len(gaps) >= 2 and all(0.17 < g < 0.23 for g in gaps), gaps
    assert answered[-1] < cut + 0.05 and missed, (answered, missed, cut)
    # silent: a probe every slot plus its retry, ~1.4 s after the first miss at 50 ms
    # slots (at the calm pace it would have been 7 probes and their retries)
    slow = [t for t in missed if t > missed[0] + 0.05]
    assert len(slow) >= 30, (len(slow), end)
    assert end["answered"] == len(answered) and end["sent"] - end["retried"] >= 24, end


def test_echo_skips_ahead_after_stall(net: NetPair) -> None:
    net.wait_answered()
    echo = net.echo(0.05, 2)
    echo.wait_for(lambda r: r.get("ok") is True, 3)
    os.kill(echo.proc.pid, signal.SIGSTOP)  # ip netns exec has exec'd python
    try:
        time.sleep(0.6)
    finally:
        os.kill(echo.proc.pid, signal.SIGCONT)
    echo.proc.wait(timeout=10)
    end = echo.finish()
    print(f"\nafter a 0.6 s SIGSTOP at 50 ms: {end}")
    # ~40 slots in 2 s, ~12 of them lost in the stall and skipped, not burst
    assert end["skipped"] >= 8, end
    assert end["sent"] + end["skipped"] <= 42, end
    assert end["sent"] <= 34, end
    # the reply to the probe in flight when stopped was queued in the socket
    oks = _oks(echo)
    assert oks.count(False) <= 1, oks


SECOND_IP = "10.231.98.4"  # a second address of y, added by the shared-socket test


def test_echo_probers_share_one_socket_per_source(net: NetPair) -> None:
    """Four probers on one source address, one raw socket: each gets exactly its own replies.

    Two probe the same target, one another address of the same host, one an
    address nobody holds. Meanwhile y pings us at 50 Hz: ICMP_FILTER keeps those
    echo requests (and our kernel's replies to them) out of the shared socket.
    """
    _ip("addr", "add", f"{SECOND_IP}/24", "dev", "pb", ns=net.y)
    net.wait_answered()
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", net.y, "ping", "-q", "-i", "0.02", HERE_IP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        targets = [PEER_IP, SECOND_IP, NOBODY_IP, PEER_IP]
        multi = net.driver("echo-multi", HERE_IP, "0.05", "2", ",".join(targets), "0.1")
        multi.proc.wait(timeout=10)
        end = multi.finish()
    finally:
        pinger.kill()
        pinger.wait(timeout=5)
    print(f"\nshared socket: {end}")
    probers = end["probers"]
    assert len({p["ident"] for p in probers}) == len(probers)
    assert end["channels_left"] == 0 and end["cadences_left"] == 0  # socket closed, timer gone
    for index, (target, counts) in enumerate(zip(targets, probers, strict=True)):
        oks = [r["ok"] for r in multi.records if r.get("prober") == index]
        assert oks.count(True) == counts["answered"], (index, counts)
        assert counts["sent"] - 2 <= len(oks) <= counts["sent"], (index, counts, len(oks))
        assert counts["errors"] == 0
        if target == NOBODY_IP:
            assert counts["answered"] == 0, counts
        else:
            assert counts["answered"] >= counts["sent"] - 1, (index, counts)
    # started 0.1 s apart on one cadence: ~40, 38, 36, 34 slots in 2 s
    sent = [p["sent"] for p in probers]
    assert 36 <= sent[0] <= 42 and all(a >= b for a, b in itertools.pairwise(sent)), sent
    assert sent[0] - sent[3] in range(4, 9), sent
    # only replies (and unreachables for NOBODY_IP) were read; y's ~100 echo requests were not
    answered = sum(p["answered"] for p in probers)
    assert answered <= end["packets"][HERE_IP] <= answered + sent[2], end


def _ip_header(src: str, dst: str, payload_len: int, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + payload_len,
            0,
            0,
            64,
            1,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + options
    )


def test_parse_icmp() -> None:
    payload = echo.PAYLOAD
    reply = struct.pack("!BBHHH", 0, 0, 0, 0x1234, 7) + payload
    assert echo.parse_icmp(_ip_header(PEER_IP, HERE_IP, len(reply)) + reply) == (
        0,
        0,
        0x1234,
        7,
        payload,
    )
    # IP options shift the ICMP header (icmplib assumes 20 bytes)
    with_options = _ip_header(PEER_IP, HERE_IP, len(reply), b"\x01\x01\x01\x00") + reply
    assert echo.parse_icmp(with_options) == (0, 0, 0x1234, 7, payload)
    # an error quoting one of our echo requests: its id, sequence and destination
    request = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 9)
    quoted = _ip_header(HERE_IP, NOBODY_IP, 8 + len(payload)) + request
    error = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
    parsed = echo.parse_icmp(_ip_header(HERE_IP, HERE_IP, len(error)) + error)
    assert parsed == (3, 1, 0x1234, 9, socket.inet_aton(NOBODY_IP))
    # an error about a UDP datagram (a heartbeat to a stopped agent): not ours
    udp_quoted = bytearray(quoted)
    udp_quoted[9] = 17
    udp_error = struct.pack("!BBHI", 3, 3, 0, 0) + bytes(udp_quoted)
    assert echo.parse_icmp(_ip_header(PEER_IP, HERE_IP, len(udp_error)) + udp_error) is None
    # someone pinging us, other types, truncated or non-IPv4 data
    ping = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 7) + payload
    assert echo.parse_icmp(_ip_header(PEER_IP, HERE_IP, len(ping)) + ping) is None
    full = _ip_header(PEER_IP, HERE_IP, len(reply)) + reply
    for cut in (0, 10, 20, 27):
        assert echo.parse_icmp(full[:cut]) is None, cut
    assert echo.parse_icmp(b"\x60" + full[1:]) is None
    error_full = _ip_header(HERE_IP, HERE_IP, len(error)) + error
    for cut in (28, 40, 48, 55):
        assert echo.parse_icmp(error_full[:cut]) is None, cut
