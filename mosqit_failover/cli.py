"""The `mosqit-failover` command line."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

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
    return result


if __name__ == "__main__":
    sys.exit(main())
