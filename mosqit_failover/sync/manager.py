"""What the daemon uses: one engine per [[sync]] directory, on the ACTIVE node only.

    manager = SyncManager(config, node_name, note)
    manager.start(epoch)      # StartSync: returns at once (wait-for-connection mode)
    await manager.stop()      # StopSync: cancels engines, kills rsync, closes ssh
    manager.reconfigure(cfg)  # reload: returns at once, with what changed (lines)
    manager.status()          # {"running": bool, "epoch": N, "dirs": [per-directory dicts]}

Guarantees: start is idempotent for the same epoch and restarts the engines
with a new epoch otherwise; it never waits for the peer and never fails
because the peer is down or a source directory is missing (that is reported
in the status and the journal). stop is idempotent and leaves no process.

reconfigure takes the new [[sync]] list (directories are told apart by
`path`). While running it starts an engine for each added directory (its
first push is a full sync), stops the engines of removed ones (nothing is
deleted on the peer: its copy just stops being updated) and restarts an
engine whose settings changed (the new one starts once the old one, and its
rsync, are gone, so two never push the same directory); the others keep
running untouched. ssh masters no longer used by any directory are closed.
When not running it only takes the config (the next start uses it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosqit_failover.config import Config, SyncDir
from mosqit_failover.sync.commands import Peer
from mosqit_failover.sync.engine import Engine
from mosqit_failover.sync.proc import SshMaster

LOGGER = logging.getLogger("mosqit_failover.sync")

Note = Callable[[str, int], None]
MasterKey = tuple[str, str, int, str, float]


def _master_key(sync: SyncDir, host: str) -> MasterKey:
    return (sync.ssh_user, host, sync.ssh_port, sync.ssh_key, sync.connect_timeout)


# how long a stopping sync may push what is still pending
DRAIN_TIMEOUT = 3.0


class SyncManager:
    def __init__(self, config: Config, node: str, note: Note, runtime_dir: Path | None = None):
        self.config = config
        self.peer_node = config.peer_of(node)
        self._note = note
        self.runtime_dir = runtime_dir or config.control_socket.parent
        self._masters: dict[MasterKey, SshMaster] = {}
        self.engines: list[Engine] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._retiring: set[asyncio.Task[None]] = set()  # stopped engines being waited for
        self.epoch: int | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def _masters_for(self, sync: SyncDir) -> list[SshMaster]:
        out = []
        for attachment in self.peer_node.attachments:
            host = str(attachment.address)
            key = _master_key(sync, host)
            if key not in self._masters:
                digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
                peer = Peer(
                    host,
                    sync.ssh_user,
                    sync.ssh_port,
                    sync.ssh_key,
                    sync.connect_timeout,
                    self.runtime_dir / f"sync-{digest}.ssh",
                )
                self._masters[key] = SshMaster(peer)
            out.append(self._masters[key])
        return out

    def start(self, epoch: int) -> None:
        """Start (or keep) pushing every directory with this epoch."""
        if self.running and self.epoch == epoch:
            return
        if self.running:
            self._cancel()
        self.epoch = epoch
        self.engines = [
            Engine(sync, self._masters_for(sync), epoch, self._note) for sync in self.config.sync
        ]
        self._tasks = [asyncio.create_task(self._guard(e)) for e in self.engines]
        if self.engines:
            self._note(
                f"sync started (epoch {epoch}): {', '.join(s.path for s in self.config.sync)} "
                f"-> {self.peer_node.name}",
                5,
            )

    def reconfigure(self, config: Config) -> list[str]:
        """Take a new config; while running, adjust the engines (see the module doc).

        Returns the line said about it (also noted), [] when the sync did not change."""
        before = {s.path: s for s in self.config.sync}
        self.config = config
        if not self.running:
            return []
        assert self.epoch is not None
        old = {e.sync.path: (e, t) for e, t in zip(self.engines, self._tasks, strict=True)}
        added = [s.path for s in config.sync if s.path not in before]
        changed = [s.path for s in config.sync if s.path in before and before[s.path] != s]
        removed = [p for p in before if p not in {s.path for s in config.sync}]
        if not (removed or added or changed):
            return []
        stopped = [old[p][1] for p in (*removed, *changed)]
        for task in stopped:
            task.cancel()
        engines, tasks = [], []
        for sync in config.sync:
            if sync.path in old and sync.path not in changed:
                engine, task = old[sync.path]
            else:
                engine = Engine(sync, self._masters_for(sync), self.epoch, self._note)
                previous = old[sync.path][1] if sync.path in changed else None
                task = asyncio.create_task(self._guard(engine, previous))
            engines.append(engine)
            tasks.append(task)
        self.engines, self._tasks = engines, tasks
        retire = asyncio.create_task(self._retire(stopped))
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        parts = [
            f"added {', '.join(added)} (full sync first)" if added else "",
            f"stopped {', '.join(removed)} (the copy on {self.peer_node.name} is left as it is)"
            if removed
            else "",
            f"restarted {', '.join(changed)} (settings changed)" if changed else "",
        ]
        line = f"sync reconfigured (epoch {self.epoch}): " + "; ".join(p for p in parts if p)
        self._note(line, 5)
        return [line]

    async def _retire(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for stopped engines (their rsync reaped), then close unused ssh masters."""
        if tasks:
            await asyncio.wait(tasks)
        used = {
            _master_key(sync, str(a.address))
            for sync in self.config.sync
            for a in self.peer_node.attachments
        }
        masters = [self._masters.pop(k) for k in list(self._masters) if k not in used]
        await asyncio.gather(*(m.close() for m in masters), return_exceptions=True)

    async def _guard(self, engine: Engine, after: asyncio.Task[None] | None = None) -> None:
        try:
            if after is not None:
                await asyncio.wait([after])  # the old engine of this directory is gone
            await engine.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not end the sync silently
            LOGGER.exception("sync engine for %s failed", engine.sync.path)
            engine.state = "error"
            engine.last_error = f"engine failed: {type(error).__name__}: {error}"
            self._note(f"sync {engine.sync.path}: {engine.last_error}; sync stopped", 2)

    def _cancel(self) -> list[asyncio.Task[None]]:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        return tasks

    async def stop(self) -> None:
        """Stop every engine and close the ssh connections.

        Each engine first pushes what is still pending (the service was stopped just
        before: its last writes must reach the peer on a planned switchover), for at
        most DRAIN_TIMEOUT seconds; then whatever still runs is cancelled.
        """
        for engine in self.engines:
            engine.drain()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=DRAIN_TIMEOUT)
        tasks = self._cancel()
        await asyncio.gather(*tasks, *self._retiring, return_exceptions=True)
        await asyncio.gather(*(m.close() for m in self._masters.values()))
        if tasks:
            self._note("sync stopped", 5)

    def status(self) -> dict[str, Any]:
        now = asyncio.get_running_loop().time() if self.running else 0.0
        return {
            "running": self.running,
            "epoch": self.epoch,
            "dirs": [e.status(now) for e in self.engines] if self.running else [],
        }
