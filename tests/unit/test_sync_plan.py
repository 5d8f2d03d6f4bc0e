"""Coalescing of changes and retry backoff, with a fake clock."""

from __future__ import annotations

from mosqit_failover.sync.engine import expand
from mosqit_failover.sync.plan import SETTLE, Backoff, Batch, Dirty


def test_a_lone_change_goes_out_after_the_settle_time_not_the_interval() -> None:
    dirty = Dirty(interval=1.0)
    assert dirty.due() is None
    dirty.add("a", now=10.0)
    assert dirty.due() == 10.0 + SETTLE


def test_a_steady_stream_still_goes_out_within_the_interval() -> None:
    dirty = Dirty(interval=1.0)
    for i in range(100):
        dirty.add(f"f{i}", now=10.0 + i * 0.02)  # every 20 ms, never quiet for 50 ms
    assert dirty.due() == 11.0
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


def test_expand_lists_everything_inside_new_trees(tmp_path: object) -> None:
    import pathlib

    root = pathlib.Path(str(tmp_path))
    (root / "t" / "x").mkdir(parents=True)
    (root / "t" / "x" / "f").write_text("1")
    (root / "t" / "l").symlink_to("nowhere")
    batch = Batch(frozenset({"gone"}), frozenset({"t", "vanished"}), False, 0.0)
    assert expand(str(root), batch) == ["gone", "t", "t/l", "t/x", "t/x/f", "vanished"]
