"""`mosqit-failover wizard resources`: list, add, remove and reorder what the cluster protects.

Guarantees (a pair or up to eight nodes alike):
- every node of the config must be reached (else nothing is changed); the
  config is read from every node and must be identical there (else nothing
  is changed and the operator is told how to make it so);
- an addition is validated on every node before anything is written (a unit
  or script must exist on each; a directory must be absolute and exist on
  the active node);
- the new config is written to every node atomically (temporary file +
  rename on each); if a write fails (even by a connection that drops) the
  nodes written before are rolled back, and the operator is told exactly
  what was written and undone on each node, and what could not be;
- the agents are then told to reload (`mosqit-failover reload`, the standby
  first): an added resource starts on the active node only, a removed one is
  stopped only with ``stop_removed``; an added synced directory starts with a
  full sync on the active node, a removed one stops being pushed (the
  standby's copy is left as it is). No agent restarts, nothing switches over.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mosqit_failover import config as configuration
from mosqit_failover.effects.resources import DEFAULT_INITD
from mosqit_failover.wizards import configedit
from mosqit_failover.wizards.changes import Changes, left_changed
from mosqit_failover.wizards.deploy import CONFIG_PATH, WizardError, check_name, node_status
from mosqit_failover.wizards.prompts import UNATTENDED_ACTIONS, Asker, non_empty
from mosqit_failover.wizards.ssh import Session, SshError

ACTIONS = ["list", "add", "remove", "move", "done"]
KINDS = ["systemd", "sysv", "script", "dir"]


@dataclass
class Pair:
    """Every node's session keyed by node name, the shared config text and roles."""

    sessions: dict[str, Session]
    text: str
    config: configuration.Config
    roles: dict[str, str]

    @property
    def active(self) -> str | None:
        return next((n for n, r in self.roles.items() if r == "ACTIVE"), None)


def read_pair(sessions: dict[str, Session]) -> Pair:
    """The config (identical on every node, valid) and each node's role."""
    texts = {name: s.read(CONFIG_PATH) for name, s in sessions.items()}
    missing = [n for n, t in texts.items() if t is None]
    if missing:
        raise WizardError(
            f"{', '.join(missing)} has no {CONFIG_PATH}: deploy the pair first "
            "(mosqit-failover wizard deploy)"
        )
    first = next(iter(texts.values()))
    if len(set(texts.values())) > 1:
        if len(texts) == 2:
            raise WizardError(
                f"{CONFIG_PATH} differs between {' and '.join(texts)}; nothing was changed. "
                "Decide which one is right, copy it to the other node, run "
                "`mosqit-failover reload` on both, then re-run"
            )
        groups: dict[str | None, list[str]] = {}
        for name, text in texts.items():
            groups.setdefault(text, []).append(name)
        described = "; ".join(" and ".join(g) + " have one" for g in groups.values())
        raise WizardError(
            f"{CONFIG_PATH} differs between the nodes ({described}); nothing was changed. "
            "Decide which one is right, copy it to the others, run `mosqit-failover reload` "
            "on each, then re-run"
        )
    assert first is not None
    try:
        cfg = configuration.parse(first, CONFIG_PATH)
    except configuration.ConfigError as error:
        raise WizardError(f"the config on the nodes is invalid:\n{error.report()}") from None
    names = {n.name for n in cfg.nodes}
    if set(sessions) != names:
        raise WizardError(
            f"the config is for nodes {', '.join(sorted(names))}, but the nodes reached are "
            f"{', '.join(sorted(sessions))}: give every node of the config (--node once per "
            "node), and only those; nothing was changed"
        )
    roles = {}
    for name, session in sessions.items():
        status = node_status(session)
        roles[name] = str(status["role"]) if status else "DOWN"
    return Pair(sessions, first, cfg, roles)


def init_script_path(script: str) -> str:
    """Where the agent runs an init script (`SysvRunner`): a bare name is under
    /etc/init.d (a helper's finding: the wizard ran it in the ssh session's directory,
    so listed it stopped and refused to add it)."""
    return str(DEFAULT_INITD / script)


def state_command(resource: configuration.Resource) -> str:
    """A shell command printing the live state of one resource."""
    if resource.kind == "systemd":
        return f"systemctl is-active {shlex.quote(resource.unit)}"
    if resource.kind == "sysv":
        script = shlex.quote(init_script_path(resource.script))
        return f"{script} status >/dev/null 2>&1 && echo running || echo stopped"
    if resource.kind == "script":
        return f"( {resource.status} ) >/dev/null 2>&1 && echo running || echo stopped"
    return "echo '-'"


def listing(pair: Pair) -> str:
    """The protected resources with their live state on both nodes, in start order."""
    nodes = list(pair.sessions)
    head = f"{'#':3}{'name':16}{'kind':9}{'what':32}" + "".join(
        f"{n + ' (' + pair.roles[n] + ')':22}" for n in nodes
    )
    lines = [head]
    for index, res in enumerate(pair.config.resources, 1):
        what = {"systemd": res.unit, "sysv": res.script, "ocf": res.agent}.get(res.kind, res.start)
        states = [
            s.run(state_command(res), timeout=30).out.strip() or "?" for s in pair.sessions.values()
        ]
        lines.append(
            f"{index:<3}{res.name:16}{res.kind:9}{what[:31]:32}"
            + "".join(f"{s:22}" for s in states)
        )
    for sync in pair.config.sync:
        states = [
            s.run(f"test -d {shlex.quote(sync.path)} && echo present || echo missing").out.strip()
            for s in pair.sessions.values()
        ]
        what = sync.path + (f" (excl. {', '.join(sync.excludes)})" if sync.excludes else "")
        lines.append(
            f"{'-':3}{'(sync)':16}{'dir':9}{what[:31]:32}" + "".join(f"{s:22}" for s in states)
        )
    if len(lines) == 1:
        lines.append("   (nothing protected yet)")
    return "\n".join(lines)


def _on_both(pair: Pair, command: str) -> dict[str, int]:
    return {n: s.run(command, timeout=30).status for n, s in pair.sessions.items()}


def _missing(pair: Pair, command: str, what: str, fix: str) -> None:
    status = _on_both(pair, command)
    bad = [n for n, rc in status.items() if rc != 0]
    if bad:
        good = [n for n in status if n not in bad]
        if len(status) == 2:
            where = f"exists on {good[0]} but not on {bad[0]}" if good else "exists on neither node"
        else:
            where = (
                f"exists on {', '.join(good)} but not on {', '.join(bad)}"
                if good
                else "exists on no node"
            )
        raise WizardError(f"{what} {where}: {fix}; nothing was changed")


def validate_systemd(pair: Pair, unit: str) -> list[str]:
    """The unit must be loadable on both nodes and run on none but the active; warnings back."""
    q = shlex.quote(unit)
    _missing(
        pair,
        f'[ "$(systemctl show -p LoadState --value {q})" = loaded ]',
        f"unit {unit}",
        "install the same unit on both nodes (systemctl cat UNIT shows it), then re-run",
    )
    warnings = []
    for name, session in pair.sessions.items():
        if name != pair.active and session.run(f"systemctl is-active --quiet {q}").status == 0:
            raise WizardError(
                f"{unit} is running on {name}, which is not the active node: the pair must run "
                f"it on one node only. Stop it there (systemctl disable --now {unit}), re-run"
            )
        if session.run(f"systemctl is-enabled {q}").out.strip() == "enabled":
            warnings.append(
                f"{unit} is enabled at boot on {name}: the agent starts it; run "
                f"`systemctl disable {unit}` there"
            )
    return warnings


def validate_resource(pair: Pair, values: dict[str, Any]) -> list[str]:
    kind = values["kind"]
    if kind == "systemd":
        return validate_systemd(pair, values["unit"])
    if kind == "sysv":
        script = init_script_path(values["script"])
        _missing(
            pair,
            f"test -x {shlex.quote(script)}",
            f"init script {script}",
            "install the same script (executable) on both nodes",
        )
    if kind == "script":
        for key in ("start", "stop", "status"):
            try:
                word = command_word(values[key])
            except ValueError as error:
                raise WizardError(f"the {key} command {values[key]!r}: {error}") from None
            _missing(
                pair,
                f"command -v {shlex.quote(word)} >/dev/null",
                f"the {key} command {word}",
                "install it on both nodes",
            )
    return []


def validate_dir(pair: Pair, path: str) -> None:
    if not path.startswith("/") or path.rstrip("/") == "":
        raise WizardError(f"{path!r}: give an absolute directory path other than /")
    where = pair.active or next(iter(pair.sessions))
    session = pair.sessions[where]
    if session.run(f"test -d {shlex.quote(path)}").status != 0:
        raise WizardError(f"{path} does not exist on {where} (the active node): create it first")
    real = session.run(f"readlink -f -- {shlex.quote(path)}")
    resolved = real.out.strip()
    if real.status != 0 or not resolved.startswith("/"):
        raise WizardError(f"cannot tell where {path} leads on {where}: {real.err.strip()}")
    wrong = configuration.symlinked_sync_problem(path, resolved)
    if wrong is not None:
        raise WizardError(f"{wrong} (on {where})")
    if resolved != posixpath.normpath(path):
        # the standby would get a real directory where the active has a symlink
        raise WizardError(
            f"{path} leads through a symlink to {resolved} on {where}: give {resolved}, "
            "the directory itself"
        )


def write_both(pair: Pair, new_text: str, say: Callable[[str], None]) -> None:
    """Write the config to every node (atomic on each); roll back if one fails."""
    for name, session in pair.sessions.items():
        if session.read(CONFIG_PATH) != pair.text:
            raise WizardError(
                f"{CONFIG_PATH} on {name} changed while the wizard ran: nothing was written; re-run"
            )
    changes = Changes(say=say)
    writing = next(iter(pair.sessions.values()))
    try:
        for writing in pair.sessions.values():
            changes.write_file(writing, CONFIG_PATH, new_text, 0o644)
    except SshError as error:
        failed = f"writing the new config to {writing.label} failed: {error}"
        raise WizardError(_rolled_back(failed, changes.rollback())) from None
    except KeyboardInterrupt as error:
        # Ctrl-C (SIGTERM, SIGHUP) between two nodes' writes left them with different
        # configs, unreported (a helper's finding): rolled back like a failed write
        how = str(error) or "interrupted"
        stopped = f"{how} while the new config was written to the nodes"
        raise Interrupted(_rolled_back(stopped, changes.rollback())) from None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP) while the config was written; the message says what the
    rollback did on each node."""


def _rolled_back(cause: str, lines: list[str]) -> str:
    """``cause`` and what the rollback of a config write did, and what is left."""
    report = [cause]
    if lines:
        report += ["What was changed and undone:", *(f"  {line}" for line in lines)]
    if left_changed(lines):
        report.append(
            "Left changed: what is marked NOT undone (put the old config back by hand, "
            "or re-run once the node is reachable: the wizard refuses to go on while "
            "the configs differ); no agent was told to reload."
        )
    else:
        report.append("No node is left changed; no agent was told to reload.")
    return "\n".join(report)


def reload_agents(pair: Pair, stop_removed: bool, say: Callable[[str], None]) -> None:
    """Tell every running agent to re-read the config (standbys first); the active one
    starts (or stops) resources. A stopped agent reads it when it starts. Every running
    agent is asked even when one fails: the first failure (a standby whose agent was
    stopped) left the active on the old config without a word (a helper's finding)."""
    flag = " --stop-removed" if stop_removed else ""
    order = sorted(pair.sessions, key=lambda n: n == pair.active)  # standby first
    failed: dict[str, int] = {}
    taken: list[str] = []
    for name in order:
        if pair.roles.get(name) == "DOWN":
            say(f"  {name}: its agent is not running; it reads the new config when it starts")
            continue
        result = pair.sessions[name].run(
            f"mosqit-failover reload{flag} --config {CONFIG_PATH}", timeout=120
        )
        for line in (result.out + result.err).splitlines():
            say(f"  {name}: {line}")
        if result.status != 0:
            failed[name] = result.status
        else:
            taken.append(name)
    if failed:
        raise WizardError(
            "the agent on "
            + ", ".join(f"{n} (exit {status})" for n, status in failed.items())
            + " did not take the new config; the config is written on "
            + ("both nodes" if len(order) == 2 else "every node")
            + (f" and {', '.join(taken)} took it" if taken else "")
            + ". Read `journalctl -t mosqit-failover` there, then `mosqit-failover reload` "
            "on it"
        )


def apply(pair: Pair, new_text: str, stop_removed: bool, say: Callable[[str], None]) -> Pair:
    configuration.parse(new_text, "the edited config")
    write_both(pair, new_text, say)
    say(f"config written to {'both nodes' if len(pair.sessions) == 2 else 'every node'}")
    reload_agents(pair, stop_removed, say)
    return read_pair(pair.sessions)


def ask_addition(asker: Asker, pair: Pair) -> tuple[str, dict[str, Any]]:
    """('resources' | 'sync', table values) for a new entry, asked or taken from answers."""
    kind = asker.choose("kind", "What to protect", KINDS, "systemd")
    if kind == "dir":
        path = asker.ask("path", "Directory to sync", non_empty).rstrip("/") or "/"
        excludes = asker.ask(
            "excludes",
            "Exclude patterns (comma separated)",
            lambda t: [p.strip() for p in t.split(",") if p.strip()],
            "",
        )
        return "sync", {"path": path, "excludes": excludes}
    values: dict[str, Any] = {"kind": kind}
    default: str | None
    if kind == "systemd":
        values["unit"] = asker.ask("unit", "systemd unit", non_empty)
        default = default_name(values["unit"].removesuffix(".service"))
    elif kind == "sysv":
        values["script"] = asker.ask("script", "Init script", non_empty, None)
        default = default_name(values["script"].rsplit("/", 1)[-1])
    else:
        for key in ("start", "stop", "status"):
            values[key] = asker.ask(key, f"Command to {key} the application", shell_command)
        default = None
    values = {"name": asker.ask("name", "Resource name", check_name, default), **values}
    return "resources", values


def default_name(text: str) -> str | None:
    """A valid resource name made of a unit's or script's name: getty@tty1 -> getty-tty1,
    'my app' -> my-app (a helper's finding: the name taken as it was failed the name's
    own check, a traceback). None when nothing of it is left."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip("_.-")[:63].rstrip("-")
    return name or None


def command_word(command: str) -> str:
    """The program a shell command runs (its first word); ValueError naming the problem."""
    try:
        words = shlex.split(command)
    except ValueError as error:  # "No closing quotation" was a traceback (a helper's finding)
        raise ValueError(f"not a valid shell command ({error}): balance its quotes") from None
    if not words or not words[0]:
        raise ValueError("give a command to run")
    return words[0]


def shell_command(text: str) -> str:
    """An application's start, stop or status command: its quotes must balance."""
    text = non_empty(text)
    command_word(text)
    return text


def add(asker: Asker, pair: Pair) -> Pair:
    kind, values = ask_addition(asker, pair)
    # the config's rules first: the nodes' checks told to `systemctl disable --now` the
    # agent's own unit or sshd where it ran on a standby (a helper's finding)
    new_text = configedit.append(pair.text, kind, values)
    if kind == "sync":
        validate_dir(pair, values["path"])
    else:
        for warning in validate_resource(pair, values):
            asker.say(f"warning: {warning}")
    return apply(pair, new_text, False, asker.say)


def remove(asker: Asker, pair: Pair) -> Pair:
    names = [r.name for r in pair.config.resources] + [d.path for d in pair.config.sync]
    if not names:  # "choose one of: " and nothing (a helper's finding)
        raise WizardError("nothing is protected yet, so nothing can be removed")
    target = asker.choose("remove", "Remove", names, None)
    kind = "sync" if target.startswith("/") else "resources"
    stop = kind == "resources" and asker.confirm(
        "stop_removed", f"Stop {target} on the active node now?", False
    )
    new_text = configedit.remove(pair.text, kind, target)
    return apply(pair, new_text, stop, asker.say)


def move(asker: Asker, pair: Pair) -> Pair:
    names = [r.name for r in pair.config.resources]
    if not names:
        raise WizardError("no resource is protected yet, so none can be moved")
    target = asker.choose("move", "Move", names, None)
    position = asker.ask(
        "position", f"New place in the start order (1-{len(names)})", _position(len(names))
    )
    return apply(pair, configedit.move(pair.text, target, position), False, asker.say)


def _position(count: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= count:
            raise ValueError(f"a number from 1 to {count}")
        return int(text)

    return check


STEPS: dict[str, Callable[[Asker, Pair], Pair]] = {"add": add, "remove": remove, "move": move}


def run(asker: Asker, sessions: dict[str, Session], actions: list[dict[str, Any]]) -> None:
    """List, then carry out ``actions`` (unattended) or ask what to do until 'done'."""
    pair = read_pair(sessions)
    asker.say(listing(pair))
    if actions or not asker.interactive:
        for action in actions:
            step = Asker({**action}, interactive=False, out=asker.out)
            name = str(action.get("action", ""))
            if name not in STEPS:
                raise WizardError(f"action {name!r}: use one of {', '.join(UNATTENDED_ACTIONS)}")
            pair = STEPS[name](step, pair)
            asker.say(listing(pair))
        return
    while True:
        asker.answers = {}
        choice = asker.choose("action", "\nWhat now?", ACTIONS, "done")
        if choice == "done":
            return
        if choice == "list":
            asker.say(listing(read_pair(sessions)))
            continue
        try:
            pair = STEPS[choice](asker, pair)
            asker.say(listing(pair))
        except (WizardError, configedit.EditError, configuration.ConfigError) as error:
            asker.say(f"not done: {error}")
