"""`mosqit-failover wizard deploy|resources`: the parser and the entry points.

`add_wizard_parser(subparsers)` registers ``wizard``; the caller runs
``args.func(args)``, which returns the exit status: 0 done, 1 stopped with
a message naming the problem and the fix (and what was changed, if anything),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mosqit_failover.config import ConfigError
from wizards import checks, configedit, deploy, resources
from wizards.prompts import AnswerError, Asker, load_answers
from wizards.ssh import KnownHosts, Session, SshError

PASSWORD_ENV = "MOSQIT_WIZARD_PASSWORD"
FAILURES = (
    deploy.WizardError,
    SshError,
    AnswerError,
    checks.CheckError,
    configedit.EditError,
    ConfigError,
)


def _login_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--answers", type=Path, help="TOML file with answers (see the README)")
    p.add_argument("--unattended", action="store_true", help="never ask: fail on a missing answer")
    p.add_argument("--node1", help="address of the first node")
    p.add_argument("--node2", help="address of the second node")
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
        "wizard", help="set up the pair (deploy) or manage its resources, over ssh"
    )
    sub = wizard.add_subparsers(dest="wizard", required=True, metavar="WIZARD")
    dep = sub.add_parser("deploy", help="set up both nodes, then manage the resources")
    _login_flags(dep)
    dep.add_argument("--cluster", help="cluster (reserve) name")
    dep.add_argument("--vip", help="the service address, like 192.0.2.50")
    dep.add_argument("--vip-interface", help="interface for the VIP (same name on both nodes)")
    dep.add_argument("--switch-a", help="address that must answer on network A")
    dep.add_argument("--switch-b", help="address that must answer on network B")
    dep.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    dep.add_argument("--no-resources", action="store_true", help="do not run the resource wizard")
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


ANSWER_FLAGS = (
    "node1",
    "node2",
    "user",
    "port",
    "key",
    "accept_new_host_keys",
    "cluster",
    "vip",
    "vip_interface",
    "switch_a",
    "switch_b",
)


def _asker(args: argparse.Namespace) -> Asker:
    answers: dict[str, Any] = load_answers(args.answers) if args.answers else {}
    for key in ANSWER_FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            answers[key] = value
    if args.accept_changed_host_key:
        answers["accept_changed_host_keys"] = [
            *answers.get("accept_changed_host_keys", []),
            *args.accept_changed_host_key,
        ]
    if PASSWORD_ENV in os.environ and "password" not in answers and "key" not in answers:
        answers["password"] = os.environ[PASSWORD_ENV]
    interactive = sys.stdin.isatty() and not args.unattended
    return Asker(answers, interactive)


def _actions(args: argparse.Namespace, asker: Asker) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = list(asker.answers.get("actions", []))
    named = {"name": args.name} if args.name else {}
    if args.add_unit:
        actions.append({"action": "add", "kind": "systemd", "unit": args.add_unit, **named})
    if args.add_sysv:
        actions.append({"action": "add", "kind": "sysv", "script": args.add_sysv, **named})
    if args.add_app:
        actions.append(
            {
                "action": "add",
                "kind": "script",
                "name": args.add_app,
                "start": args.start,
                "stop": args.stop,
                "status": args.status,
            }
        )
    if args.add_dir:
        actions.append(
            {
                "action": "add",
                "kind": "dir",
                "path": args.add_dir,
                "excludes": ",".join(args.exclude),
            }
        )
    if args.remove:
        actions.append(
            {"action": "remove", "remove": args.remove, "stop_removed": args.stop_removed}
        )
    if args.move:
        actions.append({"action": "move", "move": args.move, "position": args.to})
    return actions


def _fail(text: str, code: int = 1) -> int:
    print(f"mosqit-failover wizard: {text}", file=sys.stderr, flush=True)
    return code


def run_deploy(args: argparse.Namespace) -> int:
    try:
        asker = _asker(args)
        known = KnownHosts(args.known_hosts)
        actions = list(asker.answers.get("actions", []))

        def manage(sessions: dict[str, Session], _changes: object) -> None:
            asker.say("\nProtected resources:")
            resources.run(asker, sessions, actions)

        return deploy.deploy(asker, known, args.dry_run, None if args.no_resources else manage)
    except deploy.Aborted as error:
        return _fail(error.report(), 130 if isinstance(error.cause, KeyboardInterrupt) else 1)
    except FAILURES as error:
        return _fail(f"{error}\nNothing was changed on the nodes.")
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was changed on the nodes.", 130)


def run_resources(args: argparse.Namespace) -> int:
    sessions: dict[str, Session] = {}
    try:
        asker = _asker(args)
        actions = [] if args.list else _actions(args, asker)
        if args.list:
            asker.interactive = False
        raw = deploy.open_sessions(asker, KnownHosts(args.known_hosts))
        sessions = raw
        sessions, _facts = deploy.name_sessions(raw)
        resources.run(asker, sessions, actions)
        return 0
    except FAILURES as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted; the config on the nodes is as the last message says.", 130)
    finally:
        for session in sessions.values():
            session.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m wizards.cli deploy|resources ...` (the same as `mosqit-failover wizard`)."""
    parser = argparse.ArgumentParser(prog="mosqit-failover")
    add_wizard_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["wizard", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
