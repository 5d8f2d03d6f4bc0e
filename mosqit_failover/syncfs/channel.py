"""The active node's side of the replication channels, and the waits of the sync points.

A :class:`Channel` is one subprocess that reads the record stream (:mod:`.stream`) on its
stdin and answers on its stdout (:mod:`.apply`'s protocol): in production ssh to a
standby's forced command, in tests the applier itself. :class:`Replicator` sends every
step's records to every live channel, in the order of the local operations, and makes a
sync point wait until each live channel acknowledged its :class:`~.records.Commit`.

A channel is lost when its process exits, refuses (stale epoch, out of step, full disk),
or does not answer a commit or take data within ``ack_timeout``; it is killed and never
used again (a standby that missed records must catch up before it may take them again:
the agent's asynchronous engine does that, then :meth:`Replicator.add` a new channel).
With no live channel left, ``on_standby_loss``:

- ``"degrade"``: operations return after the local change; :attr:`Replicator.degraded`;
- ``"block"``: a sync point waits up to ``block_timeout`` for a channel to be added, then
  fails with :class:`NoStandby` (the file system answers EIO). The local change is done
  either way; EIO says it is not on any standby.

Any lost channel makes the directory ``degraded`` (some standby misses writes), until a
caught-up standby's channel replaces it (:meth:`Replicator.add`, :mod:`.join`).

A refusal that proves a newer epoch exists (the standby is ACTIVE with a newer epoch, or
says ours is older than its own: :func:`split_proof`) is not a lost standby but a split:
this node is no longer the active. The replicator is then *fenced*: every sync point
fails with :class:`NoStandby` (EIO) whatever ``on_standby_loss``, for the rest of the
mount (its epoch), and the status says why (``fenced``).

A standby's acknowledgements are checked: ``ok N`` for a commit never sent to it, or not
above the last one, loses the channel (an ack it had not earned would claim durability).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from mosqit_failover.deadlines import within
from mosqit_failover.sync.proc import ORPHAN_GUARD, STDERR_KEEP
from mosqit_failover.syncfs.buffers import AHEAD, widen_pipe
from mosqit_failover.syncfs.gate import Gate
from mosqit_failover.syncfs.mapping import Step
from mosqit_failover.syncfs.records import Commit, Hello
from mosqit_failover.syncfs.stream import HEADER, encode, encode_all

Log = Callable[[str], None]
MODES = ("degrade", "block")
STDERR_DRAIN = 1.0  # seconds an ended channel's stderr is read on for its last words


# the epoch guard's refusals (sync/receive.check_epoch), as the applier words them, from
# the line's start: other refusals quote file names, which anyone writing there chooses
_ACTIVE = re.compile(r"refused: this node is ACTIVE \(epoch (\d+)\); it takes no sync")
_OLDER = re.compile(r"refused: the sender's epoch (\d+) is older than this node's (\d+): ")
# ... and older than the data it holds (sync/receive.check_epoch): its agent recorded
# that epoch from an active's authenticated heartbeat. Not the receiver's record of the
# senders before (sync/admitted.py): anyone holding the sync key can raise that one, and
# as proof it would make every active fence its mount and demote, for good
_OLDER_DATA = re.compile(
    r"refused: the sender's epoch (\d+) is older than the data this node holds \(epoch (\d+),"
)

_HOLDING: ContextVar[bool] = ContextVar("holding_the_gate", default=False)
"""Whether this task's file system operation still holds the replicator's gate."""


def split_proof(refusal: str, epoch: int) -> str | None:
    """Why a standby's ``refused: ...`` line proves that a node with a newer epoch than
    ``epoch`` exists (this node is no longer the active), or None if it does not."""
    active = _ACTIVE.match(refusal)
    if active and int(active.group(1)) > epoch:
        return f"the standby is ACTIVE with epoch {active.group(1)}, newer than ours ({epoch})"
    for pattern in (_OLDER, _OLDER_DATA):
        older = pattern.match(refusal)
        if older and int(older.group(2)) > epoch:
            return f"the standby knows epoch {older.group(2)}, newer than ours ({epoch})"
    return None


class ChannelLost(Exception):
    """A channel cannot take records (any more); the message says why."""


class NoStandby(Exception):
    """``block`` mode: no standby acknowledged within ``block_timeout``."""


@dataclass(frozen=True)
class ChannelState:
    name: str
    alive: bool
    acked: int
    reason: str


class Channel:
    """One replication subprocess (``argv``, run without a shell, killed with us)."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.alive = False
        self.reason = "not started"
        self.acked = 0
        self.sent = 0  # the last commit number sent: a larger ack is a lie
        self.split: str | None = None  # set by a refusal that proves a newer epoch
        self.epoch = 0
        self._process: asyncio.subprocess.Process | None = None
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stderr_reader: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr = b""
        self.on_lost: Callable[[Channel], None] = lambda channel: None

    def state(self) -> ChannelState:
        return ChannelState(self.name, self.alive, self.acked, self.reason)

    async def start(self, epoch: int, timeout: float) -> None:
        """Start the process and have the standby accept ``epoch``; else ChannelLost."""
        self.epoch = epoch
        try:
            process = await asyncio.create_subprocess_exec(
                *ORPHAN_GUARD,
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            self.reason = f"cannot run {self.argv[0]}: {error.strerror or error}"
            raise ChannelLost(self.reason) from None
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        pipe = process.stdin.transport.get_extra_info("pipe")
        if pipe is not None and not pipe.closed:  # closed: the process is gone already
            widen_pipe(pipe.fileno())
        # the mount may run this far ahead of the standby's reading before a write waits
        # (drain): a few whole records, not 64 KiB (the loss of a standby that stops
        # reading is still seen at the next sync point's ack_timeout, or by drain)
        process.stdin.transport.set_write_buffer_limits(high=AHEAD)
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        self._tasks.append(self._stderr_reader)
        process.stdin.write(HEADER + encode(Hello(epoch)))
        try:
            line = await within(process.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
            self._stderr += f"no answer within {timeout:g}s".encode()
        except ValueError:  # a line longer than the stream's limit: not our applier
            line = b"an answer too long to be the applier's"
        text = line.decode("utf-8", "replace").strip()
        if text != f"ready {epoch}":
            await self._end()
            self.reason = self._why(text)
            raise ChannelLost(self.reason)
        self.alive = True
        self.reason = ""
        self._reader = asyncio.create_task(self._read_acks())
        self._tasks.append(self._reader)

    def _why(self, text: str) -> str:
        if text.startswith("refused:"):
            self.split = split_proof(text, self.epoch)
            return text
        err = self._stderr.decode("utf-8", "replace").strip().splitlines()
        code = self._process.returncode if self._process else None
        detail = " | ".join(err[-3:]) or (f"exit status {code}" if code is not None else "")
        return f"{text or 'no answer'}" + (f" ({detail})" if detail else "")

    async def _last_words(self) -> None:
        """Once the process ended: what it said on stderr is the reason (ssh's "failed to
        execute"), and its reader may not have read it yet (a full run once lost it).
        A child that keeps stderr open is not waited for long."""
        if self._stderr_reader is not None:
            with contextlib.suppress(TimeoutError):
                await within(asyncio.shield(self._stderr_reader), STDERR_DRAIN)

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while chunk := await self._process.stderr.read(4096):
            self._stderr = (self._stderr + chunk)[-STDERR_KEEP:]

    async def _read_acks(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        reason = ""
        while True:
            try:
                line = await self._process.stdout.readline()
            except ValueError:
                reason = "the standby sent a line too long to be an acknowledgement"
                break
            if not line:
                with contextlib.suppress(TimeoutError):
                    await within(self._process.wait(), 2.0)
                    await self._last_words()
                reason = self._why("the channel ended")
                break
            text = line.decode("utf-8", "replace").strip()
            word, _, rest = text.partition(" ")
            if word == "ok" and rest.isdigit():
                reason = self._unearned(int(rest))
                if reason:
                    break
                self.acked = int(rest)
                self._wake()
            else:
                reason = self._why(text)
                break
        self.lose(reason)

    def _unearned(self, seq: int) -> str:
        """Why an acknowledgement of commit ``seq`` cannot be believed ("" if it can)."""
        if seq > self.sent:
            return (
                f"the standby acknowledged commit {seq} that was never sent "
                f"(the last sent is {self.sent})"
            )
        if seq <= self.acked:
            return (
                f"the standby acknowledged commit {seq} after {self.acked} "
                "(acknowledgements must go up)"
            )
        return ""

    def _wake(self) -> None:
        keep = []
        for seq, future in self._waiters:
            if seq <= self.acked or not self.alive:
                if not future.done():
                    future.set_result(self.alive)
            else:
                keep.append((seq, future))
        self._waiters = keep

    def lose(self, reason: str) -> None:
        """Never use this channel again (kill its process); waiters get False."""
        if not self.alive:
            return
        self.alive = False
        self.reason = reason or "lost"
        self._wake()
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        self.on_lost(self)

    def send(self, data: bytes) -> None:
        if not self.alive or self._process is None or self._process.stdin is None:
            return
        # a pipe the standby closed: its reader sees why (the refusal line, or the exit)
        # and loses the channel; a wait for an ack ends then, or at ack_timeout
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            self._process.stdin.write(data)

    def commit(self, seq: int) -> None:
        """Send commit ``seq`` (the standby acknowledges it once all before it is durable)."""
        if self.alive:
            self.sent = seq
            self.send(encode(Commit(seq)))

    async def drain(self, timeout: float) -> None:
        if not self.alive or self._process is None or self._process.stdin is None:
            return
        try:
            await within(self._process.stdin.drain(), timeout)
        except TimeoutError:
            self.lose(f"the standby took no data for {timeout:g}s")
        except (BrokenPipeError, ConnectionResetError) as error:
            await self._reader_says(timeout)  # the standby's own words first
            self.lose(self._why(f"cannot write to the channel: {error}"))

    async def _reader_says(self, timeout: float) -> None:
        """Give the ack reader up to ``timeout`` to finish (and lose with its reason)."""
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await within(asyncio.shield(self._reader), timeout)

    async def wait(self, seq: int, timeout: float) -> bool:
        """Whether the standby acknowledged commit ``seq`` (False: the channel is lost)."""
        if self.acked >= seq:
            return True
        if not self.alive:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        try:
            return await within(asyncio.shield(future), timeout)
        except TimeoutError:
            self.lose(f"no acknowledgement within {timeout:g}s")
            return False

    async def _end(self) -> None:
        process = self._process
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.close()
            try:
                await within(process.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await self._last_words()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    async def close(self) -> None:
        """End the stream cleanly (the standby sees EOF after its last commit)."""
        was = self.alive
        self.alive = False
        self._wake()
        await self._end()
        if was:
            self.reason = "closed"


def commit_base() -> int:
    """Where a new mount starts numbering its commits: microseconds since this node
    booted. Standbys compare the numbers of one epoch's stream (the active ranks them by
    it, docs/sync-mode.md, "Freshness"); should a mount of the same epoch start again on
    this node, its numbers go on above the last one's (a commit takes far longer than a
    microsecond), and no clock step can move them back."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000


class Replicator:
    """Sends each step to every live channel; a sync step waits for all of them."""

    def __init__(
        self,
        channels: Sequence[Channel],
        on_standby_loss: str = "degrade",
        block_timeout: float = 10.0,
        ack_timeout: float = 10.0,
        log: Log = lambda line: None,
        on_change: Callable[[], None] = lambda: None,
        first: int = 0,
    ) -> None:
        """``first``: the commit number before the first commit (:func:`commit_base`)."""
        if on_standby_loss not in MODES:
            raise ValueError(f"on_standby_loss must be one of {', '.join(MODES)}")
        self.channels: list[Channel] = []
        self.on_standby_loss = on_standby_loss
        self.block_timeout = block_timeout
        self.ack_timeout = ack_timeout
        self.log = log
        self.on_change = on_change
        self.first = self.seq = first
        self.lost = 0
        self.fenced: str | None = None
        self.joins: dict[str, dict[str, object]] = {}  # :mod:`.join`'s results, per standby
        self.gate = Gate()
        self._added = asyncio.Event()
        for channel in channels:
            self._watch(channel)

    def _watch(self, channel: Channel) -> None:
        # a new channel to a standby replaces the lost one in the list (and in `degraded`)
        self.channels = [c for c in self.channels if c.alive or c.name != channel.name]
        channel.on_lost = self._on_lost
        self.channels.append(channel)

    def not_started(self, channel: Channel) -> None:
        """A channel that did not start (its reason set): listed, degraded, maybe fenced."""
        self.lost += 1
        self.channels.append(channel)
        self._fence_on(channel)

    def _fence_on(self, channel: Channel) -> None:
        if channel.split is None or self.fenced is not None:
            return
        self.fenced = f"standby {channel.name} refused: {channel.split}: a newer active exists"
        self.log(
            f"fenced: {self.fenced}; every sync point now fails with EIO (whatever "
            f"on_standby_loss) for the rest of epoch {channel.epoch}: this node must demote"
        )
        self._added.set()  # a sync point waiting for a standby fails now, not at its deadline
        self.on_change()

    def _on_lost(self, channel: Channel) -> None:
        self.lost += 1
        self._fence_on(channel)
        left = len(self.live)
        self.log(
            f"standby channel {channel.name} lost: {channel.reason}; "
            + (
                f"{left} standby(s) still synchronous; degraded"
                if left
                else f"no standby left: degraded ({self.on_standby_loss})"
            )
        )
        self.on_change()

    @property
    def live(self) -> list[Channel]:
        return [c for c in self.channels if c.alive]

    @property
    def degraded(self) -> bool:
        """Some standby misses writes (its channel lost and not replaced, or none is up)."""
        return not self.live or any(not c.alive for c in self.channels)

    def add(self, channel: Channel) -> None:
        """A started channel to a standby that holds everything up to now (caught up, with
        no change in flight: :meth:`Gate.frozen`): every commit so far counts as its own."""
        channel.sent = channel.acked = self.seq
        self._watch(channel)
        self._added.set()
        self.on_change()

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        """Around one file system operation that changes something: held from before its
        local change until its records are sent (:meth:`submit` lets go then, before any
        wait for an acknowledgement), so a join's catch-up (under :meth:`Gate.frozen`)
        sees each change either with its records already sent or not at all."""
        await self.gate.enter()
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            self._let_go()
            _HOLDING.reset(token)

    def _let_go(self) -> None:
        if _HOLDING.get():
            _HOLDING.set(False)
            self.gate.leave()

    async def submit(self, step: Step) -> None:
        """Send ``step``; for a sync step return once every live channel acknowledged it."""
        live = self.live
        if step.records:
            pieces = encode_all(step.records)  # a Write's data as the kernel gave it
            for channel in live:
                for piece in pieces:
                    channel.send(piece)
        if not step.sync:
            self._let_go()
            for channel in live:
                await channel.drain(self.ack_timeout)
            return
        if self.fenced is not None:
            self._let_go()
            raise NoStandby(f"fenced: {self.fenced}")
        deadline: float | None = None
        while True:
            live = self.live
            self.seq += 1
            seq = self.seq
            for channel in live:
                channel.commit(seq)
            self._let_go()
            results = await asyncio.gather(*(c.wait(seq, self.ack_timeout) for c in live))
            if self.fenced is not None:
                raise NoStandby(f"fenced: {self.fenced}")
            if any(results) or self.on_standby_loss == "degrade":
                return
            if deadline is None:
                deadline = time.monotonic() + self.block_timeout
            await self._wait_for_standby(deadline)  # then commit again through it

    async def _wait_for_standby(self, deadline: float) -> None:
        """Until a channel is added (:meth:`add`), or NoStandby at ``deadline``."""
        while not self.live and self.fenced is None:
            self._added.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoStandby(
                    f"no standby acknowledged within block_timeout ({self.block_timeout:g}s)"
                )
            with contextlib.suppress(TimeoutError):
                await within(self._added.wait(), left)

    def status(self) -> dict[str, object]:
        """What the agent shows: degraded or not, and each channel's state."""
        return {
            "degraded": self.degraded,
            "fenced": self.fenced,
            "on_standby_loss": self.on_standby_loss,
            "commits": self.seq - self.first,
            "commit": self.seq,
            "channels": [
                {"name": c.name, "alive": c.alive, "acked": c.acked, "reason": c.reason}
                for c in self.channels
            ],
            "joins": self.joins,
        }

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
