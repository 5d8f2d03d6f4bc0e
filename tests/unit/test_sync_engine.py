"""The engine's sending step with fake processes: renames first, then the batch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mosqit_failover.config import SyncDir
from mosqit_failover.sync import commands, receive
from mosqit_failover.sync import engine as engine_module
from mosqit_failover.sync.commands import Peer
from mosqit_failover.sync.engine import Engine
from mosqit_failover.sync.plan import Dirty, Move
from mosqit_failover.sync.proc import MasterError
from mosqit_failover.sync.watch import Change, TreeWatcher


class FakeMaster:
    up = True

    def __init__(self, host: str) -> None:
        self.peer = Peer(host, "root", 22, "/k", 2.0, Path(f"/run/x/{host}.ssh"))

    async def ensure(self) -> None:
        return None

    async def close(self) -> None:
        return None


Calls = list[tuple[str, bytes | None]]


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def build(calls: Calls, **answers: Any) -> Engine:
        return _engine(tmp_path, monkeypatch, calls, **answers)

    return build


def _engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Calls, **answers: Any
) -> Engine:
    engine = Engine(
        SyncDir(str(tmp_path), excludes=("*.tmp",)),
        [FakeMaster("10.0.0.2"), FakeMaster("10.0.1.2")],  # type: ignore[list-item]
        epoch=3,
        note=lambda text, prio: None,
    )

    async def run_command(
        argv: list[str], stdin: bytes | None = None, timeout: float | None = None, **_: Any
    ) -> tuple[int, str, str]:
        calls.append(("move", stdin))
        result: tuple[int, str, str] = answers["move"]
        return result

    async def run_rsync(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        calls.append(("rsync", stdin))
        result: tuple[int, str] = answers["rsync"]
        return result

    monkeypatch.setattr(engine_module, "run_command", run_command)
    monkeypatch.setattr(engine_module, "run_rsync", run_rsync)
    return engine


def _send(engine: Engine, dirty: Dirty) -> None:
    async def go() -> None:
        engine._loop = asyncio.get_running_loop()
        await engine._send(dirty.take())

    asyncio.run(go())


def _renamed_batch() -> Dirty:
    dirty = Dirty(interval=1.0)
    dirty.move("a", "b", tree=False, now=0.0)
    dirty.move("d", "e", tree=True, now=0.0)
    return dirty


def test_renames_go_to_the_peer_before_the_batch(make: Any) -> None:
    calls: Calls = []
    engine = make(calls, move=(0, "moved\nkept: not here\n", ""), rsync=(0, ""))
    _send(engine, _renamed_batch())
    assert [c[0] for c in calls] == ["move", "rsync"]
    assert calls[0][1] == b"a\0b\0d\0e\0"
    assert calls[1][1] == b"a\0b\0d\0e\0"  # both sides still listed
    assert engine.renames == 1 and engine.state == "in-sync" and engine.dirty.moves == []


def test_renames_the_peer_refused_are_kept_for_the_retry(make: Any) -> None:
    calls: Calls = []
    refused = (77, "", "mosqit-sync refused: this node is ACTIVE")
    engine = make(calls, move=refused, rsync=(12, refused[2]))
    _send(engine, _renamed_batch())
    assert engine.state == "refused"
    assert engine.dirty.moves == [Move("a", "b"), Move("d", "e", True)]


def test_renames_of_unknown_fate_are_never_replayed(make: Any) -> None:
    calls: Calls = []
    broken = (255, "moved\n", "Connection reset")
    engine = make(calls, move=broken, rsync=(255, "Connection reset"))
    _send(engine, _renamed_batch())
    # tried once, on the first address only (no rsync there: the peer went away); the
    # batch goes to the other address, then back to the dirty set without them
    assert [c[0] for c in calls] == ["move", "rsync"]
    assert engine.state == "waiting-for-peer" and engine.dirty.moves == []
    assert {"a", "b", "d"} <= engine.dirty.paths and "e" in engine.dirty.trees


def test_renames_that_never_reached_the_peer_are_kept(make: Any) -> None:
    calls: Calls = []
    down = (255, "", "ssh: connect to host 10.0.0.2 port 22: Connection timed out")
    engine = make(calls, move=down, rsync=down[::2])
    _send(engine, _renamed_batch())
    assert [c[0] for c in calls] == ["move", "move"]  # neither address answered
    assert engine.dirty.moves == [Move("a", "b"), Move("d", "e", True)]


def test_a_rename_touching_an_excluded_name_is_a_delete_and_a_send(make: Any) -> None:
    engine = make([], move=(0, "", ""), rsync=(0, ""))
    engine._absorb([Change("move", "x.tmp", "x"), Change("move", "p", "q", tree=True)], 1.0)
    assert engine.dirty.moves == [Move("p", "q", True)]
    assert {"x.tmp", "x", "p"} <= engine.dirty.paths


def test_a_full_sync_held_back_by_an_empty_source_retries_at_the_first_change(
    make: Any, tmp_path: Path
) -> None:
    calls: Calls = []
    engine = make(calls, rsync=(0, ""))
    dirty = Dirty(interval=1.0)
    dirty.need_full("start (catch up)", 0.0)
    _send(engine, dirty)
    assert calls == []  # nothing sent from the empty source
    assert engine.state == "source-missing"
    assert engine.retry_at > 0.0  # the backoff would wait
    (tmp_path / "first").write_text("x")
    engine._absorb([Change("path", "first")], now=5.0)
    assert engine.retry_at == 5.0  # ... but the first file goes out at once


# What Debian 12's rsync 3.2.7-1+deb12u6 says as the receiver of a batch listing a
# deleted path (captured from that binary; bookworm-security's 3.5.0 takes it)
NO_MISSING_ARGS = (
    "invalid file mode 00 for gone [Receiver]\n"
    "rsync error: protocol incompatibility (code 2) at flist.c(874) [Receiver=3.2.7]\n"
)


def test_a_peer_rsync_that_refuses_deletions_in_a_batch_gets_a_full_sync(make: Any) -> None:
    calls: Calls = []
    engine = make(calls, rsync=(2, NO_MISSING_ARGS))
    dirty = Dirty(interval=1.0)
    dirty.add("gone", now=0.0)
    _send(engine, dirty)
    assert engine.state == "error"
    assert engine.dirty.full_reason.startswith("the peer's rsync refuses deletions in a batch")


@pytest.mark.parametrize(
    "code",
    [12, 30, 255, 20],  # protocol stream broken, I/O timeout, ssh died, signal
)
def test_a_push_that_broke_off_mid_transfer_gets_a_full_sync(make: Any, code: int) -> None:
    """A receiver killed mid-file leaves rsync's ".name.XXXXXX" files, which only a full
    sync's --delete removes (a helper's finding: 237 MB of them on a standby reported
    in sync, served and pushed on after a switchover)."""
    calls: Calls = []
    engine = make(calls, rsync=(code, f"rsync error: something (code {code})\n"))
    dirty = Dirty(interval=1.0)
    dirty.add("big", now=0.0)
    _send(engine, dirty)
    assert engine.dirty.full_reason == (
        "a push broke off: the peer may keep rsync's temporary files of it"
    )


def test_a_transfer_that_broke_off_says_so_not_only_unreachable(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 20 % loss a 300 MB push restarted again and again while status said only
    "unreachable: rsync exit 255 ... Broken pipe", the pair formed all along."""
    monkeypatch.setattr(engine_module, "BROKE_OFF_AFTER", 0.0)
    calls: Calls = []
    engine = make(calls, rsync=(255, "client_loop: send disconnect: Broken pipe\n"))
    dirty = Dirty(interval=1.0)
    dirty.add("big", now=0.0)
    _send(engine, dirty)
    assert engine.state == "waiting-for-peer" and engine.last_error is not None
    assert "the transfer broke off after 0s (rsync exit 255 via 10.0.1.2" in engine.last_error
    assert "a lossy or cut link, or the peer's rsync was killed" in engine.last_error


def test_a_push_that_never_reached_the_peer_needs_no_full_sync(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(_self: FakeMaster) -> None:
        raise MasterError("ssh: connect to host: Connection refused")

    monkeypatch.setattr(FakeMaster, "ensure", refused)
    calls: Calls = []
    engine = make(calls, rsync=(0, ""))
    dirty = Dirty(interval=1.0)
    dirty.add("big", now=0.0)
    _send(engine, dirty)
    assert calls == [] and engine.state == "waiting-for-peer"
    assert not engine.dirty.full_reason and engine.dirty.pending == 1


def test_a_peer_whose_receiver_predates_this_batch_form_gets_a_full_sync(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rolling upgrade, this node first: the peer's forced command refuses rsync's
    -d, which the batch needs since it mirrors new trees. The refusal as that
    receiver words it (its letters without d) asks for a full sync, which it takes."""
    monkeypatch.setattr(receive, "SERVER_LETTERS", frozenset("logtprRHS"))
    with pytest.raises(receive.Refused) as refused:
        receive.check_short("-ldogtpRSe.LsfxCIvu")
    stderr = f"{commands.REFUSED} {refused.value}\nrsync error: (code 77)\n"
    assert commands.classify(77, stderr) is commands.Outcome.OLD_RECEIVER
    calls: Calls = []
    engine = make(calls, rsync=(77, stderr))
    dirty = Dirty(interval=1.0)
    dirty.add_tree("new", now=0.0)
    _send(engine, dirty)
    assert engine.dirty.full_reason.startswith("the peer's mosqit-failover refuses")
    other = f"{commands.REFUSED} rsync option letters 'z' in '-logtpze.LsfxCIvu' are not allowed"
    assert commands.classify(77, other) is commands.Outcome.REFUSED


def test_a_change_of_the_synced_directory_itself_is_a_full_sync_at_most_once_a_minute(
    make: Any,
) -> None:
    """A batch cannot send the directory's own attributes without its entries, which
    with --delete would mirror its top level (sync/listing.py). Anyone who may write in
    the directory can change them (``touch -c DIR`` in a loop): a full sync of a large
    tree each time would keep both nodes walking it."""
    engine = make([])
    engine._absorb([Change("path", "."), Change("path", "a")], 0.0)
    assert engine.dirty.full_reason == "the synced directory's own attributes changed"
    assert engine.dirty.paths == {"a"}
    engine.dirty.take()
    engine._absorb([Change("path", ".")], 1.0)
    engine._absorb([Change("path", ".")], 30.0)
    assert engine.dirty.empty
    engine._sync_root(59.9)
    assert engine.dirty.empty
    engine._sync_root(60.0)
    assert engine.dirty.full_reason == "the synced directory's own attributes changed"
    engine.dirty.take()
    engine._sync_root(200.0)  # nothing new since
    assert engine.dirty.empty


class FakeWatcher:
    """The changes the watcher has seen, handed out by drain()."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def drain(self) -> list[Change]:
        changes, self.changes = self.changes, []
        return changes

    def stop(self) -> None:
        return None


def test_what_changed_while_a_batch_was_in_flight_is_due_as_soon_as_it_is_done(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Calls = []
    engine = make(calls, rsync=(0, ""))
    watcher = FakeWatcher()
    engine._watcher = watcher

    async def rsync_while_writing(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        watcher.changes.append(Change("path", "written-meanwhile"))
        calls.append(("rsync", stdin))
        return 0, ""

    monkeypatch.setattr(engine_module, "run_rsync", rsync_while_writing)
    dirty = Dirty(interval=1.0)
    dirty.add("first", 0.0)
    _send(engine, dirty)
    assert engine.state == "in-sync"
    assert engine.dirty.paths == {"written-meanwhile"}  # taken in when the batch was done
    assert engine.dirty.due() == engine.dirty.first  # due at once, not after quiet


def test_a_batch_done_with_nothing_new_leaves_the_next_change_to_wait_for_quiet(
    make: Any,
) -> None:
    engine = make([], rsync=(0, ""))
    engine._watcher = FakeWatcher()
    dirty = Dirty(interval=1.0)
    dirty.add("first", 0.0)
    _send(engine, dirty)
    engine.dirty.add("later", 50.0)
    assert engine.dirty.due() == 50.0 + engine.dirty.settle


class FakeStarted:
    """An rsync started ahead (proc.Started): records what it is fed, or its end unused."""

    def __init__(self, calls: Calls, at: float) -> None:
        self.calls = calls
        self.at = at
        self.alive = True

    async def finish(
        self, stdin: bytes | None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        self.calls.append(("ahead", stdin))
        return 0, "", ""

    async def cancel(self) -> None:
        self.calls.append(("ended unused", None))


def _two_batches(
    make: Any, monkeypatch: pytest.MonkeyPatch, first: tuple[int, str], full: bool = False
) -> tuple[Engine, Calls, list[str]]:
    """Two batches; the first one's rsync answers ``first`` while a change is seen, and
    with ``full`` a full sync is due after it. (engine, calls, notes)"""
    calls: Calls = []
    notes: list[str] = []
    engine: Engine = make(calls, rsync=first)
    engine._note = lambda text, prio: notes.append(text)
    watcher = FakeWatcher()
    engine._watcher = watcher  # type: ignore[assignment]

    async def start_command(argv: list[str], *_: Any) -> FakeStarted:
        calls.append(("started ahead", None))
        return FakeStarted(calls, asyncio.get_running_loop().time())

    async def rsync_while_writing(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        calls.append(("rsync", stdin))
        watcher.changes.append(Change("path", "written-meanwhile"))
        engine._change_seen()  # the watcher's wake, in the loop
        await asyncio.sleep(0)
        return first

    monkeypatch.setattr(engine_module, "start_command", start_command)
    monkeypatch.setattr(engine_module, "run_rsync", rsync_while_writing)

    async def go() -> None:
        engine._loop = asyncio.get_running_loop()
        dirty = Dirty(interval=1.0)
        dirty.add("first", 0.0)
        await engine._send(dirty.take())
        if full:
            engine.dirty.need_full("periodic full reconcile", 1.0)
        if engine.state == "in-sync":
            await engine._send(engine.dirty.take())

    asyncio.run(go())
    return engine, calls, notes


def test_a_change_seen_while_a_batch_is_in_flight_starts_the_next_batch_s_rsync(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, calls, _ = _two_batches(make, monkeypatch, first=(0, ""))
    # started during the first batch, fed the second batch's list when it was due
    assert calls == [
        ("rsync", b"first\0"),
        ("started ahead", None),
        ("ahead", b"written-meanwhile\0"),
    ]
    assert engine.prestarts == 1 and engine.state == "in-sync"


def test_the_rsync_started_ahead_ends_unused_when_the_batch_fails(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, calls, _ = _two_batches(make, monkeypatch, first=(23, "some files failed"))
    # a retry comes after a backoff, maybe to another address: not with that rsync
    assert calls[-2:] == [("started ahead", None), ("ended unused", None)]
    assert engine.prestarts == 0 and engine._ahead is None


def test_the_rsync_started_ahead_does_not_carry_a_full_sync(
    make: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "data").write_text("x")  # a full sync of an empty source is held back
    engine, calls, notes = _two_batches(make, monkeypatch, first=(0, ""), full=True)
    assert calls[1:3] == [("started ahead", None), ("ended unused", None)]
    assert calls[3] == ("rsync", None)  # the full sync's own rsync (no list)
    assert any("not used: a full sync is due instead" in n for n in notes)
    assert engine.full_syncs == 1 and engine.prestarts == 0


def test_a_directory_that_cannot_be_watched_polls_and_says_why(tmp_path: Path) -> None:
    notes: list[str] = []
    engine = Engine(SyncDir(str(tmp_path)), [], epoch=1, note=lambda text, prio: notes.append(text))
    engine._absorb([Change("unwatchable", "a path below /srv/x... is too long")], 0.0)
    engine._absorb([Change("limit", "/srv/y")], 0.0)  # polling already: said once
    assert engine.polling
    assert notes == [
        f"sync {tmp_path}: a directory cannot be watched (a path below /srv/x... is too long); "
        "falling back to a full rsync every 10s and trying to watch again every 300s. "
        "Fix: remove that cause"
    ]


class ScriptedWatcher:
    """Stands in for the watcher: each start reports the next changes of ``script``."""

    script: ClassVar[list[list[Change]]] = []
    made: ClassVar[list[ScriptedWatcher]] = []

    def __init__(self, root: str, wake: Any) -> None:
        self._wake = wake
        self._changes = ScriptedWatcher.script.pop(0) if ScriptedWatcher.script else []
        self.stopped = False
        ScriptedWatcher.made.append(self)

    def start(self) -> None:
        if self._changes:
            self._wake()

    def drain(self) -> list[Change]:
        changes, self._changes = self._changes, []
        return changes

    def stop(self) -> None:
        self.stopped = True


def _poll_then_rewatch(
    make: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    script: list[list[Change]],
    watcher: type[ScriptedWatcher] = ScriptedWatcher,
) -> tuple[Engine, list[tuple[int, str]]]:
    """An engine whose watches start as ``script`` says, run for 1 s with a poll
    period of 50 ms and a new try every 200 ms."""
    monkeypatch.setattr(engine_module, "TreeWatcher", watcher)
    monkeypatch.setattr(engine_module, "POLL_PERIOD", 0.05)
    monkeypatch.setattr(engine_module, "REWATCH_PERIOD", 0.2)
    monkeypatch.setattr(ScriptedWatcher, "script", script)
    monkeypatch.setattr(ScriptedWatcher, "made", [])
    (tmp_path / "data").write_text("x")  # a full sync of an empty source is held back
    engine = make([], rsync=(0, ""))
    notes: list[tuple[int, str]] = []
    engine._note = lambda text, prio: notes.append((prio, text))
    turns = 0
    sync_root = engine._sync_root

    def counted(now: float) -> None:  # once a turn of the engine's loop
        nonlocal turns
        turns += 1
        sync_root(now)

    engine._sync_root = counted

    async def go() -> None:
        task = asyncio.create_task(engine.run())
        await asyncio.sleep(1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    # a try, its trial and the polling wake the loop a few dozen times a second at
    # these periods; a timer left in the past spun it (89,000 turns a second)
    assert turns < 300, turns
    return engine, notes


def test_polling_ends_once_the_whole_tree_can_be_watched_again(
    make: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The operator raised the watch limit (or removed the bind mount): the engine
    finds out at its next try, not at the agent's next restart."""
    engine, notes = _poll_then_rewatch(
        make, monkeypatch, tmp_path, [[Change("limit", "/srv/y")], [Change("path", "a")]]
    )
    said = [(prio, text) for prio, text in notes if "full sync done" not in text]
    assert [prio for prio, _ in said] == [4, 5], said
    assert "trying to watch again every 0.2s" in said[0][1]
    assert said[-1] == (5, f"sync {tmp_path}: every directory is watched again; polling ended")
    assert not engine.polling
    assert len(ScriptedWatcher.made) == 2  # the first one stopped for the second


def test_a_new_watch_that_fails_again_keeps_polling_and_says_so_quietly(
    make: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unwatchable = Change("unwatchable", "b is a directory also mounted elsewhere in the tree")
    engine, notes = _poll_then_rewatch(
        make, monkeypatch, tmp_path, [[unwatchable], [unwatchable], []]
    )
    said = [(prio, text) for prio, text in notes if "full sync done" not in text]
    assert [prio for prio, _ in said] == [4, 6, 5], said
    assert "still a directory cannot be watched" in said[1][1]
    assert not engine.polling and len(ScriptedWatcher.made) == 3


def test_a_new_watch_that_cannot_start_is_no_trial(
    make: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The directory gone for a moment when the new watch starts: polling must not be
    said to end while nothing watches it."""

    class Failing(ScriptedWatcher):
        def start(self) -> None:
            if len(ScriptedWatcher.made) > 1:
                raise FileNotFoundError(2, "gone for a moment", "/srv/x")
            super().start()

    monkeypatch.setattr(ScriptedWatcher, "made", [])
    engine, notes = _poll_then_rewatch(
        make, monkeypatch, tmp_path, [[Change("limit", "/srv/y")], [], []], watcher=Failing
    )
    ended = [i for i, (_, text) in enumerate(notes) if "polling ended" in text]
    assert engine.polling and not ended, notes


def test_a_held_back_change_of_the_directory_itself_goes_with_the_drain(
    make: Any, tmp_path: Path
) -> None:
    """A chmod of the directory within a minute of the last one, then a demotion: the
    drain is its last chance (the next active would push its own attributes back)."""
    (tmp_path / "data").write_text("x")  # a full sync of an empty source is held back
    calls: Calls = []
    engine = make(calls, rsync=(0, ""))
    engine._absorb([Change("path", ".")], 0.0)
    engine.dirty.take()
    engine._absorb([Change("path", ".")], 10.0)  # held back by the gap
    assert engine.dirty.empty

    async def go() -> None:
        engine._loop = asyncio.get_running_loop()
        engine._watcher = ScriptedWatcher("", lambda: None)
        engine.drain()
        await engine.run()

    asyncio.run(go())
    assert ("rsync", None) in calls  # the full sync's own rsync (no list)
    assert not engine._root.changed


def test_an_engine_stopped_while_its_watch_starts_leaves_no_watcher_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first walk of a big tree runs in a thread; a demotion or a reload cancels
    the engine meanwhile. The watcher that walk makes must still be stopped."""
    started: list[TreeWatcher] = []
    real_start = TreeWatcher.start

    def slow_start(self: TreeWatcher) -> None:
        time.sleep(0.3)
        real_start(self)
        started.append(self)

    monkeypatch.setattr(TreeWatcher, "start", slow_start)
    engine = Engine(SyncDir(str(tmp_path)), [], epoch=1, note=lambda text, prio: None)

    async def go() -> None:
        engine._loop = asyncio.get_running_loop()
        task = asyncio.create_task(engine._start_watch())
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.6)  # the start ends in its thread, then its stop runs

    asyncio.run(go())
    assert len(started) == 1
    assert started[0]._thread is None, "the watcher's reader still runs"


def test_a_synced_directory_that_leads_through_a_symlink_to_etc_is_not_watched_nor_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/srv/x/etc, a symlink to /etc on the active node, pushed its /etc (shadow, host
    keys, the secret) to the standby (a helper's finding): the config's rules see the
    path as written, so the engine looks at where it leads."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "etc").symlink_to("/etc")
    calls: Calls = []
    engine = _engine(tmp_path, monkeypatch, calls, rsync=(0, ""))
    engine.sync = SyncDir(str(tmp_path / "x" / "etc"))

    async def go() -> None:
        engine._loop = asyncio.get_running_loop()
        await engine._start_watch()

    asyncio.run(go())
    assert engine._watcher is None and calls == []
    assert engine.state == "source-missing"
    assert engine.last_error is not None
    assert engine.last_error.startswith(
        f"{tmp_path}/x/etc leads through a symlink to /etc, which is /etc, a system directory"
    )


def test_a_synced_directory_behind_a_symlink_to_a_data_directory_is_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "srv").symlink_to(tmp_path / "real")
    engine = _engine(tmp_path, monkeypatch, [], rsync=(0, ""))
    engine.sync = SyncDir(str(tmp_path / "srv"))

    async def go() -> None:
        engine._loop = asyncio.get_running_loop()
        await engine._start_watch()
        assert engine._watcher is not None
        engine._watcher.stop()

    asyncio.run(go())
    assert engine.state != "source-missing"
