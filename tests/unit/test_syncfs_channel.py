"""The active's side of the channels: real subprocesses (the applier, and processes that
misbehave), the waits of the sync points, degrade and block."""

from __future__ import annotations

import asyncio
import fcntl
import sys
import time
from pathlib import Path

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.syncfs import progress
from mosqit_failover.syncfs.buffers import AHEAD, PIPE_SIZE
from mosqit_failover.syncfs.channel import (
    Channel,
    ChannelLost,
    NoStandby,
    Replicator,
    commit_base,
)
from mosqit_failover.syncfs.mapping import Step
from mosqit_failover.syncfs.records import Create, Write

PY = sys.executable
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def applier(tmp: Path, name: str) -> Channel:
    root = tmp / name
    state = StateFile(tmp / f"{name}.json")
    state.save(3, Role.STANDBY)
    argv = [PY, "-m", "mosqit_failover.syncfs", "apply", "--root", str(root)]
    return Channel(name, [*argv, "--state", str(state.path)])


def liar(name: str, script: str) -> Channel:
    """A channel process that reads the hello, answers ready, then runs ``script``."""
    prelude = "import sys, time; sys.stdin.buffer.read(14); print('ready 3', flush=True)\n"
    return Channel(name, [PY, "-c", prelude + script])


CREATE = Step((Create(b"f", 0o644, 0, 0), Write(b"f", 0, b"data")))
CLOSE = Step((), sync=True)


def test_two_standbys_both_hold_a_change_when_its_sync_point_returns(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = applier(tmp_path, "a"), applier(tmp_path, "b")
        await a.start(3, 20)
        await b.start(3, 20)
        replicator = Replicator([a, b])
        await replicator.submit(CREATE)
        await replicator.submit(CLOSE)
        assert (tmp_path / "a" / "f").read_bytes() == b"data"
        assert (tmp_path / "b" / "f").read_bytes() == b"data"
        assert (a.acked, b.acked, replicator.degraded) == (1, 1, False)
        await replicator.close()

    asyncio.run(scenario())


def test_a_dropped_standby_stops_counting_commits_while_the_other_goes_on(
    tmp_path: Path,
) -> None:
    """The freshness the election compares (docs/sync-mode.md, "Freshness"): numbered
    from the mount's base, recorded by each standby before its acknowledgement."""

    def recorded(name: str) -> tuple[int, int] | None:
        path = progress.applied_path(tmp_path, str(tmp_path / name))
        return progress.decode(path.read_bytes())

    async def scenario() -> None:
        a, b = applier(tmp_path, "a"), applier(tmp_path, "b")
        await a.start(3, 20)
        await b.start(3, 20)
        base = commit_base()
        replicator = Replicator([], first=base)
        replicator.add(a)
        replicator.add(b)
        await replicator.submit(CREATE)
        await replicator.submit(CLOSE)
        assert recorded("a") == recorded("b") == (3, base + 1)  # before the close returned
        b.lose("cut for the test")
        await replicator.submit(CREATE)
        await replicator.submit(CLOSE)
        assert (recorded("a"), recorded("b")) == ((3, base + 2), (3, base + 1))
        status = replicator.status()
        assert (status["commits"], status["commit"]) == (2, base + 2)
        await replicator.close()

    asyncio.run(scenario())


def test_a_later_mount_numbers_its_commits_above_an_earlier_ones() -> None:
    first = commit_base()
    time.sleep(0.002)
    assert commit_base() >= first + 1000  # microseconds: far more than commits made


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ("print('I am not an applier', flush=True); time.sleep(5)", "I am not an applier"),
        ("print('x' * 200000, flush=True); time.sleep(5)", "too long"),
        ("sys.exit(3)", "the channel ended"),
        ("print('ok 1', flush=True); print('ok nope', flush=True)", "ok nope"),
        ("print('ok 99999', flush=True)", "acknowledged commit 99999 that was never sent"),
        ("print('ok 1', flush=True); print('ok 1', flush=True)", "must go up"),
    ],
)
def test_a_channel_that_answers_nonsense_is_lost_with_why(script: str, words: str) -> None:
    async def scenario() -> None:
        channel = liar("odd", script)
        lines: list[str] = []
        await channel.start(3, 20)
        replicator = Replicator([channel], log=lines.append)
        await replicator.submit(CLOSE)  # returns: degraded, not hung
        for _ in range(250):  # a lie after a good ack is caught when it arrives
            if not channel.alive:
                break
            await asyncio.sleep(0.02)
        assert not channel.alive
        assert words in channel.reason
        assert replicator.degraded
        assert any("standby channel odd lost" in line for line in lines)
        await replicator.close()

    asyncio.run(scenario())


def test_a_channel_that_cannot_start_says_why() -> None:
    async def scenario() -> None:
        with pytest.raises(ChannelLost, match="failed to execute /nonexistent/ssh: No such file"):
            await Channel("gone", ["/nonexistent/ssh"]).start(3, 5)
        with pytest.raises(ChannelLost, match="too long"):
            await Channel("long", [PY, "-c", "print('y' * 200000)"]).start(3, 5)
        silent = Channel("silent", [PY, "-c", "import time; time.sleep(10)"])
        with pytest.raises(ChannelLost, match=r"no answer within 0\.5s"):
            await silent.start(3, 0.5)

    asyncio.run(scenario())


def test_a_channel_that_ends_says_its_last_words() -> None:
    """What is said on stderr as the command ends is the reason, even from a child that
    says it 0.3 s after the command exited, its stdout long closed. (A full run once
    said "no answer (exit status 127)" for "failed to execute": the stderr reader was
    cancelled before it read what had arrived; `_end` now lets it finish.)"""
    late = (
        "import os, sys, time\n"
        "os.close(1)\n"
        "if os.fork() == 0:\n"
        "    time.sleep(0.3); os.write(2, b'ssh: connect to host beta: No route to host\\n')\n"
        "    os._exit(0)\n"
        "os._exit(255)\n"
    )

    async def scenario() -> None:
        with pytest.raises(ChannelLost, match="no answer \\(ssh: connect to host beta: No route"):
            await Channel("late", [PY, "-c", late]).start(3, 5)

    asyncio.run(scenario())


def test_one_standby_lost_the_other_still_waited_for(tmp_path: Path) -> None:
    async def scenario() -> None:
        good = applier(tmp_path, "good")
        bad = liar("bad", "time.sleep(30)")  # takes the stream, never acknowledges
        await good.start(3, 20)
        await bad.start(3, 20)
        replicator = Replicator([good, bad], ack_timeout=0.5)
        await replicator.submit(CREATE)
        started = time.monotonic()
        await replicator.submit(CLOSE)
        assert 0.4 < time.monotonic() - started < 5
        assert (good.alive, bad.alive) == (True, False)
        assert "no acknowledgement within 0.5s" in bad.reason
        assert (tmp_path / "good" / "f").read_bytes() == b"data"
        started = time.monotonic()
        await replicator.submit(CLOSE)  # the lost one is not waited for again
        assert time.monotonic() - started < 0.4
        await replicator.close()

    asyncio.run(scenario())


def test_block_mode_raises_after_block_timeout_and_resumes_when_a_standby_is_added(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        replicator = Replicator([], on_standby_loss="block", block_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(NoStandby, match="block_timeout"):
            await replicator.submit(CLOSE)
        assert 0.25 < time.monotonic() - started < 3
        await replicator.submit(Step((), sync=False))  # a plain write never blocks

        async def add_later() -> None:
            await asyncio.sleep(0.1)
            channel = applier(tmp_path, "back")
            await channel.start(3, 20)
            replicator.add(channel)

        replicator.block_timeout = 20
        adding = asyncio.create_task(add_later())
        await replicator.submit(CLOSE)  # returns once a caught-up standby is added
        await adding
        assert replicator.live[0].acked == replicator.seq
        await replicator.close()

    asyncio.run(scenario())


def test_degrade_mode_returns_at_once_with_no_standby() -> None:
    async def scenario() -> None:
        replicator = Replicator([], on_standby_loss="degrade")
        started = time.monotonic()
        await replicator.submit(CLOSE)
        assert time.monotonic() - started < 0.1
        assert replicator.degraded
        assert replicator.status()["degraded"] is True

    asyncio.run(scenario())


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="degrade, block"):
        Replicator([], on_standby_loss="maybe")


def test_a_channels_pipe_holds_a_whole_write() -> None:
    """One write moves a 1 MiB record, not 64 KiB of it per wake-up of the standby's end
    (ssh here: a process that does not widen the pipe itself, unlike the applier)."""

    async def scenario() -> None:
        channel = liar("ssh", "sys.stdin.buffer.read()")
        await channel.start(3, 20)
        assert channel._process is not None and channel._process.stdin is not None
        pipe = channel._process.stdin.transport.get_extra_info("pipe")
        assert fcntl.fcntl(pipe.fileno(), F_GETPIPE_SZ) >= PIPE_SIZE
        await channel.close()

    asyncio.run(scenario())


def test_a_standby_that_stops_reading_holds_a_few_records_then_is_lost() -> None:
    """The channel holds at most AHEAD bytes unsent: past that a write waits for the
    standby, which is lost once it took no data for ack_timeout (memory stays bounded)."""

    async def scenario() -> None:
        channel = liar("stuck", "time.sleep(30)")
        await channel.start(3, 20)
        replicator = Replicator([channel], ack_timeout=0.5)
        data = b"x" * (1 << 20)
        for i in range((AHEAD + PIPE_SIZE) // len(data) + 3):
            await replicator.submit(Step((Write(b"f", i * len(data), data),)))
            if not channel.alive:
                break
        assert not channel.alive
        assert "took no data for 0.5s" in channel.reason
        assert i >= AHEAD // len(data)  # it did run ahead by a few records first
        await replicator.close()

    asyncio.run(scenario())
