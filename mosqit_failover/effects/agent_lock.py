"""One agent per node: an exclusive lock in the state directory, taken before anything.

A second agent started by hand beside the unit's bound the peer port again
(SO_REUSEADDR), tried to fence the healthy active from the standby, released the
VIP and the services of the active it ran on when it exited, and deleted the
running agent's control socket and pid file (a helper's finding).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from mosqit_failover.effects import StartRefused

LOCK_NAME = "agent.lock"


class AgentLockError(StartRefused):
    """This agent must not start: another holds the lock, or the state directory cannot
    hold one. The message names the cause and the fix."""


class AgentLock:
    """An exclusive ``flock`` on ``STATE_DIR/agent.lock``, held for the process's life.

    Guarantees: :meth:`take` returns with the lock held, or raises
    :class:`AgentLockError` before this agent changed anything but the lock file
    and its directory. The kernel releases the lock when the process ends, however
    it ends (a crash, SIGKILL, a fence); the descriptor is not inherited by the
    processes the agent starts (services, rsync), so none of them keeps it after
    the agent is gone. Blocking calls, quick: run them from a worker thread.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self._fd: int | None = None

    def take(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise AgentLockError(
                f"cannot open {self.path} ({error.strerror or error}): the agent keeps its "
                f"epoch in {self.path.parent}, which must be a writable directory on a "
                "disk that is not full or read-only (cluster.state_dir)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise AgentLockError(
                    f"cannot lock {self.path}: {error.strerror or error}"
                ) from None
            raise AgentLockError(
                f"another mosqit-failover agent runs on this node{self._other()}: one agent "
                "per node (two would both act on the VIP and the services). Use `mosqit-"
                "failover status`, or stop the other one first (systemctl stop "
                "mosqit-failover)"
            ) from None
        self._fd = fd

    def _other(self) -> str:
        """ " (pid N)" from the running agent's pid file, when it can be read."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.path.parent / "agent.pid").read_text(encoding="ascii").strip())
            return f" (pid {pid})"
        return ""

    def release(self) -> None:
        """Drop the lock (the process's end does as much); the file stays."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
