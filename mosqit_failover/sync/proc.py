"""The processes of the sync: one ssh master per peer address, and rsync runs.

This is the only module of the sync that starts processes
(``asyncio.create_subprocess_exec``; never a shell).

Guarantees:

- :func:`run_command` (and :func:`run_rsync`) never leaves a process behind:
  when the awaiting task is cancelled or its timeout passes, the process is
  terminated (then killed after 2 s) before the cancellation propagates.
  stdout is discarded unless asked for, stderr returned (last 64 KiB).
- :func:`start_command` starts a command whose stdin comes later
  (:class:`Started`): the same guarantees once :meth:`Started.finish` is awaited,
  and :meth:`Started.cancel` ends one that is not needed after all.
- every process runs with a service's priorities (:mod:`..priority`), not the agent's
  nice -10 and real-time disk class: a full sync must not take the disk and the CPU
  before the service whose files it copies;
- :class:`SshMaster` keeps at most one master process per peer address; :meth:`ensure`
  returns within the ssh connect timeout (+1 s) whether or not the peer
  answers, and raises :class:`MasterError` with ssh's own words if it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from mosqit_failover.deadlines import within
from mosqit_failover.priority import as_a_service
from mosqit_failover.sync.commands import Peer, master_argv

STDERR_KEEP = 65536
ORPHAN_GUARD = ["setpriv", "--pdeathsig", "KILL"]
"""Prefix of every command: killed with the agent (the unit's KillMode=process would keep it)."""


async def _reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await within(process.wait(), 2.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def run_rsync(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    """Run rsync to completion; (exit code, stderr)."""
    code, _, err = await run_command(argv, stdin)
    return code, err


async def run_command(
    argv: list[str], stdin: bytes | None = None, timeout: float | None = None, stdout: bool = False
) -> tuple[int, str, str]:
    """Run a command to completion; (exit code, stdout if asked, stderr).

    Past ``timeout`` seconds it is ended as on cancellation and the code is 124.
    """
    try:
        started = await start_command(argv, stdin is not None, stdout)
    except OSError as error:
        return 127, "", f"cannot run {argv[0]}: {error.strerror or error}"
    return await started.finish(stdin, timeout)


async def start_command(argv: list[str], stdin: bool = True, stdout: bool = False) -> Started:
    """Start a command now and hand its stdin over later (:meth:`Started.finish`).

    rsync connects (its ssh session, the peer's forced command, its own start
    there) before it reads ``--files-from=-``: started ahead, all that is done
    by the time the list is known. Raises OSError if the command cannot run.
    """
    process = await asyncio.create_subprocess_exec(
        *ORPHAN_GUARD,
        *as_a_service(),
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Started(argv[0], process, asyncio.get_running_loop().time())


class Started:
    """A running command waiting for its stdin; ``at``: when it was started (loop time)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, at: float) -> None:
        self.name = name
        self.at = at
        self._process = process

    @property
    def alive(self) -> bool:
        """Still running (not yet fed): a command that ended on its own cannot be fed."""
        return self._process.returncode is None

    async def finish(
        self, stdin: bytes | None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        """Feed ``stdin``, close it, wait for the end: (exit code, stdout, stderr) as
        :func:`run_command`."""
        process = self._process
        try:
            out, err = await within(process.communicate(stdin), timeout)
        except TimeoutError:
            await asyncio.shield(_reap(process))
            return 124, "", f"{self.name} gave no answer within {timeout:g}s"
        except BaseException:
            await asyncio.shield(_reap(process))
            raise
        code = process.returncode if process.returncode is not None else -1
        text = (out or b"").decode("utf-8", "replace")
        return code, text, err[-STDERR_KEEP:].decode("utf-8", "replace")

    async def cancel(self) -> None:
        """End it unused (terminate, then kill after 2 s)."""
        await asyncio.shield(_reap(self._process))


class MasterError(Exception):
    """The ssh master could not connect; the message is ssh's reason."""


class SshMaster:
    """One multiplexing ssh connection to the peer, reused by every rsync run."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def up(self) -> bool:
        return (
            self._process is not None
            and self._process.returncode is None
            and self.peer.control_path.exists()
        )

    async def ensure(self) -> None:
        """Make sure the master is connected (start it if needed)."""
        async with self._lock:
            if self.up:
                return
            await self._close()
            self.peer.control_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.peer.control_path)  # left by a killed agent
            process = await asyncio.create_subprocess_exec(
                *ORPHAN_GUARD,
                *as_a_service(),
                *master_argv(self.peer),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            self._process = process
            deadline = asyncio.get_running_loop().time() + self.peer.connect_timeout + 1
            while not self.peer.control_path.exists():
                if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    await _reap(process)
                    assert process.stderr is not None
                    err = (await process.stderr.read()).decode("utf-8", "replace").strip()
                    self._process = None
                    raise MasterError(err or f"no connection within {self.peer.connect_timeout}s")
                await asyncio.sleep(0.02)

    async def _close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await _reap(process)

    async def close(self) -> None:
        async with self._lock:
            await self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.peer.control_path)
