"""`switchover --wait`: follow a switchover until the peer serves or it is given up.

A switchover is asynchronous: the agent drains the directory sync (up to a minute),
stops the resources, releases the VIP, and only then does the peer promote. Its
answer, "handing over to beta", says the handover began, not that it ended. An
operator who scripts a maintenance window needs the end: the peer serving, or this
node serving on because the handover was aborted (a sync that could not push
everything, docs/safety.md). :func:`judge` reads that off the local agent's status;
:func:`follow` asks for the status until :func:`judge` has an outcome or time is up,
and prints the decisions the agent makes meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ABORTED = "handover-aborted"
POLL = 0.2  # seconds between two status requests: cheap for the agent, quick to report
DEFAULT_WAIT = 180.0  # a planned sync drain (60 s) and a slow unit's stop and start
PROGRESS = 10.0  # seconds between two "still handing over" lines: a drain is silent
PATIENCE = 30.0  # seconds an agent may not answer (a restart) before the wait gives up


@dataclass(frozen=True)
class Start:
    """Where the switchover began: this node's epoch and its decision counters then."""

    epoch: int
    decisions: int  # every decision this agent made since it started
    aborted: int  # of them, handovers aborted


@dataclass(frozen=True)
class Outcome:
    """How the switchover ended: `ok` when a peer serves, `text` says what happened."""

    ok: bool
    text: str


def start_of(reply: dict[str, Any]) -> Start:
    """The baseline from the agent's answer to the switchover command."""
    counts = reply["decisions_by_kind"]
    return Start(int(reply["epoch"]), int(reply["decisions_total"]), int(counts.get(ABORTED, 0)))


def new_decisions(seen: int, status: dict[str, Any]) -> list[str]:
    """The decision lines of `status` made after the first `seen` ones (at most the
    status's last 20: a longer run between two looks is shown in part)."""
    fresh = int(status["decisions_total"]) - seen
    recent = list(status["recent_decisions"])
    return recent[-fresh:] if fresh > 0 else []


def judge(start: Start, status: dict[str, Any]) -> Outcome | None:
    """The switchover's outcome by this node's status, None while it is under way."""
    role, epoch = str(status["role"]), int(status["epoch"])
    if int(status["decisions_by_kind"].get(ABORTED, 0)) > start.aborted:
        return Outcome(
            False,
            f"switchover aborted: this node serves on in epoch {epoch} (the decision "
            "above says why); hand over again once `mosqit-failover status` shows the "
            "directories in sync",
        )
    serving = [
        f"{p['node']} is ACTIVE in epoch {p['epoch']}"
        for p in status["peers"].values()
        if p["role"] == "ACTIVE" and isinstance(p["epoch"], int) and p["epoch"] > start.epoch
    ]
    if serving and role in ("STANDBY", "WAITING"):
        return Outcome(True, f"switchover done: {', '.join(serving)}; this node is {role}")
    if role in ("PROMOTING", "ACTIVE") and epoch > start.epoch:
        return Outcome(
            False,
            f"switchover did not complete: this node took the service back in epoch "
            f"{epoch} (the decisions above say why)",
        )
    return None


def follow(
    start: Start,
    ask_status: Callable[[], dict[str, Any]],
    show: Callable[[str], None],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    unanswered: tuple[type[Exception], ...] = (),
) -> Outcome:
    """Ask for the status every POLL s until :func:`judge` decides or `timeout` s pass,
    showing every new decision line. What `ask_status` raises of `unanswered` (the
    control socket gone or refusing) is waited out for PATIENCE s: an agent restarted
    meanwhile has no socket for a moment, and the wait ended there with exit 2 (a
    helper's finding); anything else, and a longer silence, is raised to the caller."""
    began = clock()
    said_at = answered_at = began
    seen = start.decisions
    silent = False
    while True:
        try:
            status = ask_status()
        except unanswered as error:
            now = clock()
            if now - answered_at > PATIENCE or now - began >= timeout:
                raise
            if not silent:
                show(f"the agent does not answer ({error}); waiting for it (a restart?)")
                silent = True
            sleep(POLL)
            continue
        answered_at, silent = clock(), False
        if int(status["decisions_total"]) < seen:  # the agent restarted: its count did too
            seen = 0
        for line in new_decisions(seen, status):
            show(line)
            said_at = clock()
        seen = int(status["decisions_total"])
        outcome = judge(start, status)
        if outcome is not None:
            return outcome
        now = clock()
        where = f"this node is {status['role']}, " + ", ".join(
            f"{p['node']} {p['role']}" for p in status["peers"].values()
        )
        if now - began >= timeout:
            return Outcome(
                False,
                f"switchover not done after {timeout:g} s: {where}; it may still complete "
                "(mosqit-failover status)",
            )
        if now - said_at >= PROGRESS:
            show(f"still handing over after {now - began:.0f} s: {where}")
            said_at = now
        sleep(POLL)
