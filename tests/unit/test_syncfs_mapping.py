"""The synchronous mode's mapping: each file-system call, its records, and whether it waits.

Pure (mosqit_failover.syncfs.mapping); the records are then applied by the real applier
on a temporary directory where the content matters (hard links, sparse files).
"""

from __future__ import annotations

import os
from pathlib import Path

from mosqit_failover.syncfs.apply import Applier
from mosqit_failover.syncfs.mapping import ROOT, Namespace, Step, Times
from mosqit_failover.syncfs.records import (
    KEEP_ID,
    Chmod,
    Chown,
    Create,
    Link,
    Mkdir,
    Record,
    Rename,
    Rmdir,
    SetSize,
    Symlink,
    Unlink,
    Utimes,
    Write,
)

T = Times(1_000, 2_000)


def ns_with_file(name: bytes = b"f", key: int = 100, fh: int = 10) -> tuple[Namespace, int]:
    ns = Namespace(root_key=1)
    inode, step = ns.create(ROOT, name, key, fh, 0o644, 0, 0)
    assert step == Step((Create(name, 0o644, 0, 0),), sync=False)
    return ns, inode


def apply_all(root: Path, steps: list[Step]) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    applier = Applier(fd)
    try:
        for step in steps:
            for record in step.records:
                applier.apply(record)
            if step.sync:
                applier.commit()
        applier.commit()
    finally:
        applier.close()
        os.close(fd)


def test_create_write_close_and_which_calls_wait() -> None:
    ns, inode = ns_with_file()
    write = ns.write(10, 0, b"abc")
    assert write == Step((Write(b"f", 0, b"abc"),), sync=False)  # write() returns locally
    close = ns.flush(10, T)
    assert close == Step((Utimes(b"f", 1_000, 2_000),), sync=True)  # close() waits
    assert ns.flush(10, T) == Step((), sync=True)  # a second close (a dup): waits, no record
    assert ns.release(10) == Step()  # release comes after close returned: nothing to wait for
    assert not ns.known(inode) or ns.lookups(inode) == 1


def test_close_of_a_file_opened_read_only_does_not_wait() -> None:
    ns, inode = ns_with_file()
    assert ns.open(inode, 11, writable=False) == Step()
    assert ns.flush(11, T) == Step()


def test_fsync_and_fdatasync_always_wait() -> None:
    ns, inode = ns_with_file()
    ns.open(inode, 11, writable=False)
    assert ns.fsync(11, T).sync
    ns.write(10, 5, b"x")
    assert ns.fsync(10, T) == Step((Utimes(b"f", 1_000, 2_000),), sync=True)
    assert ns.fsyncdir() == Step((), sync=True)


def test_open_with_o_trunc_cuts_the_file_and_its_close_waits() -> None:
    ns, inode = ns_with_file()
    ns.release(10)
    assert ns.open(inode, 12, writable=True, truncate=True) == Step((SetSize(b"f", 0),))
    assert ns.flush(12, T) == Step((Utimes(b"f", 1_000, 2_000),), sync=True)


def test_setattr_chmod_chown_truncate_utimens_each_wait() -> None:
    ns, inode = ns_with_file()
    assert ns.setattr(inode, mode=0o600) == Step((Chmod(b"f", 0o600),), sync=True)
    assert ns.setattr(inode, uid=7) == Step((Chown(b"f", 7, KEEP_ID),), sync=True)
    assert ns.setattr(inode, gid=8, uid=-1) == Step((Chown(b"f", KEEP_ID, 8),), sync=True)
    assert ns.setattr(inode, size=5) == Step((SetSize(b"f", 5),), sync=True)
    assert ns.setattr(inode, times=T) == Step((Utimes(b"f", 1_000, 2_000),), sync=True)


def test_mkdir_rmdir_symlink_unlink_wait() -> None:
    ns = Namespace(root_key=1)
    d, step = ns.mkdir(ROOT, b"d", 200, 0o755, 1, 2)
    assert step == Step((Mkdir(b"d", 0o755, 1, 2),), sync=True)
    _, step = ns.symlink(d, b"s", 201, b"../elsewhere", 1, 2)
    assert step == Step((Symlink(b"d/s", b"../elsewhere", 1, 2),), sync=True)
    assert ns.unlink(d, b"s") == Step((Unlink(b"d/s"),), sync=True)
    assert ns.rmdir(ROOT, b"d") == Step((Rmdir(b"d"),), sync=True)
    assert ns.inode_of(ROOT, b"d") is None


def test_paths_follow_a_renamed_directory() -> None:
    ns = Namespace(root_key=1)
    d, _ = ns.mkdir(ROOT, b"d", 200, 0o755, 0, 0)
    inode, _ = ns.create(d, b"f", 201, 10, 0o644, 0, 0)
    assert ns.rename(ROOT, b"d", ROOT, b"e") == Step((Rename(b"d", b"e"),), sync=True)
    assert ns.write(10, 0, b"z") == Step((Write(b"e/f", 0, b"z"),))
    assert ns.path(inode) == b"e/f"


def test_rename_over_an_existing_file(tmp_path: Path) -> None:
    """The spool pattern: write a temporary name, rename it over the old file."""
    ns = Namespace(root_key=1)
    old, s1 = ns.create(ROOT, b"data", 100, 10, 0o644, 0, 0)
    steps = [s1, ns.write(10, 0, b"old content"), ns.flush(10, T), ns.release(10)]
    new, s2 = ns.create(ROOT, b".data.tmp", 101, 11, 0o644, 0, 0)
    steps += [s2, ns.write(11, 0, b"new"), ns.fsync(11, T), ns.flush(11, T)]
    rename = ns.rename(ROOT, b".data.tmp", ROOT, b"data")
    assert rename == Step((Rename(b".data.tmp", b"data"),), sync=True)
    assert ns.inode_of(ROOT, b"data") == new
    assert ns.path(old) is None  # replaced: it lost its only name
    assert ns.path(new) == b"data"
    steps += [rename, ns.release(11)]
    apply_all(tmp_path, steps)
    assert sorted(os.listdir(tmp_path)) == ["data"]
    assert (tmp_path / "data").read_bytes() == b"new"


def test_rename_over_a_file_still_open_elsewhere_drops_its_later_writes() -> None:
    ns = Namespace(root_key=1)
    ns.create(ROOT, b"a", 100, 10, 0o644, 0, 0)
    ns.create(ROOT, b"b", 101, 11, 0o644, 0, 0)
    ns.rename(ROOT, b"a", ROOT, b"b")
    assert ns.write(11, 0, b"to the replaced file") == Step()  # nobody can reach it
    assert ns.write(10, 0, b"x") == Step((Write(b"b", 0, b"x"),))
    assert ns.flush(11, T).sync  # its close still waits (for everything sent before)


def test_hard_links_share_one_inode_and_any_name_reaches_the_data(tmp_path: Path) -> None:
    ns = Namespace(root_key=1)
    inode, s1 = ns.create(ROOT, b"a", 100, 10, 0o644, 0, 0)
    d, s2 = ns.mkdir(ROOT, b"d", 200, 0o755, 0, 0)
    link = ns.link(inode, d, b"b")
    assert link == Step((Link(b"a", b"d/b"),), sync=True)
    assert ns.entry(d, b"b", 100, False) == inode  # a lookup of the second name: same inode
    assert ns.names(inode) == {(ROOT, b"a"), (d, b"b")}
    steps = [s1, s2, link, ns.write(10, 0, b"shared"), ns.flush(10, T)]
    unlink = ns.unlink(ROOT, b"a")
    assert unlink == Step((Unlink(b"a"),), sync=True)
    assert ns.write(10, 6, b"!") == Step((Write(b"d/b", 6, b"!"),))  # via its other name
    steps += [unlink, ns.write(10, 6, b"!"), ns.flush(10, T)]
    apply_all(tmp_path, steps)
    assert (tmp_path / "d" / "b").read_bytes() == b"shared!"
    assert not (tmp_path / "a").exists()


def test_sparse_file_keeps_its_holes(tmp_path: Path) -> None:
    ns = Namespace(root_key=1)
    _, create = ns.create(ROOT, b"sparse", 100, 10, 0o644, 0, 0)
    far = 64 << 20
    steps = [create, ns.write(10, 0, b"head"), ns.write(10, far, b"tail"), ns.flush(10, T)]
    assert steps[2] == Step((Write(b"sparse", far, b"tail"),))  # no zeros are sent
    assert sum(len(r.data) for s in steps for r in s.records if isinstance(r, Write)) == 8
    apply_all(tmp_path, steps)
    path = tmp_path / "sparse"
    assert path.stat().st_size == far + 4
    with path.open("rb") as f:
        assert f.read(4) == b"head"
        f.seek(far - 4)
        assert f.read() == b"\0\0\0\0tail"
    assert path.stat().st_blocks * 512 < 1 << 20  # holes, not 64 MiB of written zeros


def test_truncate_extends_with_a_hole(tmp_path: Path) -> None:
    ns, inode = ns_with_file()
    steps = [Step((Create(b"f", 0o644, 0, 0),)), ns.setattr(inode, size=1 << 24)]
    apply_all(tmp_path, steps)
    assert (tmp_path / "f").stat().st_size == 1 << 24
    assert (tmp_path / "f").stat().st_blocks * 512 < 1 << 20


def test_a_file_open_in_two_processes() -> None:
    """Two handles on one file: each close waits, and a barrier covers both writers."""
    ns, inode = ns_with_file()
    ns.open(inode, 11, writable=True)
    a = ns.write(10, 0, b"aaaa")
    b = ns.write(11, 4, b"bbbb")
    assert a.records + b.records == (Write(b"f", 0, b"aaaa"), Write(b"f", 4, b"bbbb"))
    assert ns.flush(10, T).sync and ns.flush(11, T).sync
    ns.release(10)
    assert ns.write(11, 8, b"c") == Step((Write(b"f", 8, b"c"),))  # the other still writes
    ns.release(11)


def test_a_file_removed_while_open() -> None:
    """Its writes need no record (unreachable here and there); the inode lives until forget."""
    ns, inode = ns_with_file()
    assert ns.unlink(ROOT, b"f") == Step((Unlink(b"f"),), sync=True)
    assert ns.write(10, 0, b"lost") == Step()
    assert ns.flush(10, T) == Step((), sync=True)
    assert ns.known(inode)
    ns.release(10)
    ns.forget(inode, 1)
    assert not ns.known(inode)


def test_a_reused_inode_number_is_a_new_file_not_a_hard_link() -> None:
    """The local st_ino of a file removed while open may be given to the next new file."""
    ns, inode = ns_with_file(key=100)
    ns.unlink(ROOT, b"f")
    new, step = ns.create(ROOT, b"g", 100, 11, 0o644, 0, 0)
    assert new != inode
    assert step == Step((Create(b"g", 0o644, 0, 0),))
    assert ns.write(10, 0, b"old") == Step()
    assert ns.write(11, 0, b"new") == Step((Write(b"g", 0, b"new"),))


def test_forget_keeps_open_files_and_frees_the_rest() -> None:
    ns, inode = ns_with_file()
    ns.forget(inode, 1)
    assert ns.known(inode)  # still open
    ns.release(10)
    assert not ns.known(inode)
    assert ns.inode_of(ROOT, b"f") is None
    again = ns.entry(ROOT, b"f", 100, False)
    assert ns.path(again) == b"f"


def test_a_name_changed_behind_our_back_takes_the_new_file() -> None:
    ns, inode = ns_with_file(key=100)
    other = ns.entry(ROOT, b"f", 555, False)
    assert other != inode
    assert ns.path(inode) is None


def test_every_record_type_is_covered() -> None:
    seen: set[type[Record]] = set()
    ns = Namespace(root_key=1)
    d, s = ns.mkdir(ROOT, b"d", 2, 0o755, 0, 0)
    seen.update(type(r) for r in s.records)
    inode, s = ns.create(d, b"f", 3, 9, 0o644, 0, 0)
    for step in (
        s,
        ns.write(9, 0, b"x"),
        ns.setattr(inode, mode=0o600, uid=1, gid=1, size=1, times=T),
        ns.link(inode, ROOT, b"h"),
        ns.symlink(ROOT, b"s", 4, b"d/f", 0, 0)[1],
        ns.rename(ROOT, b"h", ROOT, b"h2"),
        ns.unlink(ROOT, b"h2"),
        ns.rmdir(ROOT, b"d"),
    ):
        seen.update(type(r) for r in step.records)
    assert seen == {Mkdir, Create, Write, SetSize, Chown, Chmod, Utimes, Link, Symlink}.union(
        {Rename, Unlink, Rmdir}
    )
