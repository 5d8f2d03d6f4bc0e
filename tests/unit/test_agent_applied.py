"""The standby agent hands its core what its synchronous appliers last made durable
(docs/sync-mode.md, "Freshness"): read in each probe slot, fed only when it changed,
not at all on a node without synchronous directories."""

from __future__ import annotations

from pathlib import Path

from mosqit_failover import config as configuration
from mosqit_failover.authkeys import generate_secret_text, parse_secret_text
from mosqit_failover.core import Core
from mosqit_failover.daemon import Agent
from mosqit_failover.events import Event, Inventory, SyncApplied
from mosqit_failover.journal import DecisionLog
from mosqit_failover.syncfs import progress
from tests.unit.loopback_pair import LOOPBACK_PAIR


def standby_agent(tmp_path: Path, sync: str) -> tuple[Agent, list[Event]]:
    cfg = configuration.parse(LOOPBACK_PAIR.format(tmp=tmp_path) + sync)
    built = Agent(cfg, "beta", parse_secret_text(generate_secret_text()), DecisionLog(False))
    built._core = Core(cfg, "beta", Inventory(data_epoch=4), 0.0)
    fed: list[Event] = []
    built.feed = fed.append  # type: ignore[method-assign,assignment]
    return built, fed


SYNCHRONOUS = """
[[sync]]
path = "{tmp}/spool"
mode = "synchronous"
[[sync]]
path = "{tmp}/plain"
"""


def test_each_new_record_reaches_the_core_once(tmp_path: Path) -> None:
    built, fed = standby_agent(tmp_path, SYNCHRONOUS.format(tmp=tmp_path))
    assert built._applied.paths == [progress.applied_path(tmp_path / "state", f"{tmp_path}/spool")]
    built._note_applied()
    assert fed == []  # no applier has recorded anything yet
    recorder = progress.AppliedRecorder(built._applied.paths[0])
    recorder.record(4, 1_000_007)
    built._note_applied()
    built._note_applied()
    assert fed == [SyncApplied(((4, 1_000_007),))]
    recorder.record(4, 1_000_009)
    built._note_applied()
    assert fed[-1] == SyncApplied(((4, 1_000_009),)) and len(fed) == 2
    recorder.close()


def test_nothing_is_read_without_a_synchronous_directory(tmp_path: Path) -> None:
    built, fed = standby_agent(tmp_path, f'[[sync]]\npath = "{tmp_path}/plain"\n')
    assert built._applied.paths == []
    built._note_applied()
    assert fed == []


def test_a_reload_that_leaves_no_synchronous_directory_clears_the_count(tmp_path: Path) -> None:
    """The breaker's finding 6: the standby kept showing its last count (and sending
    version 4) for ever."""
    built, fed = standby_agent(tmp_path, SYNCHRONOUS.format(tmp=tmp_path))
    progress.AppliedRecorder(built._applied.paths[0]).record(4, 9)
    built._note_applied()
    built._applied = progress.AppliedReader([])  # what _reload builds from the new config
    built._note_applied()
    built._note_applied()
    assert fed == [SyncApplied(((4, 9),)), SyncApplied(())]
