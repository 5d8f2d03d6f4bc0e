"""The receiving rsync of a push, watched: it stops as soon as its sender may no longer write.

The forced command admits a push (:mod:`.receive`) and then runs the receiving rsync
server. Admission is a check at one moment; the push then lasts as long as the transfer,
seconds or minutes. Meanwhile this node may promote (a standby whose active froze
mid-push takes over, and the old active thaws), or a newer sender may be admitted (three
or more nodes). Either way the running rsync must write nothing more: its files are the
old active's, older than what this node now serves or receives.

:func:`run_watched` therefore runs rsync as a child in a process group of its own and
watches the state directory with inotify (``state.json`` is replaced by a rename, the
record of admitted senders is rewritten in place). On any change there it checks again,
as at admission; when the sender may no longer write, it ends the whole group (rsync's
own forked receiver too: SIGTERM, on which rsync removes its temporary file and writes
nothing more, then SIGKILL) and refuses with one line. While nothing
changes it sleeps in ``poll``: no CPU beside the transfer.

Guarantees: rsync's exit status is returned as a shell gives it (128 + signal); a
refusal is raised as :class:`~.receive.Refused` only once the rsync group is killed and
reaped; rsync dies with this process (``PR_SET_PDEATHSIG``), and the writing lock
(:class:`~.admitted.Writing`) is handed to it too, so a newer sender still waits for
rsync and its forked receiver to end. Not guaranteed: killed itself (SIGKILL: the OOM
killer, an operator), this process leaves rsync's forked receiver to finish the file it
is writing (nothing passes ``PR_SET_PDEATHSIG`` on to a fork); that file may then land
on a node that promoted meanwhile, and no further one.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Callable

from mosqit_failover.sync.inotify import (
    IN_CLOSE_WRITE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    Inotify,
)
from mosqit_failover.sync.proc import ORPHAN_GUARD

Check = Callable[[], None]
"""Raises Refused when the sender may no longer write here."""

FALLBACK_PERIOD_MS = 100
"""How often the check runs when the state directory cannot be watched (no inotify
instance or watch left): the latency of a stop then."""

TERM_GRACE = 1.0
"""Seconds rsync has to clean up after SIGTERM before it is killed."""

_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
_CHANGES = IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF


class StateDirGone(Exception):
    """The watched state directory went away: what a check would read is not there."""


def run_watched(argv: list[str], state_dir: str, check: Check, keep_fd: int) -> int:
    """Run ``argv`` (inheriting this process's stdin, stdout and stderr, and ``keep_fd``)
    until it exits, or until ``check`` raises (or the state directory goes: StateDirGone):
    then kill it and re-raise."""
    watch = _watch(state_dir)
    try:
        check()  # after the watch is set: any later change is seen
    except BaseException:
        if watch is not None:
            watch.close()
        raise
    # with this process gone rsync dies too (its forked receiver finishes its file)
    child = subprocess.Popen([*ORPHAN_GUARD, *argv], process_group=0, pass_fds=(keep_fd,))
    try:
        pidfd = os.pidfd_open(child.pid)
    except OSError:
        pidfd = -1  # no pidfd (an old kernel): the poll's timeout notices the exit
    try:
        _wait(child, pidfd, watch, check)
    except BaseException:
        _kill(child)
        raise
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        if watch is not None:
            watch.close()
    code = child.returncode
    return code if code >= 0 else 128 - code


def _watch(state_dir: str) -> Inotify | None:
    try:
        watch = Inotify()
    except OSError:
        return None
    try:
        watch.add(os.fsencode(state_dir), _CHANGES)
    except OSError:
        watch.close()
        return None
    return watch


def _wait(child: subprocess.Popen[bytes], pidfd: int, watch: Inotify | None, check: Check) -> None:
    poller = select.poll()
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    if watch is not None:
        poller.register(watch.fd, select.POLLIN)
    timeout = None if watch is not None and pidfd >= 0 else FALLBACK_PERIOD_MS
    while child.poll() is None:
        ready = poller.poll(timeout)
        if watch is not None and any(fd == watch.fd for fd, _ in ready):
            if any(event.mask & _GONE for event in watch.read()):
                raise StateDirGone(
                    "the state directory was removed or moved while the push ran: "
                    "stopped (its epoch record and locks went with it)"
                )
            check()  # which file changed does not matter: check them all
        elif watch is None and timeout is not None:
            check()


def _kill(child: subprocess.Popen[bytes]) -> None:
    """End rsync's whole group, then reap it: SIGTERM first, on which rsync deletes the
    temporary file of the file it was receiving (killed outright, it would leave a
    ``.NAME.XXXXXX`` behind, to be synced on from the new active); SIGKILL after
    :data:`TERM_GRACE`."""
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal_number)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(TERM_GRACE)
            return
    child.wait()
