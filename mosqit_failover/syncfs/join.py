"""A standby (re)joins the synchronous replication of a running mount.

The agent asks through the *peers file* (``mount --peers FILE``), which it replaces
atomically; the mount process reads it when it changes (looked at every
:data:`POLL` seconds)::

    {"epoch": 7, "peers": [{"name": "beta", "request": 1733205000123456789,
                            "channel": ["ssh", ...], "catch_up": ["rsync", ...]}]}

An entry of the mount's epoch, whose standby has no live channel, is tried once per
``request`` (the agent writes a new number to try again):

1. freeze the file system's changes (:meth:`.gate.Gate.frozen`): those in flight
   finish (their records sent), new ones wait;
2. run ``catch_up`` (an rsync of the whole directory to the standby, the agent's engine
   had brought it up to date just before, so it is a short delta), its words' :data:`UNDER`
   replaced by the directory *under* the mount (``/proc/PID/fd/N`` of this process's
   descriptor: through the mount the copy would wait for the freeze; a working directory
   there does not do, rsync reads its sources by their full path);
3. start ``channel`` (the standby accepts the epoch) and add it: it takes every record
   from here on, and counts for the sync points at once;
4. let the changes go on.

With no change between the copy and the channel's first record, the standby holds what
the directory holds: nothing missed, nothing applied twice. The writers wait meanwhile
(the whole join is bounded: ``ack_timeout`` for the changes in flight, ``--join-timeout``
for the copy, the channel's start timeout). The result goes to the status file
(``joins``: per standby, the request and ``joined`` or ``failed: WHY``) and one line to
stderr. A file that cannot be read or is malformed is one line and is otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from mosqit_failover.sync.proc import run_command
from mosqit_failover.syncfs.channel import Channel, ChannelLost, NoStandby, Replicator
from mosqit_failover.syncfs.mapping import Step

UNDER = "{under}"
"""In a catch-up's words: the directory under the mount (e.g. ``{under}/`` as rsync's source)."""

POLL = 0.5
"""How often the peers file is looked at (seconds)."""

MAX_PEERS_FILE = 1 << 20
"""Bytes: the agent writes a few hundred per standby."""

Log = Callable[[str], None]


class PeersFileError(Exception):
    """The peers file is not what the agent writes; the message says what is wrong."""


@dataclass(frozen=True)
class JoinRequest:
    name: str
    request: int
    channel: list[str]
    catch_up: list[str]


def _argv(entry: dict[str, object], key: str) -> list[str]:
    value = entry.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise PeersFileError(f"{key!r} of {entry.get('name')!r} must be a command line (a list)")
    if any("\0" in word for word in value):
        raise PeersFileError(f"{key!r} of {entry.get('name')!r} has a NUL byte in a word")
    return list(value)


def parse_requests(text: str, epoch: int) -> list[JoinRequest]:
    """The requests of ``epoch`` in the peers file's text (PeersFileError if malformed)."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise PeersFileError(f"not JSON: {error}") from None
    except RecursionError:
        raise PeersFileError("not JSON this reader takes: nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("peers"), list):
        raise PeersFileError('expected {"epoch": N, "peers": [...]}')
    if data.get("epoch") != epoch:
        return []  # another epoch's: not for this mount
    requests = []
    for entry in data["peers"]:
        if not isinstance(entry, dict):
            raise PeersFileError("each peer must be an object")
        name, request = entry.get("name"), entry.get("request")
        if not isinstance(name, str) or not name or not isinstance(request, int):
            raise PeersFileError("each peer needs a name and a whole-number request")
        requests.append(
            JoinRequest(name, request, _argv(entry, "channel"), _argv(entry, "catch_up"))
        )
    return requests


class Joiner:
    """Watches the peers file and joins the standbys it lists (see the module doc)."""

    def __init__(
        self,
        path: str,
        epoch: int,
        replicator: Replicator,
        root_fd: int,
        log: Log,
        start_timeout: float = 10.0,
        catch_up_timeout: float = 60.0,
    ) -> None:
        self.path = path
        self.epoch = epoch
        self.replicator = replicator
        self.root_fd = root_fd
        self.log = log
        self.start_timeout = start_timeout
        self.catch_up_timeout = catch_up_timeout
        self._seen: tuple[int, int, int] | None = None
        self._tried: dict[str, int] = {}  # the last request tried, per standby

    async def run(self) -> None:
        """Look at the peers file every POLL seconds, for ever (cancel to stop)."""
        while True:
            for request in self._new_requests():
                try:
                    await self.join(request)
                except (OSError, ValueError) as error:  # its command cannot even be run
                    self._answer(request, f"failed: {error}")
            await asyncio.sleep(POLL)

    def _new_requests(self) -> list[JoinRequest]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return []
        except OSError as error:
            self.log(f"cannot read the peers file {self.path}: {error.strerror or error}")
            return []
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return []
        self._seen = seen
        try:
            requests = parse_requests(self._read(), self.epoch)
        except (OSError, PeersFileError) as error:
            self.log(f"the peers file {self.path} is ignored: {error}")
            return []
        return [r for r in requests if self._tried.get(r.name) != r.request]

    def _read(self) -> str:
        """The peers file's text, if it is one the agent wrote: a regular file (never a
        FIFO that would block the file system's loop, nor a symlink), owned by this
        process's user and writable by nobody else (its commands run as root), of a
        sane size; else OSError or PeersFileError saying which."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PeersFileError("not a regular file")
            if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                raise PeersFileError(
                    f"owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}: "
                    "it must be this user's and writable by nobody else"
                )
            if info.st_size > MAX_PEERS_FILE:
                raise PeersFileError(f"{info.st_size} bytes, more than {MAX_PEERS_FILE}")
            return os.read(fd, MAX_PEERS_FILE + 1).decode("utf-8", "replace")
        finally:
            os.close(fd)

    def _answer(self, request: JoinRequest, result: str) -> None:
        self.replicator.joins[request.name] = {"request": request.request, "result": result}
        self.log(f"standby {request.name} (request {request.request}): {result}")
        self.replicator.on_change()

    async def join(self, request: JoinRequest) -> None:
        """Catch the standby up under the freeze and add its channel; the result to
        ``replicator.joins`` and one line."""
        self._tried[request.name] = request.request
        replicator = self.replicator
        if any(c.name == request.name for c in replicator.live):
            result = "joined (its channel was live already)"
        elif replicator.fenced is not None:
            result = f"failed: fenced ({replicator.fenced})"
        else:
            result = await self._join(request)
        self._answer(request, result)

    async def _join(self, request: JoinRequest) -> str:
        replicator = self.replicator
        started = time.monotonic()
        try:
            async with replicator.gate.frozen(replicator.ack_timeout):
                held = time.monotonic()
                problem = await self._catch_up(request.catch_up)
                if problem:
                    return f"failed: the catch-up {problem}"
                copied = time.monotonic()
                channel = Channel(request.name, request.channel)
                try:
                    await channel.start(self.epoch, self.start_timeout)
                except ChannelLost as error:
                    if channel.split is not None:
                        replicator.not_started(channel)  # a newer epoch: fenced
                    return f"failed: its channel did not start: {error}"
                replicator.add(channel)
        except TimeoutError:
            return f"failed: changes still in flight after {replicator.ack_timeout:g}s"
        done = time.monotonic()
        # an empty sync point: every standby records the mount's count now, the one
        # just joined too, which would otherwise show its count from before it was
        # dropped until the next write, below its equals (docs/sync-mode.md, "Freshness")
        with contextlib.suppress(NoStandby):
            await replicator.submit(Step(sync=True))
        return (
            f"joined: caught up in {copied - held:.2f}s, changes held {done - held:.2f}s "
            f"(waited {held - started:.2f}s for those in flight); "
            f"{len(replicator.live)} standby(s) synchronous"
            + ("" if replicator.degraded else ", no longer degraded")
        )

    async def _catch_up(self, argv: list[str]) -> str:
        """Run the catch-up on the directory under the mount; "" or what went wrong."""
        under = f"/proc/{os.getpid()}/fd/{self.root_fd}"
        argv = [word.replace(UNDER, under) for word in argv]
        code, _, err = await run_command(argv, None, self.catch_up_timeout)
        if code == 0:
            return ""
        text = " | ".join(err.strip().splitlines()[-3:]) or "no message"
        return f"exited {code}: {text}"
