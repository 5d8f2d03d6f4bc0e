"""The watcher on a real directory (inotify): renames are reported as moves."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mosqit_failover.libc import libc
from mosqit_failover.sync.inotify import IN_MODIFY, IN_MOVED_FROM, IN_MOVED_TO, Event, Inotify
from mosqit_failover.sync.listing import expand
from mosqit_failover.sync.plan import Batch, Dirty
from mosqit_failover.sync.watch import Change, TreeWatcher
from mosqit_failover.sync.watch_tree import WatchedTree
from mosqit_failover.syncfs.mountinfo import parse


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


def test_a_file_created_is_new_then_a_path_when_closed(
    watched: tuple[Path, Callable[[], list[Change]]],
) -> None:
    root, settle = watched
    (root / "spooled").write_text("x")
    changes = settle()
    assert changes[0] == Change("new", "spooled") and Change("path", "spooled") in changes


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


def test_a_directory_moved_in_is_watched_below(
    watched: tuple[Path, Callable[[], list[Change]]], tmp_path: Path
) -> None:
    """Files made after the move in a directory moved in from outside, also at a name
    whose old directory was moved out (watchdog 2.x keeps that name's old watch)."""
    root, settle = watched
    (tmp_path / "in" / "sub").mkdir(parents=True)
    os.rename(tmp_path / "in", root / "in")
    os.rename(root / "d", tmp_path / "away")
    (tmp_path / "new" / "sub").mkdir(parents=True)
    os.rename(tmp_path / "new", root / "d")
    settle()
    (root / "in" / "sub" / "later").write_text("later")
    (root / "d" / "sub" / "later").write_text("later")
    (tmp_path / "away" / "x" / "gone").write_text("outside now")
    changes = settle()
    assert Change("path", "in/sub/later") in changes
    assert Change("path", "d/sub/later") in changes


@contextmanager
def _reader_held(watcher: TreeWatcher) -> Iterator[None]:
    """Keep the watcher from handling the events it reads, as a loaded machine does: the
    changes made meanwhile reach it with the paths they had, which may be gone by then."""
    with watcher.handling:
        yield


def _written_later(
    root: Path, steps: Callable[[TreeWatcher], None], written_in: str
) -> tuple[list[Change], list[Change]]:
    """Watch ``root``, run ``steps``, then write a file in ``written_in`` and in its
    subdirectory ``s``: the changes seen after the steps, and after the writes."""
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        steps(watcher)
        first = _drain_until_quiet(watcher)
        for where in (written_in, f"{written_in}/s"):
            (root / where / "later").write_text("x")
        later = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
    return first, later


def _seen_where_written(later: list[Change], written_in: str) -> bool:
    return {Change("path", f"{written_in}/later"), Change("path", f"{written_in}/s/later")} <= set(
        later
    )


def test_a_directory_made_just_before_its_parent_was_renamed_is_watched(
    tmp_path: Path,
) -> None:
    """The reader watches a new directory by the path it had when it was made; if the
    parent was renamed since, that watch fails, and files made there later went unseen
    (the churn test's lost files on a loaded machine). The rename must mend it."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)

    def steps(watcher: TreeWatcher) -> None:
        with _reader_held(watcher):
            (root / "a" / "b" / "s").mkdir(parents=True)
            os.rename(root / "a", root / "z")

    first, later = _written_later(root, steps, "z/b")
    assert Change("move", "a", "z", tree=True) in first
    assert _seen_where_written(later, "z/b"), later


def test_a_directory_moved_into_one_made_just_before_stays_watched(tmp_path: Path) -> None:
    """``mkdir new && mv old new/``: when the reader gets to it, ``new`` holds ``old``
    already, and the kernel sent no "moved to" (nothing watched ``new`` yet). watchdog
    7 took ``old`` for moved out and dropped its watch, which ``new/old`` needed: files
    made there later went unseen (17 rounds of 20 without any load)."""
    root = tmp_path / "root"
    (root / "old" / "s").mkdir(parents=True)

    def steps(watcher: TreeWatcher) -> None:
        with _reader_held(watcher):
            (root / "new").mkdir()
            os.rename(root / "old", root / "new" / "old")

    first, later = _written_later(root, steps, "new/old")
    assert Change("tree", "new") in first
    assert _seen_where_written(later, "new/old"), later


def test_a_renamed_name_replaced_by_a_link_is_not_followed(tmp_path: Path) -> None:
    """A directory renamed, then its new name replaced by a symbolic link to the root
    before the reader got to the rename: the walk below the destination followed the
    link, watched the root's directories again under ``b/...`` (changes in ``d`` were
    then reported as ``b/d/...``; rsync follows such a path out of the tree), and with
    a link to ``/`` it watched the whole filesystem."""
    root = tmp_path / "root"
    (root / "d" / "s").mkdir(parents=True)
    (root / "a").mkdir()

    def steps(watcher: TreeWatcher) -> None:
        with _reader_held(watcher):
            os.rename(root / "a", root / "b")
            os.rmdir(root / "b")
            os.symlink(".", root / "b")

    _, later = _written_later(root, steps, "d")
    assert _seen_where_written(later, "d"), later
    assert [c for c in later if c.path.startswith("b/")] == []


def test_the_records_of_renames_do_not_grow_for_ever(tmp_path: Path) -> None:
    """A mail spool renames every file from tmp to new: no record of a rename
    outlives its pair (watchdog 2.x kept them all and grew the agent without bound)."""
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "new").mkdir()
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        for i in range(300):
            (root / "tmp" / f"m{i}").write_text("x")
            os.rename(root / "tmp" / f"m{i}", root / "new" / f"m{i}")
        changes = _drain_until_quiet(watcher)
        assert watcher._tree is not None
        unpaired, watched = watcher._tree.moves_unpaired, watcher._tree.watched
    finally:
        watcher.stop()
    assert Change("move", "tmp/m299", "new/m299") in changes
    assert (unpaired, watched) == (False, 3)


def test_a_file_renamed_from_the_old_name_of_a_directory_does_not_take_its_watch(
    tmp_path: Path,
) -> None:
    """A directory moved out and back in under another name, then a file made at its
    old name and renamed: watchdog 2.x still filed the directory's watch under the old
    name and moved it with the file, so changes in the directory were reported under
    the file's new name and missed under their own."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d" / "s").mkdir(parents=True)
    outside.mkdir()

    def steps(watcher: TreeWatcher) -> None:
        os.rename(root / "d", outside / "d")
        _drain_until_quiet(watcher)  # watchdog pairs moves within 0.5 s: a move out
        os.rename(outside / "d", root / "e")
        _drain_until_quiet(watcher)
        (root / "d").write_text("a file at the old name")
        os.rename(root / "d", root / "f")

    _, later = _written_later(root, steps, "e")
    assert _seen_where_written(later, "e"), later
    assert [c for c in later if c.path.startswith("f/")] == []


def test_a_file_moved_into_a_directory_just_moved_out_is_reported_gone(
    tmp_path: Path,
) -> None:
    """``mv d /trash/; mv g /trash/d/`` within half a second: watchdog 7 paired g's
    rename with a destination in the directory moved out, and dropped the pair with
    that directory's events; g's leaving was never reported, and g stayed on the peer."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    (root / "g").write_text("g")
    outside.mkdir()
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        os.rename(root / "d", outside / "d")
        os.rename(root / "g", outside / "d" / "g")
        changes = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
    assert Change("path", "d") in changes
    # a removed path, or the source of a rename (2.x still names d by its old place)
    assert "g" in {c.path for c in changes if c.kind in ("path", "move")}, changes


def _drain_until_quiet(watcher: TreeWatcher) -> list[Change]:
    seen: list[Change] = []
    quiet = time.monotonic() + 1.0  # watchdog pairs moves within 0.5 s
    while time.monotonic() < quiet:
        if got := watcher.drain():
            seen += got
            quiet = time.monotonic() + 1.0
        time.sleep(0.05)
    return seen


# The lab's churn (tests/lab/test_sync_lab.py), in this process, plus renames into the tree
# of directories filled outside it and directories filled right after a rename.
def _churn(root: Path, outside: Path, seed: int, ops: int) -> None:
    rnd = random.Random(seed)

    def entries(kind: str) -> list[str]:
        out: list[str] = []
        for here, dirs, files in os.walk(root):
            out += [os.path.join(here, n) for n in (dirs if kind == "d" else files)]
        return out

    for i in range(ops):
        op = rnd.choice("cccwwrRdDtlmoIF")
        dirs = [str(root), *entries("d")]
        files = entries("f")
        try:
            if op == "c":
                with open(os.path.join(rnd.choice(dirs), f"f{seed}-{i}"), "wb") as fh:
                    fh.write(os.urandom(rnd.randint(0, 500)))
            elif op == "w" and files:
                with open(rnd.choice(files), "ab") as fh:
                    fh.write(os.urandom(rnd.randint(1, 300)))
            elif op == "r" and files:
                os.rename(rnd.choice(files), os.path.join(rnd.choice(dirs), f"r{seed}-{i}"))
            elif op == "R" and len(dirs) > 1:
                src, dst = rnd.choice(dirs[1:]), os.path.join(root, f"T{seed}-{i}")
                if not dst.startswith(src + "/"):
                    os.rename(src, dst)
            elif op == "d" and files:
                os.unlink(rnd.choice(files))
            elif op == "D" and len(dirs) > 1:
                shutil.rmtree(rnd.choice(dirs[1:]))
            elif op == "t":
                d = os.path.join(rnd.choice(dirs), f"t{seed}-{i}")
                os.makedirs(os.path.join(d, "x", "y"))
                for k in range(5):
                    Path(d, "x", "y", f"k{k}").write_text("z" * k)
            elif op == "l":
                os.symlink(f"target-{i}", os.path.join(rnd.choice(dirs), f"l{seed}-{i}"))
            elif op == "m" and files:
                os.chmod(rnd.choice(files), rnd.choice([0o600, 0o640, 0o755]))
            elif op == "o" and files and os.geteuid() == 0:
                os.chown(rnd.choice(files), rnd.randint(1000, 1005), rnd.randint(1000, 1005))
            elif op == "I":  # a tree made outside, moved in, then written into at once
                made = outside / f"I{seed}-{i}"
                (made / "a").mkdir(parents=True)
                (made / "a" / "f").write_text("before")
                dest = Path(rnd.choice(dirs), made.name)
                os.rename(made, dest)
                (dest / "a" / "g").write_text("after")
                (dest / "b").mkdir()
                (dest / "b" / "h").write_text("after")
            elif op == "F":  # a directory made, renamed at once, then filled
                made = Path(rnd.choice(dirs), f"F{seed}-{i}")
                made.mkdir()
                moved = Path(rnd.choice(dirs), f"G{seed}-{i}")
                if not str(moved).startswith(str(made) + "/"):
                    os.rename(made, moved)
                    (moved / "f").write_text("in it")
                    (moved / "s").mkdir()
                    (moved / "s" / "g").write_text("below")
        except (FileNotFoundError, FileExistsError):
            pass


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for here, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            full = os.path.join(here, name)
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            body = Path(full).read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[os.path.relpath(full, root)] = (st.st_mode, st.st_uid, st.st_gid, link, body)
    return out


def _settle(watcher: TreeWatcher, dirty: Dirty) -> None:
    """Feed the reported changes into ``dirty`` until 1.5 s pass without one."""
    quiet = time.monotonic() + 1.5  # watchdog 2.x pairs moves within 0.5 s
    while time.monotonic() < quiet:
        for change in watcher.drain():
            quiet = time.monotonic() + 1.5
            assert change.kind in ("path", "new", "tree", "move", "full"), change
            if change.kind == "full":  # a queue overflow on a loaded machine: full resync
                dirty.need_full(change.path, 0.0)
            elif change.kind == "move":
                dirty.move(change.path, change.dest, change.tree, 0.0)
            elif change.kind == "new":
                dirty.add(change.path, 0.0, new=True)
            else:
                (dirty.add_tree if change.kind == "tree" else dirty.add)(change.path, 0.0)
        time.sleep(0.05)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_churn_is_covered_by_the_reported_changes(tmp_path: Path, seed: int) -> None:
    """The lab's sync test as the watcher sees it: a churn reaches the peer (one batch
    of the reported changes, expanded as the engine does), then a second churn while
    the peer is away. The next batch must list every path that differs from what the
    peer has. Directories made or moved in during the first churn must be watched in
    the second: on watchdog 2.2 one moved in from outside, or made and renamed before
    watchdog read its creation, was not (the lab's lost files)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d" / "x").mkdir(parents=True)
    outside.mkdir()
    for i in range(5):
        (root / "d" / "x" / f"f{i}").write_text(str(i))
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    dirty = Dirty(interval=1.0)
    try:
        _churn(root, outside, seed, 300)
        _settle(watcher, dirty)
        dirty.take()  # the peer has it all now
        before = _snapshot(root)
        _churn(root, outside, seed + 100, 300)  # the peer is away meanwhile
        _settle(watcher, dirty)
    finally:
        watcher.stop()
    batch = dirty.take()
    if batch.full:
        # the kernel's queue overflowed (a loaded machine): the engine sends everything,
        # which covers every path; the watcher said so, which is all it can do then
        assert "inotify queue overflow" in batch.reason, batch.reason
        return
    assert _missed(root, before, batch) == []


def _missed(root: Path, before: dict[str, tuple[object, ...]], batch: Batch) -> list[str]:
    """The paths that differ from ``before`` and that ``batch`` would not send. A
    changed path must be listed itself, or be an entry of a directory listed with its
    entries (``dir/.``; a directory listed by its name sends only itself); a vanished
    one also goes with a listed directory above it."""
    listed = set(expand(str(root), batch))
    after = _snapshot(root)

    def sent(path: str) -> bool:
        parent = os.path.dirname(path)
        return path in listed or f"{path}/." in listed or (bool(parent) and f"{parent}/." in listed)

    def covered(path: str) -> bool:
        parts = path.split("/")
        return any(sent("/".join(parts[:n])) for n in range(1, len(parts) + 1))

    changed = {p for p, v in after.items() if before.get(p) != v}
    missed = sorted(p for p in changed if not sent(p))
    return missed + sorted(f"gone: {p}" for p in before.keys() - after.keys() if not covered(p))


def test_a_directory_above_the_root_moved_is_reported_lost(tmp_path: Path) -> None:
    """``mv /srv /srv.old && mkdir -p /srv/data``: the root's own inode did not move,
    and without a watch above it the watcher would go on watching /srv.old/data."""
    root = tmp_path / "srv" / "data"
    root.mkdir(parents=True)
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        os.rename(tmp_path / "srv", tmp_path / "srv.old")
        root.mkdir(parents=True)
        changes = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
    above = f"{tmp_path / 'srv'}, a directory above it, was moved, deleted or unmounted"
    assert changes == [Change("lost", above)]


def _deep(top: Path, name: str, depth: int) -> None:
    """``depth`` directories ``name`` inside each other below ``top``, by descriptors:
    a path that deep is too long for one system call."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("at the bottom")
    finally:
        os.close(fd)


def _remove_deep(top: Path, name: str) -> None:
    """Remove what :func:`_deep` made one level at a time (pytest's cleanup, and
    3.11's shutil.rmtree, recurse): the level below moves up, the emptied one goes."""
    here, up = top / name, top / f"{name}.up"
    while True:
        for entry in os.listdir(here):
            if entry != name:
                os.unlink(here / entry)
        if name not in os.listdir(here):
            os.rmdir(here)
            return
        os.rename(here / name, up)
        os.rmdir(here)
        os.rename(up, here)


def test_a_tree_deeper_than_python_recursion_is_watched_and_listed(tmp_path: Path) -> None:
    """``mkdir -p`` 1,100 levels deep: watchdog's walk, and the engine's listing,
    died of RecursionError (the watcher's thread for good)."""
    root = tmp_path / "root"
    root.mkdir()
    dirty = Dirty(interval=1.0)
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        _deep(root, "d", 1100)
        _settle(watcher, dirty)
        bottom = "/".join(["d"] * 1100)
        listed = expand(str(root), dirty.take())
        (root / bottom / "later").write_text("later")
        later = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
        _remove_deep(root, "d")
    assert f"{bottom}/." in listed  # its entries, "bottom" among them
    assert Change("path", f"{bottom}/later") in later


def test_a_path_too_long_to_watch_is_reported_unwatchable(tmp_path: Path) -> None:
    """Below 4,096 bytes of path inotify cannot watch: the engine must poll, and say
    why, not tell the operator to raise the watch limit."""
    root = tmp_path / "root"
    root.mkdir()
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        _deep(root, "n" * 200, 25)
        changes = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
        _remove_deep(root, "n" * 200)
    unwatchable = [c for c in changes if c.kind == "unwatchable"]
    assert unwatchable, changes
    assert unwatchable[0].path.startswith(f"a path below {root}/nnn")
    assert unwatchable[0].path.endswith("... is too long")


_RENAME_EXCHANGE = 2


def _exchange(one: Path, other: Path) -> None:
    """renameat2(RENAME_EXCHANGE): ``mv --exchange`` in coreutils 9.5, and how some
    deployment tools swap a new release's directory in."""
    at_fdcwd = -100
    if libc().renameat2(at_fdcwd, bytes(one), at_fdcwd, bytes(other), _RENAME_EXCHANGE) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@pytest.mark.parametrize("held", [False, True])
def test_two_directories_exchanged_stay_watched_and_are_sent_whole(
    tmp_path: Path, held: bool
) -> None:
    root = tmp_path / "root"
    for name in ("a", "b"):
        (root / name / "s").mkdir(parents=True)
        (root / name / "s" / "f").write_text(name)
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        with _reader_held(watcher) if held else contextlib.nullcontext():
            _exchange(root / "a", root / "b")
        first = _drain_until_quiet(watcher)
        for name in ("a", "b"):
            (root / name / "s" / "later").write_text("x")
        later = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
    assert {Change("path", "a/s/later"), Change("path", "b/s/later")} <= set(later)
    assert Change("full", "b and a were exchanged") in first


def test_a_directory_renamed_back_asks_for_a_full_sync_and_stays_watched(
    tmp_path: Path,
) -> None:
    """``mv a b; mv b a`` reads as RENAME_EXCHANGE does, and by the time the events are
    read either may be followed by more (``rm -rf`` of one side): a full sync."""
    root = tmp_path / "root"
    (root / "a" / "s").mkdir(parents=True)
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        os.rename(root / "a", root / "b")
        os.rename(root / "b", root / "a")
        first = _drain_until_quiet(watcher)
        (root / "a" / "s" / "later").write_text("x")
        later = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
    assert Change("full", "b and a were exchanged") in first
    assert Change("path", "a/s/later") in later


def test_a_file_moved_out_of_a_directory_renamed_next_is_gone_at_its_new_path(
    tmp_path: Path,
) -> None:
    """``mv p/f /out; mv p q``: the removal is seen after the rename, and the peer,
    which replays p -> q first, must lose q/f."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "p").mkdir(parents=True)
    outside.mkdir()
    (root / "p" / "f").write_text("f")
    watcher = TreeWatcher(str(root), lambda: None)
    watcher.start()
    try:
        with _reader_held(watcher):
            os.rename(root / "p" / "f", outside / "f")
            os.rename(root / "p", root / "q")
        changes = _drain_until_quiet(watcher)
    finally:
        watcher.stop()
    assert Change("path", "q/f") in changes, changes


def test_a_rename_with_no_second_half_in_the_next_read_went_out(tmp_path: Path) -> None:
    """A spool moves each file out to an archive while others keep writing: the reader
    never sits idle for the wait that ends a rename with no second half, and those
    renames piled up unreported (the peer kept every file). The kernel queues both
    halves at once, so one more read without the second is proof enough."""
    changes: list[Change] = []
    inotify = Inotify()
    try:
        tree = WatchedTree(inotify, str(tmp_path), changes.append)
        tree.start()
        root = tree._root_wd
        tree.handle([Event(root, IN_MOVED_FROM, 7, b"m1")])  # the buffer ended here
        assert changes == []
        tree.handle([Event(root, IN_MODIFY, 0, b"busy"), Event(root, IN_MOVED_FROM, 8, b"m2")])
        assert changes == [Change("path", "busy"), Change("path", "m1")]
        tree.handle([Event(root, IN_MOVED_TO, 8, b"m3")])  # a pair split by a full buffer
        assert changes[2:] == [Change("move", "m2", "m3")]
        assert not tree.moves_unpaired
    finally:
        inotify.close()


@pytest.mark.parametrize("how", ["mkdir", "moved in"])
def test_a_new_directory_at_a_name_just_moved_out_stays_watched(tmp_path: Path, how: str) -> None:
    """``mv a b; mv b /outside; mkdir b``, read late: the walk for the first rename
    already finds the new ``b``, and the rename out then looked up the new ``b``'s
    watch as the one that left, and removed it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    (outside / "new" / "s").mkdir(parents=True)

    def steps(watcher: TreeWatcher) -> None:
        with _reader_held(watcher):
            os.rename(root / "a", root / "b")
            os.rename(root / "b", outside / "gone")
            if how == "mkdir":
                (root / "b" / "s").mkdir(parents=True)
            else:
                os.rename(outside / "new", root / "b")

    _, later = _written_later(root, steps, "b")
    assert _seen_where_written(later, "b"), later


def test_a_stale_path_through_a_link_does_not_take_another_directory_s_watch(
    tmp_path: Path,
) -> None:
    """``mkdir a/y; mv a k; ln -s c a``, read late: the walk for ``a/y`` went through
    the link to ``c/y`` and filed its watch under ``k``; the rename's walk then put
    the real ``k/y`` there, and ``c/y`` was left unwatched."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "c" / "y" / "s").mkdir(parents=True)

    def steps(watcher: TreeWatcher) -> None:
        with _reader_held(watcher):
            (root / "a" / "y").mkdir()
            os.rename(root / "a", root / "k")
            os.symlink("c", root / "a")

    _, later = _written_later(root, steps, "c/y")
    assert _seen_where_written(later, "c/y"), later


def test_mount_points_are_read_with_their_escapes_and_a_carriage_return() -> None:
    mountinfo = (
        b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        b"40 22 0:40 / /srv/a\\040b\\134c rw - tmpfs t rw\n"
        b"41 22 0:41 / /srv/cr\rname rw - tmpfs t rw\n"
    )
    assert [point for point, _ in parse(mountinfo)] == [b"/", b"/srv/a b\\c", b"/srv/cr\rname"]


def test_a_name_taken_by_another_directory_after_a_move_out_is_not_a_bind_mount(
    tmp_path: Path,
) -> None:
    """``mv p/x /out; mv p q; mv r p`` (r has an x too), read late: the check of the
    rename out found r's x at the old path p/x and took it for one directory at two
    places; the engine would have polled for good, and r's x lost its place."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "p" / "x").mkdir(parents=True)
    (root / "r" / "x" / "s").mkdir(parents=True)
    outside.mkdir()

    def steps(watcher: TreeWatcher) -> None:
        with _reader_held(watcher):
            os.rename(root / "p" / "x", outside / "x")
            os.rename(root / "p", root / "q")
            os.rename(root / "r", root / "p")

    first, later = _written_later(root, steps, "p/x")
    assert [c for c in first if c.kind == "unwatchable"] == []
    assert {Change("path", "p/x"), Change("path", "q/x")} <= set(first)
    assert _seen_where_written(later, "p/x"), later
