"""Sync fan-out: one engine per (directory, peer), each peer on its own, on_in_sync.

Real engines (inotify on tmp directories) with the engine tests' seams: fake ssh
masters (the manager's SshMaster) and a fake rsync (the engine's run_rsync) whose
answer depends on the peer address it is given. Three nodes: alpha pushes to
beta (10.231.x.12) and n3 (10.231.x.13).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.sync import engine as engine_module
from mosqit_failover.sync import manager as manager_module
from mosqit_failover.sync.commands import Peer
from mosqit_failover.sync.manager import SyncManager
from mosqit_failover.sync.proc import MasterError
from tests.unit.test_config_order import with_nodes

ORDER = 'order = ["alpha", "beta", "n3"]\n'


def node_of(host: str) -> str:
    return {"12": "beta", "13": "n3"}[host.rsplit(".", 1)[1]]


class Peers:
    """How each peer answers: "ok", "down" (ssh never connects) or "hang" (rsync hangs)."""

    def __init__(self) -> None:
        self.mode: dict[str, str] = {"beta": "ok", "n3": "ok"}
        self.pushes: list[tuple[str, str, bool]] = []  # (peer, directory, full)
        self.release = asyncio.Event()


def fakes(monkeypatch: pytest.MonkeyPatch, peers: Peers) -> None:
    class FakeMaster:
        def __init__(self, peer: Peer) -> None:
            self.peer = peer

        async def ensure(self) -> None:
            if peers.mode[node_of(self.peer.host)] == "down":
                raise MasterError("ssh: connect to host: Connection timed out")

        async def close(self) -> None:
            return None

    async def run_rsync(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        (host,) = {m.group(1) for a in argv if (m := re.match(r"\w+@([\d.]+):", a))}
        peer = node_of(host)
        if peers.mode[peer] == "hang":
            await peers.release.wait()
        source = argv[-2].rstrip("/")
        peers.pushes.append((peer, Path(source).name, stdin is None))
        return 0, ""

    monkeypatch.setattr(manager_module, "SshMaster", FakeMaster)
    monkeypatch.setattr(engine_module, "run_rsync", run_rsync)


def config(tmp: Path, dirs: tuple[str, ...] = ("a", "b"), nodes: int = 3) -> configuration.Config:
    text = with_nodes(nodes, ORDER if nodes > 2 else "")
    syncs = ""
    for name in dirs:
        (tmp / name).mkdir(exist_ok=True)
        (tmp / name / "file").write_text("x\n")
        syncs += f'[[sync]]\npath = "{tmp / name}"\ninterval = "100ms"\n'
    return configuration.parse(text.replace('[[sync]]\npath = "/srv/data"\n', syncs))


def make(
    tmp: Path, cfg: configuration.Config, calls: list[tuple[str, bool]] | None = None
) -> tuple[SyncManager, list[str]]:
    notes: list[str] = []
    on_in_sync = None if calls is None else lambda peer, ok: calls.append((peer, ok))
    manager = SyncManager(
        cfg, "alpha", lambda t, _p: notes.append(t), tmp / "run", on_in_sync=on_in_sync
    )
    return manager, notes


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def peer_view(manager: SyncManager, directory: str, peer: str) -> dict[str, Any]:
    (one,) = [d for d in manager.status()["dirs"] if Path(d["path"]).name == directory]
    view: dict[str, Any] = one["peers"][peer]
    return view


def test_one_engine_per_directory_and_peer_over_that_peers_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    fakes(monkeypatch, peers)

    async def main() -> None:
        manager, notes = make(tmp_path, config(tmp_path))
        manager.start(4)
        hosts = [
            (Path(e.sync.path).name, [m.peer.host for m in e.masters]) for e in manager.engines
        ]
        assert hosts == [
            ("a", ["10.231.1.12", "10.231.2.12"]),
            ("a", ["10.231.1.13", "10.231.2.13"]),
            ("b", ["10.231.1.12", "10.231.2.12"]),
            ("b", ["10.231.1.13", "10.231.2.13"]),
        ]
        assert all(e.resync_after_outage for e in manager.engines)
        assert notes[0] == f"sync started (epoch 4): {tmp_path / 'a'}, {tmp_path / 'b'} -> beta, n3"
        await until(lambda: len(peers.pushes) == 4)
        assert sorted(peers.pushes) == [
            ("beta", "a", True),
            ("beta", "b", True),
            ("n3", "a", True),
            ("n3", "b", True),
        ]
        await manager.stop()
        assert not manager.running

    asyncio.run(main())


def test_a_pair_keeps_one_engine_per_directory_and_its_status_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    fakes(monkeypatch, peers)

    async def main() -> None:
        manager, notes = make(tmp_path, config(tmp_path, ("a",), nodes=2))
        manager.start(2)
        assert len(manager.engines) == 1 and not manager.engines[0].resync_after_outage
        await until(lambda: manager.status()["dirs"][0]["state"] == "in-sync")
        (one,) = manager.status()["dirs"]
        engine_view = manager.engines[0].status(asyncio.get_running_loop().time())
        assert set(one) == {*engine_view, "peers"} and list(one["peers"]) == ["beta"]
        assert {k: v for k, v in one.items() if k not in ("peers", "last_ok_ago")} == {
            k: v for k, v in engine_view.items() if k != "last_ok_ago"
        }
        assert notes[0] == f"sync started (epoch 2): {tmp_path / 'a'} -> beta"
        await manager.stop()

    asyncio.run(main())


def test_a_hanging_peer_does_not_hold_up_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    peers.mode["beta"] = "hang"
    fakes(monkeypatch, peers)
    calls: list[tuple[str, bool]] = []

    async def main() -> None:
        manager, _ = make(tmp_path, config(tmp_path), calls)
        manager.start(5)
        await until(lambda: calls == [("n3", True)])
        (tmp_path / "a" / "new").write_text("y\n")
        await until(lambda: ("n3", "a", False) in peers.pushes)  # a batch, not a full sync
        assert [p for p in peers.pushes if p[0] == "beta"] == []
        assert peer_view(manager, "a", "beta")["state"] == "syncing"
        assert peer_view(manager, "a", "n3")["in_sync"]
        (one, _b) = manager.status()["dirs"]
        assert one["state"] == "syncing" and not one["in_sync"]  # the worst peer shows
        peers.mode["beta"] = "ok"
        peers.release.set()
        await until(lambda: ("beta", True) in calls)
        assert calls == [("n3", True), ("beta", True)]
        await manager.stop()
        await asyncio.sleep(0)  # the callbacks run from the loop
        assert calls[2:] == [("n3", False), ("beta", False)]

    asyncio.run(main())


def test_a_dead_peer_fails_alone_and_gets_a_full_sync_when_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    fakes(monkeypatch, peers)
    calls: list[tuple[str, bool]] = []

    async def main() -> None:
        manager, notes = make(tmp_path, config(tmp_path, ("a",)), calls)
        manager.start(6)
        await until(lambda: sorted(calls) == [("beta", True), ("n3", True)])
        peers.mode["beta"] = "down"
        (tmp_path / "a" / "new").write_text("y\n")
        await until(lambda: ("beta", False) in calls)
        assert peer_view(manager, "a", "beta")["state"] == "waiting-for-peer"
        assert "keeping a full resync" in peer_view(manager, "a", "beta")["last_error"]
        assert any(n.startswith(f"sync {tmp_path / 'a'} -> beta: unreachable") for n in notes)
        (one,) = manager.status()["dirs"]
        assert one["last_error"].startswith("beta: unreachable") and not one["in_sync"]
        (tmp_path / "a" / "more").write_text("z\n")
        await until(lambda: peers.pushes.count(("n3", "a", False)) >= 2)
        assert peer_view(manager, "a", "n3")["last_error"] is None  # n3 kept going
        assert ("n3", False) not in calls
        seen = len(peers.pushes)
        peers.mode["beta"] = "ok"
        await until(lambda: calls[-1] == ("beta", True))
        assert next(p for p in peers.pushes[seen:] if p[0] == "beta") == ("beta", "a", True)
        await manager.stop()

    asyncio.run(main())


def test_in_sync_follows_start_epochs_reconfigure_and_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    peers.mode["beta"] = "hang"
    fakes(monkeypatch, peers)
    calls: list[tuple[str, bool]] = []

    async def main() -> None:
        manager, _ = make(tmp_path, config(tmp_path, ("a",)), calls)
        manager.start(7)
        await until(lambda: calls == [("n3", True)])
        manager.start(7)  # same epoch: nothing changes
        manager.reconfigure(config(tmp_path, ("a", "b")))  # a new directory: full sync first
        await until(lambda: calls[1:] == [("n3", False), ("n3", True)])
        manager.start(8)  # a new epoch: new engines, full syncs again
        await until(lambda: calls[3:] == [("n3", False), ("n3", True)])
        assert ("beta", True) not in calls  # beta's pushes still hang
        manager.reconfigure(config(tmp_path, ()))  # no directory left: no verdict, no call
        await asyncio.sleep(0.1)
        assert len(calls) == 5 and not manager.running
        peers.release.set()
        await manager.stop()

    asyncio.run(main())


def test_without_sync_directories_on_in_sync_is_never_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes(monkeypatch, Peers())
    calls: list[tuple[str, bool]] = []

    async def main() -> None:
        manager, _ = make(tmp_path, config(tmp_path, ()), calls)
        manager.start(1)
        await asyncio.sleep(0.1)
        await manager.stop()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert calls == []


def test_a_callback_that_raises_does_not_stop_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    fakes(monkeypatch, peers)
    told: list[str] = []

    def broken(peer: str, ok: bool) -> None:
        told.append(peer)
        raise RuntimeError("core bug")

    async def main() -> None:
        manager = SyncManager(
            config(tmp_path, ("a",)), "alpha", lambda t, p: None, tmp_path / "run", broken
        )
        manager.start(3)
        await until(lambda: sorted(told) == ["beta", "n3"])
        (tmp_path / "a" / "new").write_text("y\n")
        await until(
            lambda: ("n3", "a", False) in peers.pushes and ("beta", "a", False) in peers.pushes
        )
        assert all(not t.done() for t in manager._tasks)
        await manager.stop()

    asyncio.run(main())


def test_a_falling_behind_peer_is_reported_once_its_lag_is_too_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = Peers()
    fakes(monkeypatch, peers)
    monkeypatch.setattr(manager_module, "BEHIND_AFTER", 0.3)
    monkeypatch.setattr(manager_module, "CHECK_PERIOD", 0.05)
    calls: list[tuple[str, bool]] = []

    async def main() -> None:
        manager, _ = make(tmp_path, config(tmp_path, ("a",)), calls)
        manager.start(9)
        await until(lambda: sorted(calls) == [("beta", True), ("n3", True)])
        peers.mode["beta"] = "hang"  # the push starts, and never ends
        (tmp_path / "a" / "new").write_text("y\n")
        await until(lambda: ("beta", False) in calls)
        assert peer_view(manager, "a", "beta")["lag_seconds"] > 0.3
        assert ("n3", False) not in calls
        peers.release.set()
        await until(lambda: calls[-1] == ("beta", True))
        await manager.stop()

    asyncio.run(main())
