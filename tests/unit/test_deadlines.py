"""`within`: a time limit that never loses the caller's cancellation (CPython gh-86296)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mosqit_failover.deadlines import within

Limit = Callable[[Awaitable[bool], float], Awaitable[bool]]
PACKAGE = Path(__file__).resolve().parents[2] / "mosqit_failover"


def cancelled_as_it_wakes(limit: Limit) -> str:
    """Cancel a task in the loop step in which what it waits for (with a limit) is done,
    as the sync manager cancelled an engine that a file change had just woken."""

    async def scenario() -> str:
        woken = asyncio.Event()

        async def engine() -> None:
            await limit(woken.wait(), 10)
            await asyncio.sleep(3600)  # its next round: with the cancel lost, it runs on

        task = asyncio.create_task(engine())
        await asyncio.sleep(0.01)  # waiting on the event
        woken.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return "cancel lost"
        return "cancelled" if task.cancelled() else "ended otherwise"

    return asyncio.run(scenario())


def test_a_cancel_that_comes_as_the_wait_ends_stops_the_task() -> None:
    assert cancelled_as_it_wakes(within) == "cancelled"


def test_the_race_is_real_with_wait_for_on_this_python() -> None:
    """What `within` replaces: on 3.11 the cancel is lost (fixed in 3.12)."""
    import sys

    if sys.version_info >= (3, 12):
        pytest.skip("asyncio.wait_for no longer loses the cancel")
    assert cancelled_as_it_wakes(asyncio.wait_for) == "cancel lost"


def test_within_times_out_and_cancels_what_it_waited_for() -> None:
    async def scenario() -> tuple[bool, bool]:
        slow = asyncio.ensure_future(asyncio.sleep(10))
        with pytest.raises(TimeoutError):
            await within(slow, 0.01)
        await asyncio.sleep(0)
        return slow.cancelled(), await within(asyncio.sleep(0, True), None)

    assert asyncio.run(scenario()) == (True, True)


def test_the_package_never_uses_asyncio_wait_for() -> None:
    """Every time limit in the agent goes through `within` (docstrings may name it)."""
    calls = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bwait_for\(", line) and not line.lstrip().startswith("#")
    ]
    assert calls == [], calls
