"""When batches go out, on a fake clock: the engine's loop played over the pure Dirty set.

:func:`play` runs what :meth:`Engine.run` does with :class:`Dirty`: it sleeps
until the next change or the batch's due time, sends one batch at a time,
each taking ``duration`` seconds, and, like the engine (which awaits the
send), takes in the changes made meanwhile only once the batch is done,
stamped with that time, then calls :meth:`Dirty.done`. The answers are
golden: every batch's start, size and the age of its oldest change.
"""

from __future__ import annotations

from mosqit_failover.sync.plan import Dirty


def play(
    changes: list[float], duration: float, interval: float = 1.0
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
        batch = dirty.take()
        end = start + duration
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
    # never more than one batch per batch duration, none left behind, no change older
    # than the hold and its batch when it arrives
    batches = play(stream(10.0, 13.0, 1 / 1024), duration=0.125)
    assert batches[:3] == [(10.25, 256, 0.375), (10.375, 128, 0.25), (10.5, 128, 0.25)]
    assert [b[0] for b in batches] == [10.25 + k / 8 for k in range(23)]
    assert batches[-1] == (13.0, 128, 0.25) and sum(b[1] for b in batches) == 3072


def test_a_burst_that_ends_goes_out_after_its_quiet_not_after_the_hold() -> None:
    # 32 changes in 1/8 s, then quiet: one batch 50 ms after the last (before the hold)
    assert play(stream(10.0, 10.125, 1 / 256), duration=0.25) == [(10.171, 32, 0.421)]
