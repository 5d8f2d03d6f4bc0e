"""The fenced side: ``mosqit-sync EPOCH --fence`` through the sync key's forced command.

The peer runs this (over ssh, see :mod:`mosqit_failover.effects.fence`) before it
promotes on the "OS problem" rule: this node's kernel answers ICMP but its
agent is silent, so the agent may be hung while this node still holds the
VIP and runs the services. Everything here is done at the OS level, without
the agent:

1. refused (exit 77, one :data:`~.commands.REFUSED` line on stderr) unless
   EPOCH is above this node's persisted epoch: a stale node must not fence a
   newer active; refused as well while this node's agent answers on its
   control socket within :data:`ALIVE_WAIT`: it is not hung, so the fencer's
   view is out of date (a session that waited in a frozen kernel's backlog and
   runs after the thaw) or only the UDP messages are lost (a firewall);
2. role WAITING with this node's own epoch is persisted in ``state.json``, so
   that a restarted agent does not claim the VIP and services again;
3. the local agent is killed (SIGKILL) if it runs: its PID is read from
   ``<state_dir>/agent.pid`` and killed only if ``/proc/PID/cmdline`` is
   ``mosqit-failover ... agent``; systemd (Restart=always) brings it back
   clean. The state is persisted once more after the kill (the old agent may
   have written meanwhile);
4. the VIP is removed (:class:`~mosqit_failover.effects.vip.Vip`);
5. every configured resource is stopped, in reverse order, with the runners the
   agent uses (:func:`~mosqit_failover.effects.resources.make_runner`); a
   failed stop does not keep the others from being stopped.

One stdout line per step, then a summary line: ``fenced: VIP removed, 2
resources stopped`` and exit 0 only when the VIP is gone and every stop
succeeded; otherwise ``not fenced: ...`` naming what failed, and exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import time
from pathlib import Path
from typing import TextIO

from mosqit_failover import config as configuration
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.resources import make_runner
from mosqit_failover.effects.state import StateError, StateFile
from mosqit_failover.effects.vip import Vip
from mosqit_failover.events import Role
from mosqit_failover.journal import JournalSocket, our_entry
from mosqit_failover.sync.commands import FENCE, MARKER

PID_FILE = "agent.pid"
"""Name of the file in ``state_dir`` where the agent keeps its PID."""

LOCK_FILE = "fence.lock"
"""In ``state_dir``: held while a fence runs, so that two run one after the other."""

DONE_FILE = "fenced"
"""In ``state_dir``: ``EPOCH OWN TIME SUMMARY`` of the last fence that succeeded."""

DONE_FRESH = 30.0
"""Seconds in which another session of the same fence is answered from DONE_FILE: the
sessions of one fence run within fencing.timeout of each other."""

FENCED = "fenced:"
"""Start of the summary line when everything was done (exit 0)."""

NOT_FENCED = "not fenced:"
"""Start of the summary line when something failed (exit 1)."""

STALE = "is not newer than this node's"
"""In the refusal of a fencer whose epoch is not above ours: it must not fence us at all."""

KILL_WAIT = 3.0
"""Seconds to wait for the killed agent to be gone."""

ALIVE = "answers on its control socket"
"""In the refusal when this node's agent is not hung: no fence of any kind is wanted."""

ALIVE_WAIT = 1.0
"""Seconds the agent has to answer `status` before it counts as hung."""


class FenceRefused(Exception):
    """The fencer may not fence this node (stale epoch, unreadable state)."""


def is_agent(cmdline: list[str]) -> bool:
    """Whether a process's argv is the mosqit-failover agent (``mosqit-failover ... agent``)."""
    for index, word in enumerate(cmdline[:4]):
        module = index > 0 and cmdline[index - 1] == "-m"
        if os.path.basename(word) == "mosqit-failover" or (
            module and word.split(".")[0] == "mosqit_failover"
        ):
            return "agent" in cmdline[index + 1 :]
    return False


def _cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [os.fsdecode(w) for w in raw.split(b"\0") if w]


def _gone(pid: int) -> bool:
    """True once the process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def kill_agent(pid_file: Path) -> tuple[bool, str]:
    """(ok, line): SIGKILL the agent named by ``pid_file`` and wait until it is gone."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return True, f"agent: not running (no {pid_file})"
    except OSError as error:
        return False, f"agent: cannot read {pid_file}: {error.strerror or error}"
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 1 << 22:
        return False, f"agent: {pid_file} holds {text[:20]!r}, not a PID; the agent was not killed"
    pid = int(text)
    if pid == os.getpid():
        return True, f"agent: not running ({pid_file} names this fence process)"
    try:
        cmdline = _cmdline(pid)
    except (FileNotFoundError, ProcessLookupError):
        return True, f"agent: not running (PID {pid} from {pid_file} is gone)"
    except OSError as error:
        return False, f"agent: cannot read /proc/{pid}/cmdline: {error.strerror or error}"
    if not is_agent(cmdline):
        shown = " ".join(cmdline)[:80]
        return True, f"agent: not running (PID {pid} is {shown!r}, not the agent; left alone)"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True, f"agent: not running (PID {pid} exited meanwhile)"
    except OSError as error:
        return False, f"agent: cannot kill PID {pid}: {error.strerror or error}"
    deadline = time.monotonic() + KILL_WAIT
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False, f"agent: PID {pid} got SIGKILL but is still there after {KILL_WAIT:g}s"
        time.sleep(0.01)
    return True, f"agent: PID {pid} killed (SIGKILL)"


def agent_answers(control_socket: Path, wait: float = ALIVE_WAIT) -> bool:
    """Whether the local agent answers a `status` request within `wait` seconds.

    A stopped (SIGSTOP) or hung agent still has its socket: the kernel accepts the
    connection, but nobody replies, so only a reply counts."""
    from mosqit_failover.control import ControlError, ask

    try:
        return ask(control_socket, {"command": "status"}, timeout=wait).get("ok") is True
    except ControlError:
        return False


def check_fencer(epoch: int, state: StateFile) -> tuple[int, Role]:
    """This node's (epoch, role) if a fencer in ``epoch`` may fence it; else FenceRefused."""
    try:
        own, role = state.load()
    except StateError as error:
        raise FenceRefused(f"cannot read this node's epoch: {error}") from None
    if epoch <= own:
        raise FenceRefused(
            f"the fencer's epoch {epoch} {STALE} {own} ({role.value}): "
            "a stale node must not fence a newer one"
        )
    return own, role


async def fence_here(
    epoch: int, cfg: configuration.Config, node: str, state: StateFile, out: TextIO
) -> bool:
    """Give up everything on this node (steps 2-5 above); True when all of it succeeded.

    Raises FenceRefused (before changing anything) when the fencer is not newer.

    One fence at a time: the fencer tries every network, and under loss two of its
    sessions can both get through. The later one waits for the lock and, when the
    earlier one fenced for the same epoch and nothing changed since, says so at once
    instead of stopping the resources a second time.
    """
    check_fencer(epoch, state)  # a refusal changes nothing, not even the lock file
    with open(cfg.state_dir / LOCK_FILE, "a", encoding="utf-8") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        own, role = check_fencer(epoch, state)  # the session before may have changed it
        earlier = _fenced_before(cfg.state_dir / DONE_FILE, epoch, own, role)
        if earlier is not None and await _vip_gone(cfg, node):
            _write_line(out, f"{FENCED} {earlier}, by an earlier session of the same fence")
            return True
        return await _fence_locked(epoch, cfg, node, state, out, own, role)


def _write_line(out: TextIO, line: str) -> None:
    """One line to the fencer. A fencer whose session dropped (heavy loss) no longer
    reads: the fence goes on, or a half-done one would leave the VIP and the services up
    with the agent killed."""
    with contextlib.suppress(OSError):
        out.write(line + "\n")
        out.flush()


async def _vip_gone(cfg: configuration.Config, node: str) -> bool:
    """Whether this node holds no VIP (False when that cannot be told)."""
    try:
        return not await asyncio.to_thread(Vip(cfg.vip.address, cfg.node(node).vip_interface).held)
    except EffectError:
        return False


def _fenced_before(path: Path, epoch: int, own: int, role: Role) -> str | None:
    """The summary of a fence done for `epoch` within DONE_FRESH seconds while this node
    kept epoch `own` (and is WAITING since), or None. A later fence of the same epoch (a
    retry) is done anew: something may have been started again since."""
    try:
        words = path.read_text(encoding="utf-8").split(" ", 3)
        done_at = float(words[2])
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    if role is not Role.WAITING or words[:2] != [str(epoch), str(own)]:
        return None
    if not 0 <= time.time() - done_at <= DONE_FRESH:
        return None
    return words[3].strip()


def _note_fenced(path: Path, epoch: int, own: int, summary: str) -> None:
    """Best effort: without it a second session only does the work again."""
    with contextlib.suppress(OSError):
        temporary = path.with_suffix(".tmp")
        temporary.write_text(f"{epoch} {own} {time.time():.3f} {summary}\n", encoding="utf-8")
        temporary.replace(path)


async def _fence_locked(
    epoch: int,
    cfg: configuration.Config,
    node: str,
    state: StateFile,
    out: TextIO,
    own: int,
    role: Role,
) -> bool:
    if await asyncio.to_thread(agent_answers, cfg.control_socket):
        raise FenceRefused(
            f"the agent on this node {ALIVE} within {ALIVE_WAIT:g}s: it is not hung, so it "
            f"is not fenced; if the peer does not hear it, check that UDP port {cfg.port} "
            "passes between the nodes on every network"
        )
    failures: list[str] = []

    def say(ok: bool, line: str) -> None:
        _write_line(out, line)
        if not ok:
            failures.append(line)

    def persist() -> tuple[bool, str]:
        try:
            state.save(own, Role.WAITING)
        except StateError as error:
            return False, f"state: cannot persist WAITING: {error}"
        return True, f"state: WAITING persisted with epoch {own} (was {role.value})"

    say(*persist())
    say(*kill_agent(cfg.state_dir / PID_FILE))
    ok, line = persist()  # the old agent may have saved between the first save and the kill
    if not ok:
        say(ok, line)
    vip = Vip(cfg.vip.address, cfg.node(node).vip_interface)
    vip_done = "VIP not held"
    try:
        if await asyncio.to_thread(vip.held):
            await vip.release()
            vip_done = "VIP removed"
            line = f"vip: {vip.address} removed from {vip.ifname}"
        else:
            line = f"vip: {vip.address} was not on {vip.ifname}"
        if await asyncio.to_thread(vip.held):
            raise EffectError(f"{vip.address.ip} is still on {vip.ifname} after removal")
        say(True, line)
    except EffectError as error:
        say(False, f"vip: cannot remove {vip.address} from {vip.ifname}: {error}")
    stopped = 0
    for resource in reversed(cfg.resources):
        try:
            await make_runner(resource).stop()
        except EffectError as error:
            text = str(error)  # the runners' errors start with "resource NAME: "
            if not text.startswith(f"resource {resource.name}: "):
                text = f"resource {resource.name}: stop failed: {text}"
            say(False, text)
        else:
            stopped += 1
            say(True, f"resource {resource.name}: stopped")
    if failures:
        say(True, f"{NOT_FENCED} " + "; ".join(failures))
        return False
    plural = "" if stopped == 1 else "s"
    summary = f"{vip_done}, {stopped} resource{plural} stopped"
    _note_fenced(cfg.state_dir / DONE_FILE, epoch, own, summary)
    say(True, f"{FENCED} {summary}")
    _journal(epoch, summary)
    return True


def _journal(epoch: int, what: str) -> None:
    """One line in this node's journal, when there is one (best effort)."""
    journal = JournalSocket()
    text = f"fenced by the peer (its epoch {epoch}): {what}; this node is WAITING"
    journal.send(our_entry(text, 4, {"FENCED_BY_EPOCH": epoch}))
    journal.close()


def serve(
    epoch: int, cfg: configuration.Config, state: StateFile, node: str | None, out: TextIO
) -> int:
    """Run ``MARKER EPOCH FENCE`` for the forced command: 0 fenced, 1 not all done.

    A refusal raises :class:`FenceRefused` before anything changed (the forced
    command's exit 77).
    """
    try:
        name = configuration.pick_node(cfg, node, socket.gethostname())
    except configuration.ConfigError as error:
        raise FenceRefused(f"{MARKER} {FENCE}: {error}") from None
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # begun, a fence is finished: see say()
    return 0 if asyncio.run(fence_here(epoch, cfg, name, state, out)) else 1
