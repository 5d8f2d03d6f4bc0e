"""When batches go out, on a fake clock: the engine's loop played over the pure Dirty set.

:func:`play` runs what :meth:`Engine.run` does with :class:`Dirty`: it sleeps
until the next change or the batch's due time, sends one batch at a time,
each taking ``duration`` seconds, and, like the engine (which awaits the
send), takes in the changes made meanwhile only once the batch is done,
stamped with that time, then calls :meth:`Dirty.done`. With ``startup``, a
batch's rsync needs that long to start (its ssh session and the peer's
forced command) before its ``duration`` of transfer, and, as the engine
does, it is started when the batch's first change is seen (the watcher wakes
the loop at once, also while a batch is in flight). The answers are golden:
every batch's start, size and the age of its oldest change at its end.
"""

from __future__ import annotations

from mosqit_failover.sync.plan import Dirty


def play(
    changes: list[float], duration: float, interval: float = 1.0, startup: float = 0.0
) -> list[tuple[float, int, float]]:
    """(start, changes carried, lag of its oldest change at its end) of each batch."""
    dirty = Dirty(interval)
    todo = sorted(changes)
    batches: list[tuple[float, int, float]] = []
    i = 0
    oldest: list[float] = []  # true times of the pending changes (stamps may be later)
    while i < len(todo) or not dirty.empty:
        due = dirty.due()
        upcoming = todo[i] if i < len(todo) else float("inf")
        if due is None or upcoming < due:
            dirty.add(f"f{i}", todo[i])  # the watcher wakes the loop: absorbed at once
            oldest.append(todo[i])
            i += 1
            continue
        start = due
        batch = dirty.take(start)
        end = max(start, min(oldest) + startup) + duration  # its rsync started at its first
        batches.append((round(start, 3), batch.size, round(end - min(oldest), 3)))
        oldest = []
        while i < len(todo) and todo[i] < end:  # made during the batch: seen when it is done
            dirty.add(f"f{i}", end)
            oldest.append(todo[i])
            i += 1
        dirty.done()
    return batches


def stream(start: float, stop: float, every: float) -> list[float]:
    return [start + k * every for k in range(round((stop - start) / every))]


def test_a_lone_write_goes_out_after_the_short_quiet_period() -> None:
    assert play([10.0], duration=0.3) == [(10.05, 1, 0.35)]


def test_lone_writes_apart_each_wait_for_their_own_quiet() -> None:
    # the second comes after the first batch is done: nothing piled up, no hurry
    assert play([10.0, 12.0], duration=0.3) == [(10.05, 1, 0.35), (12.05, 1, 0.35)]


def test_a_write_made_during_a_batch_goes_out_as_soon_as_that_batch_is_done() -> None:
    # 10.2 is in flight's time: it does not wait for quiet after 10.35, nor the interval
    assert play([10.0, 10.2], duration=0.3) == [(10.05, 1, 0.35), (10.35, 1, 0.45)]


def test_a_steady_stream_goes_out_back_to_back_after_the_hold() -> None:
    # 64 writes/s for 3 s, never quiet for 50 ms, each batch 3/8 s: the first batch waits
    # for the hold (a quarter of the interval: no quiet comes), then batch N+1 starts the
    # moment batch N is done, with what came during batch N. No change waits longer than
    # the hold and two batch durations: here 0.25 + 2 x 0.375 = the interval
    assert play(stream(10.0, 13.0, 1 / 64), duration=0.375) == [
        (10.25, 16, 0.625),
        (10.625, 24, 0.75),
        (11.0, 24, 0.75),
        (11.375, 24, 0.75),
        (11.75, 24, 0.75),
        (12.125, 24, 0.75),
        (12.5, 24, 0.75),
        (12.875, 24, 0.75),
        (13.25, 8, 0.75),
    ]


def test_the_same_stream_under_main_s_rule_waited_a_whole_interval_per_batch() -> None:
    # before: each batch waited for quiet up to the interval (1 s), and what came while
    # a batch was in flight, seen at its end, waited a whole interval more. interval=4
    # gives that 1 s hold, and no done() is the old engine
    dirty, starts = Dirty(interval=4.0), []
    todo = stream(10.0, 13.0, 1 / 64)
    while todo:
        due = dirty.due()
        if due is None or todo[0] < due:
            dirty.add("f", todo.pop(0))
            continue
        starts.append(due)
        dirty.take()
        while todo and todo[0] < due + 0.375:
            dirty.add("f", due + 0.375)
            todo.pop(0)
    assert starts == [11.0, 12.375]  # a change made at 11.0 reached the peer at 12.75


def test_a_storm_is_still_bounded_by_the_hold_and_one_batch_at_a_time() -> None:
    # 1,024 changes/s for 3 s, each batch 1/8 s: the first batch after the hold, then
    # one batch at a time, started at most every 0.15 s (the pace), none left behind,
    # no change older than the hold and its batch when it arrives
    batches = play(stream(10.0, 13.0, 1 / 1024), duration=0.125)
    assert batches[:3] == [(10.25, 256, 0.375), (10.4, 154, 0.275), (10.55, 154, 0.275)]
    assert [b[0] for b in batches] == [round(10.25 + k * 0.15, 3) for k in range(20)]
    assert batches[-1] == (13.1, 51, 0.275) and sum(b[1] for b in batches) == 3072


def test_a_batch_starts_no_sooner_than_the_pace_after_the_one_before() -> None:
    dirty = Dirty(interval=1.0)
    dirty.add("a", 10.0)
    dirty.take(10.05)
    dirty.add("b", 10.06)
    dirty.done()  # came while the batch was in flight: due at once, but paced
    assert dirty.due() == 10.05 + 0.15
    dirty.take(10.2)
    dirty.add("c", 12.0)  # long after: the pace is no wait
    assert dirty.due() == 12.0 + dirty.settle


def test_a_lone_write_waits_for_the_longer_of_its_quiet_and_the_rsync_start() -> None:
    # the rsync starts when the change is seen (0.1 s), the batch is due after 50 ms of
    # quiet: it reaches the peer 0.15 s after the write, not 0.05 + 0.1 + 0.05
    assert play([10.0], duration=0.05, startup=0.1) == [(10.05, 1, 0.15)]


def test_a_steady_stream_waits_for_the_pace_and_a_transfer_not_for_rsync_starts() -> None:
    # bench_sync's writer: 90 files/s (every other one renamed: one path each here), an
    # rsync that takes 0.1 s to start and 0.05 s to transfer. Each batch's rsync starts
    # with the first change after the batch before was taken, so batches start every
    # 0.15 s (the pace) and no change waits 0.2 s once the first batch is out; started
    # after the batch before (the rule without starting ahead), each would wait 0.3 s
    batches = play(stream(10.0, 13.0, 1 / 90), duration=0.05, startup=0.1)
    assert batches[0] == (10.25, 23, 0.3)
    assert [b[0] for b in batches] == [round(10.25 + k * 0.15, 3) for k in range(20)]
    assert max(b[2] for b in batches[1:]) == 0.2 and sum(b[1] for b in batches) == 270
    started_after = play(stream(10.0, 13.0, 1 / 90), duration=0.15)
    assert max(b[2] for b in started_after[1:]) == 0.3


def test_a_burst_that_ends_goes_out_after_its_quiet_not_after_the_hold() -> None:
    # 32 changes in 1/8 s, then quiet: one batch 50 ms after the last (before the hold)
    assert play(stream(10.0, 10.125, 1 / 256), duration=0.25) == [(10.171, 32, 0.421)]
