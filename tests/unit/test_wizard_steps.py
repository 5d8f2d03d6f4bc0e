"""Wizard steps without a lab: login retries, per-node VIP interface, a write cut off halfway."""

from __future__ import annotations

import io
import ipaddress
import json
from typing import Any, cast

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.wizards import changes as changes_module
from mosqit_failover.wizards import checks, configedit, deploy, resources
from mosqit_failover.wizards.prompts import AnswerError, Asker
from mosqit_failover.wizards.ssh import AuthError, KnownHosts, Login, Session, SshError
from tests.unit.test_wizard_config import IP_ADDR

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


def _vip_interfaces(answers: dict[str, str], beta_port: str = "lan0") -> dict[str, str]:
    facts = {"alpha": _facts("alpha", 11, "eth0"), "beta": _facts("beta", 12, beta_port)}
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


def test_the_config_names_a_node_own_vip_interface_only_where_it_differs() -> None:
    facts = {"alpha": _facts("alpha", 11, "eth0"), "beta": _facts("beta", 12, "lan0")}
    networks = checks.discover(facts)
    text = configedit.render_config(
        "shop",
        networks,
        ipaddress.IPv4Interface("10.0.1.50/24"),
        "eth0",
        ["alpha", "beta"],
        vip_interfaces={"alpha": "eth0", "beta": "lan0"},
    )
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
    old = configedit.render_config(
        "shop",
        checks.discover({"alpha": _facts("alpha", 11, "eth0"), "beta": _facts("beta", 12, "eth0")}),
        ipaddress.IPv4Interface("10.0.1.50/24"),
        "eth0",
        ["alpha", "beta"],
    )
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
