"""The wizards cut off midway, without a lab: SIGTERM and SIGHUP, a second Ctrl-C during
the rollback, a connection that drops or stalls while a command or write runs, Ctrl-C
between two nodes' config writes, during apt-get, and after a completed deployment
(a helper's attack on the setup wizard; its reproducers ran in the lab).

The nodes are the `FakeNode`s of test_wizard_multi behind the wizard's login seam
(`deploy.connect`); a connection that really drops is the paramiko test server of
test_wizard_ssh.
"""

from __future__ import annotations

import functools
import io
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any, cast

import paramiko
import pytest

from mosqit_failover.wizards import changes as changes_module
from mosqit_failover.wizards import cli as wizard_cli
from mosqit_failover.wizards import deploy, package, resources
from mosqit_failover.wizards.prompts import Asker
from mosqit_failover.wizards.ssh import (
    Dropped,
    KnownHosts,
    Login,
    Result,
    Session,
    TimedOut,
    connect,
)
from tests.unit.test_wizard_multi import ANSWERS, UNIT, FakeNode, _cluster, fleet
from tests.unit.test_wizard_ssh import PASSWORD, Decisions, SshServer, _Node, new_ed25519_key
from tests.unit.test_wizard_steps import FakeSession, _pair

# ---- the wizard command over fake nodes ------------------------------------------------


def _login_seam(monkeypatch: pytest.MonkeyPatch, nodes: dict[str, FakeNode]) -> None:
    def connect(label: str, host: str, login: Login, *_: Any) -> Session:
        node = nodes[host]
        node.label = label
        return cast(Session, node)

    monkeypatch.setattr(deploy, "connect", connect)


def _wizard(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    nodes: dict[str, FakeNode],
    argv: list[str],
) -> tuple[int, str]:
    """`mosqit-failover wizard ARGV` (unattended) over ``nodes``: exit status, stderr."""
    monkeypatch.chdir(tmp_path)  # no package in ./dist
    monkeypatch.setenv("MOSQIT_WIZARD_PASSWORD", "pw")
    _login_seam(monkeypatch, nodes)
    hosts = [arg for host in nodes for arg in ("--node", host)]
    common = ["--unattended", "--known-hosts", str(tmp_path / "known_hosts"), *hosts]
    status = wizard_cli.main([argv[0], *common, *argv[1:]])
    return status, capsys.readouterr().err


DEPLOY = [
    "deploy",
    "--no-resources",
    "--switch-a",
    ANSWERS["switch_a"],
    "--switch-b",
    ANSWERS["switch_b"],
    "--cluster",
    ANSWERS["cluster"],
    "--vip",
    ANSWERS["vip"],
]


class Killed(Exception):
    """The signal's own handler ran: the wizard did not handle the signal."""


@contextmanager
def _own_handlers(*signals: signal.Signals) -> Iterator[Callable[[int, FrameType | None], None]]:
    """Handlers of the test's own for ``signals`` (the default ends pytest itself)."""

    def killed(signum: int, _frame: FrameType | None) -> None:
        raise Killed(signal.Signals(signum).name)

    before = {sig: signal.signal(sig, killed) for sig in signals}
    try:
        yield killed
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _send_after(node: str, prefix: str, sig: signal.Signals) -> Callable[[Any], None]:
    """A `Changes.hook` sending ``sig`` to this process after ``node``'s change ``prefix``."""
    sent: list[str] = []

    def hook(change: changes_module.Change) -> None:
        if change.node == node and change.what.startswith(prefix) and not sent:
            sent.append(change.what)
            os.kill(os.getpid(), sig)

    return hook


# ---- 3: SIGTERM or SIGHUP mid-deploy -----------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_mid_deploy_rolls_back_and_reports_as_ctrl_c_does(
    sig: signal.Signals,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A helper's attack: closing the terminal (SIGHUP) or SIGTERM after alpha's agent
    started killed the wizard without a word, its changes left on both nodes."""
    nodes = fleet(2)
    before = {host: dict(n.files) for host, n in nodes.items()}
    monkeypatch.setattr(changes_module.Changes, "hook", _send_after("alpha", "start", sig))
    with _own_handlers(signal.SIGTERM, signal.SIGHUP) as own:
        status, err = _wizard(monkeypatch, tmp_path, capsys, nodes, DEPLOY)
        # the handlers are the ones before the wizard ran
        assert signal.getsignal(signal.SIGTERM) is own and signal.getsignal(signal.SIGHUP) is own
    assert status == 130, err
    lines = err.strip().splitlines()
    assert lines[0] == f"mosqit-failover wizard: interrupted ({sig.name})"
    assert f"  alpha: undone: start {UNIT}" in lines
    assert lines[-1] == "Everything was undone: the nodes are as before."
    for host, node in nodes.items():
        assert node.files == before[host] and not node.active and not node.enabled


# ---- 4: a second Ctrl-C during the rollback ---------------------------------------------


class BreaksOnDisable(FakeNode):
    """A node on which undoing ``enable`` is cut off by Ctrl-C (pressed again)."""

    def run(self, command: str, *args: Any, **kwargs: Any) -> Result:
        if command == f"systemctl disable {UNIT}":
            raise KeyboardInterrupt
        return super().run(command, *args, **kwargs)


def test_ctrl_c_during_the_rollback_names_every_change_left_not_nothing_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper's attack: Ctrl-C after alpha's agent started, then again during the
    rollback, printed "interrupted; nothing was changed on the nodes." while config,
    secret and the enabled unit were left on both nodes."""
    nodes = {"10.0.1.11": FakeNode(0), "10.0.1.12": BreaksOnDisable(1)}

    def ctrl_c(change: changes_module.Change) -> None:
        if change.node == "alpha" and change.what.startswith("start"):
            raise KeyboardInterrupt

    monkeypatch.setattr(changes_module.Changes, "hook", ctrl_c)
    status, err = _wizard(monkeypatch, tmp_path, capsys, nodes, DEPLOY)
    assert status == 130, err
    assert "nothing was changed" not in err.lower()
    lines = err.strip().splitlines()
    assert lines[0] == "mosqit-failover wizard: interrupted"
    assert lines[2] == f"  alpha: undone: start {UNIT}"  # undone before the second Ctrl-C
    stopped = changes_module.STOPPED
    assert lines[3] == f"  beta: NOT undone: enable {UNIT} ({stopped})"
    # every change after it in the rollback's order is named NOT undone, none tried
    rest = lines[4:-1]
    assert rest and all(f"({stopped})" in line or "(nothing to undo)" in line for line in rest)
    assert f"  alpha: NOT undone: wrote {deploy.CONFIG_PATH} ({stopped})" in rest
    assert f"  beta: NOT undone: wrote {deploy.SECRET_PATH} ({stopped})" in rest
    assert lines[-1].startswith("Left changed on alpha and beta: what is marked NOT undone.")
    assert deploy.CONFIG_PATH in nodes["10.0.1.12"].files  # it is left, as said


# ---- 5: the connection drops while a command runs ----------------------------------------


class _ExecNode(_Node):
    """A node that takes a command and then drops the connection, or never answers."""

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return int(paramiko.OPEN_SUCCEEDED)

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        server = cast(ExecServer, self.server)
        server.ran.append(command.decode())
        if server.behave == "drop":  # the command runs on (an agent starts); the link dies
            threading.Timer(0.2, channel.get_transport().close).start()
        return True


class ExecServer(SshServer):
    def __init__(self, key: paramiko.PKey, behave: str) -> None:
        self.behave = behave
        self.ran: list[str] = []
        super().__init__(key)

    def _node(self) -> paramiko.ServerInterface:
        return _ExecNode(self)


@contextmanager
def _session(behave: str) -> Iterator[tuple[Session, ExecServer]]:
    server = ExecServer(new_ed25519_key(), behave)
    try:
        with tempfile.TemporaryDirectory(prefix="mqwiz-") as scratch:
            login = Login(password=PASSWORD, port=server.port)
            known = KnownHosts(Path(scratch) / "known_hosts")
            session = connect("alpha", "127.0.0.1", login, known, Decisions())
            try:
                yield session, server
            finally:
                session.close()
    finally:
        server.close()


def test_a_connection_dropping_while_a_command_runs_is_recorded_and_named() -> None:
    """A helper's attack: the connection dropped while `systemctl start` ran on a node:
    "failed (exit -1)" with an empty detail, the start not recorded, the rollback left
    the agent running unmentioned."""
    with _session("drop") as (session, server):
        changes = changes_module.Changes(False, lambda _t: None)
        with pytest.raises(Dropped) as caught:
            changes.run(session, "systemctl start x", "start x", undo="systemctl stop x")
        assert server.ran == ["systemctl start x"]
        message = str(caught.value)
        assert message.startswith(
            "the connection to alpha (127.0.0.1) dropped during `systemctl start x` ("
        ), message
        assert "whether it took effect is unknown" in message and "exit -1" not in message
        assert [c.what for c in changes.done] == [
            "perhaps start x (the connection dropped while it ran)"
        ]
        [line] = changes.rollback()
        assert line.startswith(
            "alpha: NOT undone: perhaps start x (the connection dropped while it ran) ("
        )


# ---- 6: a write that stalls (a timeout) -------------------------------------------------


def test_a_stalled_write_says_what_it_was_doing_not_the_shell_script() -> None:
    with _session("hang") as (session, _server):
        quick = functools.partial(Session.run, session, timeout=0.3)
        setattr(session, "run", quick)  # noqa: B010 (the write's 30 s, shortened)
        with pytest.raises(TimedOut) as caught:
            session.write_atomic("/etc/x/config.toml", "new\n", 0o644)
    message = str(caught.value)
    assert message.startswith("alpha (127.0.0.1): writing /etc/x/config.toml did not finish")
    assert "umask" not in message and "set -e" not in message


class StallsOnce(FakeSession):
    """beta: the write is renamed into place, then the connection stalls (a timeout,
    the transport still alive); the node answers again for the rollback."""

    stalled = False

    def write_atomic(self, path: str, text: str, mode: int) -> None:
        super().write_atomic(path, text, mode)
        if not self.stalled:
            self.stalled = True
            raise TimedOut(f"beta (x): writing {path} did not finish within 30s ...")


def test_a_write_cut_off_by_a_timeout_counts_as_perhaps_written_and_is_undone() -> None:
    """A helper's attack: a stalled connection after beta's write; the rollback said "No
    node is left changed" while beta had the new config."""
    beta = StallsOnce("beta", "")
    pair, alpha = _pair(beta)
    old = pair.text
    with pytest.raises(deploy.WizardError) as caught:
        resources.write_both(pair, old + "# new\n", lambda _t: None)
    assert alpha.text == old and beta.text == old
    lines = str(caught.value).splitlines()
    assert lines[2:4] == [
        f"  beta: undone: perhaps wrote {deploy.CONFIG_PATH} (it did not finish in time)",
        f"  alpha: undone: wrote {deploy.CONFIG_PATH}",
    ]


# ---- 7: Ctrl-C between two nodes' config writes ---------------------------------------------


def _ctrl_c_after(node: str) -> Callable[[Any], None]:
    def hook(change: changes_module.Change) -> None:
        if change.node == node:
            raise KeyboardInterrupt

    return hook


def test_ctrl_c_between_two_config_writes_rolls_back_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper's attack: Ctrl-C after alpha's write left alpha with the new config and
    beta with the old; "the config on the nodes is as the last message says"."""
    monkeypatch.setattr(changes_module.Changes, "hook", _ctrl_c_after("alpha"))
    pair, alpha = _pair(FakeSession("beta", ""))
    old = pair.text
    with pytest.raises(resources.Interrupted) as caught:
        resources.write_both(pair, old + "# new\n", lambda _t: None)
    assert alpha.text == old
    assert str(caught.value).splitlines() == [
        "interrupted while the new config was written to the nodes",
        "What was changed and undone:",
        f"  alpha: undone: wrote {deploy.CONFIG_PATH}",
        "No node is left changed; no agent was told to reload.",
    ]


def test_the_resource_command_interrupted_mid_write_reports_the_rollback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = _cluster(2)
    nodes = {n.host: n for n in cluster.values()}
    old = cluster["alpha"].files[deploy.CONFIG_PATH]
    monkeypatch.setattr(
        changes_module.Changes, "hook", _send_after("alpha", "wrote", signal.SIGINT)
    )
    status, err = _wizard(monkeypatch, tmp_path, capsys, nodes, ["resources", "--add-dir", "/x"])
    assert status == 130, err
    assert err.startswith(
        "mosqit-failover wizard: interrupted while the new config was written to the nodes\n"
    )
    assert err.endswith("No node is left changed; no agent was told to reload.\n")
    assert all(n.files[deploy.CONFIG_PATH] == old for n in cluster.values())


# ---- 8: Ctrl-C during apt-get install ------------------------------------------------------


class AptNode:
    """A node whose apt-get install is cut off by Ctrl-C (apt goes on there)."""

    label = "alpha"
    alive = True
    login = SimpleNamespace(user="root")

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, command: str, **_: Any) -> Result:
        self.ran.append(command)
        if command.startswith("d=$(mktemp"):
            return Result(0, "/var/tmp/mosqit-failover-package.abc\n", "")
        if " install -y " in command:
            raise KeyboardInterrupt
        return Result(0, "", "")

    def put(self, _local: Path, _remote: str) -> None:
        pass


@pytest.mark.parametrize("before", [None, "0.1.0"])
def test_ctrl_c_during_apt_get_install_is_recorded_and_undone_or_named(
    before: str | None,
) -> None:
    """A helper's attack: Ctrl-C during apt-get install left the package installed and
    the report said "Everything was undone"."""
    node = AptNode()
    changes = changes_module.Changes(False, lambda _t: None)
    local = package.LocalPackage(Path("mosqit-failover_0.2.0_all.deb"), "0.2.0")
    with pytest.raises(KeyboardInterrupt):
        package.install(
            cast(Session, node),
            local,
            package.NodePackage(True, before),
            changes,
        )
    what = "install mosqit-failover 0.2.0"
    if before is None:
        assert changes.rollback() == [
            f"alpha: undone: perhaps {what} from mosqit-failover_0.2.0_all.deb (interrupted)"
        ]
        assert node.ran[-1].endswith("remove -y mosqit-failover")
    else:  # an upgrade is kept: named, not undone
        [line] = changes.rollback()
        assert line.startswith(f"alpha: perhaps {what} (was 0.1.0) from ")
        assert line.endswith("(an upgrade is kept on rollback: the older package is not at "
                             "hand) (interrupted) (nothing to undo)")  # fmt: skip


# ---- 9: Ctrl-C at the resource prompt after a completed deployment --------------------------


def test_ctrl_c_at_the_resource_prompt_says_the_pair_is_deployed_and_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A helper's attack: Ctrl-C at "What now?" after the pair was deployed said
    "interrupted / Nothing was changed on the nodes." while the pair ran."""
    nodes = fleet(2)
    _login_seam(monkeypatch, nodes)
    monkeypatch.chdir(tmp_path)
    asked: list[str] = []

    def read(prompt: str) -> str:
        asked.append(prompt)
        if "What now?" in prompt:
            raise KeyboardInterrupt
        return ""  # the default

    out = io.StringIO()
    asker = Asker({**ANSWERS, "nodes": list(nodes)}, True, out=out, read=read)

    def manage(sessions: dict[str, Session], _changes: object) -> None:
        resources.run(asker, sessions, [])

    with pytest.raises(deploy.Aborted) as aborted:
        deploy.deploy(asker, cast(KnownHosts, None), False, manage)
    assert "What now?" in asked[-1]
    report = aborted.value.report()
    assert "nothing was changed" not in report.lower()
    assert report.splitlines() == [
        "interrupted",
        "The pair is deployed and running (cluster shop, VIP 10.0.1.50/24): nothing of the "
        "deployment was undone. Only the resource step was interrupted: what it changed is "
        "said above (nothing, if no config was written).",
    ]
    assert all(n.active and deploy.CONFIG_PATH in n.files for n in nodes.values())
