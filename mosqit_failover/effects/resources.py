"""Start, stop and check the protected services (systemd units, SysV init scripts, commands,
OCF resource agents).

:func:`make_runner` turns a configured :class:`~mosqit_failover.config.Resource`
into a :class:`ResourceRunner`. All commands run as asyncio subprocesses
(``asyncio.create_subprocess_exec``) in their own session and process group,
with stdin from /dev/null and stdout/stderr captured through pipes of our own.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import logging
import os
import shlex
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mosqit_failover import config
from mosqit_failover.deadlines import within
from mosqit_failover.effects import EffectError
from mosqit_failover.priority import as_a_service

log = logging.getLogger(__name__)

_TAIL_BYTES = 4096  # output kept per stream (the end of it)
_TAIL_LINES = 5  # lines of it quoted in an error
_EOF_GRACE = 0.2  # after exit, how long to wait for the output pipes to close
_STDIN_MAX = 60 * 1024  # below the 64 KiB pipe buffer


@dataclass(frozen=True)
class Outcome:
    """How one command ended."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def tail(self) -> str:
        """The last lines of stderr (of stdout if stderr is empty), for error messages."""
        stream, text = (
            ("stderr", self.stderr.strip())
            if self.stderr.strip()
            else ("stdout", self.stdout.strip())
        )
        if not text:
            return "no output"
        lines = text.splitlines()[-_TAIL_LINES:]
        return f"{stream}: " + " | ".join(line.strip() for line in lines)


class ResourceRunner(abc.ABC):
    """Start, stop and check one protected resource.

    Guarantees (all kinds):

    - Every command is bounded by the resource's ``timeout``. When it runs out,
      the command's whole process group gets SIGKILL and :class:`EffectError`
      says "... did not finish within Ns". A cancelled call kills its process
      group the same way before re-raising CancelledError.
    - :meth:`start` is idempotent: if the status check says it already runs,
      nothing is started (kinds whose start command is itself idempotent skip
      that check). After starting it checks the status again and raises
      unless it reports running.
    - :meth:`stop` is idempotent: if the status says it is not running, nothing
      is stopped. After stopping it checks again and raises unless the status
      reports it stopped.
    - :meth:`running` runs the status check once; it raises :class:`EffectError`
      when the answer is neither "running" nor "not running". :meth:`alive`
      (the monitor's question) is the same, except that a status saying the
      resource died (LSB 1 and 2, OCF 1 and 9) is False: Pacemaker recovers
      on those too.
    - Failures raise :class:`EffectError` naming the resource, the command, its
      exit code and the last lines of its stderr (of stdout if stderr is empty).
      A missing unit or script raises an error naming it and the fix.
    - Calls to :meth:`start` and :meth:`stop` of one runner are serialized.
    - A command whose background child keeps stdout/stderr open (``daemon &``)
      does not hang the call: the call returns when the command exits, and the
      leftover output is drained and discarded (a warning is logged once).
    """

    # True where starting a running resource is a no-op success by contract:
    # the status check before the start then only costs failover time
    start_is_idempotent = False
    # status exit codes that say the resource ran and died: not running, for the monitor
    died_codes: frozenset[int] = frozenset()

    def __init__(self, resource: config.Resource) -> None:
        self.resource = resource
        self.name = resource.name
        self.timeout = resource.timeout
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- what each kind provides ------------------------------------------

    @abc.abstractmethod
    def _start_argv(self) -> Sequence[str]: ...

    @abc.abstractmethod
    def _stop_argv(self) -> Sequence[str]: ...

    @abc.abstractmethod
    def _status_argv(self) -> Sequence[str]: ...

    @abc.abstractmethod
    def _interpret_status(self, outcome: Outcome) -> bool | None:
        """True running, False not running, None unknown."""

    @abc.abstractmethod
    def _missing(self, error: OSError) -> str:
        """The message for a command that could not be executed at all."""

    def _env(self) -> Mapping[str, str] | None:
        """Variables added to the agent's environment for every command (None: none)."""
        return None

    def _status_codes(self, code: int) -> str:
        """How the status command's exit codes read, for error messages."""
        return "0 means running, 3 not running"

    def _check(self, what: str, outcome: Outcome) -> None:
        """Raise if a start/stop command failed."""
        if outcome.code != 0:
            raise EffectError(
                f"resource {self.name}: {what} failed: `{_show(outcome.argv)}` exited with "
                f"code {outcome.code}; {outcome.tail()}"
            )

    # -- the API ------------------------------------------------------------

    async def running(self) -> bool:
        """True if the status check says the resource runs; raises if it cannot tell."""
        outcome = await self._run(self._status_argv())
        return self._told(outcome, self._interpret_status(outcome))

    async def alive(self) -> bool:
        """As `running`, but a status saying the resource died is False (the monitor)."""
        outcome = await self._run(self._status_argv())
        if outcome.code in self.died_codes:
            return False
        return self._told(outcome, self._interpret_alive(outcome))

    def _interpret_alive(self, outcome: Outcome) -> bool | None:
        """The monitor's reading of a status (`alive`); the same as start's and stop's
        unless a kind must tell "not running" from "could not ask"."""
        return self._interpret_status(outcome)

    def _told(self, outcome: Outcome, state: bool | None) -> bool:
        if state is None:
            raise EffectError(
                f"resource {self.name}: cannot tell whether it runs: "
                f"`{_show(outcome.argv)}` exited with code {outcome.code} "
                f"({self._status_codes(outcome.code)}); {outcome.tail()}"
            )
        return state

    async def start(self) -> None:
        """Start it unless it already runs, then check that it runs."""
        async with self._lock:
            if not self.start_is_idempotent:
                before = self._interpret_status(await self._run(self._status_argv()))
                if before is True:
                    log.info("resource %s: already running", self.name)
                    return
            self._check("start", await self._run(self._start_argv()))
            after = await self._run(self._status_argv())
            if self._interpret_status(after) is not True:
                raise EffectError(
                    f"resource {self.name}: started, but its status check "
                    f"`{_show(after.argv)}` then exited with code {after.code} instead of 0 "
                    f"(running); {after.tail()}. Check the service's own logs"
                )
            log.info("resource %s: started", self.name)

    async def stop(self) -> None:
        """Stop it unless it is not running, then check that it stopped."""
        async with self._lock:
            before = self._interpret_status(await self._run(self._status_argv()))
            if before is False:
                log.info("resource %s: already stopped", self.name)
                return
            self._check("stop", await self._run(self._stop_argv()))
            after = await self._run(self._status_argv())
            if self._interpret_status(after) is not False:
                raise EffectError(
                    f"resource {self.name}: stopped, but its status check "
                    f"`{_show(after.argv)}` then exited with code {after.code}, which does "
                    f"not confirm it stopped; {after.tail()}. Check for leftover processes"
                )
            log.info("resource %s: stopped", self.name)

    async def missing(self) -> str | None:
        """Why this resource could never start on this host (no such unit, no such
        script), or None; a check before a config is taken, not a status check. Raises
        nothing: what cannot be asked is no answer (None)."""
        return None

    # -- running commands -------------------------------------------------

    async def _run(self, argv: Sequence[str]) -> Outcome:
        try:
            return await run_command(argv, self.timeout, self._env(), as_service=True)
        except CommandTimeout:
            raise EffectError(
                f"resource {self.name}: `{_show(argv)}` did not finish within "
                f"{self.timeout:g}s and was killed; fix the command or raise the "
                "resource's timeout"
            ) from None
        except OSError as error:
            raise EffectError(self._missing(error)) from None


# systemd's LoadState values of a unit `systemctl start` refuses, and the fix; masking a
# service instead of disabling it, to keep it from starting at boot, is the likely one
_UNSTARTABLE = {
    "not-found": (
        "is not known to systemd on this node: fix resources.unit or install the service "
        "(see `systemctl list-unit-files`)"
    ),
    "masked": (
        "is masked on this node, so it cannot start: `systemctl unmask` it (`systemctl "
        "disable` keeps it from starting at boot)"
    ),
    "bad-setting": "has a bad setting on this node: see `systemctl status` of it",
    "error": "failed to load on this node: see `systemctl status` of it",
}


class SystemdRunner(ResourceRunner):
    """A systemd unit: ``systemctl start|stop UNIT`` and ``systemctl is-active --quiet UNIT``.

    is-active exit 0 means running, anything else not running (inactive,
    failed, activating, or no such unit: stopping a unit that does not exist is
    a success). Starting a unit that does not exist (systemctl exit 5) raises an
    error naming the unit. ``systemctl start`` of an active unit succeeds at
    once, so no status check precedes it. For the monitor (:meth:`alive`) only
    3 is "not running"; any other non-zero code is systemctl failing to ask.
    """

    start_is_idempotent = True

    def __init__(self, resource: config.Resource, systemctl: str) -> None:
        super().__init__(resource)
        self.systemctl = systemctl
        self.unit = resource.unit

    def _start_argv(self) -> Sequence[str]:
        return (self.systemctl, "start", self.unit)

    def _stop_argv(self) -> Sequence[str]:
        return (self.systemctl, "stop", self.unit)

    def _status_argv(self) -> Sequence[str]:
        return (self.systemctl, "is-active", "--quiet", self.unit)

    def _interpret_status(self, outcome: Outcome) -> bool | None:
        return outcome.code == 0

    def _interpret_alive(self, outcome: Outcome) -> bool | None:
        # 3 is every state but active (inactive, failed, activating, no such unit);
        # anything else is systemctl failing to ask, as during `daemon-reexec` ("Failed
        # to retrieve unit state: Transport endpoint is not connected", exit 1): the
        # monitor restarted a running service on it (a helper's finding)
        return {0: True, 3: False}.get(outcome.code)

    def _check(self, what: str, outcome: Outcome) -> None:
        if what == "start" and outcome.code == 5:
            raise EffectError(
                f"resource {self.name}: systemd has no unit {self.unit!r} "
                f"({outcome.tail()}); install the service or fix resources.unit "
                "(see `systemctl list-unit-files`)"
            )
        super()._check(what, outcome)

    def _missing(self, error: OSError) -> str:
        return (
            f"resource {self.name}: cannot run {self.systemctl!r}: {error.strerror or error}; "
            'this host needs systemd for kind = "systemd" (or use kind = "sysv" or "script")'
        )

    async def missing(self) -> str | None:
        """A unit systemd does not know (LoadState not-found): a typo'd name passed
        check-config and reload, and the next switchover failed on both nodes in turn
        (a helper's finding)."""
        if "@." in self.unit:
            return (
                f"resource {self.name}: {self.unit!r} is a template: name an instance of it, "
                f"like {self.unit.replace('@.', '@NAME.', 1)}"
            )
        try:
            shown = await self._run(
                (self.systemctl, "show", "-p", "LoadState", "--value", self.unit)
            )
        except EffectError:
            return None
        state = shown.stdout.strip()
        if shown.code != 0 or state not in _UNSTARTABLE:
            return None
        return f"resource {self.name}: unit {self.unit!r} {_UNSTARTABLE[state]}"


class SysvRunner(ResourceRunner):
    """A SysV init script: ``INITD/SCRIPT start|stop|status`` with LSB exit codes.

    status: 0 running, 3 not running, anything else unknown (start then tries
    to start, stop tries to stop; :meth:`running` raises; for :meth:`alive`,
    1 and 2, "dead and its pid or lock file left", are not running). The
    script is executed directly (it needs its #! line and the executable bit).
    """

    died_codes = frozenset((1, 2))

    def __init__(self, resource: config.Resource, initd: Path) -> None:
        super().__init__(resource)
        script = Path(resource.script)
        self.script = script if script.is_absolute() else initd / script

    def _start_argv(self) -> Sequence[str]:
        return (str(self.script), "start")

    def _stop_argv(self) -> Sequence[str]:
        return (str(self.script), "stop")

    def _status_argv(self) -> Sequence[str]:
        return (str(self.script), "status")

    def _interpret_status(self, outcome: Outcome) -> bool | None:
        return {0: True, 3: False}.get(outcome.code)

    async def missing(self) -> str | None:
        """The words of a start that would fail on the script (`_missing`), before it."""
        if not os.path.isfile(self.script):
            return self._missing(FileNotFoundError())
        if not os.access(self.script, os.X_OK):
            return self._missing(PermissionError())
        return None

    def _missing(self, error: OSError) -> str:
        if isinstance(error, FileNotFoundError):
            fix = "install the service or fix resources.script"
            return f"resource {self.name}: init script {self.script} not found; {fix}"
        if isinstance(error, PermissionError):
            return (
                f"resource {self.name}: init script {self.script} is not executable; "
                f"run `chmod +x {self.script}`"
            )
        return f"resource {self.name}: cannot run {self.script}: {error.strerror or error}"


class ScriptRunner(ResourceRunner):
    """Three shell command lines (start, stop, status), each run with ``/bin/sh -c``.

    status: exit 0 running, anything else not running, except 126/127 (the
    shell could not find or execute the command), which raise an error naming
    the command, so a typo never reads as "stopped".
    """

    def _start_argv(self) -> Sequence[str]:
        return ("/bin/sh", "-c", self.resource.start)

    def _stop_argv(self) -> Sequence[str]:
        return ("/bin/sh", "-c", self.resource.stop)

    def _status_argv(self) -> Sequence[str]:
        return ("/bin/sh", "-c", self.resource.status)

    def _interpret_status(self, outcome: Outcome) -> bool | None:
        if outcome.code in (126, 127):
            raise EffectError(self._not_found(outcome))
        return outcome.code == 0

    def _check(self, what: str, outcome: Outcome) -> None:
        if outcome.code in (126, 127):
            raise EffectError(self._not_found(outcome))
        super()._check(what, outcome)

    def _not_found(self, outcome: Outcome) -> str:
        how = "not found" if outcome.code == 127 else "not executable"
        return (
            f"resource {self.name}: the shell says the command in {outcome.argv[-1]!r} is "
            f"{how} (exit {outcome.code}; {outcome.tail()}); install it or fix the command "
            "in the resource's start/stop/status"
        )

    def _missing(self, error: OSError) -> str:
        return f"resource {self.name}: cannot run /bin/sh: {error.strerror or error}"


# OCF return codes (Open Cluster Framework resource agent API, and Pacemaker's reading).
OCF_SUCCESS = 0
OCF_NOT_RUNNING = 7
OCF_RUNNING_MASTER = 8
OCF_FAILED_MASTER = 9
OCF_CODES = {
    0: "OCF_SUCCESS",
    1: "OCF_ERR_GENERIC: the agent failed (see its output)",
    2: "OCF_ERR_ARGS: the parameters are wrong; fix resources.params",
    3: "OCF_ERR_UNIMPLEMENTED: the agent does not implement this action",
    4: "OCF_ERR_PERM: insufficient privileges",
    5: "OCF_ERR_INSTALLED: a program or file the agent needs is not installed on this node",
    6: "OCF_ERR_CONFIGURED: the resource is configured wrongly; fix resources.params",
    7: "OCF_NOT_RUNNING",
    8: "OCF_RUNNING_MASTER: running as master",
    9: "OCF_FAILED_MASTER: failed as master",
}
DEFAULT_OCF_ROOT = Path("/usr/lib/ocf")
DEFAULT_INITD = Path("/etc/init.d")  # where a sysv resource's bare script name is found


def ocf_meaning(code: int) -> str:
    """The OCF name and meaning of an agent's exit code."""
    return OCF_CODES.get(code, "not an OCF return code (0-9): the agent is broken")


class OcfRunner(ResourceRunner):
    """An OCF resource agent (e.g. ClusterLabs' ``ocf:heartbeat:IPaddr2``), run unchanged.

    ``AGENT start|stop|monitor`` with OCF_ROOT, OCF_RESOURCE_INSTANCE (the
    resource's name), OCF_RESOURCE_TYPE, OCF_RESOURCE_PROVIDER,
    OCF_RA_VERSION_MAJOR/MINOR and one OCF_RESKEY_<name> per configured
    parameter in its environment. ``ocf:PROVIDER:TYPE`` is found at
    ``OCF_ROOT/resource.d/PROVIDER/TYPE``; an absolute path is run as is.

    monitor: 0 (and 8, running as master) running; 7 not running; 1 and 9
    (failed) unknown: start then tries to start, stop tries to stop, and
    :meth:`running` raises (:meth:`alive` says not running); 2-6 (wrong
    parameters, not installed, ...) and any other code raise an error naming
    the code and its meaning, since no action can succeed then (for
    :meth:`alive`, 2, 5 and 6 are not running: it cannot run here). start and stop
    succeed on 0 only; the error names the code and its OCF meaning.
    """

    # failed (1, 9), and the hard errors that mean it cannot run here (wrong arguments,
    # not installed, not configured: 2, 5, 6), on which Pacemaker recovers elsewhere
    died_codes = frozenset((1, 2, 5, 6, OCF_FAILED_MASTER))

    def __init__(self, resource: config.Resource, ocf_root: Path) -> None:
        super().__init__(resource)
        self.ocf_root = ocf_root
        if resource.agent.startswith("ocf:"):
            _, self.provider, self.type = resource.agent.split(":", 2)
            self.path = ocf_root / "resource.d" / self.provider / self.type
        else:
            self.path = Path(resource.agent)
            self.provider, self.type = self.path.parent.name, self.path.name

    def _env(self) -> Mapping[str, str]:
        env = {
            "OCF_ROOT": str(self.ocf_root),
            "OCF_RESOURCE_INSTANCE": self.name,
            "OCF_RESOURCE_TYPE": self.type,
            "OCF_RESOURCE_PROVIDER": self.provider,
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "0",
        }
        env.update({f"OCF_RESKEY_{k}": v for k, v in self.resource.params})
        return env

    def _start_argv(self) -> Sequence[str]:
        return (str(self.path), "start")

    def _stop_argv(self) -> Sequence[str]:
        return (str(self.path), "stop")

    def _status_argv(self) -> Sequence[str]:
        return (str(self.path), "monitor")

    def _status_codes(self, code: int) -> str:
        return f"0 means running, 7 not running; {code} is {ocf_meaning(code)}"

    def _interpret_status(self, outcome: Outcome) -> bool | None:
        if outcome.code in (OCF_SUCCESS, OCF_RUNNING_MASTER):
            return True
        if outcome.code == OCF_NOT_RUNNING:
            return False
        if outcome.code in (1, OCF_FAILED_MASTER):
            return None
        raise EffectError(self._failure("monitor", outcome))

    def _check(self, what: str, outcome: Outcome) -> None:
        if outcome.code != OCF_SUCCESS:
            raise EffectError(self._failure(what, outcome))

    def _failure(self, what: str, outcome: Outcome) -> str:
        return (
            f"resource {self.name}: OCF agent {self.resource.agent} {what} failed: "
            f"`{_show(outcome.argv)}` exited with code {outcome.code} "
            f"({ocf_meaning(outcome.code)}); {outcome.tail()}"
        )

    def _missing(self, error: OSError) -> str:
        where = f"OCF agent {self.resource.agent} ({self.path})"
        if isinstance(error, FileNotFoundError):
            return (
                f"resource {self.name}: {where} not found; install it (Debian: "
                "`apt-get install resource-agents`) or fix resources.agent"
            )
        if isinstance(error, PermissionError):
            return f"resource {self.name}: {where} is not executable; run `chmod +x {self.path}`"
        return f"resource {self.name}: cannot run {where}: {error.strerror or error}"


def make_runner(
    resource: config.Resource,
    *,
    systemctl: str = "systemctl",
    initd: Path = DEFAULT_INITD,
    ocf_root: Path = DEFAULT_OCF_ROOT,
) -> ResourceRunner:
    """The runner for this resource's kind (systemd, sysv, script or ocf)."""
    if resource.kind == "systemd":
        return SystemdRunner(resource, systemctl)
    if resource.kind == "sysv":
        return SysvRunner(resource, initd)
    if resource.kind == "script":
        return ScriptRunner(resource)
    if resource.kind == "ocf":
        return OcfRunner(resource, ocf_root)
    raise ValueError(f"resource {resource.name}: unknown kind {resource.kind!r}")


# -- subprocesses ---------------------------------------------------------------


class CommandTimeout(Exception):
    """run_command killed the command (and its process group) when its time ran out."""


class _Tail(asyncio.Protocol):
    """Keeps the last bytes read from a pipe; notes when the pipe closes."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self.data = bytearray()
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > _TAIL_BYTES:
            del self.data[:-_TAIL_BYTES]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


async def _open_pipe() -> tuple[int, _Tail, asyncio.BaseTransport]:
    """A pipe whose read end the event loop drains into a _Tail; returns the write fd."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        tail = _Tail(loop.create_future())
        transport, _ = await loop.connect_read_pipe(lambda: tail, os.fdopen(read_fd, "rb", 0))
    except BaseException:
        os.close(write_fd)
        raise
    return write_fd, tail, transport


CHILD_UMASK = 0o022
"""The umask of what the agent runs (a service a script starts, a hook, a fence): a
system's usual one, not the agent's own 0077 (its unit's UMask, for its state and
secrets), under which a service's files would be readable by root alone."""


def _as_service(argv: Sequence[str]) -> list[str]:
    """``argv`` with a service's priorities in front (:mod:`..priority`), its program
    found here first, so that a missing or non-executable one fails as a direct exec
    would (OSError)."""
    prefix = as_a_service()
    if not prefix:
        return list(argv)
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    if program is None or not os.path.exists(program):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    if os.path.isdir(program) or not os.access(program, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), argv[0])
    _check_format(program, argv[0])
    return [*prefix, program, *argv[1:]]


def _check_format(program: str, name: str) -> None:
    """OSError as execve would give it for ``program``: the wrappers' execvp would run a
    file without ``#!`` through /bin/sh instead, and report a missing interpreter as
    their own exit 127."""
    with open(program, "rb") as file:
        head = file.read(256)
    if head.startswith(b"\x7fELF"):
        return
    if not head.startswith(b"#!"):
        raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), name)
    words = head[2:].split(b"\n", 1)[0].split()
    interpreter = os.fsdecode(words[0]) if words else ""
    if not interpreter or not os.access(interpreter, os.X_OK) or os.path.isdir(interpreter):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


async def run_command(
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    *,
    as_service: bool = False,
) -> Outcome:
    """Run argv in its own process group; return how it ended.

    env: variables added to (or overriding) the agent's own environment. The command
    runs with CHILD_UMASK; ``as_service``: with a service's priorities too
    (:mod:`..priority`: what it starts lives on as a service).
    stdin: what the command reads on its standard input (at most 64 KiB, the
    pipe's buffer, so that writing it never blocks); empty: /dev/null.

    Raises CommandTimeout after killing the group when it runs longer than timeout,
    OSError when it cannot be executed. Our own pipes (not asyncio's) carry its
    output, so that a background child holding them open cannot delay us: in
    Python 3.11, Process.wait() also waits for asyncio's pipes to close.
    """
    if len(stdin) > _STDIN_MAX:
        raise ValueError(f"stdin of {len(stdin)} bytes is over {_STDIN_MAX}")
    pipes: list[tuple[int, _Tail, asyncio.BaseTransport]] = []
    stdin_fd: int | None = None
    try:
        if stdin:
            stdin_fd, stdin_write = os.pipe()
            try:
                os.write(stdin_write, stdin)  # fits the pipe's buffer: never blocks
            finally:
                os.close(stdin_write)
        for _ in ("stdout", "stderr"):
            pipes.append(await _open_pipe())
        proc = await asyncio.create_subprocess_exec(
            *(_as_service(argv) if as_service else argv),
            stdin=asyncio.subprocess.DEVNULL if stdin_fd is None else stdin_fd,
            stdout=pipes[0][0],
            stderr=pipes[1][0],
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
            umask=CHILD_UMASK,
        )
    except BaseException:
        for _, _, transport in pipes:
            transport.close()
        raise
    finally:
        for write_fd, _, _ in pipes:
            os.close(write_fd)  # the child has its copies
        if stdin_fd is not None:
            os.close(stdin_fd)
    try:
        code = await within(proc.wait(), timeout)
    except (TimeoutError, asyncio.CancelledError) as error:
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        for _, _, transport in pipes:
            transport.close()
        if isinstance(error, TimeoutError):
            raise CommandTimeout from None
        raise
    closed = [tail.closed for _, tail, _ in pipes]
    await asyncio.wait(closed, timeout=_EOF_GRACE)
    if not all(f.done() for f in closed):
        # Still open: a background child inherited them. Keep draining (the
        # transport reads and discards until the child closes them or exits).
        log.warning(
            "`%s` left a background process holding its stdout/stderr; redirect that "
            "process's output (e.g. `>/dev/null 2>&1`)",
            _show(argv),
        )
    return Outcome(tuple(argv), code, pipes[0][1].text(), pipes[1][1].text())


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _show(argv: Sequence[str]) -> str:
    """The command as the operator wrote it: a script line as is, else shell-quoted argv."""
    if len(argv) == 3 and tuple(argv[:2]) == ("/bin/sh", "-c"):
        return argv[2]
    return shlex.join(argv)
