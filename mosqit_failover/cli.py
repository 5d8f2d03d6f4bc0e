"""The `mosqit-failover` command line."""

from __future__ import annotations

import argparse
import errno
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mosqit_failover import config as configuration
from mosqit_failover.handover_wait import DEFAULT_WAIT as DEFAULT_HANDOVER_WAIT
from mosqit_failover.terminal import SafeFormatter, escaped_output

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

LAB_MISSING = "the lab is a development tool: run it from a git checkout (make demo)"
DEFAULT_WATCH_INTERVAL = 1.0
MIN_WATCH_INTERVAL = 0.1  # each refresh is a request to the agent: no busy loop
MAX_WATCH_INTERVAL = 3600.0  # an hour; longer ones overflow the clock calls (1e10)
MAX_HANDOVER_WAIT = 3600.0  # an hour: a handover that takes longer needs a person
BROKEN_PIPE_STATUS = 128 + 13  # what a shell reports for a command killed by SIGPIPE


class UsageError(Exception):
    """A command line that cannot be carried out; the message says how to fix it."""

    exit_code = 2


class AgentConfigUnusable(UsageError):
    """The agent cannot start on this config or secret: EX_CONFIG, which the unit's
    RestartPreventExitStatus names, so systemd does not restart it ten times a second."""

    exit_code = 78


def _check_config(args: argparse.Namespace) -> int:
    if args.config_path:
        if args.path not in (args.config_path, str(configuration.DEFAULT_PATH)):
            raise UsageError(
                f"two config files given ({args.path} and --config {args.config_path}): give one"
            )
        args.path = args.config_path
    try:
        cfg = configuration.load(Path(args.path))
        if args.node:
            configuration.pick_node(cfg, args.node, socket.gethostname(), args.path)
    except configuration.ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 2
    nodes = ", ".join(n.name for n in cfg.nodes)
    print(
        f"{args.path}: OK: cluster {cfg.cluster}, nodes {nodes}, VIP {cfg.vip.address}, "
        f"{len(cfg.resources)} resource(s), {len(cfg.sync)} synced dir(s)"
    )
    print("\n".join(configuration.describe_timing(cfg.timing)))
    for note in configuration.advice(cfg):
        print(f"note: {note}")
    node_here = bool(args.node)
    here = args.node
    if not args.node:  # may run on an operator's machine: a note, not a failure
        try:
            here = configuration.pick_node(cfg, None, socket.gethostname())
            print(f"this host runs as node {here}")
            node_here = True
        except configuration.ConfigError as error:
            print(f"note: {error.problems[0]}")
    secret = _check_secret(cfg, node_here)
    status = _check_fuse(cfg, node_here) or _check_units(cfg, node_here) or secret
    if node_here and not args.node:  # --node may name a node checked from elsewhere
        status = _check_addresses(cfg, here) or status
    if status:  # the "OK" above is the file's; say that this node is not
        print(
            f"{args.path}: the file is valid, but the agent would not start here (above)",
            file=sys.stderr,
        )
    return status


def _check_secret(cfg: configuration.Config, node_here: bool) -> int:
    """The agent refuses to start with a bad secret file: say it now. A note where this
    host runs no node (an operator's machine) or the file cannot be read but by root."""
    from mosqit_failover.authkeys import SecretFileError, load_keyring

    try:
        keyring = load_keyring(cfg.secret_file)
    except SecretFileError as error:
        if node_here and os.geteuid() == 0:
            print(error, file=sys.stderr)
            return 2
        print(f"note: {error} (the agent checks it when it starts)")
        return 0
    ids = ", ".join(str(key.key_id) for key in keyring.keys)
    print(f"secret file {cfg.secret_file}: key(s) {ids}, signing with {keyring.keys[0].key_id}")
    return 0


def _check_addresses(cfg: configuration.Config, name: str) -> int:
    """The node this host runs as has its addresses here: a host renamed to its peer's
    name passed, and its agent ran as the peer (a helper's finding)."""
    from mosqit_failover.effects.vip import addresses_here

    node = next(n for n in cfg.nodes if n.name == name)
    ports = [(a.address, a.interface) for a in node.attachments]
    found = addresses_here(ports)
    if any(found):
        for (address, ifname), ok in zip(ports, found, strict=True):
            if not ok:
                print(f"note: {address} of node {name} is not on {ifname} here (yet?)")
        return 0
    shown = ", ".join(f"{a} on {i}" for a, i in ports)
    print(
        f"none of node {name}'s addresses ({shown}) is on this host: is this host {name}? "
        "Fix its host name (hostnamectl set-hostname) or the config",
        file=sys.stderr,
    )
    return 2


def _check_units(cfg: configuration.Config, node_here: bool) -> int:
    """On a node, each resource's unit or init script must be there: a typo'd unit
    passed, and the next switchover failed on both nodes in turn (a helper's finding)."""
    if not node_here or not cfg.resources:
        return 0
    import asyncio

    from mosqit_failover.effects.resources import make_runner

    async def problems() -> list[str]:
        found = [await make_runner(r).missing() for r in cfg.resources]
        return [p for p in found if p is not None]

    missing = asyncio.run(problems())
    for problem in missing:
        print(problem, file=sys.stderr)
    return 2 if missing else 0


def _check_fuse(cfg: configuration.Config, node_here: bool) -> int:
    """A synchronous directory needs FUSE on every node: a failure on a node, else a note."""
    paths = [s.path for s in cfg.sync if s.synchronous]
    if not paths:
        return 0
    from mosqit_failover.syncfs.binding import fuse_problem

    problem = fuse_problem()
    if problem is None and node_here:
        problem = _unmountable(paths)
        for note in synchronous_changes_pending(cfg):
            print(f"note: {note}")
    if problem is None:
        print(f"synchronous sync of {', '.join(paths)}: FUSE is ready on this host")
        return 0
    line = f"synchronous sync of {', '.join(paths)} cannot mount on this host: {problem}"
    if not node_here:
        print(f"note: {line} (every node needs it)")
        return 0
    print(line, file=sys.stderr)
    return 2


def synchronous_changes_pending(cfg: configuration.Config, table: str | None = None) -> list[str]:
    """Where this node's synchronous mounts differ from the config: on the active node a
    reload changes them only at the next promotion (core.py). Nothing when none of ours is
    mounted here (a standby, or nothing synchronous yet: it cannot be told)."""
    from mosqit_failover.syncfs import mountinfo

    table = table or mountinfo.SELF
    points = {os.fsdecode(point) for point, _ in mountinfo.mounts(table)}
    mounted = {p for p in points if mountinfo.top_source(p, table) == mountinfo.FS_NAME}
    if not mounted:
        return []
    wanted = {s.path for s in cfg.sync if s.synchronous}
    why = "(a reload never mounts or unmounts under the running services)"
    return [
        f"{path} is synchronous in this config but not mounted here: it becomes synchronous "
        f"at the next promotion {why}"
        for path in sorted(wanted - mounted)
    ] + [
        f"{path} is not synchronous in this config but mounted here: its mount serves until "
        f"this node demotes {why}"
        for path in sorted(mounted - wanted)
    ]


def _unmountable(paths: list[str]) -> str | None:
    """What the mount would refuse at the next promotion (a symlink, the operator's own
    mount point), said now; our own mount, up while this node is active, is fine."""
    from mosqit_failover.syncfs import mountinfo
    from mosqit_failover.syncfs.mount import StartError, check_directory

    for path in paths:
        if not os.path.lexists(path):
            continue  # created by the first sync
        if mountinfo.top_source(os.path.normpath(path)) == mountinfo.FS_NAME:
            continue
        try:
            check_directory(path)
        except StartError as error:
            return str(error)
    return None


def path_argument(text: str) -> str:
    """A path option's value: "" was taken for "not given" (a helper's finding)."""
    if not text:
        raise argparse.ArgumentTypeError("is empty: give a path, or leave the option out")
    return text


def _simulate(args: argparse.Namespace) -> int:
    from mosqit_failover import sim_scenarios

    if args.scenario is not None and args.scenario not in sim_scenarios.SCENARIOS:
        known = ", ".join(sim_scenarios.SCENARIOS)
        raise UsageError(f"no scenario {args.scenario!r}; known: {known} (see simulate --list)")
    if args.list or args.scenario is None:
        for scenario in sim_scenarios.SCENARIOS.values():
            print(f"{scenario.name:16} {scenario.summary}")
        return 0
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
        wanted = getattr(args, "node", None)
        node = configuration.pick_node(cfg, wanted, socket.gethostname(), args.config)
    except configuration.ConfigError as error:
        raise UsageError(error.report()) from None
    return cfg, node


def _agent(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from mosqit_failover.authkeys import SecretFileError, load_keyring
    from mosqit_failover.daemon import Agent
    from mosqit_failover.effects import EffectError, StartRefused
    from mosqit_failover.journal import DecisionLog

    try:
        cfg, node = _load(args)
        keyring = load_keyring(cfg.secret_file)
    except (UsageError, SecretFileError) as error:
        raise AgentConfigUnusable(str(error)) from None
    lines = logging.StreamHandler()
    lines.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[lines])
    agent = Agent(cfg, node, keyring, DecisionLog(), config_path=Path(args.config))
    try:
        return asyncio.run(agent.run())
    except StartRefused as error:  # restarting does not help: no restart loop
        raise AgentConfigUnusable(f"cannot start: {error}") from None
    except EffectError as error:
        raise UsageError(f"cannot start: {error}") from None


def _ask(args: argparse.Namespace, request: dict[str, object]) -> dict[str, object]:
    from mosqit_failover.control import ControlError, ask

    path = _socket_path(args)
    try:
        return ask(path, request)
    except ControlError as error:
        raise UsageError(str(error)) from None


def _socket_path(args: argparse.Namespace) -> Path:
    """The agent's control socket: --socket, else the config's. A config that does not
    load (an edit half done, this host no node) must not keep the operator from the
    running agent: its problems are a note, and the socket it names is asked anyway."""
    if args.socket:
        return Path(args.socket)
    try:
        cfg = configuration.load(Path(args.config))
    except configuration.ConfigError as error:
        path = configuration.control_socket_in(Path(args.config))
        if not path.exists():
            raise UsageError(
                f"{error.report()}\n(the control socket {path} is not there either; "
                "pass --socket PATH if the agent serves another)"
            ) from None
        first = error.problems[0] if error.problems else "it does not load"
        count = len(error.problems)
        more = f" and {count - 1} more (check-config lists them)" if count > 1 else ""
        print(
            f"note: {args.config}: {first}{more}; asking the running agent at {path} anyway",
            file=sys.stderr,
        )
        return path
    return cfg.control_socket


def _status(args: argparse.Namespace) -> int:
    import json

    from mosqit_failover import status_watch
    from mosqit_failover.control import ControlError

    if args.interval is not None and not args.watch:
        raise UsageError("--interval is the refresh of --watch: status --watch --interval 2")

    def as_json(status: dict[str, Any]) -> str:
        return json.dumps(status, indent=2, sort_keys=True)

    render = as_json if args.json else status_watch.format_status
    path = _socket_path(args)
    if args.watch:
        interval = args.interval if args.interval is not None else DEFAULT_WATCH_INTERVAL
        return status_watch.watch(path, interval, sys.stdout, render)
    try:
        print(status_watch.fetch(path, render))
    except (ControlError, status_watch.StatusUnavailable) as error:
        raise UsageError(str(error)) from None
    return 0


def _command(args: argparse.Namespace) -> int:
    name = args.command
    if name == "maintenance":
        name = f"maintenance-{args.state}"
    request: dict[str, object] = {"command": name}
    if name == "switchover" and getattr(args, "to", None) is not None:
        request["to"] = args.to  # the agent checks it is a node and a present candidate
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
        try:
            answer = input("Type 'yes' to force this node active: ")
        except EOFError:  # Ctrl-D: the terminal's line is still the prompt's
            print()
            answer = ""
        if answer.strip() != "yes":
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
    if name == "switchover" and args.wait is not None:
        return _wait_for_handover(args, reply)
    return 0


def _wait_for_handover(args: argparse.Namespace, reply: dict[str, Any]) -> int:
    from mosqit_failover import handover_wait
    from mosqit_failover.control import ControlError
    from mosqit_failover.status_watch import StatusUnavailable, ask_status

    path = _socket_path(args)
    try:
        start = handover_wait.start_of(reply)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UsageError(
            "the switchover began, but the agent's answer has no epoch to follow it by: is "
            "the agent the same version as this command? Follow it with "
            "`mosqit-failover status`"
        ) from None
    print(f"waiting up to {args.wait:g} s for the handover (Ctrl-C stops waiting, not it)")
    try:
        outcome = handover_wait.follow(
            start, lambda: ask_status(path), print, args.wait, unanswered=(ControlError,)
        )
    except (ControlError, StatusUnavailable) as error:
        raise UsageError(f"cannot follow the switchover: {error}") from None
    except KeyboardInterrupt:
        print(
            "\nstopped waiting; the switchover goes on (mosqit-failover status)",
            file=sys.stderr,
        )
        return 130
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UsageError(
            f"cannot follow the switchover: the agent's status lacks or mangles {error}; "
            "is the agent the same version as this command?"
        ) from None
    print(outcome.text, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


def _gen_secret(args: argparse.Namespace) -> int:
    from mosqit_failover.authkeys import SecretFileError, generate_secret_text, write_secret_file

    if not args.path:
        raise UsageError("the secret file's path is empty: give one, or none for the default")
    path = Path(args.path)
    # only a regular file is ever replaced (write_secret_file says why for anything else)
    if path.is_file() and not path.is_symlink() and not args.force:
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


def _seconds(text: str) -> float:
    """Seconds ("2", "0.5") or a duration ("500ms", "2s"); NaN for anything else."""
    try:
        return configuration.parse_duration(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return math.nan


def _interval(text: str) -> float:
    """--interval: seconds ("2", "0.5") or a duration ("500ms", "2s")."""
    seconds = _seconds(text)
    if not math.isfinite(seconds) or not MIN_WATCH_INTERVAL <= seconds <= MAX_WATCH_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a refresh interval: give seconds from {MIN_WATCH_INTERVAL:g} "
            f"to {MAX_WATCH_INTERVAL:g}, like 1, 0.5 or 500ms"
        )
    return seconds


def _wait_seconds(text: str) -> float:
    """--wait: seconds ("90") or a duration ("90s", "2m") to follow a switchover."""
    seconds = _seconds(text)
    if not math.isfinite(seconds) or not 1 <= seconds <= MAX_HANDOVER_WAIT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time to wait: give seconds from 1 to {MAX_HANDOVER_WAIT:g}, "
            "like 180 or 5m"
        )
    return seconds


def _node_name(text: str) -> str:
    """--to: a node name as the config spells them (the agent checks it is one of its nodes)."""
    if not configuration._NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a node name: give a node of the config (letters, digits, "
            "'.', '_' or '-', at most 63, starting with a letter or digit)"
        )
    return text


def missing_module_message(command: str, error: ModuleNotFoundError) -> str:
    """What to do when `command` needs a module this installation lacks (one line)."""
    name = error.name or ""
    if name == "mosqit_failover.lab" or name.startswith("mosqit_failover.lab."):
        return LAB_MISSING  # the Debian package leaves the lab out on purpose
    if name == "mosqit_failover" or name.startswith("mosqit_failover."):
        return f"{command}: this installation lacks {name}; reinstall mosqit-failover"
    if not name:
        return f"{command}: {error}"
    package = "python3-" + name.split(".")[0].replace("_", "-").lower()  # Debian's naming
    what = "the wizard" if command == "wizard" else command
    return f"{what} needs {package}: apt-get install {package}"


def _add_optional(
    sub: Any, command: str, help_text: str, register: Callable[[Any], object]
) -> None:
    """Register `command` with `register`; if its module is missing, a stub that says why.

    `help_text` is its line in `mosqit-failover --help` (80 columns); the module's own,
    often longer, help becomes the description of `COMMAND --help`. Without the module,
    `mosqit-failover --help` and every other command keep working.
    """
    try:
        register(sub)
    except ModuleNotFoundError as error:
        message = missing_module_message(command, error)

        def unavailable(args: argparse.Namespace) -> int:
            raise UsageError(message)

        stub = sub.add_parser(command, help=f"{help_text} (not installed)", description=message)
        stub.add_argument(
            "arguments", nargs=argparse.REMAINDER, help="not read: the command is not installed"
        )
        stub.set_defaults(func=unavailable)
        return
    choice = sub._choices_actions[-1]  # the line `register` just added
    parser = sub.choices[command]
    parser.description = parser.description or choice.help
    choice.help = help_text


def _register_lab(sub: Any) -> None:
    from mosqit_failover.lab.commands import add_lab_parser

    add_lab_parser(sub).set_defaults(func=_lab)


def _register_import(sub: Any) -> None:
    from mosqit_failover.heartbeat_import import add_import_parser

    add_import_parser(sub)


def _register_sync(sub: Any) -> None:
    from mosqit_failover.sync.cli import add_sync_parser

    add_sync_parser(sub)


def _register_wizard(sub: Any) -> None:
    from mosqit_failover.wizards.cli import add_wizard_parser

    add_wizard_parser(sub)


class _Parser(argparse.ArgumentParser):
    """A bad command line: one line naming the problem and where the help is, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        stream = file or sys.stderr
        if not message or stream is None:  # None: the descriptor is closed
            return
        try:
            stream.write(message)
        except OSError:
            # argparse drops a failed write: --help > /dev/full exited 0 with nothing
            # written (a helper's finding); the caller says it. A failed error message
            # on stderr has nowhere to be said: the exit status does
            if stream is sys.stdout:
                raise


class _Formatter(argparse.HelpFormatter):
    """Counts the indent of the command names, which argparse forgets: without it the
    longest (import-heartbeat) gets a line of its own in `mosqit-failover --help`."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            names = [self._format_action_invocation(a) for a in action._get_subactions()]
            indent = self._current_indent + self._indent_increment
            longest = max(map(len, names), default=0) + indent
            self._action_max_length = max(self._action_max_length, longest)


def _with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=str(configuration.DEFAULT_PATH),
        help=f"config file (default {configuration.DEFAULT_PATH})",
    )
    p.add_argument("--node", help="this node's name (default: the hostname)")
    p.add_argument(
        "--socket",
        type=path_argument,
        help="the agent's control socket (default: from the config)",
    )


def _add_offline_commands(sub: Any) -> None:
    """The commands that need no running agent."""
    check = sub.add_parser(
        "check-config",
        help="validate a config file and exit",
        description="Validate a config file, naming every problem with its fix: exit 0 when "
        "it is good, 2 otherwise. Without --node it also says which node this host is.",
    )
    check.add_argument(
        "path",
        nargs="?",
        default=str(configuration.DEFAULT_PATH),
        help=f"the config file (default {configuration.DEFAULT_PATH})",
    )
    # --config as every other command spells it; the positional stays for scripts
    check.add_argument(
        "--config",
        dest="config_path",
        metavar="PATH",
        help="the config file (the same as the positional PATH)",
    )
    check.add_argument("--node", help="also check that this node is in the config")
    check.set_defaults(func=_check_config)

    sim = sub.add_parser(
        "simulate",
        help="run a failure scenario in memory, print its timeline",
        description="Run a failure scenario against two simulated agents in memory (no root, "
        "no network) and print the timeline of their decisions; exit 1 when the outcome "
        "is not the one the scenario expects.",
    )
    sim.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    sim.add_argument("--list", action="store_true", help="list the scenarios")
    sim.add_argument("--seed", type=int, default=1, help="random seed for packet loss")
    sim.add_argument("-v", "--verbose", action="store_true", help="also print the plans")
    sim.set_defaults(func=_simulate)

    secret = sub.add_parser(
        "gen-secret",
        help="write a fresh shared secret file (mode 0600)",
        description="Write a fresh random secret (mode 0600) that signs the peer messages; "
        "copy the same file to the other node. Also makes the web console's login token.",
    )
    secret.add_argument(
        "path",
        nargs="?",
        default="/etc/mosqit-failover/secret",
        help="where to write it (default /etc/mosqit-failover/secret)",
    )
    secret.add_argument("--force", action="store_true", help="replace an existing file")
    secret.set_defaults(func=_gen_secret)


def _add_agent_commands(sub: Any) -> None:
    """The agent itself and the commands that talk to it over its control socket."""
    agent = sub.add_parser(
        "agent",
        help="run the agent in the foreground (systemd runs this)",
        description="Run the agent in the foreground: probes, heartbeats, the VIP, the "
        "protected resources and the sync. The unit mosqit-failover.service runs it; run "
        "it by hand only to debug.",
    )
    _with_config(agent)
    agent.set_defaults(func=_agent)

    status = sub.add_parser(
        "status",
        help="this node's state and the peer's (--watch: live)",
        description="Ask the local agent for this node's role, mode and epoch, its uplinks, "
        "what it knows of the peer, the sync, the peer link's drops and the recent "
        "decisions. --watch redraws it every --interval until Ctrl-C, like crm_mon.",
    )
    _with_config(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "-w", "--watch", action="store_true", help="redraw every --interval until Ctrl-C"
    )
    status.add_argument(
        "-i",
        "--interval",
        type=_interval,
        help=f"seconds between refreshes of --watch (default {DEFAULT_WATCH_INTERVAL:g})",
    )
    status.set_defaults(func=_status)

    switch = sub.add_parser(
        "switchover",
        help="hand the service over to the peer (--to: a named node)",
        description="On the active node: hand the VIP and the resources over to the "
        "standby, which must see both networks; with several standbys to the best "
        "candidate, or to --to NODE. Prints the decisions; exit 1 if refused.",
    )
    switch.add_argument(
        "--to",
        metavar="NODE",
        type=_node_name,
        help="the node to hand over to: a standby of the config that is present and a "
        "candidate (default: the best candidate)",
    )
    switch.add_argument(
        "--wait",
        metavar="SECONDS",
        nargs="?",
        type=_wait_seconds,
        const=DEFAULT_HANDOVER_WAIT,
        help="wait until the peer serves (exit 0) or the handover is aborted or not done "
        f"in time (exit 1), showing the decisions meanwhile (default {DEFAULT_HANDOVER_WAIT:g} s)",
    )
    _with_config(switch)
    switch.set_defaults(func=_command)

    maint = sub.add_parser(
        "maintenance",
        help="suspend (on) or resume (off) automatic action",
        description="on: this node's agent takes no automatic action and keeps what it "
        "holds (restart or upgrade the agent meanwhile without a switchover); off: resume.",
    )
    maint.add_argument(
        "state", choices=["on", "off"], help="on: suspend automatic action; off: resume it"
    )
    _with_config(maint)
    maint.set_defaults(func=_command)

    force = sub.add_parser(
        "force-active",
        help="make this node active when the peer is gone",
        description="Make THIS node active although it cannot see its peer. If the peer "
        "still serves, both will, and this node's data may be older. Asks unless --yes.",
    )
    force.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _with_config(force)
    force.set_defaults(func=_command)

    reload = sub.add_parser(
        "reload",
        help="re-read the config and secret; start added resources",
        description="Re-read the config and the secret file (as systemctl reload "
        "mosqit-failover does): resources added to the config start on the active node; "
        "removed ones keep running unless --stop-removed.",
    )
    reload.add_argument(
        "--stop-removed", action="store_true", help="also stop resources removed from the config"
    )
    _with_config(reload)
    reload.set_defaults(func=_command)


def _describe(parser: argparse.ArgumentParser) -> None:
    """`SUB --help` says what SUB does: its help where it has no description of its own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps[name]
                _describe(child)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with ``only="sync-receive"``, that command's alone.

    sshd runs ``sync-receive`` once per sync batch on the receiving node: building
    every command's parser imports the wizards, the lab and the rest, which cost
    that batch a few hundred milliseconds of start before anything was received."""
    from mosqit_failover import add_version_option

    if only == "sync-receive":
        parser = _Parser(prog="mosqit-failover", formatter_class=_Formatter)
        sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        _add_optional(
            sub, only, "receiving end of the sync (sshd's forced command)", _register_sync
        )
        return parser
    parser = _Parser(
        prog="mosqit-failover",
        description="Quorumless two-node failover: VIP, services and directory sync.",
        formatter_class=_Formatter,
    )
    add_version_option(parser, "--version")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_offline_commands(sub)
    _add_agent_commands(sub)
    _add_optional(
        sub,
        "import-heartbeat",
        "convert a heartbeat setup (/etc/ha.d) to our config",
        _register_import,
    )
    _add_optional(
        sub, "sync-receive", "receiving end of the sync (sshd's forced command)", _register_sync
    )
    _add_optional(
        sub, "wizard", "set up the pair or manage its resources, over ssh", _register_wizard
    )
    _add_optional(sub, "lab", "the network-namespace lab (needs root)", _register_lab)
    _describe(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] and words[0] in RAW_OUTPUT:
        return _parse_and_run(words)
    with escaped_output():  # argparse's errors too: they quote file names a glob found
        return _parse_and_run(words)


# their stdout is a protocol (sync-receive) or the journal (agent), no operator's terminal
RAW_OUTPUT = {"agent", "sync-receive"}


def _parse_and_run(words: list[str]) -> int:
    parser = build_parser(only="sync-receive" if words[:1] == ["sync-receive"] else None)
    if words[:1] and words[0].startswith("-") and words[0] not in _TOP_OPTIONS:
        # argparse would only say that a COMMAND is required
        parser.error(f"unknown option {words[0]}: options go after the command")
    try:
        args, extra = parser.parse_known_args(words)
    except SystemExit as done:
        if done.code == 0:  # --help or --version, printed: say if it could not be
            try:
                if sys.stdout is not None:  # None: its descriptor is closed
                    sys.stdout.flush()
            except OSError as error:
                return _output_failed(error)
        raise
    except OSError as error:  # --help or --version into a full disk or a closed pipe
        return _output_failed(error)
    if extra:  # said by the command's own parser, whose --help lists its options
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return _run(args)


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The innermost (sub-)command parser ``args`` went through."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command_parser(chosen, args)
    return parser


def _run(args: argparse.Namespace) -> int:
    """The command's result, or its exit code after one line saying what stopped it."""
    try:
        result: int = args.func(args)
    except UsageError as error:
        print(f"mosqit-failover: {error}", file=sys.stderr)
        return error.exit_code
    except ModuleNotFoundError as error:  # a library left out: the wizard's paramiko
        print(f"mosqit-failover: {missing_module_message(args.command, error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mosqit-failover: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # the output cannot be written (a full disk), or unforeseen
        return _output_failed(error)
    return result


def _output_failed(error: OSError) -> int:
    """The exit status once the output could not be written, said in one line."""
    _drop_stdout()
    if isinstance(error, BrokenPipeError):  # `status | head`: the reader is gone
        # not 0: the command stopped where it was (its result unknown to the caller),
        # as a tool killed by SIGPIPE reports it in a shell (`set -o pipefail`)
        return BROKEN_PIPE_STATUS
    print(f"mosqit-failover: {_os_problem(error)}", file=sys.stderr)
    return 1


def _drop_stdout() -> None:
    """What is left in stdout's buffer goes nowhere: the flush at exit would fail again."""
    if sys.stdout is not None:  # None: fd 1 was closed, and print() writes nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


_TOP_OPTIONS = {"-h", "--help", "--version"}


def _os_problem(error: OSError) -> str:
    if error.filename is None and error.errno in _OUTPUT_ERRORS:
        return f"cannot write the output: {error.strerror}"
    where = f": {error.filename}" if error.filename is not None else ""
    return f"{error.strerror or error}{where}"


_OUTPUT_ERRORS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}


if __name__ == "__main__":
    sys.exit(main())
