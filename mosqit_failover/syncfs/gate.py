"""The gate of the file system's changes: many pass together; a freeze lets those in
flight finish, holds new ones, and lets them on when it ends.

A join (:mod:`.join`) freezes the gate while it copies the directory to a standby and
starts that standby's channel: with no change between the copy and the channel's first
record, the standby holds exactly what the directory held (none missed, none twice).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mosqit_failover.deadlines import within


class Gate:
    """``enter``/``leave`` around each change; ``frozen`` around a join (one at a time)."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._changes = 0

    @property
    def changes(self) -> int:
        """How many changes are in flight (entered, not left)."""
        return self._changes

    async def enter(self) -> None:
        """Wait while frozen, then count this change in flight."""
        while not self._open.is_set():
            await self._open.wait()
        self._changes += 1
        self._idle.clear()

    def leave(self) -> None:
        self._changes -= 1
        if self._changes == 0:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def frozen(self, timeout: float) -> AsyncIterator[None]:
        """Hold new changes, wait up to ``timeout`` for those in flight (TimeoutError if
        they do not finish: the gate opens again), and keep them held inside the block."""
        if not self._open.is_set():
            raise RuntimeError("the gate is frozen already (one join at a time)")
        self._open.clear()
        try:
            await within(self._idle.wait(), timeout)
            yield
        finally:
            self._open.set()
