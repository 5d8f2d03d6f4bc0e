"""What the daemon uses: one engine per ([[sync]] directory, peer), on the ACTIVE node only.

    manager = SyncManager(config, node_name, note, on_in_sync=callback)
    manager.start(epoch)      # StartSync: returns at once (wait-for-connection mode)
    await manager.stop()      # StopSync: cancels engines, kills rsync, closes ssh
    manager.reconfigure(cfg)  # reload: returns at once, with what changed (lines)
    manager.status()          # {"running": bool, "epoch": N, "dirs": [per-directory dicts]}

The active node pushes every synced directory to every other node
(``config.peers_of(node)``; in a pair, the one peer). Each (directory, peer)
has its own engine and task, its own retry and backoff, and the ssh masters
are per peer address, so a slow or dead peer never delays the pushes to the
others. In a multi-server cluster an engine that could not reach its peer
queues a full sync, so a peer that comes back is caught up whole first
(a pair keeps resuming with the changes it kept, as it always did).

Guarantees: start is idempotent for the same epoch and restarts the engines
with a new epoch otherwise; it never waits for a peer and never fails
because a peer is down or a source directory is missing (that is reported
in the status and the journal). stop is idempotent and leaves no process.

reconfigure takes the new [[sync]] list (directories are told apart by
`path`). While running it starts the engines of each added directory (their
first push is a full sync), stops the engines of removed ones (nothing is
deleted on the peers: their copies just stop being updated) and restarts the
engines of a directory whose settings changed (a new one starts once the old
one for the same peer, and its rsync, are gone, so two never push the same
directory to the same peer); the others keep running untouched. A standby whose channel
is live, or which its synchronous mount is taking back (a rejoin, its engine stopped),
gets no engine: an rsync there would run beside the channel or the mount's catch-up. ssh masters
no longer used by any engine are closed. When not running it only takes the
config (the next start uses it).

status()["dirs"] has one dict per directory, in the config's order. In a
pair it is that directory's engine status, as it always was, plus ``peers``.
With several peers it describes the worst of them: ``in_sync`` only when
every peer is, the largest ``lag_seconds`` and ``pending``, ``state`` and the
counters of the peer furthest behind, and ``last_error`` of the first peer
(in ``order``) that has one, prefixed with its name. ``peers`` maps each peer
name (in ``order``) to {state, in_sync, lag_seconds, pending, last_error,
full_resync_pending, last_ok_ago}.

on_in_sync(peer, in_sync), when given, tells whether a peer has caught up
with every synced directory:

- (peer, True) once every engine of that peer has finished a full sync in the
  current epoch and, after a successful push, had nothing pending;
- (peer, False) once any of that peer's engines falls behind: a push failed
  (the peer is unreachable, refuses, is full...), its engine stopped or was
  restarted (a new epoch, a changed directory: a full sync comes first), a
  directory was added, or its oldest unsent change is older than
  BEHIND_AFTER seconds; and for every peer reported in sync when the sync
  stops (this node is no longer the one pushing);
- called only on a change (a peer starts as not in sync, so the first call
  for a peer is True), from the event loop, never from inside start, stop or
  reconfigure; an exception from it is logged and ignored;
- never called when there is no [[sync]] directory (no engine: no verdict).

A ``mode = "synchronous"`` directory (docs/sync-mode.md) starts like any other: its
engines' first push is a full sync. On promotion the daemon then awaits :meth:`mount`
(after the epoch is persisted, before the services start): it waits for that full sync
to each standby the core hears (an unheard one is not waited for), then starts the
directory's mount (:class:`.syncmount.SyncMount`) with a replication channel to each
standby that took it, and stops those engines: from then on the channel alone writes
there (an rsync beside it could put an older copy over a change the channel had
acknowledged). A standby without a live channel (unheard, refused, lost later) gets
an engine again, which catches it up as in async mode; it is not in sync for the
synchronous directory, so the core withholds its data epoch: only a standby that holds
every acknowledged change can be elected as the freshest. A mount that cannot start
leaves its directory asynchronous for the epoch (its engines go on; degraded, alerted;
the promotion goes on). A mount that dies unasked is
unmounted lazily (the service gets its plain directory back), every standby gets an
engine, and ``on_mount_died(path, detail, holders)`` tells the daemon (which hands over
to one of ``holders``, the standbys whose channel was live: they hold every change).
:meth:`unmount` (demotion, after the services stopped) stops the mounts;
:meth:`stop` only detaches from them (an agent that exits while ACTIVE, as on a restart
in place, leaves them serving: the next agent adopts them).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mosqit_failover.config import Config, Node, SyncDir
from mosqit_failover.sync.commands import Peer
from mosqit_failover.sync.proc import SshMaster
from mosqit_failover.sync.syncmount import MountError, SyncMount, recorded_directories

if TYPE_CHECKING:  # imported where first used: a node without [[sync]] (or without a
    # synchronous one) never loads the engine's watcher or the replication stream's
    # modules, about 1.5 MB of the agent's RSS (issue 15)
    from mosqit_failover.sync.engine import Engine

LOGGER = logging.getLogger("mosqit_failover.sync")

Note = Callable[[str, int], None]
OnInSync = Callable[[str, bool], None]
MasterKey = tuple[str, str, int, str, float]


def _master_key(sync: SyncDir, host: str) -> MasterKey:
    return (sync.ssh_user, host, sync.ssh_port, sync.ssh_key, sync.connect_timeout)


# how long a stopping sync may push what is still pending: after a fault, when the
# peer waits to take over (seconds)...
DRAIN_TIMEOUT = 3.0
# ...and in a handover the operator asked for (switchover, failback, the agent's stop):
# the services are stopped, and what is not pushed now is replaced by the peer's copy
# when it pushes as the new active. Within the unit's TimeoutStopSec (150 s) with the
# services' stops.
PLANNED_DRAIN = 60.0

BEHIND_AFTER = 30.0
"""A peer whose oldest unsent change is older than this (seconds) is no longer in sync."""

CHECK_PERIOD = 1.0
"""How often the lag of the peers reported in sync is looked at (seconds)."""

JOIN_WAIT = 150.0
"""How long a rejoin may take, from the request to the mount's answer (seconds): the
freeze's wait, the catch-up (the mount's --join-timeout, 60 s) and the channel's start."""

REJOIN_BACKOFF = 30.0
"""After a failed rejoin, the next is asked no sooner than this (seconds), and only once
the standby's engine caught it up again."""

PROMOTION_SYNC_WAIT = 120.0
"""At most this long a promotion waits for the full sync of a synchronous directory to the
standbys it hears (seconds); one not done by then gets no channel (degraded)."""

_PEER_FIELDS = (
    "state",
    "in_sync",
    "lag_seconds",
    "pending",
    "last_error",
    "full_resync_pending",
    "last_ok_ago",
)


@dataclass(eq=False)
class _Slot:
    """One engine: a directory pushed to one peer."""

    peer: str
    engine: Engine
    task: asyncio.Task[None]
    caught_up: bool = field(default=False)


class SyncManager:
    def __init__(
        self,
        config: Config,
        node: str,
        note: Note,
        runtime_dir: Path | None = None,
        on_in_sync: OnInSync | None = None,
        alert: Callable[[str], None] = lambda text: None,
    ):
        self.config = config
        self.node = node
        self._note = note
        self._on_in_sync = on_in_sync
        self._alert = alert
        self._mounts: dict[str, SyncMount] = {}  # synchronous directories, by path
        self._unmountable: dict[str, str] = {}  # synchronous ones whose mount failed: why
        self._losing: dict[str, asyncio.Task[None]] = {}  # mounts no longer on top, stopping
        self._in_force: set[str] = set()  # synchronous in this epoch (see start)
        self._live: dict[str, set[str]] = {}  # the channels each mount had up, last seen
        self._joining: dict[str, asyncio.Task[None]] = {}  # a rejoin in flight, per mount
        self._joining_peer: dict[str, str] = {}  # its standby, once its engine is stopped
        self._rejoin_after: dict[tuple[str, str], float] = {}  # (path, peer): backoff
        self._fenced_said: set[str] = set()  # the mounts whose fence was said
        self.on_mount_died: Callable[[str, str, list[str]], None] = lambda *died: None
        self.runtime_dir = runtime_dir or config.control_socket.parent
        self._masters: dict[MasterKey, SshMaster] = {}
        self._slots: list[_Slot] = []
        self._retiring: set[asyncio.Task[None]] = set()  # stopped engines being waited for
        self._reported: dict[str, bool] = {}  # the last verdict given to on_in_sync
        self._checker: asyncio.Task[None] | None = None
        self.epoch: int | None = None

    # ---- views ----------------------------------------------------------

    @property
    def peers(self) -> tuple[Node, ...]:
        """The nodes this node pushes to, in `order`."""
        return self.config.peers_of(self.node)

    @property
    def engines(self) -> list[Engine]:
        return [s.engine for s in self._slots]

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        return [s.task for s in self._slots]

    @property
    def running(self) -> bool:
        return bool(self._slots) or any(m.up for m in self._mounts.values())

    def _peer_names(self) -> str:
        return ", ".join(p.name for p in self.peers)

    # ---- engines --------------------------------------------------------

    def _masters_for(self, sync: SyncDir, peer: Node) -> list[SshMaster]:
        out = []
        for attachment in peer.attachments:
            host = str(attachment.address)
            key = _master_key(sync, host)
            if key not in self._masters:
                digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
                ssh = Peer(
                    host,
                    sync.ssh_user,
                    sync.ssh_port,
                    sync.ssh_key,
                    sync.connect_timeout,
                    self.runtime_dir / f"sync-{digest}.ssh",
                )
                self._masters[key] = SshMaster(ssh)
            out.append(self._masters[key])
        return out

    def _engine_note(self, path: str, peer: str) -> Note:
        """The engine's journal lines; with several peers they name the peer."""
        if not self.config.multi_server:
            return self._note
        head = f"sync {path}:"

        def note(text: str, priority: int) -> None:
            if text.startswith(head):
                text = f"sync {path} -> {peer}:{text[len(head) :]}"
            else:
                text = f"{text} (peer {peer})"
            self._note(text, priority)

        return note

    def _new_slot(
        self, sync: SyncDir, peer: Node, after: asyncio.Task[None] | None = None
    ) -> _Slot:
        from mosqit_failover.sync.engine import Engine

        assert self.epoch is not None
        engine = Engine(
            sync, self._masters_for(sync, peer), self.epoch, self._engine_note(sync.path, peer.name)
        )
        if self.config.multi_server:
            engine.resync_after_outage = True
        engine.on_change = self._judge
        slot = _Slot(peer.name, engine, asyncio.create_task(self._guard(engine, peer.name, after)))
        return slot

    def start(self, epoch: int, synchronous: Collection[str] | None = None) -> None:
        """Start (or keep) pushing every directory to every peer with this epoch.

        ``synchronous``: the directories synchronous in this epoch (mounted by
        :meth:`mount`; None: every synchronous one of the config, as at a promotion). The
        others are pushed asynchronously, whatever the config says, until the next start:
        a reload never mounts or unmounts under the running services (core.py says so)."""
        if self.running and self.epoch == epoch:
            return
        if self.running:
            self._cancel()
        self.epoch = epoch
        wanted = [s.path for s in self.config.sync if s.synchronous]
        self._in_force = set(wanted if synchronous is None else synchronous)
        self._unmountable = {}  # each promotion tries every synchronous directory again
        self._slots = [
            self._new_slot(sync, peer) for sync in self.config.sync for peer in self.peers
        ]
        if self._slots:
            self._note(
                f"sync started (epoch {epoch}): {', '.join(s.path for s in self.config.sync)} "
                f"-> {self._peer_names()}",
                5,
            )
            self._start_checker()
        self._judge()

    # ---- synchronous directories ----------------------------------------

    def _synchronous(self) -> list[SyncDir]:
        """The config's synchronous directories to mount in this epoch (not those a reload
        made synchronous, nor those whose mount failed)."""
        paths = self._synchronous_paths()
        return [s for s in self.config.sync if s.synchronous and s.path in paths]

    def _synchronous_paths(self) -> set[str]:
        """The directories synchronous in this epoch (their mount up or about to be), also
        one a reload made asynchronous or removed: its mount serves until the demotion."""
        return self._in_force - set(self._unmountable)

    async def mount(self, epoch: int, heard: Collection[str]) -> None:
        """Mount each synchronous directory (see the module doc). One that cannot be
        mounted is synced asynchronously in this epoch (:meth:`_mount_failed`)."""
        for sync in self._synchronous():
            mount = self._mounts.get(sync.path)
            if mount is None or mount.sync != sync:
                mount = SyncMount(
                    sync, self.runtime_dir, self._note, self._changed, self._died, self._lost
                )
                self._mounts[sync.path] = mount
            if mount.up and mount.epoch == epoch:
                continue
            channels: dict[str, list[str]] = {}
            if not mount.adoptable(epoch):
                from mosqit_failover.syncfs.remote import channel_argv

                for peer in await self._full_sync(sync, heard):
                    master = next(s.engine.master for s in self._slots_of(sync.path, peer))
                    channels[peer] = channel_argv(sync, master.peer, epoch)
            try:
                await mount.start(epoch, channels)
            except MountError as error:
                await self._mount_failed(mount, epoch, str(error))
                continue
            self._live[sync.path] = mount.live_channels()
            self._retire_engines(sync.path, self._live[sync.path])
            lacking = [p.name for p in self.peers if p.name not in self._live[sync.path]]
            self._note(
                f"sync {sync.path}: synchronous in epoch {epoch} (pid {mount.pid}): "
                f"channel to {', '.join(sorted(self._live[sync.path])) or 'no standby'}"
                + (
                    f"; degraded ({sync.on_standby_loss}): {', '.join(lacking)} "
                    "caught up asynchronously, not in sync"
                    if lacking
                    else ""
                ),
                5 if not lacking else 4,
            )
            if lacking:
                self._alert(f"sync {sync.path}: synchronous without {', '.join(lacking)}: degraded")
        self._judge()

    async def _mount_failed(self, mount: SyncMount, epoch: int, reason: str) -> None:
        """The directory stays asynchronous for this epoch (its engines go on), degraded and
        alerted, and the promotion goes on. Failing the step instead rolled the promotion
        back, and a cause that holds on every node (the directory is a mount point of its
        own file system, FUSE missing) made the nodes take turns promoting and rolling back
        for ever, with no active node at all."""
        path = mount.sync.path
        del self._mounts[path]
        self._unmountable[path] = reason
        await mount.end_leftover()  # whatever of ours a failed start left there
        self._note(
            f"sync {path}: not synchronous in epoch {epoch}: {reason}; the promotion goes on "
            "with the directory synced asynchronously (degraded: a failover may lose its "
            "latest changes); fix that, then a switchover (or the next promotion) mounts it",
            3,
        )
        self._alert(f"sync {path}: the synchronous mount failed, asynchronous: {reason}")

    def _slots_of(self, path: str, peer: str | None = None) -> list[_Slot]:
        return [
            s
            for s in self._slots
            if s.engine.sync.path == path and (peer is None or s.peer == peer)
        ]

    async def _full_sync(self, sync: SyncDir, heard: Collection[str]) -> list[str]:
        """The peers of ``heard`` whose engine finished a full sync of ``sync`` (each
        waited for until it did, failed once, or PROMOTION_SYNC_WAIT passed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROMOTION_SYNC_WAIT
        slots = [s for s in self._slots_of(sync.path) if s.peer in heard]
        while loop.time() < deadline and any(
            s.engine.full_syncs == 0 and s.engine.backoff.failures == 0 and not s.task.done()
            for s in slots
        ):
            await asyncio.sleep(0.05)
        done = [s.peer for s in slots if s.engine.full_syncs > 0]
        empty = [s.peer for s in slots if s.engine.full_syncs == 0 and s.engine.empty_source]
        if empty:  # a new, empty directory: nothing to send, and nothing acknowledged yet
            self._note(
                f"sync {sync.path}: the directory is empty here: no full sync sent to "
                f"{', '.join(empty)}, its channel starts from there (files only the standby "
                "has are left as they are)",
                4,
            )
            done += empty
        skipped = [p.name for p in self.peers if p.name not in done]
        if skipped:
            self._note(
                f"sync {sync.path}: no synchronous channel to {', '.join(skipped)}: "
                "not heard, or its full sync did not succeed (see the lines above)",
                4,
            )
        return done

    def _retire_engines(self, path: str, peers: Collection[str]) -> None:
        """Stop the engines of ``path`` to ``peers`` (the mount's channels write there)."""
        stopped = [s for s in self._slots_of(path) if s.peer in peers]
        if not stopped:
            return
        self._slots = [s for s in self._slots if s not in stopped]
        for slot in stopped:
            slot.task.cancel()
        retire = asyncio.create_task(self._retire([s.task for s in stopped]))
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)

    def _catch_up(self, sync: SyncDir, peers: Collection[str]) -> None:
        """An engine (full sync first) for each of ``peers`` that has none for ``sync``,
        with the directory's settings of the config (a reload's, not the mount's)."""
        if self.epoch is None or not self.running:
            return
        sync = self._configured(sync.path, sync)
        for peer in self.peers:
            if peer.name in peers and not self._slots_of(sync.path, peer.name):
                self._slots.append(self._new_slot(sync, peer))

    def _changed(self, mount: SyncMount) -> None:
        """The mount's status file changed: a lost channel is said, alerted, caught up."""
        path = mount.sync.path
        live = mount.live_channels()
        lost = sorted(self._live.get(path, set()) - live)
        self._retire_engines(path, live - self._live.get(path, set()))  # rejoined: no rsync
        self._live[path] = live
        if lost:
            reasons = {c["name"]: c.get("reason", "") for c in mount.view.get("channels", [])}
            why = "; ".join(f"{p}: {reasons.get(p) or 'lost'}" for p in lost)
            self._note(
                f"sync {path}: synchronous channel lost ({why}); degraded "
                f"({mount.sync.on_standby_loss}): {', '.join(lost)} caught up asynchronously "
                "and not in sync (its data epoch withheld) until the mount takes it back",
                3,
            )
            self._alert(f"sync {path}: synchronous channel to {', '.join(lost)} lost: degraded")
            self._catch_up(mount.sync, lost)
        self._say_fenced(mount)
        self._judge()

    def _say_fenced(self, mount: SyncMount) -> None:
        """A standby proved a newer epoch: said once (the core demotes this node when it
        hears the newer active; until then the mount fails every sync point)."""
        path = mount.sync.path
        if mount.fenced is None or path in self._fenced_said:
            return
        self._fenced_said.add(path)
        self._note(
            f"sync {path}: the synchronous mount is fenced: {mount.fenced}; every sync point "
            "(close, fsync, rename...) fails with EIO until this node demotes",
            2,
        )
        self._alert(f"sync {path}: synchronous mount fenced: {mount.fenced}")

    # ---- a standby back in the synchronous set (syncfs/join.py) ---------

    def _offer_channels(self) -> None:
        """Ask a mount to take back a standby its engine caught up (one at a time)."""
        if self.epoch is None:
            return
        now = asyncio.get_running_loop().time()
        for path, mount in self._mounts.items():
            if not mount.up or mount.fenced or mount.epoch != self.epoch or path in self._losing:
                continue
            if path in self._joining and not self._joining[path].done():
                continue
            live = mount.live_channels()
            for slot in self._slots_of(path):
                ready = now >= self._rejoin_after.get((path, slot.peer), 0.0)
                if slot.peer not in live and ready and _caught_up(slot, now):
                    self._joining[path] = asyncio.create_task(self._rejoin(mount, slot))
                    break

    async def _rejoin(self, mount: SyncMount, slot: _Slot) -> None:
        """Stop the engine (no rsync beside the channel), have the mount catch the standby
        up under its freeze and add its channel; on failure the engine again, later."""
        path, peer = mount.sync.path, slot.peer
        if slot not in self._slots or self.epoch is None:
            return  # reconfigured or stopped meanwhile
        self._slots.remove(slot)
        self._joining_peer[path] = peer  # a reload now gives it no engine (reconfigure)
        try:
            await self._take_back(mount, slot)
        finally:
            if self._joining_peer.get(path) == peer:
                del self._joining_peer[path]

    async def _take_back(self, mount: SyncMount, slot: _Slot) -> None:
        """The rejoin once the slot is out of the engines: its rsync reaped, the request,
        the mount's answer; a failure (the mount still up) gets an engine again."""
        path, peer = mount.sync.path, slot.peer
        assert self.epoch is not None
        slot.task.cancel()
        await asyncio.gather(slot.task, return_exceptions=True)  # its rsync reaped
        from mosqit_failover.syncfs.remote import catch_up_argv, channel_argv

        ssh = slot.engine.master.peer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_WAIT
        try:
            request = mount.request_join(
                peer,
                channel_argv(mount.sync, ssh, self.epoch),
                catch_up_argv(mount.sync, ssh, self.epoch),
            )
            answer = None
            self._note(f"sync {path}: {peer} caught up: asking the mount to take it back", 5)
        except OSError as error:
            request, answer = 0, f"failed: cannot write {mount.peers_path}: {error}"
        while answer is None and (answer := mount.join_result(peer, request)) is None:
            if not mount.up:
                break
            if loop.time() > deadline:
                answer = f"failed: no answer from the mount within {JOIN_WAIT:g}s"
                break
            await asyncio.sleep(0.2)
        if answer is not None and answer.startswith("joined"):
            self._note(f"sync {path}: synchronous channel to {peer} back ({answer}); in sync", 5)
        elif mount.up:
            self._rejoin_after[(path, peer)] = loop.time() + REJOIN_BACKOFF
            self._note(
                f"sync {path}: {peer} not taken back ({answer}); caught up asynchronously, "
                f"asked again in {REJOIN_BACKOFF:g}s at the earliest",
                4,
            )
            self._catch_up(mount.sync, [peer])
        self._judge()

    def _died(self, mount: SyncMount, detail: str) -> None:
        path = mount.sync.path
        holders = sorted(self._live.get(path, set()))  # they hold every acknowledged change
        self._live[path] = set()
        self._note(
            f"sync {path}: the synchronous file system died ({detail}); unmounted lazily, "
            "the service sees its plain directory; every standby is caught up asynchronously",
            2,
        )
        self._alert(f"sync {path}: the synchronous file system died ({detail})")
        self._catch_up(mount.sync, [p.name for p in self.peers])
        self._judge()
        try:
            self.on_mount_died(path, detail, holders)
        except Exception:
            LOGGER.exception("on_mount_died(%r) failed", path)

    def _lost(self, mount: SyncMount, detail: str) -> None:
        if mount.sync.path not in self._losing:
            task = asyncio.create_task(self._stop_lost(mount, detail))
            self._losing[mount.sync.path] = task

    async def _stop_lost(self, mount: SyncMount, detail: str) -> None:
        """Our file system is no longer on top of the directory while the service runs:
        stop it (descriptors still open through it then fail: better an error than
        writes acknowledged to nobody) and sync the directory asynchronously for the
        epoch, degraded, every standby caught up: the service's files that went to the
        plain directory meanwhile are not lost, as a handover now could lose them."""
        path = mount.sync.path
        try:
            if self._mounts.get(path) is not mount:
                return  # stopped or replaced meanwhile
            self._live[path] = set()
            joining = self._joining.pop(path, None)
            if joining is not None:
                joining.cancel()
            await mount.stop()
            if self._mounts.get(path) is not mount:
                return  # the manager let go of its mounts meanwhile (demoted, stopping)
            del self._mounts[path]
            self._unmountable[path] = detail
            self._note(
                f"sync {path}: {detail}: the synchronous mount is stopped and the directory "
                "synced asynchronously for this epoch (degraded: a failover may lose its "
                "latest changes); a switchover (or the next promotion) mounts it again",
                2,
            )
            self._alert(f"sync {path}: synchronous mount no longer on top, asynchronous: {detail}")
            for peer in self.peers:  # not _catch_up: with the mount gone, nothing may run
                if not self._slots_of(path, peer.name):
                    self._slots.append(self._new_slot(mount.sync, peer))
            self._judge()
        finally:
            self._losing.pop(path, None)

    async def unmount(self) -> None:
        """Stop every synchronous mount (demotion, after the services stopped), and any
        left by an earlier agent (:meth:`end_leftovers`)."""
        mounts = self._release_mounts()
        await asyncio.gather(*(m.stop() for m in mounts))
        for mount in mounts:
            self._note(f"sync {mount.sync.path}: synchronous mount stopped", 5)
        await self.end_leftovers()
        self._judge()

    def _configured(self, path: str, otherwise: SyncDir) -> SyncDir:
        """The config's settings of the directory ``path``, or ``otherwise``."""
        return next((s for s in self.config.sync if s.path == path), otherwise)

    async def end_leftovers(self) -> None:
        """End the synchronous mounts of this node that this manager does not hold: an
        agent that crashed or restarted leaves its mount running (to adopt it while
        ACTIVE), so a restarted agent that demotes, or starts holding nothing, must end
        it: a standby's receiver writes into that directory. Only our own file system, of
        the directories the config or our status files name (each ended says so)."""
        paths = {s.path for s in self.config.sync} | recorded_directories(self.runtime_dir)
        for path in sorted(paths - set(self._mounts)):
            sync = self._configured(path, SyncDir(path))
            leftover = SyncMount(sync, self.runtime_dir, self._note)
            if leftover.left_running():
                await leftover.end_leftover()

    async def _detach(self) -> None:
        await asyncio.gather(*(m.detach() for m in self._release_mounts()))

    def _release_mounts(self) -> list[SyncMount]:
        mounts = list(self._mounts.values())
        self._mounts, self._live = {}, {}
        for task in self._joining.values():
            task.cancel()
        self._joining, self._rejoin_after, self._fenced_said = {}, {}, set()
        self._joining_peer = {}
        return mounts

    def reconfigure(self, config: Config) -> list[str]:
        """Take a new config; while running, adjust the engines (see the module doc).

        Returns the line said about it (also noted), [] when the sync did not change."""
        before = {s.path: s for s in self.config.sync}
        peers_before = {p.name: p for p in self.peers}
        self.config = config
        if not self.running:
            return []
        assert self.epoch is not None
        old = {(s.engine.sync.path, s.peer): s for s in self._slots}
        added = [s.path for s in config.sync if s.path not in before]
        changed = [s.path for s in config.sync if s.path in before and before[s.path] != s]
        remount = [p for p in changed if p in self._mounts]
        removed = [p for p in before if p not in {s.path for s in config.sync}]
        unmounted_later = [p for p in removed if p in self._mounts]
        # nodes are fixed on reload (the agent restarts for them); followed all the same
        moved = {p.name for p in self.peers if peers_before.get(p.name) != p}
        if not (removed or added or changed or moved or set(peers_before) - {*self._names()}):
            return []
        keep: set[tuple[str, str]] = set()
        slots = []
        joining = []
        for sync in config.sync:
            for peer in self.peers:
                key = (sync.path, peer.name)
                if peer.name in self._live.get(sync.path, ()):
                    continue  # its mount's channel writes there (settings: next promotion)
                if self._joining_peer.get(sync.path) == peer.name:
                    # the mount is catching it up under its freeze, then its channel writes
                    # there: an rsync now would run beside both (the join's answer gives it
                    # an engine again if it failed)
                    joining.append(f"{peer.name} of {sync.path}")
                    continue
                if key in old and sync.path not in changed and peer.name not in moved:
                    slots.append(old[key])
                    keep.add(key)
                else:
                    previous = old[key].task if key in old else None
                    slots.append(self._new_slot(sync, peer, previous))
        stopped = [s.task for key, s in old.items() if key not in keep]
        for task in stopped:
            task.cancel()
        self._slots = slots
        retire = asyncio.create_task(self._retire(stopped))
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        parts = [
            f"added {', '.join(added)} (full sync first)" if added else "",
            f"stopped {', '.join(removed)} (the copy on {self._peer_names()} is left as it is)"
            if removed
            else "",
            f"the synchronous mount of {', '.join(unmounted_later)} serves on until the demotion"
            if unmounted_later
            else "",
            f"restarted {', '.join(changed)} (settings changed)" if changed else "",
            f"the synchronous mount of {', '.join(remount)} keeps its settings until the "
            "next promotion"
            if remount
            else "",
            f"restarted the push to {', '.join(sorted(moved))} (node changed)" if moved else "",
            f"{', '.join(joining)}: being taken back into the synchronous mount, no push to it "
            "meanwhile (a failed rejoin starts its engine with these settings)"
            if joining
            else "",
        ]
        line = f"sync reconfigured (epoch {self.epoch}): " + "; ".join(p for p in parts if p)
        self._note(line, 5)
        if not self._slots:
            self._stop_checker()
        self._judge()
        return [line]

    def _names(self) -> list[str]:
        return [p.name for p in self.peers]

    async def _retire(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for stopped engines (their rsync reaped), then close unused ssh masters."""
        if tasks:
            await asyncio.wait(tasks)
        used = {
            _master_key(sync, str(a.address))
            for sync in self.config.sync
            for peer in self.peers
            for a in peer.attachments
        }
        masters = [self._masters.pop(k) for k in list(self._masters) if k not in used]
        await asyncio.gather(*(m.close() for m in masters), return_exceptions=True)

    async def _guard(
        self, engine: Engine, peer: str, after: asyncio.Task[None] | None = None
    ) -> None:
        try:
            if after is not None:
                await asyncio.wait([after])  # the old engine of this directory is gone
            await engine.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not end the sync silently
            LOGGER.exception("sync engine for %s -> %s failed", engine.sync.path, peer)
            engine.state = "error"
            engine.last_error = f"engine failed: {type(error).__name__}: {error}"
            self._engine_note(engine.sync.path, peer)(
                f"sync {engine.sync.path}: {engine.last_error}; sync stopped", 2
            )
            self._judge()

    def _cancel(self) -> list[asyncio.Task[None]]:
        tasks = self._tasks
        self._slots = []
        self._stop_checker()
        for task in tasks:
            task.cancel()
        return tasks

    async def stop(self, planned: bool = False, keep: str = "") -> list[tuple[str, str]]:
        """Stop every engine and close the ssh connections.

        Each engine first pushes what is still pending (the service was stopped just
        before: its last writes must reach the peers on a planned switchover), for at
        most DRAIN_TIMEOUT seconds after a fault, PLANNED_DRAIN in a planned handover
        (whose pushes are retried: Engine.drain), all peers at once; then whatever still
        runs is cancelled, and what was left unpushed is said and alerted, per
        directory and peer (not alerted for `keep`, whose leftovers the caller acts
        on); returned as (peer, "PATH to PEER: N change(s)").
        """
        drain = PLANNED_DRAIN if planned else DRAIN_TIMEOUT
        await self._detach()
        for engine in self.engines:
            engine.drain(persist=planned)
        pending = self._unpushed()
        if pending and planned:
            self._note(
                f"sync: pushing what is pending ({'; '.join(t for _, t in pending)}) before "
                f"handing over, for up to {drain:.0f} s",
                5,
            )
        await self._drained(drain, keep)
        left = self._unpushed()
        tasks = self._cancel()
        for peer, text in left:
            self._note(f"sync stopped before its peer had every change: {text}", 3)
            if peer != keep:
                self._alert(
                    f"sync stopped with changes not pushed: {text}; the peer's copy lacks "
                    "them, and they are replaced here when the peer pushes as the active"
                )
        self._judge()
        await asyncio.gather(*tasks, *self._retiring, return_exceptions=True)
        await asyncio.gather(*(m.close() for m in self._masters.values()))
        if tasks:
            self._note("sync stopped", 5)
        return left

    async def _drained(self, drain: float, keep: str) -> None:
        """Wait for the engines' drains: `drain` seconds at most; with `keep` (the node
        taking over), for its engines only, the others DRAIN_TIMEOUT more at most. A
        bystander whose sync could not answer held a three-node switchover's VIP a
        minute, 35 s past the successor's refusal as the new active (a helper's
        finding), for leftovers that are only alerted."""
        if not self._slots:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        mine = {s.task for s in self._slots if s.peer == keep} if keep else set()
        if mine:
            await asyncio.wait(mine, timeout=drain)
        rest = set(self._tasks) - mine
        if rest:
            budget = drain - (loop.time() - began)
            if mine:
                budget = min(budget, DRAIN_TIMEOUT)
            await asyncio.wait(rest, timeout=max(0.0, budget))

    def _unpushed(self) -> list[tuple[str, str]]:
        """Each engine that has something to push: (peer, "PATH to PEER: N change(s)"),
        with the refusal when the peer refused (it took over, or holds a newer epoch)."""
        now = asyncio.get_running_loop().time()
        left = []
        for slot in self._slots:
            status = slot.engine.status(now)
            if slot.engine.emptied:  # looks at the directory: here only, not in status
                what = (
                    f"{status['path']} to {slot.peer}: the directory was emptied here after "
                    "its files were pushed, and a full sync from an empty source is held "
                    "back (it would empty the peer's copy); if that is meant, empty the "
                    "peer's copy too, or put a file here"
                )
                left.append((slot.peer, what))
                continue
            if status["state"] == "source-missing":
                continue  # nothing to push (an empty or missing source): said as such
            if status["full_resync_pending"]:
                what = f"{status['path']} to {slot.peer}: a full sync"
            elif status["pending"]:
                what = f"{status['path']} to {slot.peer}: {status['pending']} change(s)"
            else:
                continue
            if status["state"] == "refused":
                what += f", refused there ({status['last_error']})"
            left.append((slot.peer, what))
        return left

    # ---- in sync, per peer ----------------------------------------------

    def _start_checker(self) -> None:
        if self._on_in_sync is not None and self._checker is None:
            self._checker = asyncio.create_task(self._check())

    def _stop_checker(self) -> None:
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.cancel()

    async def _check(self) -> None:
        """Look at the lags now and then: a hung push gives no other sign for a while."""
        while True:
            await asyncio.sleep(CHECK_PERIOD)
            self._judge()

    def _judge(self) -> None:
        """Update each slot's verdict, then tell on_in_sync what changed, per peer."""
        self._offer_channels()
        if self._on_in_sync is None:
            return
        now = asyncio.get_running_loop().time()
        verdicts: dict[str, bool] = {}
        synchronous = self._synchronous_paths()
        for slot in self._slots:
            slot.caught_up = _caught_up(slot, now)
            if slot.engine.sync.path in synchronous:  # catching up: misses acknowledged writes
                slot.caught_up = False
            verdicts[slot.peer] = verdicts.get(slot.peer, True) and slot.caught_up
        if self.running:
            for path in synchronous:  # in sync there: only through a live channel
                mount = self._mounts.get(path)
                live = mount.live_channels() if mount is not None and mount.up else set()
                for peer in self._names():
                    verdicts[peer] = verdicts.get(peer, True) and peer in live
        if not self.running:  # stopped, or no directory left: peers said in sync no longer are
            verdicts = {peer: False for peer, ok in self._reported.items() if ok}
            if not self.config.sync:
                verdicts = {}  # never called without [[sync]] (the core's rule then)
        changes = [(p, ok) for p, ok in verdicts.items() if self._reported.get(p, False) != ok]
        for peer, ok in changes:
            self._reported[peer] = ok
            asyncio.get_running_loop().call_soon(self._tell, peer, ok)

    def _tell(self, peer: str, in_sync: bool) -> None:
        assert self._on_in_sync is not None
        try:
            self._on_in_sync(peer, in_sync)
        except Exception:
            LOGGER.exception("on_in_sync(%r, %r) failed", peer, in_sync)

    # ---- status ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = asyncio.get_running_loop().time() if self.running else 0.0
        return {
            "running": self.running,
            "epoch": self.epoch,
            "dirs": self._dirs(now) if self.running else [],
        }

    def _dirs(self, now: float) -> list[dict[str, Any]]:
        by_path: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for slot in self._slots:
            by_path.setdefault(slot.engine.sync.path, []).append(
                (slot.peer, slot.engine.status(now))
            )
        out = []
        configured = {s.path for s in self.config.sync}
        gone = [m.sync for path, m in self._mounts.items() if path not in configured]
        for sync in [*self.config.sync, *gone]:
            peers = by_path.get(sync.path)
            mount = self._mounts.get(sync.path)
            if mount is not None:
                engines = _merge(peers) if peers else None  # its settings: those in force
                out.append(_synchronous_status(mount.sync, mount, engines))
            elif sync.path in self._unmountable and peers:
                why = self._unmountable[sync.path]
                state = "asynchronous: the synchronous mount failed or was lost (degraded)"
                out.append({**_merge(peers), "mode": sync.mode, "state": state})
                out[-1].update(degraded=True, last_error=why)
            elif peers:
                out.append(_merge(peers))
            else:
                continue
            later = self._at_next_promotion(sync.path, sync.path in configured)
            if later:
                out[-1].update(state=f"{out[-1]['state']} ({later})", next_promotion=later)
        return out

    def _at_next_promotion(self, path: str, configured: bool) -> str:
        """What a reload changed about ``path`` that waits for the next promotion."""
        wanted = any(s.path == path and s.synchronous for s in self.config.sync)
        now = path in self._in_force
        if wanted == now:
            return ""
        if wanted:
            return "synchronous from the next promotion"
        return "asynchronous from the next promotion" if configured else "not synced then"


def _synchronous_status(
    sync: SyncDir, mount: SyncMount, engines: dict[str, Any] | None
) -> dict[str, Any]:
    """A synchronous directory's status: its mount's, and its catch-up engines' if any."""
    lost = [c for c in mount.view.get("channels", []) if not c.get("alive")]
    errors = [f"{c['name']}: {c.get('reason') or 'lost'}" for c in lost]
    if not mount.up:
        state = f"synchronous mount {mount.view.get('state', 'down')}"
    elif mount.fenced:
        state = "synchronous, fenced"
        errors.insert(0, f"fenced: {mount.fenced}")
    else:
        state = "synchronous, degraded" if mount.degraded else "synchronous"
    return {
        "path": sync.path,
        "peer_path": sync.target,
        "lag_seconds": 0.0,
        "pending": 0,
        "full_resync_pending": False,
        **(engines or {}),
        "mode": sync.mode,
        "state": state,
        "in_sync": mount.up and not mount.degraded,
        "degraded": mount.degraded or not mount.up,
        "last_error": "; ".join(errors) or (engines or {}).get("last_error"),
        "mount": mount.status(),
    }


def _caught_up(slot: _Slot, now: float) -> bool:
    engine = slot.engine
    if slot.task.done() or engine.full_syncs == 0:
        return False
    view = engine.status(now)  # its lag counts the batch in flight too
    if slot.caught_up:  # in sync until it falls behind
        return engine.state in ("in-sync", "syncing") and view["lag_seconds"] <= BEHIND_AFTER
    # caught up: after a full sync, a successful push left nothing pending
    return bool(view["in_sync"]) and not view["full_resync_pending"]


def _merge(peers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One directory's status from its engines' (see the module doc)."""
    breakdown = {name: {k: one[k] for k in _PEER_FIELDS} for name, one in peers}
    if len(peers) == 1:
        return {**peers[0][1], "peers": breakdown}
    statuses = [one for _, one in peers]
    worst = max(statuses, key=lambda one: (not one["in_sync"], one["lag_seconds"], one["pending"]))
    errors = [f"{name}: {one['last_error']}" for name, one in peers if one["last_error"]]
    return {
        **worst,
        "in_sync": all(one["in_sync"] for one in statuses),
        "lag_seconds": max(one["lag_seconds"] for one in statuses),
        "pending": max(one["pending"] for one in statuses),
        "full_resync_pending": any(one["full_resync_pending"] for one in statuses),
        "last_error": errors[0] if errors else None,
        "peers": breakdown,
    }
