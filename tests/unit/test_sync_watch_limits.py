"""The watcher never keeps the bad news to itself, whatever watchdog it runs on.

watchdog hides inotify's queue overflow, the watch limit and an unmounted
root; mosqit_failover.sync.watch reaches into watchdog's internals for them,
which differ between watchdog 2.x (Debian 12) and 7.x (PyPI). Each case runs
for real in a watch_driver.py process: stopped (SIGSTOP) while more files
appear than the kernel queues, in a user namespace whose inotify watch limit
is a few watches, in a mount namespace whose tmpfs is unmounted under it.
Nothing outside tmp_path and those namespaces is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.jsonl_process import JsonLinesProcess, Record

DRIVER = Path(__file__).with_name("watch_driver.py")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for user and mount namespaces",
)


class Driver(JsonLinesProcess):
    """One watch_driver.py process; its JSON lines in a queue."""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a test that failed while it was stopped
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def drivers() -> Iterator[Callable[[list[str]], Driver]]:
    made: list[Driver] = []

    def start(argv: list[str]) -> Driver:
        made.append(Driver(argv))
        return made[-1]

    yield start
    for driver in made:
        driver.close()


def with_watch_limit(limit: int, root: Path) -> list[str]:
    """The driver in a user namespace of its own whose inotify watch limit is ``limit``."""
    script = f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$0" "$1" "$2"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script]


def changes(driver: Driver) -> list[Record]:
    return [r for r in driver.records if "kind" in r]


def test_a_queue_overflow_is_reported(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many files to overflow it")
    root = tmp_path / "root"
    root.mkdir()
    driver = drivers([sys.executable, str(DRIVER), str(root)])
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    os.kill(driver.proc.pid, signal.SIGSTOP)  # its reader cannot drain the queue now
    try:
        for i in range(limit + 100):  # each at least IN_CREATE and IN_CLOSE_WRITE
            (root / f"f{i}").touch()
    finally:
        os.kill(driver.proc.pid, signal.SIGCONT)
    driver.wait_for(lambda r: r.get("kind") == "full", 30)
    assert {
        "kind": "full",
        "path": "inotify queue overflow: events were lost",
        "dest": "",
        "tree": False,
    } in (changes(driver))


def test_the_watch_limit_on_a_new_directory_is_reported(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)  # two watches: root and sub
    # and one per directory above the root (its rename takes the root along)
    allowed = 3 + len(root.parents)
    driver = drivers([*with_watch_limit(allowed, root), sys.executable, str(DRIVER), str(root)])
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    (root / "new1").mkdir()  # the third watch: fits
    driver.wait_for(lambda r: r.get("path") == "new1", 10)
    (root / "new2").mkdir()  # a fourth: over the limit
    limit = driver.wait_for(lambda r: r.get("kind") == "limit", 10)
    assert limit["path"] == str(root / "new2")
    assert [r["path"] for r in changes(driver) if r["kind"] == "limit"] == [str(root / "new2")]


def test_the_watch_limit_at_start_is_never_silent(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    root = tmp_path / "root"
    for name in ("a", "b", "c", "d"):
        (root / name).mkdir(parents=True)  # five directories, three watches allowed
    driver = drivers([*with_watch_limit(3, root), sys.executable, str(DRIVER), str(root)])
    # the start goes on without the subtrees it could not watch, each reported
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    limited = {r["path"] for r in changes(driver) if r["kind"] == "limit"}
    assert limited, driver.records
    assert limited <= {str(root / name) for name in ("a", "b", "c", "d")}, limited


def test_the_root_unmounted_is_reported_lost(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    script = 'mount -t tmpfs mqwatch "$2" && exec "$0" "$1" "$2"'
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    driver = drivers([*argv, sys.executable, str(DRIVER), str(root)])
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    driver.send("umount")
    lost = driver.wait_for(lambda r: r.get("kind") == "lost", 10)
    # by the mount table or by inotify, whichever the reader sees first
    assert lost["path"] in (
        "a filesystem was mounted on it, or unmounted from it",
        "the directory's filesystem was unmounted",
    )


def _in_a_mount_namespace(
    drivers: Callable[[list[str]], Driver], root: Path, *options: str
) -> Driver:
    """A driver watching ``root``, ready, in a user and mount namespace of its own
    (its mount commands reach nothing outside)."""
    argv = ["unshare", "--user", "--map-root-user", "--mount"]
    driver = drivers([*argv, sys.executable, str(DRIVER), str(root), *options])
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    return driver


def test_a_filesystem_mounted_inside_the_tree_is_sent_and_watched(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    """Mounting over a directory of the tree changes its content with no inotify
    event: the mount table says so, and the new filesystem is watched too."""
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    driver = _in_a_mount_namespace(drivers, root)
    driver.send(f"mount {root / 'm'}")
    driver.wait_for(lambda r: r.get("kind") == "mount" and r.get("path") == "m", 10)
    driver.send(f"write {root / 'm' / 'later'}")
    driver.wait_for(lambda r: r.get("path") == "m/later", 10)


def test_a_filesystem_mounted_before_the_reader_runs_is_watched(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    """The mount table is read when the watch starts, not when its thread first runs:
    on a loaded machine a mount could fall between the walk and that first read, and
    the new filesystem was then taken for one that was always there, and not watched."""
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    driver = _in_a_mount_namespace(drivers, root, "--late-reader", "1")
    driver.send(f"mount {root / 'm'}")
    driver.wait_for(lambda r: r.get("kind") == "mount" and r.get("path") == "m", 10)
    driver.send(f"write {root / 'm' / 'later'}")
    driver.wait_for(lambda r: r.get("path") == "m/later", 10)


def test_the_root_deleted_is_reported_lost(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    driver = drivers([sys.executable, str(DRIVER), str(root)])
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    root.rmdir()
    lost = driver.wait_for(lambda r: r.get("kind") == "lost", 10)
    assert lost["path"] == "the directory itself was deleted"


def test_a_directory_mounted_at_two_places_in_the_tree_makes_the_engine_poll(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    """A bind mount puts one directory at two paths; one watch reports its changes
    under one of them only, so the watcher says it cannot watch the tree (the engine
    then sends it whole every 10 s). The root bound inside itself also ends the walk
    there, where it went round the loop until the path grew too long."""
    root = tmp_path / "root"
    (root / "a" / "s").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "m").mkdir()
    driver = _in_a_mount_namespace(drivers, root)
    driver.send(f"bind {root / 'a'} {root / 'b'}")
    twice = driver.wait_for(lambda r: r.get("kind") == "unwatchable", 10)
    assert twice["path"] == "b is a directory also mounted elsewhere in the tree"
    driver.send(f"bind {root} {root / 'm'}")
    driver.wait_for(
        lambda r: r.get("path") == "m is a directory also mounted elsewhere in the tree", 10
    )


def test_a_filesystem_mounted_inside_before_the_start_is_watched(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    """A mount point's entry in its parent names the directory under the mount: the
    walk must check a directory by what its path reaches, or it skips the mount."""
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    script = 'mount -t tmpfs mqwatch "$2/m" && exec "$0" "$1" "$2"'
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    driver = drivers([*argv, sys.executable, str(DRIVER), str(root)])
    driver.wait_for(lambda r: r.get("ready") is True, 10)
    driver.send(f"write {root / 'm' / 'later'}")
    driver.wait_for(lambda r: r.get("path") == "m/later", 10)


def test_a_filesystem_mounted_over_a_directory_above_the_root_is_reported_lost(
    tmp_path: Path, drivers: Callable[[list[str]], Driver]
) -> None:
    """It hides the root with no inotify event; the watcher would go on watching the
    hidden directory."""
    root = tmp_path / "above" / "root"
    root.mkdir(parents=True)
    driver = _in_a_mount_namespace(drivers, root)
    driver.send(f"mount {tmp_path / 'above'}")
    lost = driver.wait_for(lambda r: r.get("kind") == "lost", 10)
    assert lost["path"] == "a filesystem was mounted or unmounted on a directory above it"
