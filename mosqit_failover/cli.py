"""The `mosqit-failover` command line."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mosqit_failover import config as configuration


class UsageError(Exception):
    """A command line that cannot be carried out; the message says how to fix it."""


def _check_config(args: argparse.Namespace) -> int:
    try:
        cfg = configuration.load(Path(args.path))
        if args.node:
            configuration.pick_node(cfg, args.node, socket.gethostname())
    except configuration.ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 2
    nodes = ", ".join(n.name for n in cfg.nodes)
    print(
        f"{args.path}: OK: cluster {cfg.cluster}, nodes {nodes}, VIP {cfg.vip.address}, "
        f"{len(cfg.resources)} resource(s), {len(cfg.sync)} synced dir(s)"
    )
    if not args.node:  # may run on an operator's machine: a note, not a failure
        try:
            here = configuration.pick_node(cfg, None, socket.gethostname())
            print(f"this host runs as node {here}")
        except configuration.ConfigError as error:
            print(f"note: {error.problems[0]}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from mosqit_failover import sim_scenarios

    if args.list or not args.scenario:
        for scenario in sim_scenarios.SCENARIOS.values():
            print(f"{scenario.name:16} {scenario.summary}")
        return 0
    if args.scenario not in sim_scenarios.SCENARIOS:
        known = ", ".join(sim_scenarios.SCENARIOS)
        raise UsageError(f"no scenario {args.scenario!r}; known: {known} (see simulate --list)")
    scenario = sim_scenarios.SCENARIOS[args.scenario]
    world, problems = sim_scenarios.run(args.scenario, seed=args.seed)
    print(f"== {scenario.name}: {scenario.summary}")
    for line in world.timeline:
        if args.verbose or not line.text.startswith("plan:"):
            print(f"{line.time:9.3f}s  {line.node:6} {line.text}")
    roles = ", ".join(f"{n}={r.value if r else 'DOWN'}" for n, r in world.roles().items())
    print(
        f"end: {roles}; both held the VIP while hearing each other: {world.dual_vip_seconds:.3f}s"
    )
    for problem in problems:
        print(f"EXPECTATION FAILED: {problem}")
    return 1 if problems else 0


def _load(args: argparse.Namespace) -> tuple[configuration.Config, str]:
    try:
        cfg = configuration.load(Path(args.config))
        node = configuration.pick_node(cfg, getattr(args, "node", None), socket.gethostname())
    except configuration.ConfigError as error:
        raise UsageError(error.report()) from None
    return cfg, node


def _agent(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from mosqit_failover.authkeys import SecretFileError, load_keyring
    from mosqit_failover.daemon import Agent
    from mosqit_failover.effects import EffectError
    from mosqit_failover.journal import DecisionLog

    cfg, node = _load(args)
    try:
        keyring = load_keyring(cfg.secret_file)
    except SecretFileError as error:
        raise UsageError(str(error)) from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    agent = Agent(cfg, node, keyring, DecisionLog(), config_path=Path(args.config))
    try:
        return asyncio.run(agent.run())
    except EffectError as error:
        raise UsageError(f"cannot start: {error}") from None


def _ask(args: argparse.Namespace, request: dict[str, object]) -> dict[str, object]:
    from mosqit_failover.control import ControlError, ask

    path = Path(args.socket) if args.socket else None
    if path is None:
        cfg, _ = _load(args)
        path = cfg.control_socket
    try:
        return ask(path, request)
    except ControlError as error:
        raise UsageError(str(error)) from None


def _status(args: argparse.Namespace) -> int:
    import json

    reply = _ask(args, {"command": "status"})
    status = reply.get("status")
    if not reply.get("ok") or not isinstance(status, dict):
        raise UsageError(f"the agent refused: {reply.get('error')}")
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(_format_status(status))
    return 0


def _format_status(s: dict[str, Any]) -> str:
    peer = s["peer"]
    lines = [
        f"cluster {s['cluster']}  VIP {s['vip']}",
        f"this node  {s['node']}: {s['role']} ({s['mode']}), epoch {s['epoch']}"
        + ("" if s["candidate"] else ", not a candidate"),
    ]
    for net, health in s["uplinks"].items():
        lines.append(f"  uplink {net}: {health}")
    heard = peer["heard_ago"]
    heard_text = "never heard" if heard is None else f"heard {heard * 1000:.0f} ms ago"
    lines.append(
        f"peer       {peer['node']}: {peer['role']} ({peer['mode'] or '?'}), epoch "
        f"{peer['epoch'] if peer['epoch'] is not None else '?'}, {heard_text}"
    )
    if peer.get("unauthenticated"):
        lines.append(f"  !! {peer['unauthenticated']}")
    fence = peer.get("fence")
    if fence:
        lines.append(f"  fence for epoch {fence['epoch']}: {fence['state']} {fence['detail']}")
    for net, ago in peer["heard_ago_by_network"].items():
        seen = "never" if ago is None else f"{ago * 1000:.0f} ms ago"
        lines.append(
            f"  network {net}: last message {seen}, echo misses in a row "
            f"{peer['echo_misses'].get(net, 0)}, peer's uplink "
            f"{'ok' if peer['uplinks'].get(net) else 'down/unknown'}"
        )
    for sync in (s.get("sync") or {}).get("dirs", []):
        error = f", last error: {sync['last_error']}" if sync.get("last_error") else ""
        lag = sync.get("lag_seconds")
        lag_text = "-" if lag is None else f"{lag:.1f}s"
        lines.append(
            f"sync {sync['path']}: {sync['state']}, lag {lag_text}, "
            f"{sync.get('pending', 0)} pending{error}"
        )
    link = s["peer_link"]
    dropped = ", ".join(f"{k} {v}" for k, v in link["dropped"].items()) or "none"
    beat = s.get("heartbeat_ms")
    beat_text = f", heartbeat every {beat} ms" if beat is not None else ""
    lines.append(f"peer link  accepted {link['accepted']}, dropped: {dropped}{beat_text}")
    lines.append("recent decisions:")
    lines += [f"  {line}" for line in s["recent_decisions"][-10:]]
    return "\n".join(lines)


def _command(args: argparse.Namespace) -> int:
    name = args.command
    if name == "maintenance":
        name = f"maintenance-{args.state}"
    request: dict[str, object] = {"command": name}
    if name == "reload":
        request["stop_removed"] = args.stop_removed
    if name == "force-active" and not args.yes:
        print(
            "force-active makes THIS node active although it cannot see its peer.\n"
            "If the peer is in fact running the service, both will serve, and this node's\n"
            "data may be older than the peer's (it may have been active later)."
        )
        if not sys.stdin.isatty():
            raise UsageError("refusing without confirmation: pass --yes to force")
        if input("Type 'yes' to force this node active: ").strip() != "yes":
            print("not forced")
            return 1
    reply = _ask(args, request)
    decisions = reply.get("decisions")
    for line in decisions if isinstance(decisions, list) else []:
        print(line)
    if not reply.get("ok"):
        if reply.get("error"):
            print(f"mosqit-failover: {reply['error']}", file=sys.stderr)
        return 1
    return 0


def _gen_secret(args: argparse.Namespace) -> int:
    from mosqit_failover.authkeys import SecretFileError, generate_secret_text, write_secret_file

    path = Path(args.path)
    if path.exists() and not path.is_symlink() and not args.force:
        raise UsageError(f"{path} exists; pass --force to replace it (both nodes need the same)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the directory {path.parent}: {error.strerror}") from None
    try:
        # a new file is created exclusively; --force writes a new file and renames it over
        write_secret_file(path, generate_secret_text(), replace=args.force)
    except SecretFileError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {path} (mode 0600); copy it to the other node")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from mosqit_failover.lab import commands

    return commands.run_lab_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosqit-failover",
        description="Quorumless two-node failover: VIP, services and directory sync.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", default=str(configuration.DEFAULT_PATH))
    check.add_argument("--node", help="also check that this node is in the config")
    check.set_defaults(func=_check_config)

    sim = sub.add_parser("simulate", help="run a failure scenario in memory and print its timeline")
    sim.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    sim.add_argument("--list", action="store_true", help="list the scenarios")
    sim.add_argument("--seed", type=int, default=1, help="random seed for packet loss")
    sim.add_argument("-v", "--verbose", action="store_true", help="also print the plans")
    sim.set_defaults(func=_simulate)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=str(configuration.DEFAULT_PATH), help="config file")
        p.add_argument("--node", help="this node's name (default: the hostname)")
        p.add_argument("--socket", help="control socket (default: from the config)")

    agent = sub.add_parser("agent", help="run the agent in the foreground (systemd runs this)")
    with_config(agent)
    agent.set_defaults(func=_agent)

    status = sub.add_parser("status", help="this node's state and what it knows of the peer")
    with_config(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    switch = sub.add_parser("switchover", help="hand the service over to the peer")
    with_config(switch)
    switch.set_defaults(func=_command)

    maint = sub.add_parser("maintenance", help="suspend (on) or resume (off) automatic action")
    maint.add_argument("state", choices=["on", "off"])
    with_config(maint)
    maint.set_defaults(func=_command)

    force = sub.add_parser("force-active", help="make this node active when the peer is gone")
    force.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    with_config(force)
    force.set_defaults(func=_command)

    reload = sub.add_parser(
        "reload", help="re-read the config: start added resources on the active node"
    )
    reload.add_argument(
        "--stop-removed", action="store_true", help="also stop resources removed from the config"
    )
    with_config(reload)
    reload.set_defaults(func=_command)

    secret = sub.add_parser("gen-secret", help="write a fresh shared secret file (mode 0600)")
    secret.add_argument("path", nargs="?", default="/etc/mosqit-failover/secret")
    secret.add_argument("--force", action="store_true", help="replace an existing file")
    secret.set_defaults(func=_gen_secret)

    from mosqit_failover.heartbeat_import import add_import_parser
    from mosqit_failover.lab.commands import add_lab_parser
    from mosqit_failover.sync.cli import add_sync_parser
    from mosqit_failover.wizards.cli import add_wizard_parser

    add_import_parser(sub)
    add_sync_parser(sub)
    add_wizard_parser(sub)

    lab = add_lab_parser(sub)
    lab.set_defaults(func=_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except UsageError as error:
        print(f"mosqit-failover: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mosqit-failover: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `status | head`: the reader is gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
