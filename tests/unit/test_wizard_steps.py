"""Wizard steps without a lab: login retries, per-node VIP interface, a write cut off halfway,
what deploy does about the package on each node, a re-deploy over a running pair (the
package itself: test_wizard_package.py)."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import shutil
from pathlib import Path
from typing import Any, cast

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.wizards import changes as changes_module
from mosqit_failover.wizards import checks, configedit, deploy, package, resources
from mosqit_failover.wizards.prompts import AnswerError, Asker
from mosqit_failover.wizards.ssh import AuthError, KnownHosts, Login, Result, Session, SshError
from tests.unit.test_wizard_config import IP_ADDR
from tests.unit.test_wizard_package import build_deb

# ---- a password refused, tried again ---------------------------------------


def _logins(
    monkeypatch: pytest.MonkeyPatch, wrong: int, interactive: bool, typed: list[str]
) -> tuple[list[str | None], io.StringIO, Any]:
    tried: list[str | None] = []

    def connect(label: str, host: str, login: Login, *_: Any) -> Session:
        tried.append(login.password)
        if len(tried) <= wrong:
            raise AuthError(f"login as root on {label} ({host}:22) refused: wrong password. ...")
        return cast(Session, type("S", (), {"login": login})())

    monkeypatch.setattr(deploy, "connect", connect)
    replies = iter(typed)
    out = io.StringIO()
    asker = Asker({"password": "first"}, interactive, out=out, read_secret=lambda _p: next(replies))

    def no(*_: Any) -> bool:
        return False

    def log_in() -> Any:
        return deploy.log_in(
            asker, "node1", "10.0.1.11", Login(password="first"), cast(KnownHosts, None), no
        )

    return tried, out, log_in


def test_interactive_login_asks_the_password_again_up_to_three_tries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried, out, log_in = _logins(monkeypatch, 2, True, ["second", "third"])
    session = log_in()
    assert tried == ["first", "second", "third"] and session.login.password == "third"
    assert out.getvalue().count("wrong password") == 2

    tried, out, log_in = _logins(monkeypatch, 3, True, ["second", "third"])
    with pytest.raises(AuthError, match=r"wrong password.*\(3 tries\)"):
        log_in()
    assert tried == ["first", "second", "third"]


def test_unattended_login_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    tried, _out, log_in = _logins(monkeypatch, 1, False, [])
    with pytest.raises(AuthError, match=r"wrong password\. \.\.\.$"):
        log_in()
    assert tried == ["first"]


# ---- the VIP interface per node ---------------------------------------------


def _facts(host: str, last: int, vip_port: str) -> checks.Facts:
    data = json.loads(json.dumps(IP_ADDR).replace(".11", f".{last}").replace("eth0", vip_port))
    return checks.parse_facts(f"{host}\n{json.dumps(data)}\n/usr/local/bin/mosqit-failover\n\n")


def _pair_facts(beta_port: str = "eth0") -> dict[str, checks.Facts]:
    """alpha (10.0.1.11, VIP network on eth0) and beta (10.0.1.12, on ``beta_port``)."""
    return {"alpha": _facts("alpha", 11, "eth0"), "beta": _facts("beta", 12, beta_port)}


def _shop_config(networks: list[checks.Network], **options: Any) -> str:
    """The config of the pair "shop" with the VIP 10.0.1.50/24 on eth0."""
    vip = ipaddress.IPv4Interface("10.0.1.50/24")
    return configedit.render_config("shop", networks, vip, "eth0", ["alpha", "beta"], **options)


def _vip_interfaces(answers: dict[str, str], beta_port: str = "lan0") -> dict[str, str]:
    facts = _pair_facts(beta_port)
    networks = checks.discover(facts)
    vip = ipaddress.IPv4Interface("10.0.1.50/24")
    return deploy.ask_vip_interface(Asker(answers, False), facts, networks, vip)


def test_same_names_one_question_different_names_one_per_node() -> None:
    assert _vip_interfaces({}, "eth0") == {"alpha": "eth0", "beta": "eth0"}
    with pytest.raises(AnswerError, match="'eth7' is missing on alpha"):
        _vip_interfaces({"vip_interface": "eth7"}, "eth0")
    assert _vip_interfaces({}) == {"alpha": "eth0", "beta": "lan0"}  # each its VIP network port
    assert _vip_interfaces({"vip_interface_beta": "eth1"}) == {"alpha": "eth0", "beta": "eth1"}
    with pytest.raises(AnswerError, match=r"'eth0' is missing on beta.*vip_interface_beta"):
        _vip_interfaces({"vip_interface": "eth0"})


def test_an_interface_that_exists_but_is_no_network_port_is_named_as_such() -> None:
    # "'lo' is missing on alpha (it has eth0, eth1, lo ...)" contradicted itself
    with pytest.raises(AnswerError, match=r"'lo' on alpha is not one of its ports.*eth0"):
        _vip_interfaces({"vip_interface": "lo"}, "eth0")


def test_the_config_names_a_node_own_vip_interface_only_where_it_differs() -> None:
    networks = checks.discover(_pair_facts("lan0"))
    text = _shop_config(networks, vip_interfaces={"alpha": "eth0", "beta": "lan0"})
    assert text.count("vip_interface") == 1
    cfg = configuration.parse(text)
    assert cfg.node("alpha").vip_interface == "eth0" and cfg.node("beta").vip_interface == "lan0"


# ---- the second node's write fails ------------------------------------------


class FakeSession:
    """A node's config file; ``drop`` cuts the connection before or after the rename."""

    def __init__(self, label: str, text: str, drop: str = "") -> None:
        self.label, self.text, self.drop, self.alive = label, text, drop, True

    def _check(self) -> None:
        if not self.alive:
            raise SshError(f"the connection to {self.label} (x) dropped (closed): ...")

    def read(self, _path: str) -> str:
        self._check()
        if self.drop == "before-read":
            self.alive = False
            self._check()
        return self.text

    def mode(self, _path: str) -> int:
        self._check()
        return 0o644

    def write_atomic(self, _path: str, text: str, _mode: int) -> None:
        self._check()
        if self.drop == "after-rename":
            self.text = text
            self.alive = False
            self._check()
        self.text = text


def _pair(beta: FakeSession) -> tuple[resources.Pair, FakeSession]:
    old = _shop_config(checks.discover(_pair_facts()))
    alpha = FakeSession("alpha", old)
    beta.text = old
    sessions = cast(dict[str, Session], {"alpha": alpha, "beta": beta})
    return resources.Pair(sessions, old, configuration.parse(old), {}), alpha


def test_second_write_cut_off_rolls_back_and_names_every_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cut_beta(change: changes_module.Change) -> None:
        if change.node == "alpha":
            beta.drop = "before-read"

    monkeypatch.setattr(changes_module.Changes, "hook", cut_beta)
    beta = FakeSession("beta", "")
    pair, alpha = _pair(beta)
    old = pair.text
    with pytest.raises(deploy.WizardError) as caught:
        resources.write_both(pair, old + "# new\n", lambda _t: None)
    assert alpha.text == old and beta.text == old
    assert str(caught.value) == (
        "writing the new config to beta failed: the connection to beta (x) dropped (closed): ...\n"
        "What was changed and undone:\n"
        "  alpha: undone: wrote /etc/mosqit-failover/mosqit-failover.toml\n"
        "No node is left changed; no agent was told to reload."
    )

    monkeypatch.setattr(changes_module.Changes, "hook", None)
    beta = FakeSession("beta", "", "after-rename")
    pair, alpha = _pair(beta)
    with pytest.raises(deploy.WizardError) as caught:
        resources.write_both(pair, old + "# new\n", lambda _t: None)
    assert alpha.text == old and beta.text == old + "# new\n"  # the rename made it to beta
    lines = str(caught.value).splitlines()
    assert lines[1:4] == [
        "What was changed and undone:",
        "  beta: NOT undone: perhaps wrote /etc/mosqit-failover/mosqit-failover.toml (the "
        "connection dropped during the write) (the connection to beta (x) dropped (closed): ...)",
        "  alpha: undone: wrote /etc/mosqit-failover/mosqit-failover.toml",
    ]
    assert lines[4].startswith("Left changed: what is marked NOT undone")


# ---- what the deploy wizard does about the package on each node --------------------


class QuerySession:
    """A node that answers the package query (the only command plan_packages runs)."""

    def __init__(self, label: str, answer: str, status: int = 0) -> None:
        self.label, self.answer, self.status = label, answer, status

    def run(self, command: str, **_: Any) -> Result:
        assert command == package.QUERY
        return Result(self.status, self.answer, "")


def _plan_packages(
    answers: dict[str, Any], nodes: dict[str, tuple[str, str]], local: Path | None
) -> tuple[deploy.Packages, str]:
    """plan_packages for nodes {name: (dpkg-query answer, binary on PATH)}."""
    sessions = {n: cast(Session, QuerySession(n, answer)) for n, (answer, _b) in nodes.items()}
    facts = {n: checks.Facts(n, {}, binary, "") for n, (_a, binary) in nodes.items()}
    out = io.StringIO()
    asker = Asker({**answers, **({"package": str(local)} if local else {})}, False, out=out)
    return deploy.plan_packages(asker, sessions, facts), out.getvalue()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed here")
def test_the_package_is_offered_where_missing_or_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deb = build_deb(tmp_path, "mosqit-failover", "0.2.0")
    older = ("install ok installed\t0.1.0", "/usr/bin/mosqit-failover")
    newer = ("install ok installed\t0.3.0", "/usr/bin/mosqit-failover")
    none = ("", "")
    by_pip = ("", "/usr/local/bin/mosqit-failover")
    plan, said = _plan_packages({}, {"alpha": older, "beta": none}, deb)
    assert (plan.install, plan.by_hand) == (["alpha", "beta"], [])  # unattended: the default
    assert "mosqit-failover 0.2.0" in said and "alpha has 0.1.0, beta has none" in said
    plan, said = _plan_packages({}, {"alpha": newer, "beta": newer}, deb)
    assert plan.install == []
    assert said.count("\n") == 1 and said.endswith(
        "is older than what alpha has 0.3.0, beta has 0.3.0: not installed there, "
        "the node keeps its newer version\n"
    )
    plan, _ = _plan_packages({"install_package": False}, {"alpha": older, "beta": by_pip}, deb)
    assert (plan.install, plan.by_hand) == ([], ["beta"])  # alpha keeps 0.1.0
    with pytest.raises(deploy.WizardError, match="not installed on beta: answer yes"):
        _plan_packages({"install_package": False}, {"alpha": older, "beta": none}, deb)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")  # no package here, none in ./dist
    with pytest.raises(deploy.WizardError, match=r"not installed on beta: build the package"):
        _plan_packages({}, {"alpha": older, "beta": none}, None)
    plan, _ = _plan_packages({}, {"alpha": newer, "beta": by_pip}, None)
    assert (plan.install, plan.by_hand) == ([], ["beta"])
    unit = deploy.hand_unit("/opt/mf/bin/mosqit-failover")
    assert "\nExecStart=/opt/mf/bin/mosqit-failover agent --config " in unit


def test_a_cause_that_says_nothing_changed_is_not_told_twice() -> None:
    said = deploy.WizardError(
        "beta: apt cannot get what mosqit-failover needs: x. Nothing was changed."
    )
    assert deploy.Aborted(said, []).report() == str(said)
    other = deploy.Aborted(deploy.WizardError("the pair did not form"), [])
    assert other.report() == "the pair did not form\nNothing was changed on the nodes."


# ---- the pair's own VIP ------------------------------------------------------------


class ArpSession:
    """node1, on whose network someone (the active node) answers ARP for every address."""

    label = "alpha"

    def run(self, _command: str, **_: Any) -> Result:
        return Result(0, '[{"dst": "10.0.1.50", "lladdr": "52:54:00:00:00:12"}]', "")


def test_the_pair_own_vip_is_not_refused_as_in_use_when_node1_is_the_standby() -> None:
    """Upgrading a running pair whose active node is node2: node2 answers ARP for the VIP."""
    facts = _pair_facts()
    networks = checks.discover(facts)
    sessions = cast(dict[str, Session], {"alpha": ArpSession()})
    with pytest.raises(AnswerError, match="already in use"):
        deploy.ask_vip(Asker({"vip": "10.0.1.60"}, False), sessions, networks)
    own = frozenset({ipaddress.IPv4Address("10.0.1.60")})  # in the nodes' existing config
    vip = deploy.ask_vip(Asker({"vip": "10.0.1.60"}, False), sessions, networks, own)
    assert vip == ipaddress.IPv4Interface("10.0.1.60/24")
    # held by a node (a secondary address, as the agent adds the VIP)
    assert ipaddress.IPv4Address("10.0.1.50") in facts["alpha"].held
    held = frozenset(facts["alpha"].held | facts["beta"].held)
    vip = deploy.ask_vip(Asker({"vip": "10.0.1.50"}, False), sessions, networks, held)
    assert vip == ipaddress.IPv4Interface("10.0.1.50/24")


# ---- a re-deploy over a pair that runs ---------------------------------------------


class RunningNode:
    """A node with config and secret whose unit is ``active`` / ``enabled`` (exit status)."""

    def __init__(self, label: str, active: bool = True, enabled: bool = True) -> None:
        self.label = label
        self.alive = True
        self.state = {"is-active": active, "is-enabled": enabled}
        self.files: dict[str, str] = {
            deploy.CONFIG_PATH: "# the running pair's config\n",
            deploy.SECRET_PATH: "old secret\n",
        }
        self.commands: list[str] = []

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def mode(self, _path: str) -> int:
        return 0o600

    def write_atomic(self, path: str, text: str, _mode: int) -> None:
        self.files[path] = text

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def run(self, command: str, **_: Any) -> Result:
        self.commands.append(command)
        verb = command.split()[1] if command.startswith("systemctl ") else ""
        return Result(0 if self.state.get(verb, True) else 3, "", "")


def _redeploy_plan(*nodes: RunningNode, config: str | None = "# the new config\n") -> deploy.Plan:
    installed = package.NodePackage(True, "0.1.0")
    return deploy.Plan(
        sessions=cast(dict[str, Session], {n.label: n for n in nodes}),
        facts={},
        networks=[],
        cluster="shop",
        vip=ipaddress.IPv4Interface("10.0.1.50/24"),
        vip_interfaces={n.label: "eth0" for n in nodes},
        config=config,
        packages=deploy.Packages(None, {n.label: installed for n in nodes}, [], []),
    )


def _changing(node: RunningNode) -> list[str]:
    return [c for c in node.commands if not c.startswith(("systemctl is-", "systemctl daemon"))]


def test_rolling_back_a_redeploy_leaves_running_agents_running_and_enabled() -> None:
    alpha, beta = RunningNode("alpha"), RunningNode("beta")
    changes = changes_module.Changes(False, lambda _t: None)
    deploy.install(_redeploy_plan(alpha, beta), changes)
    for node in (alpha, beta):  # new files: the running agent reloads, is not restarted
        assert _changing(node) == ["systemctl reload mosqit-failover.service"]
        node.commands.clear()
    changes.rollback()  # as after "the pair did not form within 60s" or Ctrl-C
    for node in (alpha, beta):
        assert node.files[deploy.CONFIG_PATH] == "# the running pair's config\n"
        assert node.files[deploy.SECRET_PATH] == "old secret\n"
        assert _changing(node) == ["systemctl reload mosqit-failover.service"], node.commands


def test_rolling_back_stops_and_disables_only_what_the_wizard_started_and_enabled() -> None:
    alpha = RunningNode("alpha", active=False, enabled=False)
    beta = RunningNode("beta", active=True, enabled=False)
    changes = changes_module.Changes(False, lambda _t: None)
    deploy.install(_redeploy_plan(alpha, beta, config=None), changes)
    assert _changing(alpha) == [
        "systemctl enable mosqit-failover.service",
        "systemctl start mosqit-failover.service",
    ]
    assert _changing(beta) == ["systemctl enable mosqit-failover.service"]
    alpha.commands.clear()
    beta.commands.clear()
    changes.rollback()
    assert _changing(alpha) == [
        "systemctl stop mosqit-failover.service",
        "systemctl disable mosqit-failover.service",
    ]
    assert _changing(beta) == ["systemctl disable mosqit-failover.service"]


def test_a_redeploy_over_a_deployed_pair_keeps_config_and_secret_and_restarts_nothing() -> None:
    """A restart hands the service over (two switchovers for the pair), and a new secret
    written to both nodes leaves them unable to authenticate each other in between:
    the deployed pair's config (resources, sync, fencing...) and secret are kept."""
    alpha, beta = RunningNode("alpha"), RunningNode("beta")
    have = deploy.existing(cast(dict[str, Session], {"alpha": alpha, "beta": beta}))
    assert all(e.config and e.secret for e in have.values())
    changes = changes_module.Changes(False, lambda _t: None)
    deploy.install(_redeploy_plan(alpha, beta, config=None), changes)
    for node in (alpha, beta):
        assert node.files[deploy.CONFIG_PATH] == "# the running pair's config\n"
        assert node.files[deploy.SECRET_PATH] == "old secret\n"
        assert _changing(node) == []
    assert [c.what for c in changes.done] == ["systemctl daemon-reload"] * 2


def test_a_deployed_pair_is_recognised_by_config_and_secret_on_both_nodes() -> None:
    text = _shop_config(
        checks.discover(_pair_facts("lan0")), vip_interfaces={"alpha": "eth0", "beta": "lan0"}
    )
    both = {"alpha": deploy.Existing(text, True), "beta": deploy.Existing(text, True)}
    kept = deploy.kept_config(both)
    assert kept is not None and kept.cluster == "shop"
    assert both["beta"].vip() == ipaddress.IPv4Address("10.0.1.50")
    assert deploy.kept_config({**both, "beta": deploy.Existing(text, False)}) is None
    stopped = {n: deploy.Existing(text, True, running=False) for n in both}
    assert deploy.kept_config(stopped) is None  # deployed anew, as the first time
    assert deploy.kept_config({**both, "beta": deploy.Existing(None, False)}) is None
    with pytest.raises(deploy.WizardError, match=r"alpha's .* does not load .*Nothing was"):
        deploy.kept_config({n: deploy.Existing("cluster = [", True) for n in both})


def test_a_deployed_pair_whose_secrets_differ_is_not_kept_as_it_is() -> None:
    """A helper's attack: a rollback that could not undo beta's new secret, then a
    re-run, reported "The pair is up" while neither agent could authenticate the other."""
    alpha, beta = RunningNode("alpha"), RunningNode("beta")
    beta.files[deploy.SECRET_PATH] = "another secret\n"
    have = deploy.existing(cast(dict[str, Session], {"alpha": alpha, "beta": beta}))
    have = {
        n: dataclasses.replace(
            e,
            config=_shop_config(
                checks.discover(_pair_facts("lan0")),
                vip_interfaces={"alpha": "eth0", "beta": "lan0"},
            ),
        )
        for n, e in have.items()
    }
    with pytest.raises(deploy.WizardError) as caught:
        deploy.kept_config(have)
    assert str(caught.value).startswith(
        f"the secret files differ: {deploy.SECRET_PATH} on beta is not alpha's, so the agents "
        "cannot authenticate each other and no node would take over. Copy alpha's"
    )
    assert str(caught.value).endswith("then re-run. Nothing was changed.")


class QuietSession(ArpSession):
    def run(self, _command: str, **_: Any) -> Result:
        return Result(0, "[]", "")


def test_answers_given_for_a_deployed_pair_must_agree_with_its_config() -> None:
    facts = _pair_facts()
    networks = checks.discover(facts)
    text = _shop_config(networks)
    kept = configuration.parse(text)
    same = {"alpha": "eth0", "beta": "eth0"}
    sessions = cast(dict[str, Session], {"alpha": QuietSession()})

    def check(answers: dict[str, str]) -> None:
        deploy.check_kept_answers(Asker(answers, False), sessions, facts, networks, kept, same)

    check({"cluster": "shop", "vip": "10.0.1.50", "vip_interface": "eth0"})
    with pytest.raises(deploy.WizardError, match=r"differs .*: VIP 10.0.1.60/24 \(it is 10"):
        check({"vip": "10.0.1.60"})
    with pytest.raises(deploy.WizardError, match=r"cluster other \(it is shop\).*Nothing was"):
        check({"cluster": "other"})
    with pytest.raises(AnswerError, match="'eth7' is missing on alpha"):
        check({"vip_interface": "eth7"})
    # a switch given for a deployed pair was ignored without a word (a helper's finding)
    with pytest.raises(deploy.WizardError, match=r"switch of network a 10.0.1.12 \(it is none\)"):
        check({"switch_a": "10.0.1.12"})


class InterruptedSession:
    """A node on which the command or write in progress is cut off by Ctrl-C after it
    took effect (an agent started, a file renamed into place)."""

    label = "beta"
    alive = True

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.files: dict[str, str] = {}

    def run(self, command: str, **_: Any) -> Result:
        self.ran.append(command)
        if command == "systemctl start x":
            raise KeyboardInterrupt
        return Result(0, "", "")

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def mode(self, path: str) -> int | None:
        return 0o600 if path in self.files else None

    def write_atomic(self, path: str, text: str, _mode: int) -> None:
        self.files[path] = text
        raise KeyboardInterrupt

    def remove(self, path: str) -> None:
        self.files.pop(path, None)


def test_a_step_cut_off_by_ctrl_c_is_undone_and_named() -> None:
    """A helper's attack: Ctrl-C during `systemctl start` on beta left its agent running
    while the report listed every step as undone (the step was never recorded)."""
    beta = InterruptedSession()
    changes = changes_module.Changes(False, lambda _t: None)
    session = cast(Session, beta)
    with pytest.raises(KeyboardInterrupt):
        changes.write_file(session, "/etc/x/secret", "new\n", 0o600)
    with pytest.raises(KeyboardInterrupt):
        changes.run(session, "systemctl start x", "start x", undo="systemctl stop x")
    assert changes.rollback() == [
        "beta: undone: perhaps start x (interrupted)",
        "beta: undone: perhaps wrote /etc/x/secret (interrupted)",
    ]
    assert beta.ran[-1] == "systemctl stop x" and "/etc/x/secret" not in beta.files


def test_nothing_to_remove_or_move_is_said_so() -> None:
    """A helper's attack: --remove and --move with nothing protected offered "choose one
    of: " and an empty list."""
    pair, _alpha = _pair(FakeSession("beta", ""))
    assert not pair.config.resources and not pair.config.sync
    with pytest.raises(deploy.WizardError, match="nothing is protected yet"):
        resources.remove(Asker({"remove": "x"}, False), pair)
    with pytest.raises(deploy.WizardError, match="no resource is protected yet"):
        resources.move(Asker({"move": "x", "position": "1"}, False), pair)
