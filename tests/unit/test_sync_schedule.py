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


def test_a_steady_stream_goes_out_back_to_back_after_its_first_batch() -> None:
    # 64 writes/s for 3 s, never quiet for 50 ms, each batch 0.25 s: the first waits for
    # the interval (no quiet comes), then batch N+1 starts the moment batch N is done,
    # with what came during batch N: no change waits more than two batch durations
    assert play(stream(10.0, 13.0, 1 / 64), duration=0.25) == [
        (11.0, 64, 1.25),
        (11.25, 16, 0.5),
        (11.5, 16, 0.5),
        (11.75, 16, 0.5),
        (12.0, 16, 0.5),
        (12.25, 16, 0.5),
        (12.5, 16, 0.5),
        (12.75, 16, 0.5),
        (13.0, 16, 0.5),
    ]


def test_the_same_stream_under_the_interval_rule_alone_waited_up_to_twice_as_long() -> None:
    # what main did: each batch waits for the interval again (what came during a batch
    # is stamped when it is seen, at its end), so a change waited up to 1.25 s + 0.25 s
    dirty, starts, t = Dirty(1.0), [], 10.0
    todo = stream(10.0, 13.0, 1 / 64)
    while todo:
        due = dirty.due()
        if due is None or todo[0] < due:
            dirty.add("f", todo.pop(0))
            continue
        starts.append(due)
        dirty.take()
        t = due + 0.25
        while todo and todo[0] < t:
            dirty.add("f", t)
            todo.pop(0)
        # no done(): the old engine did not hurry what piled up
    assert starts == [11.0, 12.25]


def test_a_storm_is_still_bounded_by_the_interval_and_one_batch_at_a_time() -> None:
    # 1,024 changes/s for 3 s: the first batch within the interval, then one batch per
    # batch duration, never two at once, none left behind
    assert [b[:2] for b in play(stream(10.0, 13.0, 1 / 1024), duration=0.25)] == [
        (11.0, 1024),
        (11.25, 256),
        (11.5, 256),
        (11.75, 256),
        (12.0, 256),
        (12.25, 256),
        (12.5, 256),
        (12.75, 256),
        (13.0, 256),
    ]


def test_a_burst_that_ends_goes_out_after_its_quiet_not_after_the_interval() -> None:
    # 64 changes in 0.25 s, then quiet: one batch 50 ms after the last
    assert play(stream(10.0, 10.25, 1 / 256), duration=0.25) == [(10.296, 64, 0.546)]
