"""`mosqit-failover wizard deploy|resources`: the parser and the entry points.

`add_wizard_parser(subparsers)` registers ``wizard``; the caller runs
``args.func(args)``, which returns the exit status: 0 done, 1 stopped with
a message naming the problem and the fix (and what was changed, if anything),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PASSWORD_ENV = "MOSQIT_WIZARD_PASSWORD"


def _login_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--answers", type=Path, help="TOML file with answers (see the README)")
    p.add_argument("--unattended", action="store_true", help="never ask: fail on a missing answer")
    p.add_argument(
        "--node",
        action="append",
        dest="nodes",
        metavar="ADDRESS",
        help="address of a node, once per node (2 to 8; the first given goes first)",
    )
    p.add_argument("--node1", help="address of the first node (of a pair; or use --node)")
    p.add_argument("--node2", help="address of the second node (of a pair; or use --node)")
    p.add_argument("--user", help="log in as (default root)")
    p.add_argument("--port", help="ssh port (default 22)")
    p.add_argument("--key", help=f"private key file (else a password is asked, or ${PASSWORD_ENV})")
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        default=None,
        help="accept host keys never seen before (check the fingerprints shown)",
    )
    p.add_argument(
        "--accept-changed-host-key",
        action="append",
        metavar="HOST",
        help="accept a CHANGED host key of HOST (reinstalled node)",
    )
    p.add_argument(
        "--known-hosts",
        type=Path,
        help="the wizard's known_hosts (default ~/.config/mosqit-failover/known_hosts)",
    )


def add_wizard_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``wizard deploy`` and ``wizard resources``."""
    wizard: argparse.ArgumentParser = subparsers.add_parser(
        "wizard", help="set up the cluster (2 to 8 nodes) or manage its resources, over ssh"
    )
    sub = wizard.add_subparsers(dest="wizard", required=True, metavar="WIZARD")
    dep = sub.add_parser("deploy", help="set up every node, then manage the resources")
    _login_flags(dep)
    dep.add_argument("--cluster", help="cluster (reserve) name")
    dep.add_argument("--vip", help="the service address, like 192.0.2.50")
    dep.add_argument(
        "--vip-interface",
        help="interface for the VIP on every node (named differently: vip_interface_NODE answers)",
    )
    dep.add_argument(
        "--order",
        help="three nodes or more: the takeover order by host name, like alpha,beta,gamma "
        "(default: the nodes as given)",
    )
    dep.add_argument("--switch-a", help="address that must answer on network A")
    dep.add_argument("--switch-b", help="address that must answer on network B")
    dep.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    dep.add_argument("--no-resources", action="store_true", help="do not run the resource wizard")
    dep.add_argument(
        "--no-wait",
        action="store_true",
        help="start the agents but do not wait for one ACTIVE and the others STANDBY "
        "(a cluster that does not form is then not rolled back)",
    )
    dep.add_argument(
        "--package",
        metavar="PATH",
        help="the mosqit-failover .deb to install where it is missing or older "
        "(default: the newest mosqit-failover_*_all.deb in ./dist or .)",
    )
    dep.set_defaults(func=run_deploy)
    res = sub.add_parser("resources", help="list, add, remove or reorder protected resources")
    _login_flags(res)
    res.add_argument("--list", action="store_true", help="only list (with the live state)")
    res.add_argument("--add-unit", metavar="UNIT", help="add a systemd unit")
    res.add_argument("--add-sysv", metavar="SCRIPT", help="add a SysV init script")
    res.add_argument(
        "--add-app", metavar="NAME", help="add an application (--start/--stop/--status)"
    )
    res.add_argument("--start", help="--add-app: start command")
    res.add_argument("--stop", help="--add-app: stop command")
    res.add_argument("--status", help="--add-app: status command (exit 0 = running)")
    res.add_argument("--add-dir", metavar="PATH", help="add a directory to sync")
    res.add_argument("--exclude", action="append", default=[], help="--add-dir: exclude pattern")
    res.add_argument("--name", help="name of the added resource")
    res.add_argument("--remove", metavar="NAME", help="remove a resource (or a synced dir by path)")
    res.add_argument("--stop-removed", action="store_true", help="stop the removed resource")
    res.add_argument("--move", metavar="NAME", help="move a resource in the start order")
    res.add_argument("--to", help="--move: new position (1 = started first)")
    res.set_defaults(func=run_resources)
    return wizard


# The wizards need paramiko, which is slow and large to import: load them only
# when a wizard runs, not whenever the command line is parsed (the agent too).
def run_deploy(args: argparse.Namespace) -> int:
    from mosqit_failover.wizards.run import run_deploy as run

    return run(args)


def run_resources(args: argparse.Namespace) -> int:
    from mosqit_failover.wizards.run import run_resources as run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mosqit_failover.wizards.cli deploy|resources ...` (= `mosqit-failover wizard`)."""
    parser = argparse.ArgumentParser(prog="mosqit-failover")
    add_wizard_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["wizard", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
