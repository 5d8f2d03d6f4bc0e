"""What the active's channel believes of a standby (breaker's findings on the channel).

1. A standby that promoted refuses the next commit (``refused: this node is ACTIVE ...``):
   proof of a split, not a lost standby. The sync point fails (NoStandby: EIO) whatever
   ``on_standby_loss``, the log and the status say why in one line, and every later sync
   point fails too (fenced for the rest of the mount's epoch).
2. An acknowledgement of a commit never sent (or not above the last one) loses the channel:
   it would claim durability the standby does not have.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync.receive import Refused, check_epoch
from mosqit_failover.syncfs.channel import Channel, NoStandby, Replicator, split_proof
from mosqit_failover.syncfs.mapping import Step
from mosqit_failover.syncfs.records import Create, Write

PY = sys.executable
CLOSE = Step((), sync=True)


def step(name: bytes) -> Step:
    return Step((Create(name, 0o644, 0, 0), Write(name, 0, b"acknowledged data")))


def applier(tmp: Path, state: StateFile) -> Channel:
    argv = [PY, "-m", "mosqit_failover.syncfs", "apply", "--root", str(tmp / "b")]
    return Channel("beta", [*argv, "--state", str(state.path)])


@pytest.mark.parametrize("mode", ["degrade", "block"])
def test_a_standby_that_promoted_does_not_let_the_old_active_acknowledge(
    tmp_path: Path, mode: str
) -> None:
    async def scenario() -> None:
        state = StateFile(tmp_path / "standby.json")
        state.save(3, Role.STANDBY)
        channel = applier(tmp_path, state)
        await channel.start(3, 20)
        lines: list[str] = []
        replicator = Replicator(
            [channel], on_standby_loss=mode, ack_timeout=5, block_timeout=30, log=lines.append
        )
        await replicator.submit(step(b"one"))
        await replicator.submit(CLOSE)  # fine: on the standby
        state.save(4, Role.ACTIVE)  # the standby promoted; the old active still streams
        await replicator.submit(step(b"two"))
        try:
            with pytest.raises(NoStandby, match="fenced: standby beta refused"):
                await replicator.submit(CLOSE)  # the close of "two" is not acknowledged
            started = time.monotonic()
            with pytest.raises(NoStandby, match="newer than ours"):
                await replicator.submit(CLOSE)  # and no later one, at once (no block wait)
            assert time.monotonic() - started < 1
        finally:
            await replicator.close()
        assert "ACTIVE" in channel.reason, channel.reason
        fenced = [line for line in lines if line.startswith("fenced:")]
        assert len(fenced) == 1 and "\n" not in fenced[0], lines
        assert "ACTIVE with epoch 4, newer than ours (3)" in fenced[0]
        assert "this node must demote" in fenced[0]
        shown = replicator.status()
        assert shown["fenced"] and "epoch 4" in str(shown["fenced"])

    asyncio.run(scenario())


def refusal(sender: int, own: int, role: Role) -> str:
    with pytest.raises(Refused) as caught:
        check_epoch(sender, own, role)
    return f"refused: {caught.value}"


def test_which_refusals_prove_a_newer_epoch() -> None:
    """Read from the receiver's own words (a rewording fails here, not in production)."""
    assert split_proof(refusal(3, 4, Role.ACTIVE), 3) is not None
    assert split_proof(refusal(5, 9, Role.STANDBY), 5) is not None
    # an old active that has not demoted yet (its epoch below ours) proves nothing of us
    assert split_proof(refusal(5, 4, Role.ACTIVE), 5) is None
    assert split_proof(refusal(5, 5, Role.ACTIVE), 5) is None
    assert split_proof("refused: No space left on device", 5) is None


def test_the_data_epoch_refusal_proves_a_newer_epoch_the_record_does_not(
    tmp_path: Path,
) -> None:
    """A standby that holds data of epoch 9 proves an active of epoch 9 existed: a mount
    of epoch 5 must stop acknowledging. Its record of the senders before does not: a
    sync key's holder can raise it (a helper's attack: one request with epoch 10^18 made
    every later active fence its mount and demote), so it only refuses, as a standby
    that cannot be reached would."""
    from mosqit_failover.effects.state import StateFile
    from mosqit_failover.sync import admitted

    with pytest.raises(Refused) as by_data:
        check_epoch(5, 0, Role.STANDBY, data_epoch=9)
    assert split_proof(f"refused: {by_data.value}", 5) == (
        "the standby knows epoch 9, newer than ours (5)"
    )
    assert split_proof(f"refused: {by_data.value}", 9) is None
    state = StateFile(tmp_path / "state.json")
    admitted.admit(state.path.parent, 9)
    with pytest.raises(admitted.OlderSender) as by_record:
        admitted.admit(state.path.parent, 5)
    assert split_proof(f"refused: {by_record.value}", 5) is None


def test_a_channel_that_did_not_start_because_of_a_newer_epoch_fences() -> None:
    async def scenario() -> None:
        script = "import sys; sys.stdin.buffer.read(14); print(sys.argv[1], flush=True)"
        channel = Channel("beta", [PY, "-c", script, refusal(5, 9, Role.STANDBY)])
        with pytest.raises(Exception, match="older than this node's 9"):
            await channel.start(5, 20)
        replicator = Replicator([], on_standby_loss="degrade")
        replicator.not_started(channel)
        with pytest.raises(NoStandby, match="knows epoch 9"):
            await replicator.submit(CLOSE)

    asyncio.run(scenario())


def test_an_acknowledgement_of_a_commit_never_sent_loses_the_channel() -> None:
    async def scenario() -> None:
        script = (
            "import sys, time; sys.stdin.buffer.read(14); print('ready 3', flush=True);"
            "print('ok 99999', flush=True); time.sleep(30)"
        )
        channel = Channel("liar", [PY, "-c", script])
        await channel.start(3, 20)
        replicator = Replicator([channel], on_standby_loss="block", block_timeout=1, ack_timeout=2)
        await asyncio.sleep(0.5)  # its lie has arrived
        try:
            for _ in range(3):  # nothing was applied anywhere: block mode must say EIO
                with pytest.raises(NoStandby):
                    await replicator.submit(CLOSE)
        finally:
            await replicator.close()
        assert not channel.alive
        assert "acknowledged commit 99999 that was never sent" in channel.reason

    asyncio.run(scenario())
