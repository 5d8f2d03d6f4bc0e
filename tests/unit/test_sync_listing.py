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
    assert expand(str(root), _batch({".", "a"}, {"."})) == ["a"]


def _push(src: Path, rx: Receiver, batch: Batch) -> None:  # noqa: F811
    sync = SyncDir(path=str(src), peer_path=str(rx.dest), timeout=20, excludes=("*.tmp",))
    pushed = _run(
        _with_rsh(commands.batch_argv(sync, _peer(), 5), rx.sshd()),
        input=commands.files_from(expand(str(src), batch)).decode(),
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
