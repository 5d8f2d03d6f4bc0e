"""The highest epoch of a sender this standby has let write: an older one never writes again.

The receiver's epoch guard compared the sender's epoch with this node's own saved epoch
only, which changes when this node itself promotes. With three or more nodes a standby
takes pushes from whichever node is active: after a failover from alpha (epoch 5) to beta
(epoch 6) a standby gamma still has epoch 0, so an old alpha that thaws after a freeze,
and pushes before it hears beta, would have put its older files over beta's. The
receiver therefore keeps the highest sender epoch it admitted, and refuses a lower one
(:func:`admit`).

- one small file in the node's state directory, ``<state_dir>/sync-epoch``, holding a
  decimal number, written only by the receiver's forced command (never by the agent,
  so the two never race on the state file);
- :func:`admit` compares and raises the number for a newer sender, in place at a fixed
  width (fsynced: the record must outlive a crash of this node, or the guard would be
  lost with it), serialized by an exclusive ``flock`` on ``sync-epoch.gate``;
- every admitted push holds a shared ``flock`` on ``sync-epoch.lock`` while it writes
  (:class:`Writing`, handed to the receiving rsync as well), and its receiver stops its
  rsync as soon as the record names a newer sender (:mod:`.supervise`). The first push
  of a newer sender raises the record, then takes that lock exclusively once, so it
  starts only when every push of an older sender has ended: an older rsync still
  running would put its files over the newer ones as they arrive. An admission waits
  at most :data:`DRAIN_WAIT` in all and is then refused, to be retried by its sender,
  and waits again (the record's second line names the sender whose wait is over). The
  lock is not on the record itself, which an operator may be told to delete;
- it only refuses: a synchronous mount that meets its refusal does not take it for
  proof of a newer active (anyone holding the sync key can raise it), as it does the
  data epoch's (``syncfs/channel.py``);
- an unreadable or damaged record counts as 0: the guard is then what it was without it
  (the saved epoch and data epoch still apply), never a refusal of a legitimate sender.

Deleting the file resets the record: only for a cluster whose epochs were reset on
purpose (every node's state file deleted); the refusal names the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from mosqit_failover.sync.counter import read_counter

RECORD_NAME = "sync-epoch"
GATE_NAME = "sync-epoch.gate"
LOCK_NAME = "sync-epoch.lock"
DRAIN_WAIT = 8.0
"""How long (seconds) an admission waits, for the admissions before it and for older
pushes to end, before it is refused and retried: below a synchronous channel's start
timeout (10 s), so that the sender reads the refusal rather than a silence. A push whose
receiver watches is stopped within milliseconds of a newer sender's admission."""
_POLL = 0.05
_WIDTH = 19  # every epoch a sender can send (at most 18 digits, sync/receive.py)
_LARGEST = 10**18 - 1
_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


class OlderSender(Exception):
    """A sender older than one admitted before; the message names the record and the fix."""


class OlderStillWriting(Exception):
    """A push of an older sender still writes (or admissions queue); the newer one is to
    retry."""


def record_file(state_dir: Path) -> Path:
    return state_dir / RECORD_NAME


def admitted(state_dir: Path) -> int:
    """The highest sender epoch admitted so far (0: none, or no readable record)."""
    try:
        return _read(record_file(state_dir))
    except OSError:
        return 0


def _read(path: Path | bytes) -> int:
    """The number in ``path``; 0 if it does not exist or is damaged; OSError if it
    cannot be read (a directory in its place, ...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0
    try:
        return _number(os.pread(fd, 64, 0))
    finally:
        os.close(fd)


def check(state_dir: Path, sender: int) -> None:
    """OlderSender if a sender of a higher epoch than ``sender`` was admitted, or if the
    record is there but cannot be read (a push would be refused for it too)."""
    RecordCheck(state_dir)(sender)


class RecordCheck:
    """:func:`check` for one state directory, again and again (a stream checks before
    each chunk and acknowledgement): the record is opened and read each time, since an
    operator may replace it, with no path object made on the way."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._path = os.fsencode(record_file(state_dir))

    def __call__(self, sender: int) -> None:
        try:
            highest = _read(self._path)
        except OSError as error:
            raise OlderSender(
                f"cannot read {record_file(self.state_dir)}: {error.strerror or error}; it "
                "must be a file the receiver can read and write (delete what is there "
                "instead)"
            ) from None
        if sender < highest:
            raise OlderSender(_older(self.state_dir, sender, highest))


class Writing:
    """A shared lock (on ``sync-epoch.lock``) held while an admitted push writes: no newer
    sender's push starts until it is released (:meth:`release`, and the exit of every
    process that was handed :attr:`fd`, as the receiving rsync is)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Writing:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def admit(state_dir: Path, sender: int, wait: float | None = None) -> Writing:
    """Let a sender of epoch ``sender`` write, raising the record to it, once every push
    of an older sender has finished; the shared lock to hold while writing.

    OlderSender if a sender of a higher epoch was admitted before; OlderStillWriting if
    it could not be admitted within ``wait`` seconds (:data:`DRAIN_WAIT` if None): older
    pushes still wrote, the record raised all the same (the sender retries, and waits
    again), or the admissions before it took that long. OSError if a file of the record
    cannot be opened or written (the caller refuses: a guard it cannot keep is no guard)."""
    deadline = time.monotonic() + (DRAIN_WAIT if wait is None else wait)
    state_dir.mkdir(parents=True, exist_ok=True)
    gate = os.open(state_dir / GATE_NAME, _OPEN, 0o600)
    try:
        _lock_by(gate, fcntl.LOCK_EX, deadline, "earlier admissions still wait")
        lock = os.open(state_dir / LOCK_NAME, _OPEN, 0o600)
        try:
            _admit_locked(state_dir, lock, sender, deadline)
            fcntl.flock(lock, fcntl.LOCK_SH)  # the gate keeps a newer one out meanwhile
        except BaseException:
            os.close(lock)
            raise
        return Writing(lock)
    finally:
        with contextlib.suppress(OSError):
            os.close(gate)  # closing drops the lock


def _admit_locked(state_dir: Path, lock: int, sender: int, deadline: float) -> None:
    fd = os.open(record_file(state_dir), _OPEN, 0o600)
    try:
        raw = os.pread(fd, 64, 0)
        highest, drained = _number(raw), _number(raw.partition(b"\n")[2])
        if sender < highest:
            raise OlderSender(_older(state_dir, sender, highest))
        if sender > highest:
            _write(fd, sender, drained, durable=True)  # first: the older pushes stop on it
        if drained != sender:
            # taken exclusively once: every push admitted before has ended (the caller's
            # shared lock replaces it)
            _lock_by(lock, fcntl.LOCK_EX, deadline, "a push of an older sender is still writing")
            # not fsynced: after a crash no push runs, and a lost note costs one more
            # (instant) wait
            _write(fd, sender, sender, durable=False)
    finally:
        os.close(fd)


def _lock_by(fd: int, kind: int, deadline: float, why: str) -> None:
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise OlderStillWriting(
                    f"{why} on this node (its receiver stops such a push once it sees a "
                    "newer sender admitted; one that does not, of an old mosqit-failover, "
                    "runs until it ends): retried by the sender, nothing written"
                ) from None
            time.sleep(_POLL)


def _write(fd: int, highest: int, drained: int, durable: bool) -> None:
    """The record: the highest sender admitted, then the sender for whom no older push
    writes any more (one more line, which readers of the first line alone pass over)."""
    # in place, at a fixed width, no truncation first: a write that fails (a full disk)
    # or a crash leaves the old numbers, never an empty record
    record = f"{highest:0{_WIDTH}d}\n{drained:0{_WIDTH}d}\n".encode()
    os.pwrite(fd, record, 0)
    os.ftruncate(fd, len(record))
    if durable:
        os.fsync(fd)


def _older(state_dir: Path, sender: int, highest: int) -> str:
    return (
        f"the sender's epoch {sender} is older than that of a sender which already "
        f"wrote here ({highest}): it is an old active with stale files, and must not "
        "overwrite newer ones. Only if every node's epoch was reset on purpose, "
        f"delete {record_file(state_dir)} on this node"
    )


def _number(raw: bytes) -> int:
    value = read_counter(raw, _WIDTH)
    return value if value <= _LARGEST else 0  # above any epoch a sender can send: damaged
