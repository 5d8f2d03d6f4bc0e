"""The echo cadence on a virtual clock: the real EchoProber and _Cadence, a loop whose
timers run a little late (as asyncio's, whose epoll wait rounds to milliseconds) and a
fake raw socket whose target answers until a given moment. Exact sequences that the
namespace tests (test_probes.py) can only show statistically."""

from __future__ import annotations

import heapq
import itertools
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

from mosqit_failover.config import FOLLOW_GRACE, FOLLOW_REACH, Timing
from mosqit_failover.probes import echo


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self._when, self.callback, self.cancelled = when, callback, False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    """call_at/call_soon/time; each callback runs 2 µs plus up to ``jitter`` late."""

    def __init__(self, jitter: float, seed: int) -> None:
        self.now = 0.0
        self.jitter = jitter
        self.rng = random.Random(seed)
        self._queue: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()
        self.ran: list[tuple[float, Callable[[], None]]] = []  # every callback run, when

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        heapq.heappush(self._queue, (when, next(self._order), handle))
        return handle

    def call_soon(self, callback: Callable[[], None]) -> Handle:
        return self.call_at(self.now, callback)

    def run_until(self, end: float) -> None:
        while self._queue and self._queue[0][0] <= end:
            when, _, handle = heapq.heappop(self._queue)
            if not handle.cancelled:
                self.now = max(self.now, when + 2e-6 + self.rng.uniform(0, self.jitter))
                self.ran.append((self.now, handle.callback))
                handle.callback()
        self.now = max(self.now, end)


class Target:
    """A fake raw socket: the target answers in ``rtt`` until ``silent_from``; a probe
    sent at ``error_at`` gets an ICMP error back at ``error_back``."""

    def __init__(self, loop: VirtualLoop, rtt: float, silent_from: float) -> None:
        self.loop, self.rtt, self.silent_from = loop, rtt, silent_from
        self.prober: echo.EchoProber | None = None
        self.sends: list[float] = []
        self.error_at: float | None = None
        self.error_back = 0.0

    def socket(self, _prober: echo.EchoProber) -> Target:
        return self

    def sendto(self, packet: bytes, _address: Any) -> None:
        prober, now = self.prober, self.loop.time()
        assert prober is not None
        seq = struct.unpack("!H", packet[6:8])[0]
        self.sends.append(now)
        if self.error_at is not None and abs(now - self.error_at) < 1e-3:
            quoted = socket.inet_aton(prober.target)
            self.loop.call_at(self.error_back, lambda: prober._handle(3, 1, 0, seq, quoted))
        elif now < self.silent_from:
            self.loop.call_at(now + self.rtt, lambda: prober._handle(0, 0, 0, seq, echo.PAYLOAD))

    def drain(self, _limit: int = 0) -> None:
        pass


def on_a_cadence_of_its_own(
    loop: VirtualLoop, target: Target, prober: echo.EchoProber
) -> echo.EchoProber:
    """``prober`` on ``loop`` with ``target`` as its socket and a cadence of its own."""
    cadence = echo._Cadence(loop, prober.interval)  # type: ignore[arg-type]
    target.prober = prober
    prober._loop, prober._channel, prober._cadence = loop, target, cadence  # type: ignore[assignment]
    cadence.members.append(prober)
    cadence.changed()
    return prober


def switch_prober(
    loop: VirtualLoop, target: Target, timing: Timing, slots: list[float]
) -> echo.EchoProber:
    """The daemon's switch prober for ``timing``, its slot hook noting each slot."""
    prober = echo.EchoProber(
        "switch-a",
        "10.0.0.1",
        "10.0.0.254",
        timing.interval,
        lambda _answered: None,
        timeout=timing.switch_echo_timeout,
        every=timing.switch_probe_every,
        calm_every=timing.switch_calm_every,
        retries=2,
        retry_each_slot=True,
        on_slot=lambda: slots.append(loop.time()),
    )
    return on_a_cadence_of_its_own(loop, target, prober)


def test_an_answering_switch_is_probed_every_fourth_slot_a_silent_one_every_second() -> None:
    timing = Timing()
    for seed in range(12):
        loop = VirtualLoop(jitter=0.003, seed=seed)
        silent_from = 5.0 + seed * 0.037
        target = Target(loop, rtt=0.0003, silent_from=silent_from)
        switch_prober(loop, target, timing, [])
        loop.run_until(silent_from + timing.switch_timeout + 1)
        calm = [t for t in target.sends if 1.0 < t < silent_from]
        gaps = [b - a for a, b in itertools.pairwise(calm)]
        assert gaps and all(0.39 < g < 0.41 for g in gaps), (seed, gaps)
        last_answered = max(t for t in target.sends if t < silent_from)
        tries = [t for t in target.sends if last_answered < t < last_answered + 2.0]
        # Timing.switch_tries counts every slot's two retries in full: 23. Before each
        # slot's probe had retries of its own, those that ran into the next slot shared
        # its counter (20-22 here), and a calm prober whose probe expired just after a
        # slot's timer skipped that slot
        assert len(tries) >= timing.switch_tries == 23, (seed, len(tries), tries)


def test_an_icmp_error_read_just_before_a_slot_does_not_lose_the_slot() -> None:
    """The reader runs before the timer in the same pass of the loop: the miss replans
    the cadence (calm to the full pace), which once planned past the due slot and lost
    it, heartbeat hook included, without counting it as skipped."""
    timing = Timing()
    loop = VirtualLoop(jitter=0.0, seed=0)
    target = Target(loop, rtt=0.0003, silent_from=1e9)
    target.error_at, target.error_back = 2.8, 2.9 - 1e-6  # the calm probe of slot 28
    slots: list[float] = []
    prober = switch_prober(loop, target, timing, slots)
    loop.run_until(3.5)
    ran = {round(t / timing.interval) for t in slots}
    assert set(range(20, 35)) <= ran, sorted(ran)
    assert prober.skipped == 0


def test_the_slot_where_a_calm_probes_timeout_ends_gets_its_probe() -> None:
    """interval 100 ms, switch_timeout 1.1 s: a probe every slot, every 2nd while calm,
    the timeout one slot. The calm probe to a switch gone silent expires at the next
    slot; whether its expiry or the slot's timer runs first is the timers' jitter. The
    slot must probe either way (it was skipped when the slot ran first: two tries
    fewer)."""
    timing = Timing(interval=0.1, heartbeat=0.05, switch_timeout=1.1)
    assert (timing.switch_probe_every, timing.switch_calm_every) == (1, 2)
    assert timing.switch_echo_timeout == 0.1
    for seed in range(12):
        loop = VirtualLoop(jitter=0.003, seed=seed)
        target = Target(loop, rtt=0.0003, silent_from=3.95)  # slot 40: the first unanswered
        switch_prober(loop, target, timing, [])
        loop.run_until(6.0)
        at = 4.1  # slot 41: the calm probe's retry and the slot's own probe
        assert sum(at <= t < at + 0.01 for t in target.sends) >= 2, (seed, target.sends)
        for slot in range(42, 50):  # and from then on every slot probes
            at = slot * timing.interval
            assert any(at <= t < at + 0.01 for t in target.sends), (seed, slot, target.sends)


def peer_node(loop: VirtualLoop, timing: Timing, slots: list[float]) -> echo.EchoProber:
    """A node's peer prober on a cadence of its own (each node is its own process), its
    slot hook noting each slot; the target answers for ever."""
    target = Target(loop, rtt=0.0003, silent_from=float("inf"))
    prober = echo.EchoProber(
        "peer-a",
        "10.0.0.1",
        "10.0.0.2",
        timing.interval,
        lambda _answered: None,
        timeout=timing.echo_timeout,
        retries=timing.misses - 1,
        on_slot=lambda: slots.append(loop.time()),
    )
    return on_a_cadence_of_its_own(loop, target, prober)


def slot_after(slots: list[float], moment: float) -> float:
    return next(t for t in slots if t >= moment)


def cluster(
    timing: Timing,
    seed: int,
    count: int = 2,
    one_way: float = 0.0003,
    jitter: float = 0.0,
    phases: list[float] | None = None,
) -> tuple[VirtualLoop, list[list[float]], list[echo.EchoProber]]:
    """``count`` nodes started at random phases (or ``phases``); each slot's heartbeat
    reaches every other node ``one_way`` (plus up to ``jitter``) later, and a node other
    than the first calls its follow() for the first node's, as the daemon does."""
    interval = timing.interval
    loop = VirtualLoop(jitter=0.0005 * interval / 0.1, seed=seed)
    rng = random.Random(seed)
    slots: list[list[float]] = [[] for _ in range(count)]
    probers: list[echo.EchoProber] = []
    starts = phases or sorted(rng.uniform(0.001, 0.999) * interval for _ in range(count))
    for node in range(count):
        loop.run_until(starts[node])
        probers.append(peer_node(loop, timing, slots[node]))
    for node, prober in enumerate(probers):
        note = prober.on_slot
        assert note is not None

        def on_slot(note: Callable[[], None] = note, node: int = node) -> None:
            note()  # the slot's heartbeat goes out with it (the daemon's slot Tick)
            if node == 0:
                for other in probers[1:]:
                    arrival = loop.time() + one_way + rng.uniform(0, jitter)
                    loop.call_at(arrival, other.follow)

        prober.on_slot = on_slot
        cadence = prober._cadence
        assert cadence is not None
        cadence.changed()
    return loop, slots, probers


def rates(slots: list[list[float]], interval: float, start: float, end: float) -> list[float]:
    """Slots per interval of each node between ``start`` and ``end`` intervals."""
    span = (end - start) * interval
    return [
        sum(1 for t in s if start * interval < t <= end * interval) / span * interval for s in slots
    ]


def test_the_second_nodes_slot_runs_in_the_wake_up_of_the_first_nodes_heartbeat() -> None:
    """From any phase, within a few slots every slot of the second node runs when the
    first node's heartbeat arrives (followed), and neither node's pace drifts."""
    for timing in (Timing(), parse_fast()):
        interval = timing.interval
        for seed in range(16):
            loop, slots, probers = cluster(timing, seed)
            loop.run_until(10 * interval)
            before = probers[1].slots_followed
            loop.run_until(40 * interval)
            assert probers[1].slots_followed - before >= 29, (interval, seed)
            assert probers[0].slots_followed == 0
            for pace in rates(slots, interval, 10, 40):
                assert 0.97 <= pace <= 1.03, (interval, seed, pace)


def test_far_apart_or_eight_nodes_keep_the_pace() -> None:
    """The breaker's cases for following every peer: two nodes 20-30 ms apart one way at
    the standard timing, and eight nodes on a LAN evenly spread, pulled each other's
    slots forward for ever (1.25 slots an interval). Following the first node only, the
    pace stays one slot an interval and the followers follow."""
    timing = Timing()
    interval = timing.interval
    for one_way in (0.02, 0.03):
        for seed in range(8):
            loop, slots, probers = cluster(timing, seed, one_way=one_way)
            loop.run_until(100 * interval)
            assert all(0.98 <= pace <= 1.02 for pace in rates(slots, interval, 30, 100))
            assert probers[1].slots_followed >= 65, (one_way, seed)
    spread = [i * interval / 8 + 0.001 for i in range(8)]
    loop, slots, probers = cluster(timing, 1, count=8, phases=spread)
    loop.run_until(100 * interval)
    assert all(0.98 <= pace <= 1.02 for pace in rates(slots, interval, 30, 100))
    assert all(p.slots_followed >= 65 for p in probers[1:])


def test_a_heartbeat_a_little_late_still_shares_the_wake_up() -> None:
    """Arrivals that vary by up to 4 % of an interval (the timers of both nodes run a
    millisecond or two late): the follower's timer waits FOLLOW_GRACE for the heartbeat,
    so nearly every slot still runs in its wake-up; the slots stay 1 - FOLLOW_REACH to
    1 + FOLLOW_GRACE intervals apart."""
    for timing in (Timing(), parse_fast()):
        interval = timing.interval
        for seed in range(8):
            loop, slots, probers = cluster(timing, seed, jitter=0.04 * interval)
            loop.run_until(10 * interval)
            before = probers[1].slots_followed
            loop.run_until(110 * interval)
            assert probers[1].slots_followed - before >= 95, (interval, seed)
            gaps = [b - a for a, b in itertools.pairwise(slots[1])]
            low, high = 1 - FOLLOW_REACH, 1 + FOLLOW_GRACE
            assert all(low * interval - 1e-6 <= g <= high * interval + 1e-3 for g in gaps)


def test_follow_runs_or_moves_the_next_slot_a_fifth_of_an_interval_at_most() -> None:
    timing = Timing()  # 100 ms slots
    loop = VirtualLoop(jitter=0.0, seed=0)
    slots: list[float] = []
    prober = peer_node(loop, timing, slots)
    loop.run_until(1.0)  # slots at 0.0, 0.1, ..., 1.0 (each 2 µs late)
    assert len(slots) == 11
    loop.run_until(1.04)
    prober.follow()  # the next slot 60 ms ahead: moved by 20 ms (FOLLOW_REACH) to 1.08
    loop.run_until(1.13)
    assert abs(slot_after(slots, 1.01) - 1.08) < 1e-4, slots[-3:]
    prober.follow()  # 1.18 ahead: moved to 1.16, no closer to the last slot (1.08)
    loop.run_until(1.155)
    prober.follow()  # 5 ms ahead, but 1.16 is as close to the last slot as it may be
    assert slots[-1] < 1.155
    loop.run_until(1.165)
    assert abs(slots[-1] - 1.16) < 1e-4
    assert prober.slots_followed == 0
    loop.run_until(1.25)
    prober.follow()  # 10 ms ahead (1.26): run at once
    assert slots[-1] == loop.time() == 1.25
    assert prober.slots_followed == 1
    loop.run_until(1.6)
    # no heartbeat came: the timer waited FOLLOW_GRACE (5 ms) for one, then ran the slot
    assert abs(slot_after(slots, 1.251) - 1.355) < 1e-4, slots[-4:]
    assert abs(slot_after(slots, 1.356) - 1.45) < 1e-4, slots[-4:]  # its own grid again
    # the timer armed for 1.26 was cancelled: it would have been a wake-up for nothing
    cadence = prober._cadence
    assert cadence is not None
    ticks = [t for t, callback in loop.ran if callback == cadence._tick and 1.25 < t < 1.35]
    assert ticks == [], ticks


def test_a_peer_beating_fast_pulls_the_slots_to_four_fifths_of_an_interval_at_most() -> None:
    """A follow() every 3 ms (a troubled peer's pace, if the caller did not hold it back
    while troubled): slots never closer than 1 - FOLLOW_REACH intervals."""
    timing = parse_fast()
    loop = VirtualLoop(jitter=0.0002, seed=3)
    slots: list[float] = []
    prober = peer_node(loop, timing, slots)

    def pull() -> None:
        prober.follow()
        loop.call_at(loop.time() + 0.003, pull)

    loop.call_at(0.0011, pull)
    loop.run_until(2.0)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= (1 - FOLLOW_REACH) * timing.interval - 1e-6, min(gaps)
    assert len(slots) <= 2.0 / ((1 - FOLLOW_REACH) * timing.interval) + 2


def parse_fast() -> Timing:
    from mosqit_failover.config import parse
    from mosqit_failover.sim_scenarios import SIM_CONFIG

    return parse(SIM_CONFIG.replace("[vip]", '[timing]\nprofile = "fast"\n\n[vip]', 1)).timing
