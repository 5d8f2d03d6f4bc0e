"""Large buffers of the record stream: kept by malloc, and pipes that hold a whole record.

Every FUSE write brings a fresh 1 MiB buffer (pyfuse3's), and the applier a fresh chunk
per read. glibc's malloc gives such blocks back to the kernel when they are freed (its
mmap threshold, then its trim threshold, grow only up to about this size), so each MiB
costs page faults and zeroed pages again: measured, more than half of the mount's CPU
time in a sequential write. :func:`keep_freed_buffers` makes malloc serve them from the
heap and keep up to :data:`KEEP` bytes freed at its top; :func:`widen_pipe` lets one
write move a whole record instead of 64 KiB at a time, and :data:`AHEAD` lets the mount
answer a write before the standby read the previous one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat

from mosqit_failover.libc import libc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_BLOCKS = 4 << 20
"""Blocks up to this size come from the heap (a Write frame is at most about 1 MiB)."""
KEEP = 64 << 20
"""Freed memory malloc keeps at the heap's top instead of trimming it."""

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20
"""A pipe's capacity asked for: one Write frame's data (the default limit of
``/proc/sys/fs/pipe-max-size`` for an unprivileged process)."""

AHEAD = 4 << 20
"""Bytes a channel may hold unsent (beyond its pipe) before the mount waits for the
standby to read: a few 1 MiB records, so a write does not wait for every one."""


def keep_freed_buffers() -> str:
    """Tune malloc as the module says; "" on success, else why not (no glibc)."""
    try:
        mallopt = libc().mallopt
    except (OSError, AttributeError):
        return "this C library has no mallopt (not glibc)"
    if mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS) != 1 or mallopt(M_TRIM_THRESHOLD, KEEP) != 1:
        return "mallopt refused the thresholds"
    return ""


def widen_pipe(fd: int) -> None:
    """Ask for :data:`PIPE_SIZE` bytes of capacity if ``fd`` is a pipe (else nothing;
    a refusal, e.g. over the user's pipe page limit, leaves the pipe as it was)."""
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
