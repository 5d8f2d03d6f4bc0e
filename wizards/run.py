"""Running the wizards (imported only when one runs: it pulls in paramiko)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from mosqit_failover.config import ConfigError
from mosqit_failover.wizards import checks, configedit, deploy, package, resources
from mosqit_failover.wizards.cli import PASSWORD_ENV
from mosqit_failover.wizards.prompts import AnswerError, Asker, load_answers
from mosqit_failover.wizards.ssh import KnownHosts, Session, SshError

FAILURES = (
    deploy.WizardError,
    SshError,
    AnswerError,
    checks.CheckError,
    configedit.EditError,
    ConfigError,
    package.PackageError,
)


ANSWER_FLAGS = (
    "nodes",
    "order",
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
    "package",
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
    with suppress(OSError):  # the terminal is gone (SIGHUP): the rollback is done all the same
        print(f"mosqit-failover wizard: {text}", file=sys.stderr, flush=True)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a wizard ran: handled as Ctrl-C is."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """While a wizard runs, SIGTERM and SIGHUP (the terminal closed, the operator's ssh
    session dropped) interrupt it as Ctrl-C does: what it changed is rolled back and
    reported (a helper's finding: it died at once, changes left on the nodes). Only the
    first one interrupts: the shell passes a hangup on to its jobs once more, and that
    must not stop the rollback. The handlers before are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can be set in the main thread only
        return

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(f"interrupted ({signal.Signals(signum).name})")

    before = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def run_deploy(args: argparse.Namespace) -> int:
    with _stop_signals_interrupt():
        return _run_deploy(args)


def run_resources(args: argparse.Namespace) -> int:
    with _stop_signals_interrupt():
        return _run_resources(args)


def _run_deploy(args: argparse.Namespace) -> int:
    try:
        asker = _asker(args)
        known = KnownHosts(args.known_hosts)
        actions = list(asker.answers.get("actions", []))

        def manage(sessions: dict[str, Session], _changes: object) -> None:
            asker.say("\nProtected resources:")
            resources.run(asker, sessions, actions)

        then = None if args.no_resources else manage
        return deploy.deploy(asker, known, args.dry_run, then, wait=not args.no_wait)
    except deploy.Aborted as error:
        return _fail(error.report(), 130 if isinstance(error.cause, KeyboardInterrupt) else 1)
    except FAILURES as error:
        return _fail(deploy.unchanged(str(error)))
    except KeyboardInterrupt as error:  # before any change (deploy.deploy reports after)
        return _fail(f"{error or 'interrupted'}; nothing was changed on the nodes.", 130)


def _run_resources(args: argparse.Namespace) -> int:
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
    except resources.Interrupted as error:  # cut off writing the config: rolled back
        return _fail(str(error), 130)
    except KeyboardInterrupt as error:
        return _fail(
            f"{error or 'interrupted'}; the config on the nodes is as the last message says.",
            130,
        )
    finally:
        for session in sessions.values():
            session.close()
