"""The catch-up generation of a synced directory on a standby: a synchronous channel's
stream that began before a catch-up never applies a record after that catch-up began.

The active gives a silent or refusing channel up (``ack_timeout``) and catches that
standby up with rsync (the asynchronous engine, through :mod:`.receive`). An applier
that was only stopped (SIGSTOP, a frozen VM) still has the old stream's records in its
pipe; applied after the catch-up they would put older data over newer. So:

- one small file per synced directory, in the node's state directory (never inside the
  synced directory, whose content is the service's and is replicated):
  ``<state_dir>/catchup-<digest of the directory's path>``, holding a decimal number;
- the receiver's writing forms (rsync and ``--move``) call :func:`begin` before they
  write anything: an exclusive ``flock`` on the file and the number raised by one;
- the applier reads the number at its stream's start (:class:`Generation`) and holds a
  shared ``flock`` while it applies each chunk of records, refusing once the number
  changed. A chunk is therefore applied wholly before a catch-up began, or not at all.

The number needs no fsync: it only orders processes running at the same time, and a
reboot ends every applier.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path

from mosqit_failover.sync.counter import read_counter

LOCK_WAIT = 10.0
"""How long :func:`begin` waits for an applier to finish the chunk it is applying."""

_POLL = 0.05
_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


class CatchUpError(Exception):
    """The catch-up cannot begin, or a stream may apply nothing more; the message says why."""


def generation_file(state_dir: Path, root: str) -> Path:
    """The generation file of synced directory ``root`` (an absolute, normalized path)."""
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return state_dir / f"catchup-{digest}"


def _open(state_dir: Path, root: str) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    return os.open(generation_file(state_dir, root), _OPEN, 0o600)


def _raw(fd: int) -> bytes:
    return os.pread(fd, 64, 0)


def begin(state_dir: Path, root: str, wait: float = LOCK_WAIT) -> int:
    """Mark that a catch-up of ``root`` begins now; the new generation.

    Returns once no applier is inside a chunk and every later chunk of a stream that
    started earlier will be refused. CatchUpError if an applier held its lock for
    ``wait`` seconds (a stopped applier: the caller refuses, its sender retries)."""
    fd = _open(state_dir, root)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CatchUpError(
                        f"a synchronous channel's applier has been applying into {root} for "
                        f"{wait:g}s (stopped?); the catch-up waits for it: retry later"
                    ) from None
                time.sleep(_POLL)
        generation = read_counter(_raw(fd)) + 1
        data = f"{generation}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return generation
    finally:
        os.close(fd)  # releases the lock


class Generation:
    """The generation a stream started in; :meth:`hold` refuses once it changed."""

    def __init__(self, state_dir: Path, root: str) -> None:
        self.root = root
        self._fd = _open(state_dir, root)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            self._start = _raw(self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.start = read_counter(self._start)
        except BaseException:
            os.close(self._fd)
            raise

    def hold(self) -> None:
        """No catch-up begins until :meth:`release`; CatchUpError (nothing held) if one
        began since the start."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        now = _raw(self._fd)
        if now != self._start:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            raise CatchUpError(
                f"a catch-up of {self.root} (rsync from the active) began after this "
                f"stream started (generation {self.start}, now {read_counter(now)}): its "
                "records are older than what the catch-up writes; none is applied"
            )

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
