"""The dirty set of one directory and when it is due. Pure: every call takes ``now``.

Coalescing: while no batch is in flight, changes are collected until the
directory has been quiet for ``settle`` seconds, or until ``interval`` x
:data:`HOLD_SHARE` seconds (0.25 s at the default 1 s) have passed since the
oldest unsent change, whichever comes first. So a lone change goes out after
``settle``, and a stream or a storm that never quiets still goes out within a
quarter of the interval: the interval bounds the delay, it is never a fixed
sleep.

Changes that arrive while a batch is in flight have waited already: when that
batch is done (:meth:`Dirty.done`) they are due at once, without waiting for
quiet. So a steady stream goes out back to back, one batch in flight at a
time, each carrying what came during the one before. A change waits at most
the hold, then the batch in flight and its own batch: its lag stays within the
interval as long as a batch takes at most 3/8 of it (with the interval rule
alone, a stream's change waited up to the whole interval plus a batch, and
what came during a batch a whole interval more). One batch at a time also
bounds the rate of batches in a storm: never more than one per batch duration.

Most of a small batch's time is not the transfer but starting it: the ssh
session, the peer's forced command (a Python start) and rsync there, ~0.1 s
on an idle pair and several times that on a loaded one. So the engine starts
a batch's rsync when the batch's first change is seen, while the batch
waits for quiet or for the batch in flight (:func:`prestart_unfit` says when
it may carry the batch): it connects and waits for its list, which it gets
when the batch is due. A lone change then waits for the longer of the quiet
and the start, not their sum, and a stream's batches follow each other at
the pace of the transfers: a change waits for about two transfers instead
of two whole pushes. Each rsync started so carries the batch it was started
for, so no more sessions run than batches, but when a batch fails or a full
sync comes first.

A failed batch is given back (nothing is lost) and the next attempt waits for
an exponential backoff (``Backoff``), never a tight loop.

Renames (:class:`Move`) are kept in the order they happened, so the peer can
replay them before the batch; they only save bytes, never carry correctness:
a move also lists its source (gone: deleted on the peer) and its destination
(sent if the peer's rename did not happen), and a pending path inside a
renamed directory is listed at its new place too, so whatever the peer's
rename carried along that the source no longer has is deleted by the batch.
A rename of a file or directory created since the last batch was taken is
not kept for the peer: no batch has sent it yet, so the peer has nothing
of it to move, and replaying would cost one more ssh session per batch for
nothing (a mail spool writes each file in tmp/ and renames it into new/). Its
destination is sent whole, as any new file. Nor is the rename of a file written
since the last take: the peer's copy of it may be the part a batch caught while
it was being written, and replaying the rename would publish that part under
the final name until the batch's rsync replaces it (a helper saw a maildir's
new/m0 at 900,000 of its 1,000,000 bytes on a standby); sent whole, the
destination appears complete or not at all (rsync's temporary file and rename).
The same holds for a directory with a file written in it since the last take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SETTLE = 0.05
"""Quiet time after the last change before a batch goes out early."""

HOLD_SHARE = 0.25
"""Share of ``interval`` a change waits at most for quiet before its batch starts."""

PACE_SHARE = 0.15
"""Share of ``interval`` between the starts of two batches, at least (0.15 s at the
default 1 s): a stream's batches, whose rsync started ahead, would otherwise follow each
other every transfer (~0.05 s), each costing the peer a process start (~0.07 s of CPU)."""

PRESTART_MAX_AGE = 5.0
"""Seconds a session started ahead may wait for its list; an older one is ended unused
(the peer checked the sender's epoch and its own role when the session started: that
check stays as recent as the start of a batch in flight, never older than this)."""

MAX_MOVES = 5000
"""More renames than this pending at once are forgotten (their paths are still sent)."""


@dataclass(frozen=True)
class Move:
    """``src`` was renamed to ``dest`` (both relative); ``tree``: it is a directory."""

    src: str
    dest: str
    tree: bool = False


def prestart_unfit(age: float, alive: bool, full: bool, same_address: bool) -> str:
    """Why a session started ``age`` seconds ago for the next batch cannot carry it
    ("" if it can): it must still run, carry an incremental batch (the one it was
    started for: a full sync has other arguments), to the address that answered last."""
    if not alive:
        return "it ended before its list was ready"
    if full:
        return "a full sync is due instead"
    if not same_address:
        return "the peer is reached at another address now"
    if age > PRESTART_MAX_AGE:
        return f"it waited {age:.1f}s, more than {PRESTART_MAX_AGE:g}s"
    return ""


@dataclass(frozen=True)
class Batch:
    """What one rsync run must carry: paths (relative), trees to mirror, or everything;
    ``copies``: trees to send without deleting anything on the peer (a filesystem
    mounted or unmounted there: see :meth:`Dirty.add_copy`)."""

    paths: frozenset[str]
    trees: frozenset[str]
    full: bool
    since: float  # when the oldest change in it happened
    reason: str = ""
    moves: tuple[Move, ...] = ()  # renames to replay on the peer first, oldest first
    copies: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        return len(self.paths | self.trees | self.copies)


@dataclass
class Dirty:
    """Changed paths not yet on the peer, relative to the synced directory."""

    interval: float
    settle: float = SETTLE
    paths: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    copies: set[str] = field(default_factory=set)
    moves: list[Move] = field(default_factory=list)
    full_reason: str = ""
    first: float | None = None  # time of the oldest unsent change
    last: float | None = None  # time of the newest change
    backlog: bool = False  # what is pending waited for a batch in flight: due at once
    started: float | None = None  # when the last batch was taken (paces the next)
    fresh: set[str] = field(default_factory=set)  # created since the last take: not on the peer
    # written since the last take: the peer's copy may be a part caught mid-write
    written: set[str] = field(default_factory=set)

    def _touch(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def add(self, path: str, now: float, new: bool = False) -> None:
        """A path changed (created, written, deleted, moved away or attributes);
        ``new``: a file was just created there."""
        self.paths.add(path)
        self.written.add(path)
        if new:
            self.fresh.add(path)
        self._touch(now)

    def add_tree(self, path: str, now: float) -> None:
        """A directory appeared with contents (created or moved in): send all of it."""
        self.trees.add(path)
        self.fresh.add(path)
        self._touch(now)

    def add_copy(self, path: str, now: float) -> None:
        """A filesystem was mounted or unmounted at ``path``: send what is there now, but
        delete nothing on the peer for it (an unmount may be a mistake, as an unmounted
        source directory may; the full sync refuses to empty the peer's copy of that)."""
        self.copies.add(path)
        self._touch(now)

    def move(self, src: str, dest: str, tree: bool, now: float) -> None:
        """``src`` was renamed to ``dest`` inside the tree (a rename of something created
        or written since the last take, or of a directory with a file written in it,
        is not kept for the peer: see the module doc)."""
        inside = src + "/"
        written = src in self.written or (tree and any(p.startswith(inside) for p in self.written))
        self.paths.add(src)
        if tree:
            self.trees.add(dest)
        else:
            self.paths.add(dest)
        if src in self.fresh:
            self.fresh.discard(src)
            self.fresh.add(dest)
        elif written:
            self.fresh.add(dest)  # as a new file: sent whole, the peer's part deleted
        else:
            self.moves.append(Move(src, dest, tree))
            self._carry(self.moves[-1:])
            if len(self.moves) > MAX_MOVES:
                self.moves = []
        self._touch(now)

    def _carry(self, moves: list[Move]) -> None:
        """List pending paths inside renamed directories at their new places too."""
        for move in moves:
            if move.tree:
                old = move.src + "/"
                self.paths |= {
                    move.dest + p[len(move.src) :] for p in self.paths if p.startswith(old)
                }

    def need_full(self, reason: str, now: float) -> None:
        """Events were lost (overflow, lost watch, start): rescan the whole tree."""
        if not self.full_reason:
            self.full_reason = reason
        self._touch(now)

    @property
    def pending(self) -> int:
        return len(self.paths) + len(self.trees) + len(self.copies)

    @property
    def empty(self) -> bool:
        return not self.paths and not self.trees and not self.copies and not self.full_reason

    @property
    def hold(self) -> float:
        """The longest a change waits for quiet before its batch starts."""
        return self.interval * HOLD_SHARE

    @property
    def pace(self) -> float:
        """The least time between the starts of two batches."""
        return self.interval * PACE_SHARE

    def due(self) -> float | None:
        """When the next batch should go out, or None if nothing is dirty.

        A full resync, and changes that piled up while a batch was in flight, are
        due at once (``first``, which is never later than now); anything else after
        ``settle`` of quiet, at most ``interval`` x HOLD_SHARE after the oldest change.
        Either way not sooner than ``interval`` x PACE_SHARE after the last batch started."""
        if self.empty or self.first is None or self.last is None:
            return None
        if self.full_reason or self.backlog:
            due = self.first
        else:
            due = min(self.first + self.hold, self.last + self.settle)
        return due if self.started is None else max(due, self.started + self.pace)

    def done(self) -> None:
        """The batch in flight ended (sent or given back): whatever is pending now came
        (or came back) while it was in flight, and is due at once.

        The caller first adds the changes seen during the batch. Nothing pending:
        the next change starts a fresh wait for quiet."""
        self.backlog = not self.empty

    def lag(self, now: float) -> float:
        return 0.0 if self.first is None else max(0.0, now - self.first)

    def take(self, now: float | None = None) -> Batch:
        """Hand everything out and start afresh; ``now``: when the batch starts (the next
        one starts ``pace`` later at the soonest)."""
        batch = Batch(
            frozenset(self.paths),
            frozenset(self.trees),
            bool(self.full_reason),
            self.first if self.first is not None else 0.0,
            self.full_reason,
            tuple(self.moves),
            frozenset(self.copies),
        )
        self.paths, self.trees, self.copies, self.moves = set(), set(), set(), []
        self.full_reason, self.first, self.last = "", None, None
        self.backlog, self.fresh, self.written = False, set(), set()
        self.started = now
        return batch

    def give_back(self, batch: Batch, now: float) -> None:
        """A batch that did not reach the peer: merge it back, keeping its age.

        Its moves go before the newer ones; give back only moves the peer surely did
        not run (the caller drops the others: replaying a rename twice can be wrong)."""
        self.paths |= batch.paths
        self.written |= batch.paths  # what the peer has of them is unknown: sent whole
        self.trees |= batch.trees
        self.copies |= batch.copies
        self.moves = [*batch.moves, *self.moves]
        self._carry(self.moves)
        if len(self.moves) > MAX_MOVES:
            self.moves = []
        if batch.full and not self.full_reason:
            self.full_reason = batch.reason or "retry"
        self.first = batch.since if self.first is None else min(self.first, batch.since)
        self.last = now if self.last is None else self.last


@dataclass
class Backoff:
    """Exponential retry delay: base, 2 x base, ... up to cap; reset on success."""

    base: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return float(min(self.cap, self.base * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Polling:
    """Whether the engine polls (a full sync every ``period``) instead of watching, and
    its tries to watch the whole tree again (every ``retry``): a try is on trial for a
    ``period`` and ends the polling if no new cause came meanwhile. Pure: every call
    takes ``now``; :meth:`wake_at` says when the next one is due."""

    period: float
    retry: float
    on: bool = False
    _retry_at: float = math.inf
    _trial_until: float | None = None  # a new watch on trial: polling ends then
    _full_at: float = math.inf

    def cause(self, now: float) -> str:
        """A cause to poll: "started" (polling begins: say so), "trial failed" (the new
        watch met a cause too: say it quietly) or "" (polling already, said)."""
        self._retry_at = now + self.retry
        if self._trial_until is not None:
            self._trial_until = None
            return "trial failed"
        if self.on:
            return ""
        self.on = True
        return "started"

    def trial(self, now: float) -> str:
        """What the tries ask for now: "end" (the trial held: polling ends), "rewatch"
        (watch the tree anew; on trial from now) or ""."""
        if self._trial_until is not None and now >= self._trial_until:
            self.on, self._trial_until, self._retry_at = False, None, math.inf
            return "end"
        if self.on and self._trial_until is None and now >= self._retry_at:
            self._trial_until = now + self.period
            self._retry_at = now + self.retry  # the next try, if this one fails
            return "rewatch"
        return ""

    def no_trial(self) -> None:
        """The new watch did not start (the directory gone meanwhile): nothing on trial."""
        self._trial_until = None

    def full_due(self, now: float) -> bool:
        """Whether a polling full sync is due now (the first a period after polling began)."""
        if not self.on:
            self._full_at = math.inf
            return False
        if self._full_at == math.inf:
            self._full_at = now + self.period
        if now < self._full_at:
            return False
        self._full_at = now + self.period
        return True

    def wake_at(self) -> float:
        """The next moment any of these is due (inf: none)."""
        times = [self._full_at if self.on else math.inf]
        times.append(self._retry_at if self.on and self._trial_until is None else math.inf)
        times.append(self._trial_until if self._trial_until is not None else math.inf)
        return min(times)


@dataclass
class RootAttributes:
    """The synced directory's own attributes changed: a batch cannot send them without
    its entries (see :mod:`.listing`), so a full sync does, at most one every ``gap``
    (anyone who may write in the directory can change them) but on the last chance (the
    drain before a demotion). Pure: every call takes ``now``."""

    gap: float
    changed: bool = False
    _next_at: float = 0.0

    def due(self, now: float, last_chance: bool = False) -> bool:
        """Whether the full sync for a change goes now (and the gap starts)."""
        if not self.changed or not (last_chance or now >= self._next_at):
            return False
        self.changed = False
        self._next_at = now + self.gap
        return True

    def wake_at(self) -> float:
        return self._next_at if self.changed else math.inf
