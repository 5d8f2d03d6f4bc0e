"""What a batch lists for rsync (sync/listing.py), and what the real rsync and the real
forced command then leave on the peer.

Two faults this guards against, both seen through the real rsync before the fix:

- a user who can write in a synced directory made the active node copy files from
  outside it to the peer: ``mkdir b`` (the change is seen), then ``rm -r b; ln -s /etc
  b`` before the batch went. The listing walked the new tree ``b`` through the link
  (the whole filesystem behind ``ln -s / b``), and rsync read every listed name below
  ``b`` through it;
- ``mv b /out; mkdir b`` left the old ``b``'s files in the peer's ``b`` until the next
  full sync, which after a failover is what the service finds there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mosqit_failover.config import SyncDir
from mosqit_failover.sync import commands
from mosqit_failover.sync.listing import expand
from mosqit_failover.sync.plan import Batch
from tests.unit.test_sync_receive_hostile import Receiver, _peer, _run, _with_rsh, rx  # noqa: F401


def _batch(paths: set[str] = set(), trees: set[str] = set()) -> Batch:  # noqa: B006
    return Batch(frozenset(paths), frozenset(trees), False, 0.0)


def _files(top: Path) -> dict[str, str]:
    """Every name below ``top`` (links not followed): a file's text, "dir" or "-> target"."""
    found: dict[str, str] = {}
    for here, dirs, names in os.walk(top):
        for name in dirs + names:
            path = Path(here, name)
            rel = str(path.relative_to(top))
            if path.is_symlink():
                found[rel] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_text()
    return found


def _outside(tmp_path: Path) -> Path:
    """A directory outside the synced one, with a secret two levels down."""
    outside = tmp_path / "outside"
    (outside / "x" / "y").mkdir(parents=True)
    (outside / "x" / "y" / "secret").write_text("secret")
    (outside / "shadow").write_text("shadow")
    return outside


def test_a_new_tree_lists_each_of_its_directories_with_its_entries(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "t" / "x").mkdir(parents=True)
    (root / "t" / "x" / "f").write_text("1")
    (root / "t" / "l").symlink_to("nowhere")
    batch = _batch({"gone", "t/x/f"}, {"t", "vanished"})
    assert expand(str(root), batch) == ["gone", "t/.", "t/x/.", "t/x/f", "vanished"]


def test_a_new_tree_replaced_by_a_link_is_listed_as_the_link_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "b").symlink_to(_outside(tmp_path))  # ln -s / b would list the whole disk
    (root / "f").write_text("a file where a tree was")
    assert expand(str(root), _batch(trees={"b", "f"})) == ["b", "f"]


def test_a_name_below_a_link_or_a_file_is_listed_as_that_link_or_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real" / "sub").mkdir(parents=True)
    (root / "b").symlink_to(_outside(tmp_path))
    (root / "f").write_text("a file where a directory was")
    batch = _batch({"b/shadow", "b/x/y/secret", "f/g/h", "real/sub/new", "gone/x"}, {"b/x"})
    assert expand(str(root), batch) == ["b", "f", "gone/x", "real/sub/new"]


def test_a_link_inside_a_new_tree_is_listed_by_its_directory_not_walked(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "t" / "a" / "b").mkdir(parents=True)
    (root / "t" / "a" / "up").symlink_to("..")
    (root / "t" / "a" / "out").symlink_to(_outside(tmp_path))
    assert expand(str(root), _batch(trees={"t"})) == ["t/.", "t/a/.", "t/a/b/."]


def test_a_tree_bound_inside_itself_is_listed_once(tmp_path: Path) -> None:
    """A bind mount of the tree inside itself: the walk meets the same directory again
    and stops there instead of going round until the path is too long."""
    root = tmp_path / "root"
    (root / "t" / "a" / "m").mkdir(parents=True)
    program = (
        "import json, sys\n"
        "from mosqit_failover.sync.listing import expand\n"
        "from mosqit_failover.sync.plan import Batch\n"
        "batch = Batch(frozenset(), frozenset({'t'}), False, 0.0)\n"
        "print(json.dumps(expand(sys.argv[1], batch)))\n"
    )
    script = 'mount --bind "$1/t" "$1/t/a/m" && exec "$2" -c "$3" "$1"'
    unshare = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
    done = _run([*unshare, str(root), sys.executable, program])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["t/.", "t/a/."]


def test_the_synced_directory_itself_is_never_listed(tmp_path: Path) -> None:
    """Listed, rsync would send its entries and delete on the peer every top-level name
    the source lacks: the whole copy, for an emptied or unmounted source."""
    root = tmp_path / "root"
    root.mkdir()
    spellings = {".", "", "./", "./.", "a/.."}
    assert expand(str(root), _batch({*spellings, "a"}, spellings)) == ["a"]


def test_nothing_at_or_below_an_excluded_directory_is_listed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "app" / "cache" / "sessions").mkdir(parents=True)
    (root / "app" / "cache" / "sessions" / "s").write_text("active's own")
    (root / "app" / "main").write_text("main")
    (root / "cache" / "sub").mkdir(parents=True)
    batch = _batch({"app/cache/sessions/s", "app/main", "cache/x"}, {"app", "cache/sub"})
    for patterns in (["cache"], ["cache/"], ["cache/***"]):
        assert expand(str(root), batch, patterns) == ["app/.", "app/main"], patterns
    listed = expand(str(root), batch, ["app/cache"])  # not the top-level one
    assert listed == ["app/.", "app/main", "cache/sub/.", "cache/x"]
    copies = Batch(frozenset(), frozenset(), False, 0.0, copies=frozenset({"app"}))
    assert expand(str(root), copies, ["cache"]) == ["app", "app/main"]


def test_a_tree_where_a_filesystem_was_mounted_is_listed_entry_by_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "mnt" / "db").mkdir(parents=True)
    (root / "mnt" / "db" / "f").write_text("f")
    batch = Batch(frozenset(), frozenset(), False, 0.0, copies=frozenset({"mnt", "gone"}))
    assert expand(str(root), batch) == ["gone", "mnt", "mnt/db", "mnt/db/f"]


def _push(
    src: Path,
    rx: Receiver,  # noqa: F811
    batch: Batch,
    excludes: tuple[str, ...] = ("*.tmp",),
) -> None:
    sync = SyncDir(path=str(src), peer_path=str(rx.dest), timeout=20, excludes=excludes)
    pushed = _run(
        _with_rsh(commands.batch_argv(sync, _peer(), 5), rx.sshd()),
        input=commands.files_from(expand(str(src), batch, excludes)).decode(),
    )
    assert pushed.returncode == 0, pushed.stderr


def test_a_tree_swapped_for_a_link_sends_the_link_and_nothing_behind_it(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``mkdir b; touch b/shadow`` seen, then ``rm -r b; ln -s OUTSIDE b`` before the
    batch: before the fix the peer got OUTSIDE's shadow and x/y/secret."""
    src = tmp_path / "src"
    src.mkdir()
    outside = _outside(tmp_path)
    (src / "b").symlink_to(outside)
    _push(src, rx, _batch({"b", "b/shadow", "b/x/y/secret"}, {"b"}))
    assert _files(rx.dest) == {"b": f"-> {outside}"}


def test_a_directory_made_anew_keeps_nothing_of_the_old_one_on_the_peer(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``mv b /out; mkdir b; ...``: the peer's ``b`` is the new one, its excluded files
    kept as a full sync keeps them, and nothing outside the new tree is touched."""
    src = tmp_path / "src"
    (src / "b" / "new").mkdir(parents=True)
    (src / "b" / "new" / "n").write_text("new")
    (src / "b" / "same").write_text("same")
    (rx.dest / "b" / "old" / "deep").mkdir(parents=True)
    (rx.dest / "b" / "old" / "deep" / "f").write_text("old")
    (rx.dest / "b" / "new").mkdir()
    (rx.dest / "b" / "new" / "stale").write_text("old")
    (rx.dest / "b" / "same").write_text("old")
    (rx.dest / "b" / "kept.tmp").write_text("excluded")
    (rx.dest / "other").write_text("not in the batch")
    _push(src, rx, _batch({"b"}, {"b"}))
    assert _files(rx.dest) == {
        "b": "dir",
        "b/new": "dir",
        "b/new/n": "new",
        "b/same": "same",
        "b/kept.tmp": "excluded",
        "other": "not in the batch",
    }


def test_a_change_of_the_synced_directory_itself_deletes_nothing_on_the_peer(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    (rx.dest / "only-on-the-peer").write_text("kept")
    _push(src, rx, _batch({".", "a"}))
    assert _files(rx.dest) == {"a": "a", "only-on-the-peer": "kept"}


def test_the_standbys_own_files_below_an_excluded_directory_stay(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``cache`` excluded (as in examples/pair.toml), a new tree ``app`` with
    ``app/cache/sessions``: the first mirror listed ``app/cache/sessions/.`` and deleted
    the standby's own sessions; a removed ``cache/x`` deleted the standby's ``cache/x``."""
    src = tmp_path / "src"
    (src / "app" / "cache" / "sessions").mkdir(parents=True)
    (src / "app" / "cache" / "sessions" / "active-own").write_text("active")
    (src / "app" / "main").write_text("main")
    (rx.dest / "app" / "cache" / "sessions").mkdir(parents=True)
    (rx.dest / "app" / "cache" / "sessions" / "standby-own").write_text("standby")
    (rx.dest / "cache").mkdir()
    (rx.dest / "cache" / "x").write_text("standby")
    _push(src, rx, _batch({"cache/x"}, {"app"}), excludes=("cache/",))
    assert _files(rx.dest) == {
        "app": "dir",
        "app/main": "main",
        "app/cache": "dir",
        "app/cache/sessions": "dir",
        "app/cache/sessions/standby-own": "standby",
        "cache": "dir",
        "cache/x": "standby",
    }


def test_a_filesystem_unmounted_below_the_directory_deletes_nothing_on_the_peer(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The watcher reports an unmount as "mount" (Batch.copies): what is there now goes,
    the standby's copy of the unmounted filesystem stays (a full sync would remove it
    later, as before; the mirror removed it at once)."""
    src = tmp_path / "src"
    (src / "mnt").mkdir(parents=True)
    (src / "mnt" / "underneath").write_text("under the mount")
    (rx.dest / "mnt" / "db").mkdir(parents=True)
    (rx.dest / "mnt" / "db" / "important").write_text("standby")
    _push(src, rx, Batch(frozenset(), frozenset(), False, 0.0, copies=frozenset({"mnt"})))
    assert _files(rx.dest) == {
        "mnt": "dir",
        "mnt/underneath": "under the mount",
        "mnt/db": "dir",
        "mnt/db/important": "standby",
    }


def test_an_excluded_directory_removed_on_the_active_stays_on_the_peer(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``cache/`` excludes directories only, and rsync cannot tell that a gone name was
    one: listed, ``rm -rf cache`` (or ``mv cache cache.old``) deleted the standby's own
    ``cache`` through --delete-missing-args, which a full sync keeps."""
    src = tmp_path / "src"
    (src / "cache.old").mkdir(parents=True)
    (src / "keep").write_text("keep")
    (rx.dest / "cache" / "sessions").mkdir(parents=True)
    (rx.dest / "cache" / "sessions" / "standby-own").write_text("standby")
    for excludes in (("cache/",), ("/cache/",)):
        _push(src, rx, _batch({"cache", "keep"}, {"cache.old"}), excludes=excludes)
        assert _files(rx.dest)["cache/sessions/standby-own"] == "standby", excludes
