"""One agent per node: an exclusive lock on the state directory, taken before anything.

A second agent started by hand beside the unit's bound the peer port again
(SO_REUSEADDR), tried to fence the healthy active from the standby, released the
VIP and the services of the active it ran on when it exited, and deleted the
running agent's control socket and pid file (a helper's finding). The lock is on the
directory itself, not on a file in it: a lock file deleted by hand (or by `rm -rf
STATE_DIR/*`) let a second agent in beside the first (a helper's finding); a state
directory deleted as a whole leaves the agent without its state file, which
:func:`mosqit_failover.daemon._state_lost` refuses while the node holds the VIP.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from mosqit_failover.effects import StartRefused


class AgentLockError(StartRefused):
    """This agent must not start: another holds the lock, or the state directory cannot
    hold one. The message names the cause and the fix."""


class AgentLock:
    """An exclusive ``flock`` on the state directory, held for the process's life.

    Guarantees: :meth:`take` returns with the lock held, or raises
    :class:`AgentLockError` before this agent changed anything (but the state
    directory, made if missing). The kernel releases the lock when the process ends, however
    it ends (a crash, SIGKILL, a fence); the descriptor is not inherited by the
    processes the agent starts (services, rsync), so none of them keeps it after
    the agent is gone. Blocking calls, quick: run them from a worker thread.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir)
        self._fd: int | None = None

    def take(self) -> None:
        try:
            self.path.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            readonly = os.statvfs(self.path).f_flag & os.ST_RDONLY
            writable = os.access(self.path, os.W_OK) and not readonly
        except OSError as error:
            raise AgentLockError(
                f"cannot open the state directory {self.path} ({error.strerror or error}): the "
                "agent keeps its epoch there, which must be a writable directory "
                "(cluster.state_dir)"
            ) from None
        if not writable:
            os.close(fd)
            raise AgentLockError(
                f"the state directory {self.path} is not writable (a read-only disk?): the "
                "agent keeps its epoch there; make it writable (cluster.state_dir)"
            )
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
            pid = int((self.path / "agent.pid").read_text(encoding="ascii").strip())
            return f" (pid {pid})"
        return ""

    def release(self) -> None:
        """Drop the lock (the process's end does as much)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
