"""One synced directory: watch it, batch its changes, push them to the peer.

Life of an engine (an asyncio task, only on the ACTIVE node):

1. Start the inotify watch first, then queue one full sync, so that nothing
   changed between the scan and the watch is missed (a returning node
   catches up too).
2. Changes are coalesced (:class:`~.plan.Dirty`) and sent as one rsync over
   the shared ssh master per batch, one batch at a time; what changed while a
   batch was in flight goes out as soon as it is done (a steady stream goes
   out back to back, never waiting for quiet that does not come); a new tree
   is mirrored (each of its directories listed with its entries, ``--delete``),
   a vanished path is deleted on the peer (see :mod:`.listing` for what is
   listed, and what never is).
   Renames inside the tree are first replayed on the peer (one ssh session
   per batch, the receiver's ``--move`` form), so a renamed file or tree is
   found in place and rsync's quick check sends nothing for it; a rename the
   peer cannot do (its source was never sent) just leaves the destination to
   be sent whole. A rename whose fate is unknown (the session broke) is never
   replayed: the batch still lists both sides, which is always correct.
   The first change of a batch starts that batch's rsync at once (its ssh
   session, the peer's forced command and rsync there start while the
   batch waits for quiet, or while the batch before it is in flight); it
   gets its list when the batch is due. So a lone change does not wait for
   the start after its quiet, and a stream's batches follow each other at
   the pace of the transfers, not of the starts (see :mod:`.plan`). One not
   needed after all (the batch failed, a full sync came first) is ended unused.
3. A failed run gives its batch back and waits (exponential backoff, 0.5 s up
   to 30 s) and tries the peer's other address: wait-for-connection mode.
   Nothing is dropped; rsync and ssh always run with I/O and connect timeouts.
4. Queue overflow or a lost watch: one full rescan and resync. Watch limit
   reached, or a directory that cannot be watched: a full rsync every
   :data:`POLL_PERIOD` instead, with a warning, and every :data:`REWATCH_PERIOD`
   a new watch of the whole tree, which ends the polling if it holds.
5. A full reconcile every ``full_every`` seconds (0 = never).

An engine pushes to one peer. In a multi-server cluster the manager runs one
engine per (directory, standby) and sets ``resync_after_outage``: a failed run
that could not reach the peer then also queues a full sync, so a standby that
comes back is caught up whole before it counts as in sync again. ``on_change``
(if set) is called after every push, successful or not.

Every change of health is one log line through ``note`` (text, priority).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

from mosqit_failover.config import SyncDir, symlinked_sync_problem
from mosqit_failover.deadlines import within
from mosqit_failover.sync import commands
from mosqit_failover.sync.commands import Outcome
from mosqit_failover.sync.exclude import excluded
from mosqit_failover.sync.listing import ROOT, expand
from mosqit_failover.sync.plan import (
    PRESTART_MAX_AGE,
    Backoff,
    Batch,
    Dirty,
    Move,
    Polling,
    RootAttributes,
    prestart_unfit,
)
from mosqit_failover.sync.proc import (
    MasterError,
    SshMaster,
    Started,
    run_command,
    run_rsync,
    start_command,
)
from mosqit_failover.sync.watch import Change, TreeWatcher

POLL_PERIOD = 10.0
"""Full rsync period when the inotify watch limit is reached."""

ROOT_FULL_GAP = 60.0
"""The least time between two full syncs asked for by changes of the synced directory's
own attributes (which anyone who may write in it can make: ``touch -c DIR``)."""

REWATCH_PERIOD = 300.0
"""While polling, how often the engine tries to watch the whole tree again (the
operator raised the limit, the bind mount is gone); the try counts once it has
reported no new cause for a :data:`POLL_PERIOD`."""

PARTIALS_BEFORE_FULL = 3

Note = Callable[[str, int], None]


BROKE_OFF_AFTER = 5.0
"""An rsync that failed after running this long (seconds) broke off mid-transfer."""

DRAIN_RETRY = 1.0
"""The longest pause between two tries of a planned handover's drain (seconds)."""

# rsync outcomes after which the receiver may have been cut off mid-file
_BROKE_OFF = frozenset((Outcome.UNREACHABLE, Outcome.TIMEOUT, Outcome.FAILED))


class Engine:
    """Pushes one directory to the peer while running (see the module doc)."""

    def __init__(self, sync: SyncDir, masters: list[SshMaster], epoch: int, note: Note) -> None:
        self.sync = sync
        self.masters = masters
        self.epoch = epoch
        self._note = note
        self.dirty = Dirty(sync.interval)
        self.backoff = Backoff()
        self.retry_at = 0.0
        self.state = "starting"
        self.last_error: str | None = None
        self.last_ok: float | None = None
        self.batches = 0
        self.full_syncs = 0
        self.overflows = 0
        self.renames = 0  # renames done on the peer instead of a delete + send
        self._polling = Polling(POLL_PERIOD, REWATCH_PERIOD)
        self._root = RootAttributes(ROOT_FULL_GAP)  # the directory's own attributes
        self._partials = 0
        self._peer = 0
        self._inflight: Batch | None = None
        self._seen_since_take = False  # a change came after the last batch was taken
        self._ahead: tuple[Started, int] | None = None  # the next rsync, started; its address
        self._starting_ahead: asyncio.Task[None] | None = None
        self.prestarts = 0  # batches carried by an rsync started ahead
        self._watcher: TreeWatcher | None = None
        self._watch_retry = Backoff(base=1.0, cap=30.0)
        self._watch_at = 0.0
        self._wake = asyncio.Event()
        self._draining = False
        self._drain_persist = False  # a planned handover's drain: retried until done
        self._empty_source = False  # the last full sync was held back: the source was empty
        # the source had content at the last push that went through, so the peer has it:
        # a full sync held back by an empty source then leaves the peer with what the
        # source lost (`rm -rf D && mkdir D`), which a handover must not pass over
        self._pushed_content = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # set by the manager after construction (a multi-server fan-out):
        self.resync_after_outage = False  # an unreachable peer gets a full sync when back
        self._rsync_ran = False  # the last push got as far as an rsync run
        self.on_change: Callable[[], None] | None = None  # after each push, failed or not

    @property
    def empty_source(self) -> bool:
        """The last full sync was held back because the source directory was empty."""
        return self._empty_source

    @property
    def emptied(self) -> bool:
        """The source is empty (or gone) now, and the peer got content from it before: the
        peer keeps what the source lost, since an empty source is never sent (a directory
        deleted and made anew before a switchover came back to life on the new active: a
        helper's finding). Looks at the directory (its first entry) each time."""
        return self._pushed_content and _empty(self.sync.path, gone=True)

    @property
    def master(self) -> SshMaster:
        """The connection to the peer's address that answered last (the first before)."""
        return self.masters[self._peer]

    # ---- status ---------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        since = [self.dirty.first] if self.dirty.first is not None else []
        if self._inflight is not None:
            since.append(self._inflight.since)
        pending = self.dirty.pending + (self._inflight.size if self._inflight else 0)
        in_sync = self.state == "in-sync" and not since
        return {
            "path": self.sync.path,
            "peer_path": self.sync.target,
            "state": self.state,
            "in_sync": in_sync,
            "lag_seconds": round(max(0.0, now - min(since)), 3) if since else 0.0,
            "pending": pending,
            # a full sync in flight too: a start's catch-up (after an aborted handover)
            # read as nothing pending, and the next handover lost what it carried
            "full_resync_pending": bool(
                self.dirty.full_reason or (self._inflight is not None and self._inflight.full)
            ),
            "last_error": self.last_error,
            "last_ok_ago": None if self.last_ok is None else round(now - self.last_ok, 3),
            "batches": self.batches,
            "full_syncs": self.full_syncs,
            "overflows": self.overflows,
            "renames": self.renames,
            "polling": self.polling,
            "epoch": self.epoch,
        }

    # ---- life -----------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def drain(self, persist: bool = False) -> None:
        """Push what is pending once more, now, then end run() (a demotion or stop).

        After a fault (`persist` False) one try, skipped when the peer is known to be
        unreachable: a demotion must not wait for a peer that cannot answer. In a
        planned handover, whose peer is there to take over (`persist`), the pushes are
        retried, DRAIN_RETRY apart at most, until nothing is pending (not when the
        peer refuses, nor when its ssh does not answer at all): one failed push
        (a killed receiver, a lossy link) gave up most of the time it had, and the new
        active's first sync then replaced what was not pushed (a helper's finding). The
        caller bounds how long it waits.
        """
        self._draining = True
        self._drain_persist = persist
        if self._loop is not None:
            self._poke()

    def _poke(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._wake.set)

    @property
    def polling(self) -> bool:
        """Full syncs every POLL_PERIOD instead of a watch (see the module doc)."""
        return self._polling.on

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        next_full = self._now() + self.sync.full_every if self.sync.full_every else float("inf")
        try:
            while True:
                now = self._now()
                if self._watcher is None and now >= self._watch_at:
                    await self._start_watch()
                    now = self._now()
                if self._watcher is not None:
                    self._absorb(self._watcher.drain(), now)
                if self._draining:
                    self._sync_root(now, last_chance=True)
                    persist = self._drain_persist
                    if self._watcher is None or self.dirty.due() is None:
                        return  # nothing left to push (or no watch to know it)
                    if self.state == "waiting-for-peer" and not persist:
                        return
                    if persist and now < self.retry_at:  # after a failed push
                        self._wake.clear()
                        pause = min(self.retry_at, now + DRAIN_RETRY) - now
                        with contextlib.suppress(TimeoutError):
                            await within(self._wake.wait(), pause)
                        self.retry_at = min(self.retry_at, self._now())
                        continue
                    await self._send(self.dirty.take())
                    if not persist or self.state in ("refused", "source-missing"):
                        # refused: the peer is active (it took over meanwhile) or holds a
                        # newer epoch; retrying kept a demoting node's VIP for a minute.
                        # source-missing: an empty (or missing) source is never sent, and
                        # retrying it held a switchover's VIP 60 s (a helper's finding)
                        return
                    if self.state == "waiting-for-peer" and not self._rsync_ran:
                        return  # its ssh does not answer at all: no transfer to retry
                    continue
                self._sync_root(now)
                step = self._polling.trial(now)
                if step == "end":
                    self._note(
                        f"sync {self.sync.path}: every directory is watched again; polling ended",
                        5,
                    )
                elif step == "rewatch":
                    await self._rewatch()
                    continue
                if self._polling.full_due(now):
                    self.dirty.need_full("watch limit: periodic full rsync", now)
                if now >= next_full:
                    self.dirty.need_full("periodic full reconcile", now)
                    next_full = now + self.sync.full_every
                due = self.dirty.due()
                if self._watcher is not None and due is not None:
                    due = max(due, self.retry_at)
                    if now >= due:
                        await self._send(self.dirty.take(now))
                        continue
                else:
                    due = None
                if due is None and (self._ahead or self._starting_ahead):
                    await self._drop_ahead()  # its change brought no batch (a lost watch)
                    continue
                wake = min(
                    d
                    for d in (
                        due,
                        next_full,
                        self._watch_at if not self._watcher else None,
                        self._polling.wake_at(),
                        self._root.wake_at(),
                    )
                    if d is not None
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await within(self._wake.wait(), max(0.0, wake - self._now()))
        finally:
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                # the last changes count in what a stop says it left unpushed: a writer
                # that outlived its service wrote on after the drain's last look
                self._absorb(watcher.drain(), self._now())
                await asyncio.to_thread(watcher.stop)
            await self._drop_ahead()

    async def _start_watch(self) -> None:
        symlinked = symlinked_sync_problem(self.sync.path, os.path.realpath(self.sync.path))
        if symlinked is not None:
            delay = self._watch_retry.next_delay()
            self._watch_at = self._now() + delay
            self._fail(
                "source-missing",
                f"{symlinked}; nothing is sent (fix [[sync]] path or the symlink), next look "
                f"in {delay:g}s",
            )
            return
        watcher = TreeWatcher(self.sync.path, self._seen)
        starting = asyncio.ensure_future(asyncio.to_thread(watcher.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # stopped (a demotion, a reload) while the first walk runs in its thread: the
            # watcher it makes is stopped when it is done, or its thread and watches stay
            loop = asyncio.get_running_loop()
            starting.add_done_callback(lambda _: loop.run_in_executor(None, watcher.stop))
            raise
        except OSError as error:
            delay = self._watch_retry.next_delay()
            self._watch_at = self._now() + delay
            if error.errno in (28, 24):  # ENOSPC, EMFILE: no watch at all, poll the whole tree
                self._watcher = watcher
                self._enter_polling(str(error))
                return
            self._fail(
                "source-missing",
                f"{self.sync.path} cannot be watched ({error.strerror or error}); create it as "
                f"a directory or fix [[sync]] path; nothing is sent until it exists, "
                f"next look in {delay:g}s",
            )
            return
        self._watcher = watcher
        self._watch_retry.reset()
        self.dirty.need_full(
            "start (catch up)" if self.full_syncs == 0 else "watch restored", self._now()
        )

    def _seen(self) -> None:
        """The watcher has news (called from its thread)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._change_seen)

    def _change_seen(self) -> None:
        self._wake.set()
        self._seen_since_take = True
        self._start_ahead()

    def _start_ahead(self) -> None:
        """Start the next batch's rsync now if its first change came (the module doc of
        :mod:`.plan`): only while in sync with an address that answers, for an incremental
        batch that will be due before the rsync is too old to carry it."""
        if (
            self._seen_since_take
            and self._ahead is None
            and self._starting_ahead is None
            and self.state in ("in-sync", "syncing")
            and not (self._draining or self.polling or self.dirty.full_reason)
            and self.dirty.hold < PRESTART_MAX_AGE
            and self.master.up
        ):
            self._starting_ahead = asyncio.ensure_future(self._prestart(self._peer))

    async def _prestart(self, index: int) -> None:
        argv = commands.batch_argv(self.sync, self.masters[index].peer, self.epoch)
        with contextlib.suppress(OSError):  # the batch then starts its own, which says why
            self._ahead = (await start_command(argv), index)

    async def _take_ahead(self) -> tuple[Started, int] | None:
        if self._starting_ahead is not None:
            # shielded: cancelled here, the start still ends and stop() takes what it made
            await asyncio.shield(self._starting_ahead)
            self._starting_ahead = None
        ahead, self._ahead = self._ahead, None
        return ahead

    async def _drop_ahead(self) -> None:
        ahead = await self._take_ahead()
        if ahead is not None:
            await ahead[0].cancel()

    def _enter_polling(
        self,
        what: str,
        fix: str = "raise fs.inotify.max_user_watches",
        why: str = "inotify watch limit reached",
    ) -> None:
        now = self._now() if self._loop is not None else 0.0
        said = self._polling.cause(now)
        if said == "trial failed":  # the new watch failed too: said already
            self._note(
                f"sync {self.sync.path}: still {why} ({what}); polling on, "
                f"next try in {REWATCH_PERIOD:g}s",
                6,
            )
        elif said == "started":
            self._note(
                f"sync {self.sync.path}: {why} ({what}); "
                f"falling back to a full rsync every {POLL_PERIOD:g}s and trying to watch "
                f"again every {REWATCH_PERIOD:g}s. Fix: {fix}",
                4,
            )

    async def _rewatch(self) -> None:
        """While polling: stop the watch and watch the whole tree anew; if it reports no
        cause for a :data:`POLL_PERIOD` (:meth:`_enter_polling` ends the trial), polling
        ends. The new watch's start queues a full sync, which covers the gap."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await asyncio.to_thread(watcher.stop)
        await self._start_watch()
        if self._watcher is None:  # not started (the directory gone meanwhile): no trial
            self._polling.no_trial()

    def _absorb(self, changes: Iterable[Change], now: float) -> None:
        changes = list(changes)
        if changes and self._empty_source:
            # something appeared in the empty source: the first file of a new directory
            # goes out now, not after the backoff the held-back full sync started
            self._empty_source = False
            self.retry_at = now
            self.backoff.reset()
        for change in changes:
            if change.kind == "path" and change.path == ROOT:
                self._root.changed = True
                self._sync_root(now)
            elif change.kind == "path":
                self.dirty.add(change.path, now)
            elif change.kind == "new":
                self.dirty.add(change.path, now, new=True)
            elif change.kind == "tree":
                self.dirty.add_tree(change.path, now)
            elif change.kind == "mount":
                self.dirty.add_copy(change.path, now)
            elif change.kind == "move":
                self._moved(change, now)
            elif change.kind == "full":
                self.overflows += 1
                self._note(
                    f"sync {self.sync.path}: {change.path}; one full rescan and resync",
                    4,
                )
                self.dirty.need_full(change.path, now)
            elif change.kind == "limit":
                self._enter_polling(change.path)
            elif change.kind == "unwatchable":
                self._enter_polling(
                    change.path, "remove that cause", "a directory cannot be watched"
                )
            elif change.kind == "lost" and self._watcher is not None:
                watcher, self._watcher = self._watcher, None
                watcher.stop()
                self._watch_at = now + self._watch_retry.next_delay()
                self._fail(
                    "source-missing",
                    f"{self.sync.path}: {change.path}; watching again when it is back",
                )

    def _sync_root(self, now: float, last_chance: bool = False) -> None:
        """A full sync for the directory's own attributes when :class:`RootAttributes`
        says it is due (it holds back from an empty source)."""
        if self._root.due(now, last_chance):
            self.dirty.need_full("the synced directory's own attributes changed", now)

    def _moved(self, change: Change, now: float) -> None:
        side = (change.path, change.dest)
        if any(excluded(path, self.sync.excludes, change.tree) for path in side):
            # an excluded side is not mirrored: the peer's own file there must not move
            self.dirty.add(change.path, now)
            (self.dirty.add_tree if change.tree else self.dirty.add)(change.dest, now)
            return
        self.dirty.move(change.path, change.dest, change.tree, now)

    # ---- sending --------------------------------------------------------

    def _argv(self, batch: Batch, master: SshMaster) -> list[str]:
        build = commands.full_argv if batch.full else commands.batch_argv
        return build(self.sync, master.peer, self.epoch)

    async def _send(self, batch: Batch) -> None:
        self._inflight = batch
        self._seen_since_take = False
        self.state = "syncing" if self.state in ("in-sync", "starting") else self.state
        unrun = batch.moves  # renames the peer surely has not run (kept if the batch fails)
        try:
            stdin = None
            if not batch.full:
                listed = await asyncio.to_thread(expand, self.sync.path, batch, self.sync.excludes)
                stdin = commands.files_from(listed)
            self._empty_source = batch.full and await asyncio.to_thread(_empty, self.sync.path)
            if self._empty_source:
                # a full sync deletes on the peer what the source lacks: an empty source
                # (an unmounted filesystem, a wiped disk) would empty the standby's copy
                outcome, detail = (
                    Outcome.SOURCE,
                    (
                        "the source directory is empty: a full sync would empty the peer's copy "
                        "(unmounted filesystem?); not sending until it has content"
                    ),
                )
            else:
                outcome, detail, unrun = await self._push(batch, stdin)
        finally:
            self._inflight = None
        now = self._now()
        if outcome in (Outcome.OK, Outcome.VANISHED):
            self._pushed_content = not await asyncio.to_thread(_empty, self.sync.path)
            self._succeeded(batch, now)
        else:
            self._failed(batch, outcome, detail, unrun, now)
        self._after_batch(now)
        if self.state != "in-sync" or self.dirty.empty:
            await self._drop_ahead()  # no next batch now (or a backoff first): not needed
        self._changed()

    def _after_batch(self, now: float) -> None:
        """What changed while the batch was in flight joins the dirty set now and is due
        at once (:meth:`~.plan.Dirty.done`): a steady stream goes out back to back
        instead of each batch waiting for quiet that never comes, up to ``interval``."""
        if self._watcher is not None:
            self._absorb(self._watcher.drain(), now)
        self.dirty.done()

    def _failed(
        self, batch: Batch, outcome: Outcome, detail: str, unrun: tuple[Move, ...], now: float
    ) -> None:
        """Give the batch back (less the renames that may have run) and back off."""
        self.dirty.give_back(dataclasses.replace(batch, moves=unrun), now)
        if self.resync_after_outage and outcome in (Outcome.UNREACHABLE, Outcome.TIMEOUT):
            # the peer may come back with anything (restored, reinstalled): catch it up whole
            self.dirty.need_full("catch up: the peer was unreachable", now)
        elif self._rsync_ran and outcome in _BROKE_OFF:
            # a receiver cut off mid-file (killed, its link lost) leaves rsync's temporary
            # ".name.XXXXXX" files, which only a full sync's --delete removes: a helper
            # found 237 MB of them on a standby reported in sync, served after a switchover
            self.dirty.need_full(
                "a push broke off: the peer may keep rsync's temporary files of it", now
            )
        if outcome is Outcome.NO_DELETE_IN_BATCH and not batch.full:
            # a full sync deletes with --delete, which that rsync still takes
            self.dirty.need_full(
                "the peer's rsync refuses deletions in a batch (Debian's rsync "
                "3.2.7-1+deb12u6; upgrade rsync from bookworm-security)",
                now,
            )
        if outcome is Outcome.OLD_RECEIVER and not batch.full:
            # an upgrade under way (this node first): the full sync is what it takes
            self.dirty.need_full(
                "the peer's mosqit-failover refuses this version's batches "
                "(rsync's -d); upgrade it to the same version",
                now,
            )
        if outcome is Outcome.PARTIAL:
            self._partials += 1
            if self._partials >= PARTIALS_BEFORE_FULL:
                self.dirty.need_full("repeated partial transfers", now)
        delay = self.backoff.next_delay()
        self.retry_at = now + delay
        state = {
            Outcome.UNREACHABLE: "waiting-for-peer",
            Outcome.TIMEOUT: "waiting-for-peer",
            Outcome.REFUSED: "refused",
            Outcome.SOURCE: "source-missing",
            Outcome.DISK_FULL: "peer-disk-full",
        }.get(outcome, "error")
        kept = "a full resync" if self.dirty.full_reason else f"{self.dirty.pending} change(s)"
        self._fail(state, f"{outcome.value}: {detail}; keeping {kept}, retry in {delay:g}s")

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _push(
        self, batch: Batch, stdin: bytes | None
    ) -> tuple[Outcome, str, tuple[Move, ...]]:
        """Renames then rsync, over the first address that answers; also the renames
        that surely did not run (each is tried at most once, on one address)."""
        outcome, detail = Outcome.UNREACHABLE, "no peer address"
        unrun = batch.moves
        self._rsync_ran = False
        for step in range(len(self.masters)):
            index = (self._peer + step) % len(self.masters)
            master = self.masters[index]
            try:
                await master.ensure()
            except MasterError as error:
                outcome, detail = Outcome.UNREACHABLE, f"ssh to {master.peer.host}: {error}"
                continue
            if unrun:
                unrun, failure = await self._rename(unrun, master)
                if failure:  # the peer went away (or hangs): not worth an rsync there
                    outcome, detail = Outcome.UNREACHABLE, failure
                    await master.close()
                    continue
            began = self._now()
            code, err = await self._rsync(batch, index, stdin)
            self._rsync_ran = True
            outcome = commands.classify(code, err)
            detail = f"rsync exit {code} via {master.peer.host}: {commands.summary(err)}"
            took = self._now() - began
            if outcome in _BROKE_OFF and took >= BROKE_OFF_AFTER:
                # the peer answered ssh a moment before: "unreachable" alone misled (a
                # helper's run at 20 % loss, the pair formed all along)
                detail = (
                    f"the transfer broke off after {took:.0f}s ({detail}): a lossy or cut "
                    "link, or the peer's rsync was killed; the next try starts the file over"
                )
            if outcome is not Outcome.UNREACHABLE:
                self._peer = index
                break
            await master.close()
        return outcome, detail, unrun

    async def _rsync(self, batch: Batch, index: int, stdin: bytes | None) -> tuple[int, str]:
        """The batch's rsync to ``masters[index]``: the one started ahead if it fits, else a
        new one; meanwhile a change seen starts the next batch's."""
        ahead = await self._take_ahead()
        self._start_ahead()  # the next batch's, if a change came since this one was taken
        if ahead is not None:
            started, at = ahead
            why = prestart_unfit(self._now() - started.at, started.alive, batch.full, at == index)
            if not why:
                self.prestarts += 1
                code, _, err = await started.finish(stdin)
                return code, err
            self._note(f"sync {self.sync.path}: the rsync started ahead is not used: {why}", 7)
            await started.cancel()
        return await run_rsync(self._argv(batch, self.masters[index]), stdin)

    async def _rename(
        self, moves: tuple[Move, ...], master: SshMaster
    ) -> tuple[tuple[Move, ...], str]:
        """Replay ``moves`` on the peer: (those it surely did not run, why the peer
        seems unreachable or "")."""
        code, out, err = await run_command(
            commands.move_argv(self.sync, master.peer, self.epoch),
            commands.files_from([path for move in moves for path in (move.src, move.dest)]),
            timeout=self.sync.connect_timeout + 1 + len(moves) / 1000,
            stdout=True,
        )
        results = commands.move_results(out)
        self.renames += sum(results)
        failure = ""
        if code in (255, 124):
            failure = f"renames via {master.peer.host}: {commands.summary(err)}"
        if code == 0 or len(results) >= len(moves):
            return (), failure
        # the receiver stops at a refusal, and nothing ran if ssh never connected.
        # Any other end (a broken session, a timeout) leaves the rest unknown: it is
        # never replayed, the batch lists both sides of each rename anyway
        if commands.REFUSED in err or commands.never_connected(code, err):
            return moves[len(results) :], failure
        return (), failure

    def _succeeded(self, batch: Batch, now: float) -> None:
        if self.state not in ("in-sync", "syncing", "starting"):
            what = "full resync" if batch.full else f"{batch.size} change(s)"
            self._note(
                f"sync {self.sync.path}: converged with the peer again after "
                f"{now - batch.since:.1f}s ({what})",
                5,
            )
        elif batch.full:
            self._note(f"sync {self.sync.path}: full sync done ({batch.reason})", 6)
        self.state = "in-sync"
        self.last_error = None
        self.last_ok = now
        self.backoff.reset()
        self._partials = 0 if not batch.full else self._partials
        self.retry_at = 0.0
        self.batches += 1
        self.full_syncs += int(batch.full)

    def _fail(self, state: str, text: str) -> None:
        changed = (
            state != self.state
            or self.backoff.failures in (1, 10)
            or (self.backoff.failures % 60 == 0)
        )
        self.state = state
        self.last_error = text
        if changed:
            self._note(f"sync {self.sync.path}: {text}", 3 if state != "waiting-for-peer" else 4)


def _empty(path: str, gone: bool = False) -> bool:
    """Whether the directory has no entry; `gone` when it is missing or unreadable (the
    watcher reports that itself; a handover counts it as emptied)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return gone
