"""What the daemon uses: one engine per [[sync]] directory, on the ACTIVE node only.

    manager = SyncManager(config, node_name, note)
    manager.start(epoch)      # StartSync: returns at once (wait-for-connection mode)
    await manager.stop()      # StopSync: cancels engines, kills rsync, closes ssh
    manager.status()          # {"running": bool, "epoch": N, "dirs": [per-directory dicts]}

Guarantees: start is idempotent for the same epoch and restarts the engines
with a new epoch otherwise; it never waits for the peer and never fails
because the peer is down or a source directory is missing (that is reported
in the status and the journal). stop is idempotent and leaves no process.
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


class SyncManager:
    def __init__(self, config: Config, node: str, note: Note, runtime_dir: Path | None = None):
        self.config = config
        self.peer_node = config.peer_of(node)
        self._note = note
        self.runtime_dir = runtime_dir or config.control_socket.parent
        self._masters: dict[tuple[str, str, int, str], SshMaster] = {}
        self.engines: list[Engine] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.epoch: int | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def _masters_for(self, sync: SyncDir) -> list[SshMaster]:
        out = []
        for attachment in self.peer_node.attachments:
            host = str(attachment.address)
            key = (sync.ssh_user, host, sync.ssh_port, sync.ssh_key)
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

    async def _guard(self, engine: Engine) -> None:
        try:
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
        """Stop every engine and close the ssh connections."""
        tasks = self._cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
