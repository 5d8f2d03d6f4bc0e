"""Fence the peer (STONITH) before the OS-problem promotion.

When the peer's kernel answers ICMP but its agent is silent, the peer may
still hold the VIP and run the services. Before promoting, the core asks the
shell to fence it (:class:`~mosqit_failover.actions.FencePeer`); the shell
runs :meth:`Fencer.fence` and answers with a
:class:`~mosqit_failover.events.FenceResult` built from the
:class:`FenceOutcome`. The other end of the ssh fence is
:mod:`mosqit_failover.sync.fence_target`.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass
from pathlib import Path

from mosqit_failover import config as configuration
from mosqit_failover.effects.resources import CommandTimeout, Outcome, run_command
from mosqit_failover.sync import commands
from mosqit_failover.sync.fence_target import ALIVE, FENCED, NOT_FENCED, STALE

REFUSED_EXIT = 77
"""The forced command's exit status for a refusal (stale epoch, unknown request)."""

CONNECT_TIMEOUT = 5.0
"""Longest ssh ConnectTimeout of one address (shorter when less time is left)."""

STAGGER = 2.5
"""Seconds the ssh fence waits for an answer via one network before it tries the next one
as well. Under heavy loss one session's handshake can take longer than the whole fence
(a lab run at 30 % loss: 10 s without an answer via the first network, the second never
tried); both at once double the chances. Longer than a healthy fence with quick stops
(the peer waits up to 1 s for its agent's answer, then kills it and stops things): a
second session there is only noise. The peer runs two sessions one after the other and
answers the second from the first's result, so they do no harm."""


@dataclass(frozen=True)
class FenceOutcome:
    """How a fence ended: ``fenced`` when any fence succeeded; ``detail`` names each
    fence tried and its result, e.g. ``ssh fence via 10.1.0.2: fenced (VIP removed,
    2 resources stopped); power fence: not needed``."""

    fenced: bool
    detail: str


class Fencer:
    """Fences a peer of this node as ``[fencing]`` says: ``fence(epoch, peer=NAME)``.

    Which peer is the caller's word: ``peer`` names any other node of the
    config (the ssh fence goes to that node's addresses, the power fence runs
    that node's ``fencing.power`` command). Without ``peer`` it is the other
    node of a pair; in a cluster of three or more the peer must be named (a
    missing, unknown or own name is a failed fence, never a guess).

    Guarantees:

    - :meth:`fence` never raises (a cancelled call kills what it started and
      re-raises CancelledError) and returns within ``fencing.timeout`` plus the
      time to kill a process.
    - The ssh fence (``fencing.ssh``, on by default) runs ``ssh ... PEER
      'mosqit-sync EPOCH --fence'`` with the fencing key, BatchMode, a
      ConnectTimeout and no shared master connection, to the peer's address on
      each network: the next network's session starts when the one before has
      failed or has not answered within ``STAGGER``, and runs alongside it. The
      first answer of the peer's forced command (fenced, not fenced, refused)
      ends the ssh fence and kills the sessions still running.
    - The power fence runs only when the ssh fence did not succeed (or is off)
      and ``fencing.power`` has a command for the peer: the command line is
      split (shlex) and executed without a shell; exit 0 means fenced. With
      both configured, the ssh fence gets at most half of the time, so the
      power fence always gets the other half. It never runs when the peer
      refused the ssh fence because its epoch is not below ours: then we
      are the stale node, and powering off the newer one would be the outage.
    - Every process runs in its own process group, stdin from /dev/null; when
      its time is up the whole group gets SIGKILL.
    - ``fenced`` is True only when a fence reported success; never otherwise.
    """

    def __init__(self, cfg: configuration.Config, node: str) -> None:
        self.cfg = cfg
        self.node = node
        self.fencing = cfg.fencing

    def __repr__(self) -> str:
        return f"Fencer(node={self.node!r})"

    def _target(self, peer: str | None) -> configuration.Node | str:
        """The node to fence, or why there is none."""
        if peer is None:
            others = self.cfg.peers_of(self.node)
            if len(others) == 1:
                return others[0]
            return f"no peer named ({len(self.cfg.nodes)} nodes: the peer to fence must be named)"
        if peer == self.node:
            return f"{peer!r} is this node"
        try:
            return self.cfg.node(peer)
        except KeyError:
            return f"{peer!r} is not a node of this config"

    async def fence(self, epoch: int, *, peer: str | None = None) -> FenceOutcome:
        """Fence ``peer`` (default: the pair's other node) for a promotion in ``epoch``;
        see the class's guarantees."""
        try:
            target = self._target(peer)
            if isinstance(target, str):
                return FenceOutcome(False, f"fence failed: {target}")
            return await self._fence(epoch, target)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not take the shell down: report it
            return FenceOutcome(False, f"fence failed: internal error ({error!r})")

    async def _fence(self, epoch: int, peer: configuration.Node) -> FenceOutcome:
        deadline = time.monotonic() + self.fencing.timeout
        power = self.fencing.power_command(peer.name)
        parts: list[str] = []
        fenced = stale = alive = False
        if self.fencing.ssh:
            share = self.fencing.timeout / 2 if power else self.fencing.timeout
            fenced, text = await self._ssh_fence(epoch, peer, time.monotonic() + share)
            stale = not fenced and STALE in text
            alive = not fenced and ALIVE in text
            parts.append(text)
        else:
            parts.append("ssh fence: off")
        if not power:
            parts.append("power fence: not configured")
        elif fenced:
            parts.append("power fence: not needed")
        elif stale:
            parts.append("power fence: not tried (the peer holds a newer epoch)")
        elif alive:
            parts.append("power fence: not tried (the peer's agent answers: it is not hung)")
        else:
            fenced, text = await self._power_fence(power, deadline)
            parts.append(text)
        return FenceOutcome(fenced, "; ".join(parts))

    # -- ssh ------------------------------------------------------------------

    async def _ssh_fence(
        self, epoch: int, peer: configuration.Node, deadline: float
    ) -> tuple[bool, str]:
        addresses = [str(peer.on(n.name).address) for n in self.cfg.networks]
        said: dict[str, str] = {}  # what each address tried said (none: not needed)
        running: dict[asyncio.Task[tuple[bool, bool, str]], str] = {}
        waiting = list(addresses)
        verdict: bool | None = None
        try:
            while verdict is None and (waiting or running):
                if waiting and deadline - time.monotonic() >= 0.5:
                    address = waiting.pop(0)
                    running[asyncio.create_task(self._ssh_try(epoch, address, deadline))] = address
                elif waiting:
                    for address in waiting:
                        said[address] = "not tried (time ran out)"
                    waiting.clear()
                if not running:
                    continue
                done, _ = await asyncio.wait(
                    running, timeout=STAGGER if waiting else None, return_when=FIRST_COMPLETED
                )
                for task in done:  # all of them: two can end in the same wake-up
                    answered, ok, said[running.pop(task)] = task.result()
                    if answered and verdict is None:
                        verdict = ok
        finally:
            for task, address in running.items():
                task.cancel()
                said[address] = "stopped (answered via another network)"
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        tried = "; ".join(f"via {a}: {said[a]}" for a in addresses if a in said)
        return bool(verdict), f"ssh fence {tried}"

    async def _ssh_try(self, epoch: int, address: str, deadline: float) -> tuple[bool, bool, str]:
        """(the peer's forced command answered, fenced, how it reads) of one session."""
        left = deadline - time.monotonic()
        connect = min(CONNECT_TIMEOUT, max(1.0, left))
        argv = commands.fence_argv(self._peer(address, connect), epoch)
        try:
            outcome = await run_command(argv, left)
        except CommandTimeout:
            return False, False, f"no answer within {left:.1f}s (killed)"
        except OSError as error:
            return False, False, f"cannot run ssh: {error.strerror or error}"
        return _ssh_result(outcome)

    def _peer(self, address: str, connect: float) -> commands.Peer:
        return commands.Peer(
            host=address,
            user=self.fencing.ssh_user,
            port=self.fencing.ssh_port,
            key=self.fencing.ssh_key,
            connect_timeout=connect,
            control_path=Path("none"),  # never through the sync's master connection
        )

    # -- power ----------------------------------------------------------------

    async def _power_fence(self, command: str, deadline: float) -> tuple[bool, str]:
        argv = shlex.split(command)
        name = f"power fence ({Path(argv[0]).name})"
        left = deadline - time.monotonic()
        if left < 0.1:
            return False, f"{name}: not tried (time ran out)"
        try:
            outcome = await run_command(argv, left)
        except CommandTimeout:
            return False, f"{name}: no answer within {left:.1f}s (killed)"
        except OSError as error:
            return False, f"{name}: cannot run {argv[0]}: {error.strerror or error}"
        if outcome.code == 0:
            return True, f"{name}: fenced"
        return False, f"{name}: failed (exit {outcome.code}; {outcome.tail()})"


def _ssh_result(outcome: Outcome) -> tuple[bool, bool, str]:
    """(the peer's forced command answered, fenced, how it reads) of one ssh fence."""
    lines = [line.strip() for line in outcome.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if outcome.code == 0 and last.startswith(FENCED):
        return True, True, f"fenced ({last.removeprefix(FENCED).strip()})"
    if outcome.code == REFUSED_EXIT or commands.REFUSED in outcome.stderr:
        return True, False, f"refused ({commands.summary(outcome.stderr)})"
    if last.startswith(NOT_FENCED):
        return True, False, f"failed ({last.removeprefix(NOT_FENCED).strip()})"
    if commands.never_connected(outcome.code, outcome.stderr):
        return False, False, f"unreachable ({commands.summary(outcome.stderr)})"
    return False, False, f"failed (exit {outcome.code}; {outcome.tail()})"
