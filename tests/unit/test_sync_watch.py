"""The watcher on a real directory (inotify): renames are reported as moves."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mosqit_failover.sync.watch import Change, TreeWatcher


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], list[Change]]]]:
    root = tmp_path / "root"
    (root / "d" / "x").mkdir(parents=True)
    for i in range(5):
        (root / "d" / "x" / f"f{i}").write_text(str(i))
    (root / "a").write_text("a")
    woke = threading.Event()
    watcher = TreeWatcher(str(root), woke.set)
    watcher.start()
    seen: list[Change] = []

    def settle() -> list[Change]:
        quiet = time.monotonic() + 1.0  # watchdog pairs moves within 0.5 s
        while time.monotonic() < quiet:
            got = watcher.drain()
            if got:
                seen.extend(got)
                quiet = time.monotonic() + 1.0
            time.sleep(0.05)
        return seen

    try:
        yield root, settle
    finally:
        watcher.stop()


def test_a_rename_inside_the_tree_is_one_move(
    watched: tuple[Path, Callable[[], list[Change]]], tmp_path: Path
) -> None:
    root, settle = watched
    os.rename(root / "a", root / "b")
    os.rename(root / "d", root / "e")  # a tree: no move per child
    os.rename(root / "e" / "x" / "f0", tmp_path / "out")  # out of the tree: a delete
    (tmp_path / "in" / "y").mkdir(parents=True)
    os.rename(tmp_path / "in", root / "in")  # into the tree: a new tree
    changes = settle()
    moves = [c for c in changes if c.kind == "move"]
    assert moves == [Change("move", "a", "b"), Change("move", "d", "e", tree=True)]
    assert Change("path", "e/x/f0") in changes and Change("tree", "in") in changes


def test_the_directory_moved_away_or_unwatched_is_reported_lost(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        os.rename(root, tmp_path / "away")
        deadline = time.monotonic() + 5
        changes: list[Change] = []
        while not any(c.kind == "lost" for c in changes) and time.monotonic() < deadline:
            changes += watcher.drain()
            time.sleep(0.05)
        assert [c.path for c in changes if c.kind == "lost"] == [
            "the directory itself was moved away"
        ]
    finally:
        watcher.stop()
    assert watcher.drain() == []  # our own stop ends the watch: not reported
