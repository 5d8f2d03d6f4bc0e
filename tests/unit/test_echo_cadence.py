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

from mosqit_failover.config import Timing
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


def two_nodes(timing: Timing, seed: int) -> tuple[VirtualLoop, dict[str, list[float]]]:
    """Nodes a and b, b started at a random phase; each slot's heartbeat reaches the
    other node 0.3 ms later and calls its follow() (the daemon, on a calm heartbeat)."""
    interval = timing.interval
    loop = VirtualLoop(jitter=0.0005 * interval / 0.1, seed=seed)
    slots: dict[str, list[float]] = {"a": [], "b": []}
    probers = {"a": peer_node(loop, timing, slots["a"])}
    loop.run_until(random.Random(seed).uniform(0.001, 0.999) * interval)
    probers["b"] = peer_node(loop, timing, slots["b"])
    for name, other in (("a", "b"), ("b", "a")):
        note = probers[name].on_slot
        assert note is not None

        def on_slot(note: Callable[[], None] = note, other: str = other) -> None:
            note()  # the slot's heartbeat goes out with it (the daemon's slot Tick)
            loop.call_at(loop.time() + 0.0003, probers[other].follow)

        probers[name].on_slot = on_slot
        cadence = probers[name]._cadence
        assert cadence is not None
        cadence.changed()
    return loop, slots


def test_of_two_nodes_the_later_ones_slot_follows_the_others_heartbeat() -> None:
    """From any phase, within a few slots one node's slot runs in the wake-up of the
    other's heartbeat, and neither node's pace drifts (one slot an interval)."""
    for timing in (Timing(), parse_fast()):
        interval = timing.interval
        for seed in range(16):
            loop, slots = two_nodes(timing, seed)
            loop.run_until(40 * interval)
            for mine, theirs in (("a", "b"), ("b", "a")):
                for t in (t for t in slots[mine] if 10 * interval < t < 39 * interval):
                    near = min(abs(t - u) for u in slots[theirs])
                    assert near < 0.1 * interval, (timing.interval, seed, mine, t, near)
            for name in slots:  # the pace: one slot an interval, no drift
                count = sum(1 for t in slots[name] if 10 * interval < t <= 40 * interval)
                assert 29 <= count <= 31, (timing.interval, seed, name, count)


def test_follow_moves_a_slot_due_within_half_an_interval_by_a_fifth_at_most() -> None:
    timing = Timing()  # 100 ms slots
    loop = VirtualLoop(jitter=0.0, seed=0)
    slots: list[float] = []
    prober = peer_node(loop, timing, slots)
    loop.run_until(1.0)  # slots at 0.0, 0.1, ..., 1.0 (each 2 µs late)
    assert len(slots) == 11
    loop.run_until(1.04)
    prober.follow()  # the next slot 60 ms ahead: not moved
    loop.run_until(1.13)
    assert slot_after(slots, 1.01) > 1.099
    loop.run_until(1.16)
    prober.follow()  # 40 ms ahead: moved by 20 ms (FOLLOW_REACH) to 1.18, not run now
    assert slots[-1] < 1.16
    loop.run_until(1.21)
    assert abs(slot_after(slots, 1.11) - 1.18) < 1e-4, slots[-3:]
    loop.run_until(1.255)
    prober.follow()  # 25 ms ahead (1.28): moved to 1.26, not closer to the last slot
    assert slots[-1] < 1.255
    loop.run_until(1.259)
    prober.follow()  # 1 ms ahead, but 1.26 is as close to the last slot as it may be
    assert slots[-1] < 1.255
    loop.run_until(1.265)
    assert abs(slots[-1] - 1.26) < 1e-4
    assert prober.slots_followed == 0
    loop.run_until(1.35)
    prober.follow()  # 10 ms ahead (1.36): run at once
    assert slots[-1] == loop.time() == 1.35
    assert prober.slots_followed == 1
    loop.run_until(1.6)
    assert abs(slot_after(slots, 1.351) - 1.45) < 1e-4, slots[-4:]
    # the timer armed for 1.36 was cancelled: it would have been a wake-up for nothing
    cadence = prober._cadence
    assert cadence is not None
    ticks = [t for t, callback in loop.ran if callback == cadence._tick and 1.35 < t < 1.44]
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
    assert min(gaps) >= (1 - echo.FOLLOW_REACH) * timing.interval - 1e-6, min(gaps)
    assert len(slots) <= 2.0 / ((1 - echo.FOLLOW_REACH) * timing.interval) + 2


def parse_fast() -> Timing:
    from mosqit_failover.config import parse
    from mosqit_failover.sim_scenarios import SIM_CONFIG

    return parse(SIM_CONFIG.replace("[vip]", '[timing]\nprofile = "fast"\n\n[vip]', 1)).timing
