"""Large buffers of the record stream: malloc keeps them, pipes hold a whole record."""

from __future__ import annotations

import fcntl
import os
import platform
from pathlib import Path

import pytest

from mosqit_failover.syncfs.buffers import PIPE_SIZE, keep_freed_buffers, widen_pipe

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds() -> None:
    assert keep_freed_buffers() == ""


def test_a_pipe_is_widened_to_hold_a_whole_write() -> None:
    read, write = os.pipe()
    try:
        widen_pipe(write)
        assert fcntl.fcntl(write, F_GETPIPE_SZ) >= PIPE_SIZE
    finally:
        os.close(read)
        os.close(write)


def test_a_file_or_a_closed_descriptor_is_left_alone(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    widen_pipe(fd)
    os.close(fd)
    widen_pipe(fd)  # closed: nothing to widen, no error
