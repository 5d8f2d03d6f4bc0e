"""Coalescing of changes, retry backoff, polling and the directory's own attributes,
with a fake clock."""

from __future__ import annotations

import math
from dataclasses import replace

from mosqit_failover.sync.plan import (
    MAX_MOVES,
    SETTLE,
    Backoff,
    Batch,
    Dirty,
    Move,
    Polling,
    RootAttributes,
)


def test_a_lone_change_goes_out_after_the_settle_time_not_the_interval() -> None:
    dirty = Dirty(interval=1.0)
    assert dirty.due() is None
    dirty.add("a", now=10.0)
    assert dirty.due() == 10.0 + SETTLE


def test_a_steady_stream_still_goes_out_within_a_quarter_of_the_interval() -> None:
    dirty = Dirty(interval=1.0)
    for i in range(100):
        dirty.add(f"f{i}", now=10.0 + i * 0.02)  # every 20 ms, never quiet for 50 ms
    assert dirty.due() == 10.25
    batch = dirty.take()
    assert batch.size == 100 and batch.since == 10.0 and not batch.full
    assert dirty.empty and dirty.due() is None


def test_a_full_resync_is_due_at_once_and_covers_the_paths() -> None:
    dirty = Dirty(interval=1.0)
    dirty.add("a", now=5.0)
    dirty.need_full("inotify queue overflow", now=5.5)
    assert dirty.due() == 5.0
    batch = dirty.take()
    assert batch.full and batch.reason == "inotify queue overflow"


def test_a_failed_batch_is_given_back_with_its_age() -> None:
    dirty = Dirty(interval=1.0)
    dirty.add("a", now=1.0)
    dirty.add_tree("t", now=1.2)
    batch = dirty.take()
    dirty.add("b", now=3.0)
    dirty.give_back(batch, now=3.1)
    assert dirty.paths == {"a", "b"} and dirty.trees == {"t"}
    assert dirty.first == 1.0 and dirty.lag(4.0) == 3.0
    full = Batch(frozenset(), frozenset(), True, 2.0, "start")
    dirty.give_back(full, now=5.0)
    assert dirty.full_reason == "start"


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_renames_are_kept_in_order_and_list_both_sides() -> None:
    dirty = Dirty(interval=1.0)
    dirty.move("a", "b", tree=False, now=1.0)
    dirty.move("d", "e", tree=True, now=1.1)
    dirty.move("b", "c", tree=False, now=1.2)
    batch = dirty.take()
    assert batch.moves == (Move("a", "b"), Move("d", "e", True), Move("b", "c"))
    assert batch.paths == {"a", "b", "c", "d"} and batch.trees == {"e"}
    assert dirty.moves == []


def test_a_pending_path_inside_a_renamed_tree_is_listed_at_its_new_place_too() -> None:
    # d/y was deleted in an earlier batch's flight, d renamed after: the peer's rename
    # carries its d/y along to e/y, which the batch must then delete
    dirty = Dirty(interval=1.0)
    dirty.add("d/y", now=1.0)
    dirty.add("dx/z", now=1.0)
    batch = dirty.take()
    dirty.move("d", "e", tree=True, now=1.1)
    dirty.move("e", "f", tree=True, now=1.2)
    dirty.give_back(batch, now=1.3)  # that batch failed: its paths come back
    assert {"d/y", "e/y", "f/y", "dx/z"} <= dirty.paths and "e/z" not in dirty.paths


def test_a_tree_renamed_after_a_change_inside_it_is_sent_whole() -> None:
    # written (or deleted) in it since the last take: the peer's copy may hold a part
    dirty = Dirty(interval=1.0)
    dirty.add("d/y", now=1.0)
    dirty.move("d", "e", tree=True, now=1.1)
    batch = dirty.take()
    assert batch.moves == () and "e" in batch.trees and "d" in batch.paths


def test_a_failed_batch_gives_its_renames_back_before_the_newer_ones() -> None:
    dirty = Dirty(interval=1.0)
    dirty.add("d/y", now=1.0)
    batch = dirty.take()
    dirty.move("d", "e", tree=True, now=2.0)  # while the batch was in flight
    dirty.give_back(replace(batch, moves=(Move("a", "b"),)), now=3.0)
    assert dirty.moves == [Move("a", "b"), Move("d", "e", True)]
    assert {"d/y", "e/y"} <= dirty.paths


def test_too_many_pending_renames_are_forgotten_but_their_paths_stay() -> None:
    dirty = Dirty(interval=1.0)
    for i in range(MAX_MOVES + 1):
        dirty.move(f"s{i}", f"d{i}", tree=False, now=1.0)
    assert dirty.moves == [] and len(dirty.paths) == 2 * (MAX_MOVES + 1)


def test_a_file_created_then_renamed_before_any_batch_is_not_renamed_on_the_peer() -> None:
    # a mail spool: written in tmp/, renamed into new/; the peer never had tmp/m1
    dirty = Dirty(interval=1.0)
    dirty.add("tmp/m1", now=1.0, new=True)
    dirty.add("tmp/m1", now=1.0)  # closed after writing
    dirty.move("tmp/m1", "new/m1", tree=False, now=1.01)
    dirty.move("new/m1", "cur/m1", tree=False, now=1.02)  # still nothing the peer has
    dirty.add_tree("t", now=1.03)
    dirty.move("t", "u", tree=True, now=1.04)
    batch = dirty.take()
    assert batch.moves == ()  # no ssh session for renames that could not happen
    assert batch.paths == {"tmp/m1", "new/m1", "cur/m1", "t"} and batch.trees == {"t", "u"}


def test_a_file_sent_in_an_earlier_batch_is_renamed_on_the_peer_again() -> None:
    dirty = Dirty(interval=1.0)
    dirty.add("tmp/m1", now=1.0, new=True)
    dirty.take()  # tmp/m1 is on its way to the peer
    dirty.move("tmp/m1", "new/m1", tree=False, now=1.5)
    assert dirty.take().moves == (Move("tmp/m1", "new/m1"),)


def test_a_file_written_since_the_last_batch_is_sent_whole_under_its_new_name() -> None:
    """The peer's copy may be the part a batch caught mid-write: renamed there, that part
    stood under the final name until the rsync replaced it (a helper saw a maildir's
    new/m0 at 900,000 of 1,000,000 bytes on a standby)."""
    dirty = Dirty(interval=1.0)
    dirty.add("tmp/m0", now=1.0, new=True)
    dirty.take()  # a batch sends what was written of it so far
    dirty.add("tmp/m0", now=1.2)  # the rest written, then renamed into new/
    dirty.move("tmp/m0", "new/m0", tree=False, now=1.3)
    dirty.add("log", now=1.6)  # a log written, then rotated: the same
    dirty.move("log", "log.1", tree=False, now=1.7)
    batch = dirty.take()
    assert batch.moves == ()  # sent whole: rsync's temporary file, then its rename
    assert batch.paths == {"tmp/m0", "new/m0", "log", "log.1"}


def test_a_directory_with_a_file_written_since_the_last_batch_is_sent_whole() -> None:
    """The same with a directory: tmp/d0 (its file half sent) renamed to new/d0 showed
    new/d0/f at 600,000-900,000 of 1,000,000 bytes on a standby (a helper's finding)."""
    dirty = Dirty(interval=1.0)
    dirty.add_tree("tmp/d0", now=1.0)
    dirty.add("tmp/d0/f", now=1.0, new=True)
    dirty.take()  # a batch sends what was written of it so far
    dirty.add("tmp/d0/f", now=1.2)
    dirty.move("tmp/d0", "new/d0", tree=True, now=1.3)
    dirty.move("new/d0", "cur/d0", tree=True, now=1.4)  # and on: still nothing to rename
    dirty.move("tmp/d1", "new/d1", tree=True, now=1.5)  # nothing written in it: renamed
    batch = dirty.take()
    assert batch.moves == (Move("tmp/d1", "new/d1", True),)
    assert {"new/d0", "cur/d0"} <= batch.trees


def test_polling_says_once_it_starts_and_quietly_when_a_try_fails() -> None:
    polling = Polling(period=10.0, retry=300.0)
    assert not polling.on and polling.wake_at() == math.inf
    assert polling.cause(0.0) == "started"
    assert polling.cause(1.0) == ""  # a second cause: said already
    assert not polling.full_due(1.0)  # the first poll a period after it began
    assert polling.wake_at() == 11.0
    assert polling.full_due(11.0) and polling.wake_at() == 21.0
    assert polling.trial(300.0) == ""  # the try counts from the last cause
    assert polling.trial(301.0) == "rewatch"
    assert polling.full_due(301.0)  # the engine asks every turn: the polls went on
    assert polling.wake_at() == 311.0  # the trial's end and the next poll; no new try
    assert polling.cause(305.0) == "trial failed"
    assert polling.on and polling.wake_at() <= 315.0


def test_polling_ends_when_a_trial_holds_and_never_leaves_a_time_in_the_past() -> None:
    """The breaker's spin: a next-try time left in the past woke the loop 89,000 times a
    second; every time wake_at gives is in the future after each call it is due at."""
    polling = Polling(period=10.0, retry=300.0)
    polling.cause(0.0)
    assert polling.trial(300.0) == "rewatch"
    polling.full_due(300.0)
    assert polling.wake_at() > 300.0
    assert polling.trial(310.0) == "end"
    assert not polling.on and not polling.full_due(320.0)
    assert polling.wake_at() == math.inf


def test_a_try_whose_watch_did_not_start_is_no_trial() -> None:
    polling = Polling(period=10.0, retry=300.0)
    polling.cause(0.0)
    assert polling.trial(300.0) == "rewatch"
    polling.no_trial()
    assert polling.trial(310.0) == ""  # not ended: nothing watched
    assert polling.on and polling.trial(600.0) == "rewatch"


def test_the_directory_attributes_go_at_most_once_a_gap_but_on_the_last_chance() -> None:
    root = RootAttributes(gap=60.0)
    assert not root.due(0.0) and root.wake_at() == math.inf
    root.changed = True
    assert root.due(0.0) and not root.changed
    root.changed = True
    assert not root.due(10.0) and root.wake_at() == 60.0  # held back by the gap
    assert root.due(10.0, last_chance=True)  # the drain before a demotion sends it
    root.changed = True
    assert not root.due(69.0) and root.due(70.0)
