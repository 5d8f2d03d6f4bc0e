"""``lab up|down|status``: argparse wiring for the CLI (the lead adds ``demo``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .control import down, run_tool, status, up
from .netns import LabError
from .topology import DEFAULT_PLAN, MAX_NODES, MIN_NODES, plan_for


def add_lab_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``lab`` with sub-commands ``up``, ``down``, ``status``; return its parser."""
    lab = subparsers.add_parser("lab", help="the network-namespace lab (needs root)")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    p_up = lab_sub.add_parser("up", help="build the lab and boot its nodes")
    p_up.add_argument("--no-boot", action="store_true", help="networks only, no nodes")
    p_up.add_argument(
        "--nodes",
        type=int,
        choices=range(MIN_NODES, MAX_NODES + 1),
        default=len(DEFAULT_PLAN.nodes),
        metavar="N",
        help=f"how many nodes ({MIN_NODES}..{MAX_NODES}: alpha, beta, gamma, ...; default 2)",
    )
    lab_sub.add_parser("down", help="tear everything down (idempotent, works after a crash)")
    lab_sub.add_parser("status", help="show what exists")
    lab_sub.add_parser("demo", help="build the lab, run the agents, show the failure cases live")
    scenario = lab_sub.add_parser("scenario", help="run failure scenarios in a fresh lab")
    scenario.add_argument("names", nargs="*", help="scenario names, or 'all' (see --list)")
    scenario.add_argument("--list", action="store_true", help="list the scenarios")
    return lab  # type: ignore[no-any-return]


def run_lab_command(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("lab: must run as root", file=sys.stderr)
        return 2
    return run_tool("lab", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    plan = DEFAULT_PLAN
    if args.lab_command == "up":
        lab = up(plan_for(args.nodes), boot=not args.no_boot)
        for name, node in lab.nodes.items():
            print(f"node {name}: pid {node.pid}")
        print(f"lab up in {lab.timings['up']:.1f}s")
    elif args.lab_command == "down":
        removed = down(plan)
        print("\n".join(f"removed {item}" for item in removed) or "nothing to remove")
    elif args.lab_command == "status":
        print("\n".join(status(plan)))
    elif args.lab_command == "scenario":
        return _scenarios(args)
    elif args.lab_command == "demo":
        from .demo import run_demo

        return run_demo(plan)
    else:
        raise LabError(f"unknown lab command {args.lab_command!r}")
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    from mosqit_failover.lab.scenarios import all_scenarios
    from mosqit_failover.lab.scenarios.runner import run_scenarios

    known = all_scenarios()
    if args.list or not args.names:
        for name, scenario in known.items():
            print(f"{name:26} {scenario.summary}")
        return 0
    unknown = [n for n in args.names if n not in known and n != "all"]
    if unknown:
        print(f"lab: no scenario {', '.join(unknown)}; see lab scenario --list", file=sys.stderr)
        return 2
    reports = run_scenarios(args.names)
    failed = [r.name for r in reports if not r.ok]
    print(f"{len(reports) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
