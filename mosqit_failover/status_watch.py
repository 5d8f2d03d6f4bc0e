"""`mosqit-failover status [--watch]`: the agent's status as text, once or live.

The live view is crm_mon's: the text redrawn every interval until Ctrl-C. An
agent that does not answer is shown as such and asked again at the next
refresh, so the view survives an agent restart. A stdout that is no terminal
(a pipe, a file) gets one snapshot per interval, separated by a line, without
escape codes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from mosqit_failover.control import ControlError, UnreadableReply, ask
from mosqit_failover.terminal import write_control

Render = Callable[[dict[str, Any]], str]
CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase the screen: a redraw, not a scroll
SEPARATOR = "-" * 72
MIN_TIMEOUT = 2.0  # a refresh waits at least this long for a busy agent
MAX_TIMEOUT = 10.0  # ... and at most this long, however long the interval


def format_status(s: dict[str, Any]) -> str:
    """The status reply of the agent as the text `mosqit-failover status` prints."""
    peer = s["peer"]  # every agent reports it; newer ones also "peers", one per node
    lines = [
        f"cluster {s['cluster']}  VIP {s['vip']}",
        f"this node  {s['node']}: {s['role']} ({s['mode']}), epoch {s['epoch']}"
        + ("" if s["candidate"] else ", not a candidate"),
    ]
    for net, health in s["uplinks"].items():
        lines.append(f"  uplink {net}: {health}")
    peers = s.get("peers") or {peer["node"]: peer}
    for view in peers.values():
        lines += _peer_lines(view, multi=len(peers) > 1)
    for sync in (s.get("sync") or {}).get("dirs", []):
        error = f", last error: {sync['last_error']}" if sync.get("last_error") else ""
        lag = sync.get("lag_seconds")
        lag_text = "-" if lag is None else f"{lag:.1f}s"
        lines.append(
            f"sync {sync['path']}: {sync['state']}, lag {lag_text}, "
            f"{sync.get('pending', 0)} pending{error}"
        )
    failures = s.get("resource_failures") or {}  # absent from an older agent's status
    if failures:
        counted = ", ".join(f"{name} {count}" for name, count in failures.items())
        lines.append(f"resource failures that still count: {counted}")
    link = s["peer_link"]
    dropped = ", ".join(f"{k} {v}" for k, v in link["dropped"].items()) or "none"
    beat = s.get("heartbeat_ms")
    beat_text = f", heartbeat every {beat} ms" if beat is not None else ""
    lines.append(f"peer link  accepted {link['accepted']}, dropped: {dropped}{beat_text}")
    lines.append("recent decisions:")
    lines += [f"  {line}" for line in s["recent_decisions"][-10:]]
    return "\n".join(lines)


def _peer_lines(peer: dict[str, Any], multi: bool) -> list[str]:
    heard = peer["heard_ago"]
    heard_text = "never heard" if heard is None else f"heard {heard * 1000:.0f} ms ago"
    data = ""
    if multi and peer.get("data_epoch") is not None:
        commit = f", synchronous commit {peer['commit']}" if peer.get("commit") else ""
        data = (
            f", data of epoch {peer['data_epoch']}{commit}, no. {peer.get('rank', 0) + 1} "
            "in the order"
        )
    lines = [
        f"peer       {peer['node']}: {peer['role']} ({peer['mode'] or '?'}), epoch "
        f"{peer['epoch'] if peer['epoch'] is not None else '?'}, {heard_text}{data}"
    ]
    if peer.get("unauthenticated"):
        lines.append(f"  !! {peer['unauthenticated']}")
    fence = peer.get("fence")
    if fence:
        lines.append(f"  fence for epoch {fence['epoch']}: {fence['state']} {fence['detail']}")
    losses = peer.get("echo_loss") or {}  # absent from an older agent's status
    blocked = peer.get("echo_blocked")
    blocked = blocked if isinstance(blocked, list) else ()
    for net, ago in peer["heard_ago_by_network"].items():
        seen = "never" if ago is None else f"{ago * 1000:.0f} ms ago"
        loss = losses.get(net) or 0
        lost = f" (recent echo loss {loss:.0%})" if loss else ""
        if net in blocked:
            lost = " (ICMP echo filtered? its messages arrive)"
        lines.append(
            f"  network {net}: last message {seen}, echo misses in a row "
            f"{peer['echo_misses'].get(net, 0)}{lost}, peer's uplink "
            f"{'ok' if peer['uplinks'].get(net) else 'down/unknown'}"
        )
    return lines


class StatusUnavailable(Exception):
    """The agent gave no usable status; the message says why and what to do."""


def not_answering(path: Path) -> str:
    return (
        f"agent not answering on {path}: is mosqit-failover running? "
        "systemctl status mosqit-failover"
    )


def ask_status(path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """The status of the agent at `path` (this command and the Nagios check ask alike).

    Raises ControlError when the agent cannot be asked or its reply cannot be read
    (UnreadableReply), StatusUnavailable when its reply is a refusal.
    """
    reply = ask(path, {"command": "status"}, timeout=timeout)
    status = reply.get("status")
    if not reply.get("ok") or not isinstance(status, dict):
        raise StatusUnavailable(f"the agent refused status: {reply.get('error')}")
    return status


def fetch(path: Path, render: Render, timeout: float = 10.0) -> str:
    """Ask the agent at `path` for its status and render it.

    Raises what ask_status raises, and StatusUnavailable when the status cannot be
    rendered.
    """
    status = ask_status(path, timeout)
    try:
        return render(status)  # escaped where it is written (terminal.SafeWriter)
    except (KeyError, TypeError, AttributeError, ValueError, ArithmeticError) as error:
        # an agent of another version, not yet restarted after an upgrade
        raise StatusUnavailable(
            f"the agent's status reply lacks or mangles {error}: is the agent the same "
            "version as this command? (systemctl restart mosqit-failover after an upgrade)"
        ) from None


def watch(
    path: Path,
    interval: float,
    out: TextIO,
    render: Render = format_status,
    count: int | None = None,
) -> int:
    """Show the status every `interval` seconds, `count` times (None: until Ctrl-C); exit 0."""
    terminal = out.isatty()
    host = socket.gethostname()
    shown = 0
    due = time.monotonic()
    try:
        while True:
            try:
                text = fetch(path, render, timeout=min(max(interval, MIN_TIMEOUT), MAX_TIMEOUT))
            except (UnreadableReply, StatusUnavailable) as error:  # something answered
                text = str(error)
            except ControlError as error:
                text = f"{not_answering(path)}\n  ({error})"
            header = (
                f"every {interval:g}s: mosqit-failover status on {host}, "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} (Ctrl-C quits)"
            )
            if terminal:
                write_control(out, CLEAR)
                out.write(f"{header}\n\n{text}\n")
            else:
                out.write(f"{SEPARATOR}\n" if shown else "")
                out.write(f"{header}\n{text}\n")
            out.flush()
            shown += 1
            if count is not None and shown >= count:
                return 0
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:  # a slow agent made us late: count from now rather than catch up in a burst
                due = time.monotonic()
    except KeyboardInterrupt:  # the way out of a live view, not an error
        if terminal:
            out.write("\n")
            out.flush()
        return 0
