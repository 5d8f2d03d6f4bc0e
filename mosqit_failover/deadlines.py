"""Awaiting with a time limit, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` returns the result, and drops the cancellation,
when its caller is cancelled in the same loop step as the awaited thing finishes
(CPython gh-86296, fixed in 3.12). A sync engine cancelled as a file change woke it
then ran on unseen beside the mount that was to replace it, and the task waiting for
its end waited for ever (a helper found it behind a flaky test, 2 of 27 runs).
``asyncio.timeout`` has no such gap; :func:`within` is ``wait_for`` on top of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """The result of ``awaitable``, or TimeoutError (and ``awaitable`` cancelled) after
    ``seconds`` (None: no limit). A cancellation of the caller always propagates."""
    async with asyncio.timeout(seconds):
        return await awaitable
