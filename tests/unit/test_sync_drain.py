"""What a stopping sync pushes, for how long, and what it says it left.

A helper's attack: a switchover 0.3 s after an 800 MB write lost the file on both
nodes, since the sync gave the push 3 s and the new active's first sync replaced
the old active's newer copy, and nothing said so. A planned handover now drains
for up to PLANNED_DRAIN, and whatever a stop leaves unpushed is said and alerted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.sync import engine as engine_module
from mosqit_failover.sync.manager import DRAIN_TIMEOUT, PLANNED_DRAIN, SyncManager
from tests.unit.test_reload import config, until


class SlowPush:
    """An engine whose pending changes take `PUSH` seconds to push once drained."""

    PUSH = 0.0

    def __init__(self, sync: Any, _masters: Any, epoch: int, _note: Any) -> None:
        self.sync, self.epoch, self.state = sync, epoch, "in-sync"
        self.pending = 5
        self._drained = asyncio.Event()

    def drain(self) -> None:
        self._drained.set()

    def status(self, _now: float) -> dict[str, Any]:
        return {"path": self.sync.path, "pending": self.pending, "full_resync_pending": False}

    async def run(self) -> None:
        await self._drained.wait()
        await asyncio.sleep(SlowPush.PUSH)
        self.pending = 0


def _stop(tmp: Path, push: float, drain: float) -> tuple[list[tuple[str, int]], list[str]]:
    SlowPush.PUSH = push
    notes: list[tuple[str, int]] = []
    alerts: list[str] = []

    async def main() -> None:
        manager = SyncManager(
            config(tmp, {"a": ""}),
            "alpha",
            lambda text, priority: notes.append((text, priority)),
            tmp / "run",
            alert=alerts.append,
        )
        manager.start(1)
        await asyncio.sleep(0.05)
        await manager.stop(drain)

    asyncio.run(main())
    return notes, alerts


def test_a_planned_stop_waits_for_the_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "Engine", SlowPush)
    assert PLANNED_DRAIN > DRAIN_TIMEOUT
    notes, alerts = _stop(tmp_path, push=0.5, drain=4.0)
    assert alerts == []
    assert (
        f"sync: pushing what is pending ({tmp_path / 'a'} to beta: 5 change(s)) before "
        "handing over, for up to 4 s",
        5,
    ) in notes


def test_a_stop_that_leaves_changes_unpushed_says_and_alerts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "Engine", SlowPush)
    notes, alerts = _stop(tmp_path, push=5.0, drain=0.3)
    left = f"{tmp_path / 'a'} to beta: 5 change(s)"
    assert (f"sync stopped before its peer had every change: {left}", 3) in notes
    assert alerts == [
        f"sync stopped with changes not pushed: {left}; the peer's copy lacks them, and "
        "they are replaced here when the peer pushes as the active"
    ]


def test_a_real_engine_whose_peer_refuses_says_its_full_sync_was_left(tmp_path: Path) -> None:
    """The peer's ssh port refuses at once: the drain is skipped, the first full sync
    never ran."""
    alerts: list[str] = []

    async def main() -> None:
        manager = SyncManager(
            config(tmp_path, {"a": ""}),
            "alpha",
            lambda *_: None,
            tmp_path / "run",
            alert=alerts.append,
        )
        manager.start(1)
        await until(lambda: manager.status()["dirs"][0]["last_error"] is not None)
        await manager.stop()

    asyncio.run(main())
    assert alerts == [
        f"sync stopped with changes not pushed: {tmp_path / 'a'} to beta: a full sync; the "
        "peer's copy lacks them, and they are replaced here when the peer pushes as the active"
    ]
