"""Command lines for ssh and rsync, and what rsync's exit codes mean. Pure: no I/O.

The sender passes its epoch to the receiver's forced command through
``--rsync-path``: rsync runs ``<rsync-path> --server ...`` on the peer, which
ssh hands to the forced command as SSH_ORIGINAL_COMMAND
(``mosqit-sync EPOCH --server ... . /dest/``). Renames go before the batch
through the same master and the same forced command: ``ssh ... mosqit-sync
EPOCH --move /dest`` with NUL-separated ``SRC DEST`` pairs (relative paths) on
stdin, one result line per pair on stdout. The fence (STONITH) of a peer whose
agent is hung goes the same way: ``ssh ... mosqit-sync EPOCH --fence`` (see
:mod:`.fence_target` and :mod:`mosqit_failover.effects.fence`). See :mod:`.receive`.

Devices and special files are never synced (``--no-D``): the receiver refuses
a sender that asks for them, so that a pushed tree cannot plant device nodes.
Holes stay holes (``-S``): a sparse file of 10 GiB with a few blocks of data is not
written out as 10 GiB of zeros on the peer. A synchronous directory's pushes carry
``--fsync`` (:data:`FSYNC`): the receiver answers only once what it wrote is on its
disk (docs/sync-mode.md: a standby the mount takes back holds the catch-up durably).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from mosqit_failover.config import SyncDir

MARKER = "mosqit-sync"
"""First word of the remote command: tells the receiver it talks to our sender."""

REFUSED = "mosqit-sync refused:"
"""Prefix of every refusal line the receiver writes to stderr (the sender parses it)."""

MOVE = "--move"
"""Second word after the epoch of a rename request (instead of rsync's ``--server``)."""

FENCE = "--fence"
"""Second word after the epoch of a fence request: the peer gives up the VIP and services."""

SYNCFS = "--syncfs"
"""Second word after the epoch of a synchronous-mode channel (docs/sync-mode.md)."""

FSYNC = "--fsync"
"""rsync's option, on every push of a synchronous directory: the receiving forced command
runs the server without it and flushes the whole file system once it ended (``syncfs``,
:func:`.receive.receive_durably`), which also covers directories, deletions and metadata
rsync's own per-file fsync leaves in the page cache."""

MOVED = "moved"
"""Result line of a rename done on the peer; anything else says why not (``kept: ...``)."""


@dataclass(frozen=True)
class Peer:
    """Where one synced directory goes: user@host:port with a key and timeouts."""

    host: str
    user: str
    port: int
    key: str
    connect_timeout: float
    control_path: Path

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"


def ssh_options(peer: Peer) -> list[str]:
    """Options shared by the master and every multiplexed session.

    Guarantees: never prompts (BatchMode), connect and liveness timeouts are
    always set, so ssh cannot hang on an unreachable peer: a dead peer is
    noticed by the master within about 3 x ServerAliveInterval.
    """
    alive = max(1, round(peer.connect_timeout / 2))
    return [
        "-p",
        str(peer.port),
        "-i",
        peer.key,
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"ConnectTimeout={max(1, round(peer.connect_timeout))}",
        "-o",
        f"ServerAliveInterval={alive}",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ControlPath={peer.control_path}",
    ]


def master_argv(peer: Peer) -> list[str]:
    """The long-lived ssh master (foreground, no command) that rsync sessions reuse."""
    return ["ssh", "-M", "-N", "-o", "ControlPersist=no", *ssh_options(peer), peer.destination]


def rsh(peer: Peer) -> str:
    """The ``-e`` value for rsync: a session over the master if it is up, else a fresh one."""
    return shlex.join(["ssh", "-o", "ControlMaster=no", *ssh_options(peer)])


def _common(sync: SyncDir, peer: Peer, epoch: int) -> list[str]:
    argv = [
        "rsync",
        "-a",  # -rlptgoD (-r is off with --files-from): symlinks, perms, owner, group, mtimes
        "--no-D",  # but no devices or special files: the receiver refuses D (-logtpre.iLsfxCIvu)
        "--numeric-ids",
        "--force",  # a directory that became a file, a deleted non-empty directory
        "-S",  # holes stay holes: a sparse file must not fill the peer's disk with zeros
        f"--timeout={max(1, round(sync.timeout))}",
        "-e",
        rsh(peer),
        f"--rsync-path={MARKER} {epoch}",
    ]
    if sync.synchronous:  # a standby taken back into the mount holds the copy durably
        argv.append(FSYNC)
    if sync.bwlimit:
        argv.append(f"--bwlimit={sync.bwlimit}")
    argv += [f"--exclude={pattern}" for pattern in sync.excludes]
    return argv


def _endpoints(sync: SyncDir, peer: Peer) -> list[str]:
    return [sync.path + "/", f"{peer.destination}:{sync.target}/"]


def full_argv(sync: SyncDir, peer: Peer, epoch: int) -> list[str]:
    """The whole tree, deleting on the peer what the source no longer has.

    Files land whole: rsync writes a temporary file beside the target and
    renames it (never --inplace). Excluded files on the peer are kept.
    """
    # -H: a hard link made while a standby was away (or split by a batch push, which
    # sees one path at a time) is one file again there, as the full sync is the
    # catch-up a synchronous mount takes a standby back with
    return [*_common(sync, peer, epoch), "-H", "--delete", *_endpoints(sync, peer)]


def batch_argv(sync: SyncDir, peer: Peer, epoch: int) -> list[str]:
    """Only the paths fed on stdin (NUL-separated, relative to the directory).

    A listed path that no longer exists at the source is deleted on the peer
    (--delete-missing-args); a listed directory sends its own attributes only, and
    one listed as ``dir/.`` its entries too, deleting on the peer the entries the
    source lacks there (--delete): the engine lists each directory of a new tree so
    (:mod:`.listing`), and never the synced directory itself.
    """
    return [
        *_common(sync, peer, epoch),
        "--files-from=-",
        "--from0",
        "--delete-missing-args",
        "--delete",
        *_endpoints(sync, peer),
    ]


def files_from(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def move_argv(sync: SyncDir, peer: Peer, epoch: int) -> list[str]:
    """Renames on the peer, over the master, as the forced command's second form.

    The pairs go on stdin (:func:`files_from` of src, dest, src, dest, ...).
    """
    remote = shlex.join([MARKER, str(epoch), MOVE, sync.target])
    return ["ssh", "-o", "ControlMaster=no", *ssh_options(peer), peer.destination, remote]


def fence_argv(peer: Peer, epoch: int) -> list[str]:
    """Fence the peer through its forced command (no master: a fresh session of its own).

    The answer is the peer's exit status (0 fenced, 1 not all done, 77
    refused) and one stdout line per step, the last one a summary.
    """
    remote = shlex.join([MARKER, str(epoch), FENCE])
    return ["ssh", "-o", "ControlMaster=no", *ssh_options(peer), peer.destination, remote]


_NO_CONNECTION = (
    "ssh: connect to host",  # TCP connect failed
    "during banner exchange",  # no ssh server answered
    "Could not resolve hostname",
    "Permission denied (",  # authentication failed: no command ran
    "Host key verification failed",
)


def never_connected(code: int, stderr: str) -> bool:
    """Whether ssh failed before any remote command could start."""
    return code == 255 and any(mark in stderr for mark in _NO_CONNECTION)


def move_results(stdout: str) -> list[bool]:
    """Whether each rename reported so far was done (a missing line: not known)."""
    return [line.strip() == MOVED for line in stdout.splitlines()]


class Outcome(Enum):
    OK = "ok"
    PARTIAL = "partial"  # 23: some files failed (permissions, disk full): retry
    VANISHED = "vanished"  # 24: source files vanished meanwhile: their delete events follow
    TIMEOUT = "timeout"  # 30, 35: I/O stalled: retry
    UNREACHABLE = "unreachable"  # 255, 12, 10, 5: ssh or the link failed: wait for the peer
    REFUSED = "refused"  # the peer's forced command said no (stale epoch, active peer, path)
    DISK_FULL = "disk-full"  # the peer has no space left
    SOURCE = "source"  # the source directory is missing or not a directory
    # 2: the peer's rsync refuses a deleted path in a batch (the "missing args" entry):
    # a security fix in Debian's rsync 3.2.7-1+deb12u6 (upstream rsync issue 910)
    NO_DELETE_IN_BATCH = "no-delete-in-batch"
    # the peer's forced command predates batches that mirror new trees (rsync's -d)
    OLD_RECEIVER = "old-receiver"
    FAILED = "failed"  # anything else: retry


_BY_CODE = {
    0: Outcome.OK,
    23: Outcome.PARTIAL,
    24: Outcome.VANISHED,
    30: Outcome.TIMEOUT,
    35: Outcome.TIMEOUT,
    255: Outcome.UNREACHABLE,
    12: Outcome.UNREACHABLE,
    10: Outcome.UNREACHABLE,
    5: Outcome.UNREACHABLE,
}


# what a receiver from before batches mirrored new trees says to one (see .receive)
_REFUSED_DIRS = re.compile(
    r"rsync option letters '[^']*d[^']*' in '-[^']*' are not allowed"
    r"|rsync option '--no-r' is not allowed"
)


def classify(code: int, stderr: str) -> Outcome:
    """What an rsync exit code (and its stderr) means for the engine."""
    if REFUSED in stderr:
        return Outcome.OLD_RECEIVER if _REFUSED_DIRS.search(stderr) else Outcome.REFUSED
    if "No space left on device" in stderr or "Disk quota exceeded" in stderr:
        return Outcome.DISK_FULL
    if code == 23 and "change_dir" in stderr and "failed" in stderr:
        return Outcome.SOURCE
    if code == 2 and "invalid file mode" in stderr:
        return Outcome.NO_DELETE_IN_BATCH
    return _BY_CODE.get(code, Outcome.FAILED)


def summary(stderr: str, limit: int = 300) -> str:
    """The most telling stderr lines of a failed run, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    telling = [line for line in lines if REFUSED in line] or lines[-3:]
    text = " | ".join(telling)
    return text if len(text) <= limit else text[: limit - 3] + "..."
