"""Reload with changed [[sync]] directories: SyncManager.reconfigure, no lab.

The peer is 127.0.1.12 / 127.0.2.12 on ssh port 1: every connection is
refused at once, so the real engines run (inotify watch, ssh master, backoff)
without sending anything, and their states show what they were asked to do.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.daemon import _reload_blockers
from mosqit_failover.sync import engine as engine_module
from mosqit_failover.sync.manager import SyncManager
from tests.unit.loopback_pair import LOOPBACK_PAIR


def config(tmp: Path, dirs: dict[str, str]) -> configuration.Config:
    """A pair config syncing ``tmp/NAME`` for each name, with extra TOML lines per dir."""
    text = LOOPBACK_PAIR.format(tmp=tmp)
    for name, extra in dirs.items():
        (tmp / name).mkdir(exist_ok=True)
        (tmp / name / "file").write_text("x\n")
        text += f'[[sync]]\npath = "{tmp / name}"\nssh_port = 1\nconnect_timeout = "0.5s"\n'
        text += extra + "\n"
    return configuration.parse(text)


def make(tmp: Path, dirs: dict[str, str]) -> tuple[SyncManager, list[str]]:
    notes: list[str] = []
    manager = SyncManager(config(tmp, dirs), "alpha", lambda t, _p: notes.append(t), tmp / "run")
    return manager, notes


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def states(manager: SyncManager) -> dict[str, Any]:
    return {Path(d["path"]).name: d for d in manager.status()["dirs"]}


def own_children() -> list[str]:
    """ssh or rsync processes started by this test process (there must be none left)."""
    out = subprocess.run(
        ["ps", "--ppid", str(os.getpid()), "-o", "args="],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line for line in out.splitlines() if "ssh" in line or "rsync" in line]


def test_sync_changes_no_longer_block_a_reload(tmp_path: Path) -> None:
    old = config(tmp_path, {"a": ""})
    assert _reload_blockers(old, config(tmp_path, {"b": "", "c": ""})) == []
    assert _reload_blockers(old, config(tmp_path, {})) == []


def test_not_running_only_takes_the_config(tmp_path: Path) -> None:
    async def main() -> None:
        manager, notes = make(tmp_path, {"a": ""})
        new = config(tmp_path, {"b": ""})
        assert manager.reconfigure(new) == []
        assert manager.config is new and not manager.running and notes == []
        manager.start(4)  # the next start pushes the new directories
        assert [e.sync.path for e in manager.engines] == [str(tmp_path / "b")]
        await manager.stop()

    asyncio.run(main())


def test_running_adds_removes_and_restarts_only_what_changed(tmp_path: Path) -> None:
    async def main() -> None:
        manager, notes = make(tmp_path, {"a": "", "b": "", "keep": ""})
        manager.start(7)
        await until(lambda: all(d["state"] == "waiting-for-peer" for d in states(manager).values()))
        engines = {Path(e.sync.path).name: e for e in manager.engines}
        tasks = dict(zip(engines, manager._tasks, strict=True))
        masters = set(manager._masters)

        said = manager.reconfigure(
            config(tmp_path, {"keep": "", "b": 'excludes = ["*.tmp"]', "c": ""})
        )

        assert said == [
            f"sync reconfigured (epoch 7): added {tmp_path / 'c'} (full sync first); stopped "
            f"{tmp_path / 'a'} (the copy on beta is left as it is); restarted {tmp_path / 'b'} "
            "(settings changed)"
        ]
        assert notes[-1] == said[0]
        now = {Path(e.sync.path).name: e for e in manager.engines}
        assert list(now) == ["keep", "b", "c"]  # the new config's order
        assert now["keep"] is engines["keep"] and not tasks["keep"].done()  # untouched
        assert now["b"] is not engines["b"] and now["b"].sync.excludes == ("*.tmp",)
        assert all(e.epoch == 7 for e in now.values())
        await asyncio.gather(*manager._retiring)
        assert tasks["a"].cancelled() and tasks["b"].cancelled()
        # the new engines start as a new engine does: a full sync first (kept while the
        # peer is unreachable), waiting for the peer meanwhile
        await until(lambda: states(manager)["c"]["state"] == "waiting-for-peer")
        await until(lambda: states(manager)["b"]["state"] == "waiting-for-peer")
        for name in ("b", "c"):
            assert states(manager)[name]["full_resync_pending"], states(manager)[name]
            assert "keeping a full resync" in str(states(manager)[name]["last_error"])
        assert states(manager)["keep"]["state"] == "waiting-for-peer"
        assert set(manager._masters) == masters  # same ssh settings: same masters

        assert manager.reconfigure(manager.config) == []  # nothing changed: nothing done
        await manager.stop()
        assert not manager.running and own_children() == []

    asyncio.run(main())


def test_removing_every_directory_then_stop_leaves_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        manager, _notes = make(tmp_path, {"a": "", "b": 'ssh_user = "sync"'})
        manager.start(2)
        await until(lambda: all(d["state"] == "waiting-for-peer" for d in states(manager).values()))
        assert len(manager._masters) == 4  # two ssh users x two peer addresses
        manager.reconfigure(config(tmp_path, {"a": ""}))
        await asyncio.gather(*manager._retiring)
        assert len(manager._masters) == 2  # the sync user's masters are closed
        manager.reconfigure(config(tmp_path, {}))
        assert not manager.running and manager.status()["dirs"] == []
        await manager.stop()  # what StopSync then does: idempotent
        assert own_children() == []

    asyncio.run(main())


class FakeEngine:
    """Records when it runs and when it is gone (after a slow cleanup, like a reaped rsync)."""

    log: ClassVar[list[tuple[str, str, int]]] = []
    emptied = False

    def __init__(self, sync: configuration.SyncDir, _masters: Any, epoch: int, _note: Any):
        self.sync, self.epoch, self.id = sync, epoch, len(FakeEngine.log)
        self.state = "starting"
        self._drained = asyncio.Event()

    def drain(self, persist: bool = False) -> None:  # like Engine.drain: nothing pending
        self._drained.set()

    def status(self, _now: float) -> dict[str, Any]:
        return {
            "path": self.sync.path,
            "state": self.state,
            "pending": 0,
            "full_resync_pending": False,
        }

    async def run(self) -> None:
        FakeEngine.log.append(("run", self.sync.path, self.id))
        try:
            await self._drained.wait()
        finally:
            await asyncio.shield(asyncio.sleep(0.2))
            FakeEngine.log.append(("gone", self.sync.path, self.id))


def test_a_changed_directory_gets_its_new_engine_only_after_the_old_one_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "Engine", FakeEngine)  # the manager imports it when used
    FakeEngine.log = []

    async def main() -> None:
        manager, _notes = make(tmp_path, {"a": ""})
        manager.start(1)
        await asyncio.sleep(0.05)
        manager.reconfigure(config(tmp_path, {"a": "bwlimit = 100"}))
        await asyncio.sleep(0.4)
        await manager.stop()

    asyncio.run(main())
    path = str(tmp_path / "a")
    assert [(what, p) for what, p, _ in FakeEngine.log] == [
        ("run", path),
        ("gone", path),  # the old engine finished its cleanup ...
        ("run", path),  # ... before the new one started
        ("gone", path),
    ]


def test_a_reload_that_changes_metrics_or_alerts_is_refused_naming_them(tmp_path: Path) -> None:
    """Both are set up at start: a reload used to say ok and apply neither (the breaker)."""
    old = config(tmp_path, {"a": ""})
    text = LOOPBACK_PAIR.format(tmp=tmp_path)
    metrics = configuration.parse(text + '[metrics]\nlisten = "127.0.0.1:9405"\n')
    mail = configuration.parse(text + '[alerts]\nmail_to = ["noc@example.com"]\n')
    old_plain = configuration.parse(text)
    assert _reload_blockers(old_plain, metrics) == ["metrics"]
    assert _reload_blockers(old_plain, mail) == ["alerts"]
    assert "metrics" not in _reload_blockers(old, config(tmp_path, {"a": ""}))


def test_a_reload_that_changes_the_probes_timing_is_refused_naming_it() -> None:
    """The echo probers are made at start with the interval, echo_timeout, misses and
    switch_timeout: a core judging (or starting on demand) their probes with reloaded
    values would promote late (breaker round 3). The heartbeats may change in place."""
    text = LOOPBACK_PAIR.format(tmp="/tmp")
    old = configuration.parse(text)

    def timed(lines: str) -> configuration.Config:
        return configuration.parse(text.replace("[vip]", f"[timing]\n{lines}\n\n[vip]", 1))

    assert _reload_blockers(old, timed("misses = 5")) == ["timing.misses"]
    assert _reload_blockers(old, timed('echo_timeout = "10ms"')) == ["timing.echo_timeout"]
    assert _reload_blockers(old, timed('interval = "200ms"')) == ["timing.interval"]
    assert _reload_blockers(old, timed('switch_timeout = "3s"')) == ["timing.switch_timeout"]
    assert _reload_blockers(old, timed('calm_heartbeat = "80ms"')) == []
    assert _reload_blockers(old, timed('peer_echo = "always"')) == []


def test_a_directory_a_reload_made_synchronous_is_pushed_and_mounted_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The reload's StartSync mounts nothing (``synchronous=()``, the core's decision): the
    new synchronous directory is pushed asynchronously until the next promotion, and
    ``status`` says so."""

    async def main() -> None:
        manager, _ = make(tmp_path, {"a": 'mode = "synchronous"'})
        manager.start(3, synchronous=())  # a reload on the ACTIVE node
        assert manager._synchronous() == []  # what mount() would mount: nothing
        assert [e.sync.path for e in manager.engines] == [str(tmp_path / "a")]
        (shown,) = manager.status()["dirs"]
        assert shown["next_promotion"] == "synchronous from the next promotion", shown
        assert shown["state"].endswith("(synchronous from the next promotion)"), shown
        await manager.stop()
        manager.start(4)  # the next promotion: every synchronous directory of the config
        assert manager._synchronous() == list(manager.config.sync)
        await manager.stop()

    asyncio.run(main())
