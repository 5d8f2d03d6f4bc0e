"""Echo misses weighed against the recent loss (`EchoLoss`, `PeerTracker.misses_beat_loss`).

Under 30 % loss on both networks a hung agent's live host missed `misses` echo
replies in a row on both networks every few seconds, and the standby took it for
dead about once in twenty hangs in the simulation and the lab (two VIP holders until
the late fence, 3.4 s in one lab run). The misses now decide only when the recent
loss alone would make them unlikely.
"""

from __future__ import annotations

import random

import pytest

from mosqit_failover.config import KERNEL_SILENT_MISSES, Timing
from mosqit_failover.core import DEATH_DOUBT
from mosqit_failover.events import Role
from mosqit_failover.observations import LOSS_MEMORY, OUTAGE_RUN, EchoLoss, PeerTracker
from tests.unit.transcript import Harness, standby, view_of


def replay(tracker: PeerTracker, outcomes: str, start: float, step: float = 0.02) -> float:
    """Feed "x" (miss) and "o" (reply) to network a and b alike; the time after."""
    now = start
    for outcome in outcomes:
        for network in ("a", "b"):
            tracker.echo(network, outcome == "o", now, run_pause=0.14)
        now += step
    return now


def test_a_run_of_misses_counts_once_a_reply_ends_it() -> None:
    loss = EchoLoss()
    for now, missed in enumerate([0, 1, 0, 2, 0, 1]):
        loss.run_ended(missed, now * 0.05)
    assert loss.rate(0.3) == pytest.approx(4 / 10, abs=0.02)


def test_the_run_still_going_is_not_loss() -> None:
    """A peer that died after a calm stretch: its misses must not raise the bar for
    the verdict on its own death."""
    tracker = PeerTracker(("a", "b"))
    now = replay(tracker, "o" * 20, 0.0)
    now = replay(tracker, "x" * 3, now)
    assert tracker.loss["a"].rate(now) == 0.0
    assert tracker.misses_beat_loss(now, DEATH_DOUBT)


def test_a_loss_long_past_is_forgotten() -> None:
    tracker = PeerTracker(("a", "b"))
    now = replay(tracker, "xo" * 30, 0.0)
    assert tracker.loss["a"].rate(now) == pytest.approx(0.5)
    later = now + 10 * LOSS_MEMORY  # a calm stretch without probes
    assert tracker.loss["a"].rate(later) == 0.0


def test_a_clock_set_back_neither_raises_nor_fades() -> None:
    loss = EchoLoss()
    loss.run_ended(1, 10_000.0)
    loss.run_ended(1, 10_000.1)
    loss.run_ended(0, 10_000.2)
    assert loss.rate(0.0) == pytest.approx(2 / 5, abs=0.01)  # hours before the last


def test_a_network_whose_echo_is_out_while_the_host_lives_says_nothing() -> None:
    """ICMP filtered on network b (an ACL), UDP passing: b never answers, so it had no
    estimate, "no loss", and 0 to the power of its long run made the product 0: three
    misses on a decided, the old rule (the breaker's `bdead`: a hung agent taken for
    dead in 13 of 100 seeds). A network that missed OUTAGE_RUN in a row while the
    peer's agent still spoke counts for nothing either way now."""
    tracker = PeerTracker(("a", "b"))
    view = view_of("beta", Role.STANDBY, 0)
    now = 0.0
    for turn in range(50):  # a loses every other round trip
        tracker.echo("a", turn % 2 == 0, now, run_pause=0.14)
        tracker.echo("b", False, now, run_pause=0.14)
        tracker.message("a", view, now + 0.01)
        now += 0.1
    assert tracker.loss["a"].rate(now) == pytest.approx(0.5, abs=0.05)
    for _ in range(3):  # the agent hangs; a misses three in a row
        tracker.echo("a", False, now, run_pause=0.14)
        tracker.echo("b", False, now, run_pause=0.14)
        now += 0.02
    assert not tracker.misses_beat_loss(now, DEATH_DOUBT)


def test_a_partition_healed_is_no_loss() -> None:
    """The fast profile's bench cuts one node after another: the misses of a cut,
    ended by the first reply after the heal, read as 100 % loss for a quarter of a
    minute, and the next cut was decided at the cap (48 ms instead of 29)."""
    tracker = PeerTracker(("a", "b"))
    now = replay(tracker, "o" * 20, 0.0)
    now = replay(tracker, "x" * OUTAGE_RUN * 5, now)  # cut off for a while
    now = replay(tracker, "o" * 5, now)  # healed
    assert tracker.loss["a"].rate(now) == 0.0
    now = replay(tracker, "x" * 3, now)  # the next death
    assert tracker.misses_beat_loss(now, DEATH_DOUBT)


def test_the_outage_run_follows_the_cap_of_the_timing() -> None:
    """With `misses = 6` the cap is 12 misses a network: a run of 11 that a reply ended is
    still loss there (it was left out as an outage at a fixed 10, and the estimate read
    lower than the loss the cap is weighed against)."""
    timing = Timing(misses=6, interval=0.1, echo_timeout=0.02)
    assert timing.kernel_silent_misses == 12
    tracker = PeerTracker(("a", "b"), timing.kernel_silent_misses)
    now = replay(tracker, "o" + "x" * 11 + "o", 0.0)
    assert tracker.loss["a"].rate(now) == pytest.approx(11 / 13, abs=0.01)  # faded a little
    assert PeerTracker(("a", "b")).outage_run == OUTAGE_RUN == KERNEL_SILENT_MISSES


def test_a_single_early_miss_is_no_estimate() -> None:
    tracker = PeerTracker(("a", "b"))
    now = replay(tracker, "xo", 0.0)
    assert tracker.loss["a"].rate(now) == 0.0  # under LOSS_EVIDENCE round trips


@pytest.mark.parametrize(
    ("loss", "needed"),
    [(0.0, 1), (0.1, 3), (0.3, KERNEL_SILENT_MISSES)],
)
def test_the_misses_asked_for_grow_with_the_loss(loss: float, needed: int) -> None:
    """Per packet each way, as nftables drops them: a round trip is lost 1 - (1-p)^2."""
    rng = random.Random(7)
    trip_lost = 1 - (1 - loss) ** 2
    tracker = PeerTracker(("a", "b"))
    now = 0.0
    for _ in range(400):  # 8 s of probes every 20 ms, both networks alike
        answered = rng.random() >= trip_lost
        replay(tracker, "o" if answered else "x", now)
        now += 0.02
    replay(tracker, "o", now)
    runs = 0
    while not tracker.misses_beat_loss(now, DEATH_DOUBT) and runs < 2 * KERNEL_SILENT_MISSES:
        now = replay(tracker, "x", now)
        runs += 1
    assert runs >= needed
    assert runs <= max(needed, 1) + (4 if loss else 0)


def lossy_standby() -> Harness:
    """beta standing by after 10 s of half the round trips lost on both networks."""
    h = standby()
    rng = random.Random(3)
    end = h.now + 10
    while h.now < end:
        answered = rng.random() >= 0.5
        h.echo_answers = {"a": answered, "b": answered}
        h.run_until(h.now + 0.1)
    h.echo_answers = {"a": True, "b": True}
    h.run_until(h.now + 0.5)
    return h


def test_under_heavy_loss_a_hung_agent_is_not_dead_after_three_misses() -> None:
    """The lab's ending: alpha's agent hangs while its kernel answers, the first echoes
    after the hang all lost. Three misses a network were death; at this loss they are
    not, and the kernel's reply that comes next proves the host alive: fence first."""
    h = lossy_standby()
    start = h.now
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(start + 0.23)  # past echo_window (220 ms), 3 misses and more a network
    tracker = h.core.peers["alpha"]
    assert tracker.echo_missed_everywhere(h.config.timing.misses), tracker.miss_summary()
    assert h.kinds(start) == []
    h.echo_answers = {"a": True, "b": True}
    h.run_until(start + 4)
    kinds = h.kinds(start)
    assert kinds[:2] == ["fence", "promote"], h.transcript(start)


def test_under_heavy_loss_a_dead_host_is_still_dead_within_the_window() -> None:
    h = lossy_standby()
    start = h.now
    h.peer = None
    h.echo_answers = {"a": False, "b": False}  # dead: nothing answers again
    h.run_until(start + 0.6)
    lines = h.decisions(start)
    assert [d.kind for d in lines][:1] == ["promote"], h.transcript(start)
    assert "peer alpha gone: echo replies missed (a: " in lines[0].text
    assert "; recent loss a: " in lines[0].text
    assert "fence" not in h.kinds(start)
