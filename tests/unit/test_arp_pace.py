"""ArpAskPace: when a run of missed probes sends an ARP request of our own."""

from __future__ import annotations

import itertools

from mosqit_failover.config import ARP_ASK_GAP, ARP_ASK_MOST, SWITCH_ARP_AFTER
from mosqit_failover.probes.arp_pace import ArpAskPace


def asks(pace: ArpAskPace, outcomes: list[bool], every: float, start: float = 0.0) -> list[float]:
    """The times of the requests for probe outcomes reported `every` seconds apart."""
    times = []
    for k, answered in enumerate(outcomes):
        now = start + k * every
        if pace.report(answered, now):
            times.append(now)
    return times


def test_nothing_while_the_target_answers_or_before_the_third_miss() -> None:
    pace = ArpAskPace()
    assert asks(pace, [True] * 50 + [False] * (SWITCH_ARP_AFTER - 1) + [True], 0.1) == []


def test_the_third_miss_asks_and_further_misses_ask_no_faster_than_the_gap() -> None:
    pace = ArpAskPace()
    times = asks(pace, [False] * 12, 0.1)  # a probe and its retries every 100 ms
    assert times[0] == 0.1 * (SWITCH_ARP_AFTER - 1)
    assert all(b - a >= ARP_ASK_GAP - 1e-9 for a, b in itertools.pairwise(times))
    assert len(times) == 5  # misses 3, 5, 7, 9, 11


def test_a_switch_that_never_answers_gets_a_bounded_number_of_requests() -> None:
    """A gateway that filters ICMP: one broadcast per miss for ever was ten a second,
    and Dynamic ARP Inspection shuts a port past 15 a second by default."""
    pace = ArpAskPace()
    times = asks(pace, [False] * 6000, 0.1)  # ten minutes of misses
    assert len(times) == ARP_ASK_MOST


def test_an_answer_ends_the_run_and_the_next_run_asks_again() -> None:
    pace = ArpAskPace()
    first = asks(pace, [False] * 600, 0.1)
    again = asks(pace, [True] + [False] * 30, 0.1, start=60.0)
    assert len(first) == ARP_ASK_MOST
    assert again and again[0] == 60.0 + 0.1 * SWITCH_ARP_AFTER


def test_many_misses_reported_at_once_ask_once() -> None:
    """A stalled loop reports a burst of timed-out probes in one wake-up."""
    pace = ArpAskPace()
    assert asks(pace, [False] * 20, 0.0, start=5.0) == [5.0]
