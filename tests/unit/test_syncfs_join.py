"""The join of a standby under steady changes (no FUSE: the replicator and the joiner with
a writer that does what the file system does: the local change, then its records, inside
``Replicator.change``), with the real applier as the standby and rsync as the catch-up.

What is proven: a change made while the catch-up copies, or between the copy and the
channel's start, is neither missed (the standby would lack it) nor applied twice (a
rename replayed over the copy would be refused: out of step); a sync point that waits for
a standby does not keep the join waiting; the peers file's mistakes are one line each.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.syncfs import progress
from mosqit_failover.syncfs.channel import Replicator
from mosqit_failover.syncfs.join import Joiner, JoinRequest, PeersFileError, parse_requests
from mosqit_failover.syncfs.mapping import Step
from mosqit_failover.syncfs.records import Create, Rename, Write

PY = sys.executable
CLOSE = Step((), sync=True)


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.src, self.dst = tmp / "active", tmp / "standby"
        self.src.mkdir()
        self.dst.mkdir()
        state = StateFile(tmp / "state.json")
        state.save(3, Role.STANDBY)
        apply = [PY, "-m", "mosqit_failover.syncfs", "apply", "--root", str(self.dst)]
        self.channel = [*apply, "--state", str(state.path)]
        self.root_fd = os.open(self.src, os.O_RDONLY | os.O_DIRECTORY)
        self.lines: list[str] = []

    def request(self, pause_after_copy: float) -> JoinRequest:
        """rsync, then a pause: a change let through meanwhile would be on no standby."""
        rsync = f"rsync -a --delete {{under}}/ {self.dst}/ && sleep {pause_after_copy}"
        return JoinRequest("beta", 1, self.channel, ["sh", "-c", rsync])

    def joiner(self, replicator: Replicator) -> Joiner:
        return Joiner("/nonexistent", 3, replicator, self.root_fd, self.lines.append)

    async def spool(self, replicator: Replicator, name: str) -> None:
        """One spool file as a mail server writes it: create, write, close, rename."""
        temp, final = f"tmp/{name}".encode(), f"new/{name}".encode()
        async with replicator.change():
            (self.src / temp.decode()).write_bytes(name.encode() * 100)
            records = (Create(temp, 0o644, 0, 0), Write(temp, 0, name.encode() * 100))
            await replicator.submit(Step(records))
        async with replicator.change():
            await replicator.submit(CLOSE)
        async with replicator.change():
            os.rename(self.src / temp.decode(), self.src / final.decode())
            await replicator.submit(Step((Rename(temp, final),), sync=True))


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_changes_during_a_join_are_neither_missed_nor_applied_twice(tmp_path: Path) -> None:
    async def scenario() -> None:
        setup = Setup(tmp_path)
        for sub in ("tmp", "new"):
            (setup.src / sub).mkdir()
        replicator = Replicator([], on_standby_loss="degrade", ack_timeout=5)
        stop = asyncio.Event()
        written: list[str] = []

        async def writer() -> None:
            while not stop.is_set():
                name = f"m{len(written):04d}"
                await setup.spool(replicator, name)
                written.append(name)
                await asyncio.sleep(0.002)

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.3)  # files only the catch-up can bring
        before = len(written)
        await setup.joiner(replicator).join(setup.request(pause_after_copy=0.5))
        await asyncio.sleep(0.3)  # files through the channel
        stop.set()
        await task
        result = str(replicator.joins["beta"]["result"])
        assert result.startswith("joined"), (result, setup.lines)
        assert before > 5 and len(written) > before, (before, len(written))
        [channel] = replicator.live
        assert channel.alive and not replicator.degraded, channel.reason
        # its record shows the mount's count (the join's own sync point, then the writes)
        record = progress.applied_path(tmp_path, str(setup.dst)).read_bytes()
        assert progress.decode(record) == (3, replicator.seq)
        await replicator.close()
        assert tree(setup.dst) == tree(setup.src)
        assert len(tree(setup.src)) == len(written)

    asyncio.run(scenario())


def test_a_sync_point_waiting_for_a_standby_does_not_hold_the_join(tmp_path: Path) -> None:
    async def scenario() -> None:
        setup = Setup(tmp_path)
        for sub in ("tmp", "new"):
            (setup.src / sub).mkdir()
        replicator = Replicator([], on_standby_loss="block", block_timeout=20, ack_timeout=5)
        waiting = asyncio.create_task(setup.spool(replicator, "blocked"))
        await asyncio.sleep(0.3)  # its close waits for a standby (block mode)
        assert not waiting.done()
        started = time.monotonic()
        await setup.joiner(replicator).join(setup.request(pause_after_copy=0))
        assert time.monotonic() - started < 5, setup.lines
        await asyncio.wait_for(waiting, 5)  # acknowledged through the new channel
        await replicator.close()
        assert tree(setup.dst) == {"new/blocked": b"blocked" * 100}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[]", '{"epoch": N, "peers": [...]}'),
        ('{"epoch": 3, "peers": [1]}', "each peer must be an object"),
        ('{"epoch": 3, "peers": [{"name": "b", "request": "x"}]}', "whole-number request"),
        (
            '{"epoch": 3, "peers": [{"name": "b", "request": 1, "channel": "ssh b"}]}',
            "'channel' of 'b' must be a command line",
        ),
    ],
)
def test_a_malformed_peers_file_is_one_line(text: str, words: str) -> None:
    with pytest.raises(PeersFileError, match=words.replace("[", r"\[").replace("{", r"\{")):
        parse_requests(text, 3)


def test_a_peers_file_of_another_epoch_asks_nothing() -> None:
    entry = '{"name": "b", "request": 1, "channel": ["x"], "catch_up": ["y"]}'
    assert parse_requests(f'{{"epoch": 2, "peers": [{entry}]}}', 3) == []
    assert parse_requests(f'{{"epoch": 3, "peers": [{entry}]}}', 3) == [
        JoinRequest("b", 1, ["x"], ["y"])
    ]


def test_a_standby_joined_with_no_write_after_records_the_mounts_count(tmp_path: Path) -> None:
    """Without the join's own sync point it kept its count from before the drop (none
    here) until the next write, and ranked below its equals meanwhile."""

    async def scenario() -> None:
        setup = Setup(tmp_path)
        replicator = Replicator([], on_standby_loss="degrade", ack_timeout=5, first=7_000_000)
        await setup.joiner(replicator).join(setup.request(pause_after_copy=0))
        assert str(replicator.joins["beta"]["result"]).startswith("joined"), setup.lines
        record = progress.applied_path(tmp_path, str(setup.dst)).read_bytes()
        assert progress.decode(record) == (3, 7_000_001)
        await replicator.close()

    asyncio.run(scenario())
