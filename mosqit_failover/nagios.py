"""`check_mosqit_failover`: a Nagios/Icinga check (monitoring-plugins conventions).

It asks the local agent over its control socket for `status` and prints one
line, `MOSQIT-FAILOVER <STATE> - <what> | <perfdata>`, exiting with

    0 OK        exactly one node ACTIVE, every other one ready to take over
    1 WARNING   MANUAL or MAINTENANCE mode, a peer running another cluster.order,
                no standby (peer not heard, or it or
                this node lacks a network), a standby less (multi-server: one of
                the standbys is not ready), sync lagging (when the agent reports sync),
                a synchronous directory degraded (a standby misses writes), a
                resource whose monitor failures still count (it was restarted)
    2 CRITICAL  no node ACTIVE, or two ACTIVE, or a peer's messages fail
                authentication, or fencing a peer failed
    3 UNKNOWN   the agent does not answer, its reply is unreadable, bad arguments

Each peer's role counts only if the agent heard from it within --peer-stale
(default 5 s); an older view is "not heard". Perfdata: state (0 WAITING,
1 STANDBY, 2 PROMOTING, 3 ACTIVE, 4 DEMOTING), epoch, failovers (times this
node became ACTIVE since the agent started, a counter), probe losses per probe
(counters), peer-link drops (a counter), sync lag and pending when reported.

Reading only: it never changes anything on the node.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mosqit_failover.terminal import terminal_safe

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
ROLE_NUMBER = {"WAITING": 0, "STANDBY": 1, "PROMOTING": 2, "ACTIVE": 3, "DEMOTING": 4}
PREFIX = "MOSQIT-FAILOVER"


def line(code: int, text: str, perfdata: Sequence[str] = ()) -> str:
    out = f"{PREFIX} {NAMES[code]} - {text}"
    return f"{out} | {' '.join(perfdata)}" if perfdata else out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sync_numbers(sync: Any) -> tuple[float | None, float | None]:
    """(lag in seconds, pending changes) from status["sync"], whatever is present.

    The agent reports {"running": bool, "dirs": [{"path", "lag_seconds", "pending", ...}]}
    (then the worst lag and the sum of pending); a single {"lag_seconds"|"lag": n,
    "pending": n} or a mapping of directories to such dicts is read too. None where absent.
    """
    if not isinstance(sync, dict):
        return None, None
    dirs = sync.get("dirs")
    if isinstance(dirs, list):
        parts = [d for d in dirs if isinstance(d, dict)]
        if not parts:  # not syncing (a standby) or nothing configured
            return None, None
    else:
        parts = [v for v in sync.values() if isinstance(v, dict)] or [sync]
    lags = [_number(p.get("lag_seconds", p.get("lag"))) for p in parts]
    pendings = [_number(p.get("pending")) for p in parts]
    known_lags = [x for x in lags if x is not None]
    known_pending = [x for x in pendings if x is not None]
    return (
        max(known_lags) if known_lags else None,
        sum(known_pending) if known_pending else None,
    )


def _degraded(status: dict[str, Any]) -> list[str]:
    """The synchronous directories the agent reports degraded (docs/sync-mode.md)."""
    sync = status.get("sync")
    dirs = sync.get("dirs") if isinstance(sync, dict) else None
    return [
        str(d.get("path"))
        for d in (dirs if isinstance(dirs, list) else [])
        if isinstance(d, dict) and d.get("degraded") is True
    ]


def _label(name: str) -> str:
    """A perfdata label: quoted when it has a space, '=' or a quote, and a quote inside is
    written twice (the Nagios plugin guidelines)."""
    if not any(c in name for c in " '="):
        return name
    doubled = name.replace("'", "''")
    return f"'{doubled}'"


def _fmt(value: float) -> str:
    return f"{value:g}"


def perfdata(status: dict[str, Any], sync_warn: float) -> list[str]:
    out: list[str] = []
    role = ROLE_NUMBER.get(str(status.get("role")))
    if role is not None:
        out.append(f"state={role};;;0;4")
    epoch = _number(status.get("epoch"))
    if epoch is not None:
        out.append(f"epoch={_fmt(epoch)};;;0")
    failovers = _number(status.get("failovers"))
    if failovers is not None:
        out.append(f"failovers={_fmt(failovers)}c;;;0")
    probes = status.get("probes")
    for name, probe in sorted(probes.items() if isinstance(probes, dict) else []):
        sent = _number(probe.get("sent")) if isinstance(probe, dict) else None
        answered = _number(probe.get("answered")) if isinstance(probe, dict) else None
        if sent is not None and answered is not None:
            out.append(f"{_label('lost_' + name)}={_fmt(max(sent - answered, 0))}c;;;0")
    link = status.get("peer_link")
    if isinstance(link, dict) and isinstance(link.get("dropped"), dict):
        dropped = sum(_number(v) or 0 for v in link["dropped"].values())
        out.append(f"peer_link_dropped={_fmt(dropped)}c;;;0")
    lag, pending = sync_numbers(status.get("sync"))
    if lag is not None:
        out.append(f"sync_lag={_fmt(lag)}s;{_fmt(sync_warn)};;0")
    if pending is not None:
        out.append(f"sync_pending={_fmt(pending)};;;0")
    return out


def _peers(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every peer's view: status["peers"] (multi-server and newer agents), else ["peer"].

    Raises KeyError when a view lacks its node or role."""
    peers = status.get("peers")
    views = list(peers.values()) if isinstance(peers, dict) and peers else [status["peer"]]
    if not all(isinstance(v, dict) and "node" in v and "role" in v for v in views):
        raise KeyError("peer")
    return views


def _peer_state(peer: dict[str, Any], peer_stale: float) -> tuple[bool, str]:
    """(heard within peer_stale, how to show it)."""
    heard_ago = _number(peer.get("heard_ago"))
    fresh = heard_ago is not None and heard_ago <= peer_stale
    shown = str(peer["role"]) if fresh else "not heard"
    if heard_ago is not None and not fresh:
        shown += f" for {heard_ago:.0f}s"
    if fresh:
        shown += f" (epoch {peer.get('epoch')})"
    return fresh, shown


def evaluate(
    status: dict[str, Any], *, peer_stale: float = 5.0, sync_warn: float = 10.0
) -> tuple[int, str]:
    """The check's exit code and status line for an agent's status reply (pure)."""
    try:
        node, role, mode = str(status["node"]), str(status["role"]), str(status["mode"])
        peers = _peers(status)
    except (KeyError, TypeError):
        return UNKNOWN, line(UNKNOWN, "the agent's status reply lacks node, role, mode or peer")
    states = [(p, *_peer_state(p, peer_stale)) for p in peers]
    shown = ", ".join(f"{p['node']} {text}" for p, _, text in states)
    label = "peer" if len(peers) == 1 else "peers"
    summary = f"{node} {role} ({mode}), epoch {status.get('epoch')}; {label} {shown}"
    # the order of the text: what blocks failover first, then roles, fences, modes, sync
    problems = [
        (CRITICAL, f"{p['unauthenticated']}; no automatic failover")
        for p, _, _ in states
        if p.get("unauthenticated")
    ]
    problems += _role_problems(node, role, states)
    for peer, _, _ in states:
        fence = peer.get("fence")
        if isinstance(fence, dict) and fence.get("state") == "failed":
            what = f"fencing peer {peer['node']} failed: {fence.get('detail')}"
            problems.append((CRITICAL, what))
    problems += [
        (WARNING, f"peer {p['node']} runs another cluster.order: copy one config to every node")
        for p, fresh, _ in states
        if fresh and p.get("order_differs")
    ]
    modes = [(node, mode)] + [(str(p["node"]), p.get("mode")) for p, fresh, _ in states if fresh]
    problems += [
        (WARNING, f"{who} in {m} mode") for who, m in modes if m in ("MANUAL", "MAINTENANCE")
    ]
    lag, _ = sync_numbers(status.get("sync"))
    if lag is not None and lag > sync_warn:
        problems.append((WARNING, f"sync lags {lag:g}s (over {sync_warn:g}s)"))
    problems += [(WARNING, f"synchronous sync of {path} degraded") for path in _degraded(status)]
    failures = status.get("resource_failures")  # absent from an older agent's status
    if isinstance(failures, dict) and failures:
        counted = ", ".join(f"{terminal_safe(str(n))} {c}" for n, c in sorted(failures.items()))
        problems.append((WARNING, f"resource failures on this node: {counted}"))
    code = max((c for c, _ in problems), default=OK)
    text = "; ".join([p for _, p in problems] + [summary])
    return code, line(code, text, perfdata(status, sync_warn))


def _role_problems(
    node: str, role: str, states: list[tuple[dict[str, Any], bool, str]]
) -> list[tuple[int, str]]:
    """Exactly one ACTIVE node, and every other one a STANDBY ready to take over."""
    active = [str(p["node"]) for p, fresh, _ in states if fresh and p["role"] == "ACTIVE"]
    active += [node] if role == "ACTIVE" else []
    if len(active) > 1:
        pair = len(states) == 1
        return [(CRITICAL, "both nodes are ACTIVE" if pair else f"{', '.join(active)} are ACTIVE")]
    if not active:
        return [(CRITICAL, "no node is ACTIVE")]
    if role != "ACTIVE" and role != "STANDBY":
        return [(WARNING, f"no standby: this node is {role}")]
    if role != "ACTIVE":
        return []
    missing = []
    for peer, fresh, _ in states:
        if not fresh:
            missing.append(f"peer {peer['node']} not heard")
        elif peer["role"] != "STANDBY":
            missing.append(f"peer {peer['node']} is {peer['role']}")
    if len(missing) == len(states):
        return [(WARNING, f"no standby: {', '.join(missing)}")]
    return [(WARNING, f"a standby less: {m}") for m in missing]


def _seconds(text: str) -> float:
    from mosqit_failover.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r}: give seconds or a duration like "5s"'
        ) from None


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN), not argparse's 2 (which would read CRITICAL)."""

    def error(self, message: str) -> NoReturn:
        print(line(UNKNOWN, f"usage: {message}"))
        sys.exit(UNKNOWN)


def build_parser() -> argparse.ArgumentParser:
    from mosqit_failover import add_version_option
    from mosqit_failover.config import DEFAULT_PATH

    parser = _Parser(
        prog="check_mosqit_failover",
        description="Nagios/Icinga check of the local mosqit-failover agent.",
    )
    add_version_option(parser, "-V", "--version")
    parser.add_argument("--config", default=str(DEFAULT_PATH), help="config file (for the socket)")
    parser.add_argument("--socket", help="control socket (default: from the config)")
    parser.add_argument("-t", "--timeout", type=_seconds, default=10.0, help="seconds to wait")
    parser.add_argument(
        "--peer-stale", type=_seconds, default=5.0, help="peer view older than this: not heard"
    )
    parser.add_argument(
        "--sync-warn", type=_seconds, default=10.0, help="WARNING when sync lags more"
    )
    return parser


def check(args: argparse.Namespace) -> tuple[int, str]:
    from mosqit_failover import config
    from mosqit_failover.control import ControlError
    from mosqit_failover.status_watch import StatusUnavailable, ask_status

    if args.socket:
        path = Path(args.socket)
    else:
        try:
            path = config.load(Path(args.config)).control_socket
        except config.ConfigError as error:
            return UNKNOWN, line(UNKNOWN, f"cannot read the config: {error}")
    try:
        status = ask_status(path, timeout=args.timeout)
    except StatusUnavailable as error:
        return UNKNOWN, line(UNKNOWN, str(error))
    except ControlError as error:
        return UNKNOWN, line(UNKNOWN, f"agent not answering: {error}")
    return evaluate(status, peer_stale=args.peer_stale, sync_warn=args.sync_warn)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code, text = check(args)
    except Exception as error:  # a check must say UNKNOWN, never crash with a traceback
        code, text = UNKNOWN, line(UNKNOWN, f"check failed: {type(error).__name__}: {error}")
    print(terminal_safe(text))  # the agent's words, and NRPE hands them to a web page
    return code


if __name__ == "__main__":
    sys.exit(main())
