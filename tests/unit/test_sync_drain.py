"""What a stopping sync pushes, for how long, and what it says it left.

A helper's attack: a switchover 0.3 s after an 800 MB write lost the file on both
nodes, since the sync gave the push 3 s and the new active's first sync replaced
the old active's newer copy, and nothing said so. A planned handover now drains
for up to PLANNED_DRAIN, and whatever a stop leaves unpushed is said and alerted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mosqit_failover.config import SyncDir
from mosqit_failover.sync import engine as engine_module
from mosqit_failover.sync import manager as manager_module
from mosqit_failover.sync.engine import Engine
from mosqit_failover.sync.manager import DRAIN_TIMEOUT, PLANNED_DRAIN, SyncManager
from mosqit_failover.sync.proc import MasterError
from tests.unit.test_reload import config, until
from tests.unit.test_sync_engine import FakeMaster
from tests.unit.test_sync_fanout import config as fanout_config


class SlowPush:
    """An engine whose pending changes take `PUSH` seconds to push once drained."""

    PUSH = 0.0
    PUSH_TO: ClassVar[dict[str, float]] = {}  # by the peer's first address, else PUSH
    emptied = False

    def __init__(self, sync: Any, masters: Any, epoch: int, _note: Any) -> None:
        self.sync, self.epoch, self.state = sync, epoch, "in-sync"
        self.pending = 5
        self._push = SlowPush.PUSH_TO.get(masters[0].peer.host, SlowPush.PUSH)
        self._drained = asyncio.Event()

    def drain(self, persist: bool = False) -> None:
        self._drained.set()

    def status(self, _now: float) -> dict[str, Any]:
        return {
            "path": self.sync.path,
            "state": self.state,
            "pending": self.pending,
            "full_resync_pending": False,
        }

    async def run(self) -> None:
        await self._drained.wait()
        await asyncio.sleep(self._push)
        self.pending = 0


def _stop(tmp: Path, push: float, planned: bool) -> tuple[list[tuple[str, int]], list[str]]:
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
        await manager.stop(planned)

    asyncio.run(main())
    return notes, alerts


def test_a_planned_stop_waits_for_the_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "Engine", SlowPush)
    assert PLANNED_DRAIN > DRAIN_TIMEOUT
    monkeypatch.setattr(manager_module, "DRAIN_TIMEOUT", 0.1)
    monkeypatch.setattr(manager_module, "PLANNED_DRAIN", 4.0)
    notes, alerts = _stop(tmp_path, push=0.5, planned=True)
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
    monkeypatch.setattr(manager_module, "DRAIN_TIMEOUT", 0.3)
    notes, alerts = _stop(tmp_path, push=5.0, planned=False)
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


def _engine_with_rsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codes: list[int]
) -> tuple[Engine, list[str]]:
    """A real engine on tmp_path whose rsync answers `codes` in turn (then 0)."""
    calls: list[str] = []

    async def run_rsync(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        calls.append("full" if stdin is None else "batch")
        code = codes.pop(0) if codes else 0
        return code, "" if code == 0 else f"rsync error: broken (code {code})\n"

    monkeypatch.setattr(engine_module, "run_rsync", run_rsync)
    engine = Engine(
        SyncDir(str(tmp_path)),
        [FakeMaster("10.0.0.2")],  # type: ignore[list-item]
        epoch=3,
        note=lambda text, prio: None,
    )
    return engine, calls


@pytest.mark.parametrize("persist", [True, False])
def test_a_planned_drain_retries_a_failed_push_a_fault_drain_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, persist: bool
) -> None:
    """A helper killed the standby's rsync twice during a switchover's drain: it gave
    up after one failed push, 56 of its 60 s unused, and the files were lost."""
    monkeypatch.setattr(engine_module, "DRAIN_RETRY", 0.05)
    codes: list[int] = []
    engine, calls = _engine_with_rsync(tmp_path, monkeypatch, codes)

    (tmp_path / "old").write_text("synced at the start\n")

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        await until(lambda: engine.state == "in-sync")
        codes.extend([12, 12])  # the next two pushes break off (a killed receiver)
        (tmp_path / "mail").write_text("the last one\n")
        await until(lambda: len(calls) >= 2)  # the first of them failed
        engine.drain(persist=persist)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    if persist:  # tried again until it went (the start's push, two broken, one whole)
        assert engine.dirty.empty and len(calls) == 4
    else:  # the peer looks unreachable: no more tries
        assert not engine.dirty.empty and len(calls) == 2


def test_a_planned_drain_stops_at_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer refuses (it took over meanwhile, or holds a newer epoch): retrying kept a
    demoting node's VIP for the rest of the minute (a helper's cut during a drain)."""
    monkeypatch.setattr(engine_module, "DRAIN_RETRY", 0.05)
    codes: list[int] = []
    engine, calls = _engine_with_rsync(tmp_path, monkeypatch, codes)
    (tmp_path / "old").write_text("synced at the start\n")

    async def run_rsync(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        calls.append("refused")
        return 77, "mosqit-sync refused: this node is ACTIVE (epoch 6)\n"

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        await until(lambda: engine.state == "in-sync")
        monkeypatch.setattr(engine_module, "run_rsync", run_rsync)
        (tmp_path / "mail").write_text("the last one\n")
        await until(lambda: len(calls) >= 2)
        engine.drain(persist=True)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert engine.state == "refused" and calls.count("refused") <= 2


def test_a_full_sync_in_flight_counts_as_unpushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an aborted handover the restarted sync's catch-up read as nothing pending,
    and a second switchover lost what it carried (a helper's finding)."""
    engine, _calls = _engine_with_rsync(tmp_path, monkeypatch, [])
    engine._inflight = engine.dirty.take()  # what _send holds while a push runs
    assert not engine.status(0.0)["full_resync_pending"]
    engine.dirty.need_full("start (catch up)", 0.0)
    engine._inflight = engine.dirty.take()
    assert engine.status(0.0)["full_resync_pending"]


def test_a_bystander_s_leftovers_are_alerted_the_successor_s_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three nodes: a switchover to a synced beta aborted for a bystander whose sync was
    broken (a helper's finding). stop() returns every leftover with its peer (the daemon
    aborts only for the successor's) and alerts all but the successor's."""
    monkeypatch.setattr(engine_module, "Engine", SlowPush)
    monkeypatch.setattr(manager_module, "DRAIN_TIMEOUT", 0.2)
    SlowPush.PUSH = 5.0
    alerts: list[str] = []
    left: list[tuple[str, str]] = []

    async def main() -> None:
        manager = SyncManager(
            fanout_config(tmp_path, ("a",), nodes=3),
            "alpha",
            lambda *_: None,
            tmp_path / "run",
            alert=alerts.append,
        )
        manager.start(1)
        await asyncio.sleep(0.05)
        left.extend(await manager.stop(keep="beta"))

    asyncio.run(main())
    assert sorted(peer for peer, _ in left) == ["beta", "n3"]
    assert len(alerts) == 1 and f"{tmp_path / 'a'} to n3: 5 change(s)" in alerts[0]


def test_a_planned_drain_waits_for_the_successor_not_a_bystander(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper's three-node switchover: gamma's sync could not answer, and the drain
    waited the whole minute for it, holding the VIP 35 s past the successor's refusal
    as the new active. The successor's drain ends it; a bystander gets DRAIN_TIMEOUT."""
    monkeypatch.setattr(engine_module, "Engine", SlowPush)
    monkeypatch.setattr(manager_module, "DRAIN_TIMEOUT", 0.3)
    monkeypatch.setattr(manager_module, "PLANNED_DRAIN", 20.0)
    monkeypatch.setattr(SlowPush, "PUSH_TO", {"10.231.1.12": 0.1, "10.231.1.13": 30.0})
    left: list[tuple[str, str]] = []
    took: list[float] = []

    async def main() -> None:
        manager = SyncManager(
            fanout_config(tmp_path, ("a",), nodes=3), "alpha", lambda *_: None, tmp_path / "run"
        )
        manager.start(1)
        await asyncio.sleep(0.05)
        began = asyncio.get_running_loop().time()
        left.extend(await manager.stop(planned=True, keep="beta"))
        took.append(asyncio.get_running_loop().time() - began)

    asyncio.run(main())
    assert [peer for peer, _ in left] == ["n3"] and took[0] < 10.0  # not the 20 s


def test_a_planned_drain_ends_when_the_peer_s_ssh_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transfer to retry: a stop beside a peer whose sshd is blocked waited the whole
    minute (the lab's fence test, a three-node switchover's bystander)."""
    monkeypatch.setattr(engine_module, "DRAIN_RETRY", 0.05)
    engine, _calls = _engine_with_rsync(tmp_path, monkeypatch, [])
    (tmp_path / "old").write_text("synced at the start\n")
    tries: list[int] = []

    async def refused(_self: FakeMaster) -> None:
        tries.append(1)
        raise MasterError("ssh: connect to host 10.0.0.2 port 22: Connection timed out")

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        await until(lambda: engine.state == "in-sync")
        monkeypatch.setattr(FakeMaster, "ensure", refused)
        (tmp_path / "mail").write_text("the last one\n")
        await until(lambda: engine.state == "waiting-for-peer")
        engine.drain(persist=True)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert engine.state == "waiting-for-peer" and len(tries) <= 2 and not engine.dirty.empty


def test_a_planned_drain_of_an_empty_source_ends_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty synced directory is never sent (its full sync would empty the peer), and
    a switchover's drain retried that held-back sync for its whole minute, the VIP held
    and the services down: a 60 s outage (a helper's finding)."""
    monkeypatch.setattr(engine_module, "DRAIN_RETRY", 0.05)
    engine, calls = _engine_with_rsync(tmp_path, monkeypatch, [])

    async def main() -> float:
        task = asyncio.create_task(engine.run())
        await until(lambda: engine.state == "source-missing")  # the start's catch-up held
        engine.dirty.need_full("catch up: the peer was unreachable", 0.0)
        began = asyncio.get_running_loop().time()
        engine.drain(persist=True)
        await asyncio.wait_for(task, 10)
        return asyncio.get_running_loop().time() - began

    took = asyncio.run(main())
    assert calls == [] and engine.state == "source-missing"
    assert took < 1.0  # not DRAIN_RETRY after DRAIN_RETRY until the caller gives up


def test_a_directory_emptied_after_its_files_were_pushed_is_named_as_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rm -rf D && mkdir D` before a switchover: the drain ended at once (the empty
    source is never sent), the handover went on, and the new active's first sync brought
    the 20 deleted files back (a helper's finding). The peer got content before, so the
    empty source is a change it lacks; one that was never pushed (empty since the start)
    is not."""
    monkeypatch.setattr(engine_module, "DRAIN_RETRY", 0.05)
    engine, calls = _engine_with_rsync(tmp_path, monkeypatch, [])
    (tmp_path / "mail").write_text("pushed\n")

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        await until(lambda: engine.state == "in-sync" and len(calls) >= 1)
        assert not engine.emptied
        (tmp_path / "mail").unlink()
        engine.dirty.need_full("watch restored", 0.0)  # what the root made anew causes
        engine.drain(persist=True)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert engine.state == "source-missing" and engine.emptied


def test_an_empty_directory_never_pushed_is_not_named_as_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, calls = _engine_with_rsync(tmp_path, monkeypatch, [])

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        await until(lambda: engine.state == "source-missing")
        engine.drain(persist=True)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert calls == [] and not engine.emptied
