"""The C library, for the few calls Python's os module lacks (prctl, syncfs, mallopt)."""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    """This process's C library, loaded once; errno is kept for ``ctypes.get_errno``.
    Raises OSError where it cannot be loaded."""
    return ctypes.CDLL(None, use_errno=True)
