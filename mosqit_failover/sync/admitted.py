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
- :func:`admit` takes an exclusive ``flock`` on it, compares, and raises the number for
  a newer sender, in place at a fixed width (fsynced: the record must outlive a crash
  of this node, or the guard would be lost with it);
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
from pathlib import Path

RECORD_NAME = "sync-epoch"
_WIDTH = 19  # every epoch a sender can send (at most 18 digits, sync/receive.py)
_LARGEST = 10**18 - 1
_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


class OlderSender(Exception):
    """A sender older than one admitted before; the message names the record and the fix."""


def record_file(state_dir: Path) -> Path:
    return state_dir / RECORD_NAME


def admitted(state_dir: Path) -> int:
    """The highest sender epoch admitted so far (0: none, or no readable record)."""
    try:
        fd = os.open(record_file(state_dir), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        return _number(os.pread(fd, 64, 0))
    except OSError:
        return 0
    finally:
        os.close(fd)


def admit(state_dir: Path, sender: int) -> None:
    """Let a sender of epoch ``sender`` write, raising the record to it; OlderSender if a
    sender of a higher epoch was admitted before. OSError if the record cannot be
    written (the caller refuses: a guard it cannot keep is no guard)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(record_file(state_dir), _OPEN, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent pushes of several directories
        highest = _number(os.pread(fd, 64, 0))
        if sender < highest:
            raise OlderSender(
                f"the sender's epoch {sender} is older than that of a sender which already "
                f"wrote here ({highest}): it is an old active with stale files, and must not "
                "overwrite newer ones. Only if every node's epoch was reset on purpose, "
                f"delete {record_file(state_dir)} on this node"
            )
        if sender > highest:
            # in place, at a fixed width, no truncation first: a write that fails (a full
            # disk) or a crash leaves the old number, never an empty record
            record = f"{sender:0{_WIDTH}d}\n".encode()
            os.pwrite(fd, record, 0)
            os.ftruncate(fd, len(record))
            os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing drops the lock


def _number(raw: bytes) -> int:
    text = raw.split(b"\n", 1)[0].strip()
    value = int(text) if text.isdigit() and len(text) <= _WIDTH else 0
    return value if value <= _LARGEST else 0  # above any epoch a sender can send: damaged
