"""The synchronous mode's mount process, seen from the agent (docs/sync-mode.md).

One :class:`SyncMount` per ``mode = "synchronous"`` directory, on the ACTIVE node only.
It starts ``python3 -m mosqit_failover.syncfs mount DIR --epoch N --channel ...
--status FILE``, waits until the status file says ``up`` (the mount is in place) or
``failed`` (its one line says why), watches the process (a pidfd: its exit is seen at
once) and the status file (degraded, each standby's channel), and stops it (SIGTERM: it
unmounts and ends its channels) with ``umount -l`` as the fallback.

Where it runs: under systemd, a transient service of its own (``systemd-run``,
:data:`UNIT_PREFIX`): the agent's unit has a private mount namespace
(ProtectKernelModules) whose mounts the services would not see, and a device policy
(ProtectClock) that denies /dev/fuse; a service of its own also outlives an agent restart
(the restarted agent adopts a mount of its epoch, as it adopts the VIP) and logs to the
journal under its own name. Elsewhere (a test, an agent run by hand) it is a process of its
own session (``setsid --fork``), its stderr the agent's. The lazy unmount runs where the
mount lives: under systemd in PID 1's mount namespace and root (``nsenter --target=1
--mount --root``: the agent's own namespace is a copy, and a container's PID 1 may be
chrooted), elsewhere in the agent's own.

This module and :mod:`.proc` are the only ones of the sync that start processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mosqit_failover.config import SyncDir
from mosqit_failover.deadlines import within
from mosqit_failover.effects import EffectError
from mosqit_failover.sync.proc import run_command
from mosqit_failover.syncfs import mountinfo

UNIT_PREFIX = "mosqit-syncfs-"
POLL = 0.5
"""How often the status file is read while the mount runs (seconds)."""
HEALTH_PERIOD = 2.0
"""How often a lookup through the mount checks that the file system answers (seconds)."""
HANG_MARGIN = 10.0
"""A lookup unanswered for this long past the longest legitimate wait (ack_timeout, plus
block_timeout in block mode: every worker may be waiting for a standby) is a hang."""
STOP_TIMEOUT = 15.0
"""How long a SIGTERMed mount may take to unmount and end its channels."""
MARK = "mosqit_failover.syncfs"
"""In the command line of every mount process (an adopted pid must be one)."""

Note = Callable[[str, int], None]


class MountError(EffectError):
    """The mount did not come up; the message is its own line (why, and what to do)."""


def _systemd() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemd-run") is not None


def _mount_table() -> str:
    """Where the mount lives: under systemd PID 1's namespace (the agent's is a copy)."""
    return "/proc/1/mountinfo" if _systemd() else mountinfo.SELF


def recorded_directories(runtime_dir: Path) -> set[str]:
    """The directories the status files in ``runtime_dir`` name: every synchronous mount an
    agent of this node started (they outlive the agent, and the directory may have left
    the config since)."""
    out = set()
    for status in runtime_dir.glob("syncfs-????????????.json"):  # not the .peers.json files
        with contextlib.suppress(OSError, ValueError):
            view = json.loads(status.read_text())
            directory = view.get("directory") if isinstance(view, dict) else None
            if isinstance(directory, str) and directory.startswith("/"):
                out.add(directory)
    return out


def _ended(pid: int) -> bool:
    """The mount process ``pid`` has exited (a zombie counts: an orphan is reaped by PID 1
    whenever it gets to it; its command line empties while it is still exiting)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    command = _cmdline(pid)
    return state in ("Z", "X") or (bool(command) and MARK not in command)


def _cmdline(pid: int) -> str:
    return " ".join(_argv(pid))


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode("utf-8", "surrogateescape").split("\0")[:-1]


class SyncMount:
    """The mount process of one synchronous directory (see the module doc).

    ``on_change(mount)`` is called after each change of the status file (a channel
    lost, degraded); ``on_exit(mount, detail)`` when the process ended without being
    asked to (a crash, a SIGKILL): the directory is then already unmounted lazily;
    ``on_lost(mount, detail)`` once when, the process running, our file system is no
    longer the top mount of the directory (an operator's ``umount -l``, or a mount put
    over it): new opens there reach something unreplicated. The caller stops it.
    """

    def __init__(
        self,
        sync: SyncDir,
        runtime_dir: Path,
        note: Note,
        on_change: Callable[[SyncMount], None] = lambda mount: None,
        on_exit: Callable[[SyncMount, str], None] = lambda mount, detail: None,
        on_lost: Callable[[SyncMount, str], None] = lambda mount, detail: None,
    ) -> None:
        self.sync = sync
        digest = hashlib.sha1(sync.path.encode()).hexdigest()[:12]
        self.unit = f"{UNIT_PREFIX}{digest}"
        self.status_path = runtime_dir / f"syncfs-{digest}.json"
        self.peers_path = runtime_dir / f"syncfs-{digest}.peers.json"
        self._note = note
        self.on_change = on_change
        self.on_exit = on_exit
        self.on_lost = on_lost
        self._lost_said = False
        self.view: dict[str, Any] = {}
        self.pid: int | None = None
        self.epoch: int | None = None
        self._pidfd: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        block = sync.block_timeout if sync.on_standby_loss == "block" else 0.0
        self.hang_after = sync.ack_timeout + block + HANG_MARGIN

    # ---- what it shows --------------------------------------------------

    @property
    def up(self) -> bool:
        return self.pid is not None and self.view.get("state") == "up"

    @property
    def degraded(self) -> bool:
        return bool(self.view.get("degraded", True))

    @property
    def fenced(self) -> str | None:
        """Why the mount fails every sync point (a standby proved a newer epoch), or None."""
        fenced = self.view.get("fenced")
        return str(fenced) if fenced else None

    def live_channels(self) -> set[str]:
        return {c["name"] for c in self.view.get("channels", []) if c.get("alive")}

    def status(self) -> dict[str, Any]:
        keys = (
            "state",
            "degraded",
            "fenced",
            "on_standby_loss",
            "commits",
            "commit",
            "channels",
            "joins",
        )
        shown = {k: self.view[k] for k in keys if k in self.view}
        return {"pid": self.pid, "unit": self.unit if _systemd() else None, **shown}

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # ---- start ----------------------------------------------------------

    def argv(self, epoch: int, channels: Mapping[str, Sequence[str]]) -> list[str]:
        sync = self.sync
        argv = [sys.executable, "-m", MARK, "mount", sync.path, "--epoch", str(epoch)]
        for name, command in channels.items():
            argv += ["--channel", f"{name}={shlex.join(command)}"]
        argv += ["--on-standby-loss", sync.on_standby_loss]
        argv += ["--block-timeout", f"{sync.block_timeout:g}"]
        argv += ["--ack-timeout", f"{sync.ack_timeout:g}"]
        return [*argv, "--status", str(self.status_path), "--peers", str(self.peers_path)]

    def _launcher(self) -> list[str]:
        if _systemd():
            return [
                "systemd-run",
                "--quiet",
                "--collect",
                f"--unit={self.unit}",
                f"--description=mosqit-failover synchronous mount of {self.sync.path}",
                "--property=KillMode=mixed",
                f"--property=TimeoutStopSec={STOP_TIMEOUT:g}",
                "--",
            ]
        return ["setsid", "--fork"]

    async def _launch(self, argv: list[str]) -> None:
        """Start the mount process on its own (it outlives this call and the agent)."""
        systemd = _systemd()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._launcher(),
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                # systemd-run's own complaint; setsid's child keeps the agent's stderr
                stderr=asyncio.subprocess.PIPE if systemd else None,
                # not the agent's notify socket: systemd takes notifications from it alone
                env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
            )
            _, err = await within(process.communicate(), 30)
        except (OSError, TimeoutError) as error:
            raise MountError(
                f"cannot start the synchronous mount of {self.sync.path}: {error}"
            ) from None
        if process.returncode != 0:
            text = (err or b"").decode("utf-8", "replace").strip().replace("\n", " ")
            raise MountError(
                f"cannot start the synchronous mount of {self.sync.path}: "
                f"{text or f'exit status {process.returncode}'}"
            )

    def _mount_process(self, pid: object) -> bool:
        """``pid`` is the mount process of this very directory (``-m
        mosqit_failover.syncfs mount DIR`` in its command line): a status file's pid
        reused by another process, or another directory's mount, is never adopted nor
        ended."""
        if not isinstance(pid, int) or pid <= 1:
            return False
        words = _argv(pid)
        return any(
            words[i : i + 3] == [MARK, "mount", self.sync.path]
            for i, word in enumerate(words)
            if word == MARK
        )

    def adoptable(self, epoch: int) -> bool:
        """A mount of this epoch runs already (left by an agent that restarted)."""
        view = self._read()
        pid = view.get("pid")
        return view.get("state") == "up" and view.get("epoch") == epoch and self._mount_process(pid)

    async def start(self, epoch: int, channels: Mapping[str, Sequence[str]]) -> None:
        """Mount (or adopt the running mount of this epoch); MountError with its line."""
        if self.adoptable(epoch):
            self._attach(epoch, self._read())
            self._note(
                f"sync {self.sync.path}: adopted the synchronous mount of epoch {epoch} "
                f"(pid {self.pid}) left by the previous agent",
                5,
            )
            return
        await self.end_leftover()
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        self.status_path.unlink(missing_ok=True)
        self.peers_path.unlink(missing_ok=True)  # another epoch's requests
        await self._launch(self.argv(epoch, channels))
        # each standby has the channel's start time to accept, one after the other
        deadline = asyncio.get_running_loop().time() + 15 + 12 * len(channels)
        while asyncio.get_running_loop().time() < deadline:
            view = self._read()
            if view.get("state") == "failed":
                raise MountError(str(view.get("reason") or "the synchronous mount failed"))
            if view.get("state") == "up":
                self._attach(epoch, view)
                return
            pid = view.get("pid")
            if isinstance(pid, int) and MARK not in _cmdline(pid):
                raise MountError(f"the synchronous mount of {self.sync.path} ended at its start")
            await asyncio.sleep(0.05)
        await self.end_leftover()
        raise MountError(f"the synchronous mount of {self.sync.path} did not come up in time")

    def _attach(self, epoch: int, view: dict[str, Any]) -> None:
        pid = view["pid"]
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError as error:
            self._close_fds()
            raise MountError(
                f"the synchronous mount of {self.sync.path} (pid {pid}) ended at once: "
                f"{error.strerror or error}"
            ) from None
        self.pid, self.epoch, self.view, self._stopping = pid, epoch, view, False
        self._watch = asyncio.create_task(self._run())

    def left_running(self) -> bool:
        """A mount process of this directory runs, or our file system is on top of it."""
        pid = self._read().get("pid")
        running = self._mount_process(pid)
        return running or self._ours_on_top(_mount_table()) or self._ours_on_top(mountinfo.SELF)

    def _ours_on_top(self, table: str) -> bool:
        return mountinfo.ours_on_top(self.sync.path, table)

    async def end_leftover(self) -> None:
        """A mount process of another epoch (or a dead mount) from before: end it. Only our
        own: the process its status file names (if it is a mount process), its unit, and
        ``umount -l`` while our file system is on top (never an operator's mount)."""
        view = self._read()
        pid = view.get("pid")
        if self._mount_process(pid):
            assert isinstance(pid, int)
            self._note(
                f"sync {self.sync.path}: stopping a synchronous mount of epoch "
                f"{view.get('epoch')} (pid {pid}) left from before",
                4,
            )
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(int(STOP_TIMEOUT / 0.05)):
                if _ended(pid):
                    break
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if _systemd():  # its unit, even if the status file is gone (SIGTERM, then SIGKILL)
            await run_command(["systemctl", "stop", self.unit], None, STOP_TIMEOUT + 10)
            await run_command(["systemctl", "reset-failed", self.unit], None, 10)
        await self._lazy_unmount(None)

    # ---- while it runs --------------------------------------------------

    def request_join(self, peer: str, channel: Sequence[str], catch_up: Sequence[str]) -> int:
        """Ask the mount to add ``peer``'s channel after ``catch_up`` (syncfs/join.py): the
        peers file, replaced atomically; the number the answer will carry (``join_result``)."""
        assert self.epoch is not None
        request = time.time_ns()  # above any earlier one, also across agent restarts
        entry = {"name": peer, "request": request, "channel": channel, "catch_up": catch_up}
        temp = self.peers_path.with_name(f"{self.peers_path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps({"epoch": self.epoch, "peers": [entry]}))
        os.replace(temp, self.peers_path)
        return request

    def join_result(self, peer: str, request: int) -> str | None:
        """The mount's answer to ``request`` ("joined: ..." or "failed: ..."), None yet."""
        joins = self.view.get("joins")
        answer = joins.get(peer) if isinstance(joins, dict) else None
        if isinstance(answer, dict) and answer.get("request") == request:
            return str(answer.get("result"))
        return None

    async def _run(self) -> None:
        assert self._pidfd is not None
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(self._pidfd, exited)
        probe: asyncio.Future[None] | None = None
        probe_at = next_probe = loop.time() + HEALTH_PERIOD
        try:
            while not ended.done():
                with contextlib.suppress(TimeoutError):
                    await within(asyncio.shield(ended), POLL)
                view = self._read()
                if view and view != self.view and view.get("pid") == self.pid:
                    self.view = view
                    self.on_change(self)
                now = loop.time()
                if probe is None and now >= next_probe:  # one lookup in flight at a time
                    probe = asyncio.ensure_future(asyncio.to_thread(self._lookup))
                    probe_at = now
                elif probe is not None and probe.done():
                    probe, next_probe = None, now + HEALTH_PERIOD
                    self._check_on_top()
                elif probe is not None and now - probe_at > self.hang_after:
                    self._kill_hung(now - probe_at)
                    probe, next_probe = None, math.inf  # its exit follows: the death path
        finally:
            loop.remove_reader(self._pidfd)
        if self._stopping:
            return
        pid = self.pid
        self.view = {**self.view, "state": "dead", "degraded": True}
        await self._lazy_unmount(pid)
        self.pid = None
        self._close_fds()
        self.on_exit(self, f"pid {pid} ended unasked (killed or crashed)")

    def _check_on_top(self) -> None:
        """Said once: our file system is no longer on top of the directory (the status
        file, the process and the statfs, answered by whatever is there now, cannot
        tell)."""
        if self._lost_said or self._stopping or self._ours_on_top(_mount_table()):
            return
        self._lost_said = True
        below = mountinfo.top_source(self.sync.path, _mount_table())
        how = f"{below} is mounted over it" if below else "it was unmounted (umount -l?)"
        self.on_lost(
            self,
            f"the synchronous file system (pid {self.pid}) is no longer on top of the "
            f"directory: {how}; the service's new files there are not replicated",
        )

    def _lookup(self) -> None:
        """A statfs through the mount (in a thread: a hung file system blocks it until the
        process is killed, then it fails with ENOTCONN). The kernel caches no statfs and
        takes no directory lock for it: a create held in the root by a rejoin's freeze
        blocks every lookup there, and would read as a hang."""
        with contextlib.suppress(OSError):
            os.statvfs(self.sync.path)

    def _kill_hung(self, waited: float) -> None:
        self._note(
            f"sync {self.sync.path}: the synchronous file system (pid {self.pid}) answered "
            f"no health probe (statfs) for {waited:.0f}s (more than ack_timeout, block_timeout and "
            f"{HANG_MARGIN:g}s): killing it, so callers get an error instead of waiting for "
            "ever; its death is handled as any other",
            2,
        )
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    # ---- stop -----------------------------------------------------------

    async def stop(self) -> None:
        """SIGTERM the mount (it unmounts), then ``umount -l`` if the mount is still there."""
        self._stopping = True
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            if self._watch is not None:
                try:
                    await within(asyncio.shield(self._watch), STOP_TIMEOUT)
                except TimeoutError:
                    self._note(
                        f"sync {self.sync.path}: the synchronous mount (pid {pid}) did not end "
                        f"within {STOP_TIMEOUT:g}s of SIGTERM: killing it",
                        3,
                    )
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    try:
                        await within(asyncio.shield(self._watch), 5)
                    except TimeoutError:  # in D state on a dead disk: the unmount goes on
                        self._note(
                            f"sync {self.sync.path}: the synchronous mount (pid {pid}) still "
                            "runs 5s after SIGKILL (stuck in the kernel?): unmounting lazily "
                            "without it",
                            2,
                        )
                        self._watch.cancel()
            await self._lazy_unmount(pid)
        self.pid = None
        self.view = {**self.view, "state": "unmounted"}
        self._close_fds()

    async def detach(self) -> None:
        """Stop watching, leave the mount running (the agent exits; the next adopts it)."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        self._close_fds()

    async def _lazy_unmount(self, pid: int | None) -> None:
        """``umount -l DIR`` where the mount lives, only while our file system is the top
        mount there: a directory on the operator's own disk keeps that disk mounted. Then
        the same in the agent's own mount namespace (under systemd a copy made at its
        start, which an unmount where the mount lives does not always reach: a restarted
        agent kept a dead copy, and its engine could not read the directory any more)."""
        if self._ours_on_top(_mount_table()):
            argv = ["umount", "-l", self.sync.path]
            if _systemd():  # where systemd runs the mount's service, with PID 1's root too
                argv = ["nsenter", "--target=1", "--mount", "--root", *argv]
            if await self._umount(argv):
                self._note(
                    f"sync {self.sync.path}: unmounted lazily (umount -l) after the "
                    f"synchronous file system{f' (pid {pid})' if pid else ''} ended: the "
                    "directory is the plain directory again, every acknowledged change in place",
                    4,
                )
        own_copy = _mount_table() != mountinfo.SELF and self._ours_on_top(mountinfo.SELF)
        if own_copy and await self._umount(["umount", "-l", self.sync.path]):
            self._note(
                f"sync {self.sync.path}: the agent's own copy of the ended mount (its "
                "private mount namespace) unmounted too",
                6,
            )

    async def _umount(self, argv: list[str]) -> bool:
        """Run one ``umount -l``: True if it unmounted, a line if it failed otherwise."""
        code, _, err = await run_command(argv, None, 10)
        if code != 0 and "not mounted" not in err and "no mount point" not in err:
            self._note(f"sync {self.sync.path}: umount -l failed: {err.strip()}", 3)
        return code == 0

    def _close_fds(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
        self._pidfd = None
