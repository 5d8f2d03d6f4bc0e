"""A seeded random churn of directories under the watcher, on a loaded machine.

The watcher must keep every directory in the tree watched through renames: renamed
inside the tree, moved out to a sibling directory and back in (under the same name or
a new one), built outside and moved in, renamed over an empty directory, or made and
renamed at once. A directory that loses its watch this way reports nothing of what is
later written in it, and the peer never gets those files. The reader is held for about
half of the bursts, so the watcher handles their events late, by paths that may be gone.

After the churn, a file is written into every directory: the changes reported since
the snapshot must cover every path that differs from it.
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path

import pytest

from mosqit_failover.sync.plan import Dirty
from mosqit_failover.sync.watch import TreeWatcher
from tests.unit.test_sync_watch import _missed, _reader_held, _settle, _snapshot

OPS = 150  # per phase


def _dirs(base: Path) -> list[str]:
    """``base`` and every directory below it, sorted: the same choices on any filesystem."""
    found = [os.path.join(here, name) for here, dirs, _ in os.walk(base) for name in dirs]
    return [str(base), *sorted(found)]


def _one_op(rnd: random.Random, root: Path, outside: Path, i: int) -> None:
    inside, out = _dirs(root), _dirs(outside)
    op = rnd.choice("mmRRoOiccef")
    if op == "m":  # a new directory
        os.mkdir(os.path.join(rnd.choice(inside), f"m{i}"))
    elif op == "R" and len(inside) > 1:  # a rename inside the tree
        src, dest = rnd.choice(inside[1:]), os.path.join(rnd.choice(inside), f"R{i}")
        if not dest.startswith(src + "/"):
            os.rename(src, dest)
    elif op == "o" and len(inside) > 1:  # moved out to the sibling directory
        os.rename(rnd.choice(inside[1:]), outside / f"o{i}")
    elif op == "O" and len(out) > 1:  # moved back in, under the same name or a new one
        src = rnd.choice(out[1:])
        name = os.path.basename(src) if rnd.random() < 0.5 else f"O{i}"
        os.rename(src, os.path.join(rnd.choice(inside), name))
    elif op == "i":  # a tree built outside, then moved in
        made = outside / f"i{i}"
        (made / "a" / "b").mkdir(parents=True)
        (made / "a" / "f").write_text("f")
        os.rename(made, os.path.join(rnd.choice(inside), f"i{i}"))
    elif op == "c":  # a file
        Path(rnd.choice(inside), f"c{i}").write_text("c")
    elif op == "e" and len(inside) > 1:  # a directory renamed over an empty one
        empty = [d for d in inside[1:] if not os.listdir(d)]
        if empty:
            dest, src = rnd.choice(empty), rnd.choice(inside[1:])
            if src != dest and not dest.startswith(src + "/"):
                os.rename(src, dest)
    elif op == "f":  # a directory made, then renamed at once
        new = os.path.join(rnd.choice(inside), f"F{i}")
        os.mkdir(new)
        os.rename(new, os.path.join(rnd.choice(inside), f"G{i}"))


def _churn(watcher: TreeWatcher, root: Path, outside: Path, rnd: random.Random, first: int) -> None:
    """``OPS`` operations numbered from ``first``, in bursts of 1 to 12; the reader is
    held through about half of the bursts."""
    i = first
    while i < first + OPS:
        held: AbstractContextManager[None] = (
            _reader_held(watcher) if rnd.random() < 0.5 else nullcontext()
        )
        with held:
            for _ in range(rnd.randint(1, 12)):
                i += 1
                with suppress(OSError):  # a name taken, a directory not empty: no change
                    _one_op(rnd, root, outside, i)


@pytest.mark.parametrize("seed", range(1, 11))
def test_every_directory_stays_watched_through_a_random_churn(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d" / "x").mkdir(parents=True)
    outside.mkdir()
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    dirty = Dirty(interval=1.0)
    try:
        _churn(watcher, root, outside, rnd, 0)
        _settle(watcher, dirty)
        dirty.take()  # the peer has it all now
        before = _snapshot(root)
        _churn(watcher, root, outside, rnd, 10000)
        for where in _dirs(root):  # in a directory no longer watched, this goes unseen
            Path(where, "probe").write_text("p")
        _settle(watcher, dirty)
    finally:
        watcher.stop()
    batch = dirty.take()
    assert not batch.full, f"seed {seed}: a full sync was asked for: {batch.reason}"
    missed = _missed(root, before, batch)
    assert not missed, f"seed {seed}: {len(missed)} paths missed, the first: {missed[:10]}"
