"""`wizard deploy` over a pair with a node reinstalled (a helper's finding: the re-run
rendered a new config over the surviving node, whose resources, sync and secret went
without a word), and over a pair whose configs differ (it said "The pair is up"); a VIP
given with a prefix other than its network's (it was dropped without a word)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import cast

import pytest

from mosqit_failover.config import Config
from mosqit_failover.wizards import changes as changes_module
from mosqit_failover.wizards import checks, configedit, deploy
from mosqit_failover.wizards.prompts import AnswerError, Asker
from mosqit_failover.wizards.ssh import Session
from tests.unit.test_wizard_config import facts
from tests.unit.test_wizard_steps import QuietSession, RunningNode, _changing, _redeploy_plan

SYNC = '\n[[resources]]\nname = "db"\nkind = "systemd"\nunit = "postgresql.service"\n'


def shop(names: tuple[str, ...] = ("alpha", "beta")) -> str:
    """The config the wizard writes for the pair "shop", with a resource added since."""
    all_facts = {n: facts(n, 11 + i) for i, n in enumerate(names)}
    networks = checks.discover(all_facts)
    vip = ipaddress.IPv4Interface("10.0.1.50/24")
    return configedit.render_config("shop", networks, vip, "eth0", list(names)) + SYNC


def deployed(text: str, digest: str = "s1") -> deploy.Existing:
    return deploy.Existing(text, True, running=True, secret_digest=digest)


NEW = deploy.Existing(None, False, running=False)


def replacing(have: dict[str, deploy.Existing]) -> tuple[Config, str, tuple[str, ...]]:
    survived = deploy.survivors_config(have)
    assert survived is not None
    return survived


def test_a_reinstalled_node_gets_the_survivor_s_config_and_secret() -> None:
    config, survivor, fresh = replacing({"alpha": deployed(shop()), "beta": NEW})
    assert (survivor, fresh) == ("alpha", ("beta",))
    assert [r.name for r in config.resources] == ["db"]  # not rendered anew


def test_without_a_node_reinstalled_it_is_no_replacement() -> None:
    assert deploy.survivors_config({"alpha": NEW, "beta": NEW}) is None
    assert deploy.survivors_config({"alpha": deployed(shop()), "beta": deployed(shop())}) is None
    # a node with a config but no secret: a state no deploy leaves, as before
    half = deploy.Existing(shop(), False)
    assert deploy.survivors_config({"alpha": deployed(shop()), "beta": half}) is None


def test_a_new_node_under_another_name_is_refused_naming_the_lost_one() -> None:
    with pytest.raises(deploy.WizardError) as caught:
        deploy.survivors_config({"alpha": deployed(shop()), "gamma": NEW})
    text = str(caught.value)
    assert text.startswith("alpha runs the pair shop of alpha and beta (config and secret ")
    assert "replaces a lost one (beta) needs its host name and addresses" in text
    assert text.endswith("Nothing was changed.")


def test_survivors_whose_configs_or_secrets_differ_are_refused() -> None:
    three = shop(("alpha", "beta", "gamma"))
    with pytest.raises(deploy.WizardError, match=r"on beta differs from alpha's"):
        deploy.survivors_config(
            {"alpha": deployed(three), "beta": deployed(three + "\n# edited\n"), "gamma": NEW}
        )
    with pytest.raises(deploy.WizardError, match=r"secret files differ: .* on beta"):
        deploy.survivors_config(
            {"alpha": deployed(three), "beta": deployed(three, "s2"), "gamma": NEW}
        )


def test_a_deployed_pair_whose_configs_differ_is_not_called_up() -> None:
    with pytest.raises(deploy.WizardError) as caught:
        deploy.kept_config({"alpha": deployed(shop()), "beta": deployed(shop() + "# x\n")})
    assert str(caught.value).startswith(
        "/etc/mosqit-failover/mosqit-failover.toml on beta differs from alpha's"
    )


def test_a_new_node_must_have_the_lost_node_s_ports_and_addresses() -> None:
    config, _survivor, fresh = replacing({"alpha": deployed(shop()), "beta": NEW})
    good = {"alpha": facts("alpha", 11), "beta": facts("beta", 12)}
    deploy.check_replacement_addresses(config, good, fresh)
    moved = {**good, "beta": facts("beta", 13)}
    with pytest.raises(deploy.WizardError) as caught:
        deploy.check_replacement_addresses(config, moved, fresh)
    assert str(caught.value).startswith(
        "a new node must stand where the lost one stood: beta lacks 10.0.1.12 on eth0 "
        "(network A); beta lacks 10.0.2.12 on eth1 (network B)."
    )


def test_install_writes_only_the_new_node_and_leaves_the_survivor_running_untouched() -> None:
    alpha, beta = RunningNode("alpha"), RunningNode("beta", active=False, enabled=False)
    beta.files.clear()  # reinstalled
    plan = dataclasses.replace(
        _redeploy_plan(alpha, beta, config="# alpha's config\n"),
        replacing=("beta",),
        secret="alpha's secret\n",
    )
    changes = changes_module.Changes(False, lambda _t: None)
    deploy.install(plan, changes)
    assert alpha.files == RunningNode("alpha").files
    assert _changing(alpha) == []  # neither written nor reloaded
    assert beta.files[deploy.CONFIG_PATH] == "# alpha's config\n"
    assert beta.files[deploy.SECRET_PATH] == "alpha's secret\n"
    assert _changing(beta) == [
        "systemctl enable mosqit-failover.service",
        "systemctl start mosqit-failover.service",
    ]
    changes.rollback()
    assert deploy.CONFIG_PATH not in beta.files and deploy.SECRET_PATH not in beta.files
    assert alpha.files == RunningNode("alpha").files


# ---- the VIP's prefix ----------------------------------------------------------------


@pytest.mark.parametrize(
    "given", ["10.0.1.60/32", "10.0.1.60/8", "10.0.1.60/garbage", "10.0.1.60/"]
)
def test_a_vip_prefix_other_than_the_network_s_is_refused_not_dropped(given: str) -> None:
    """ "/32" became the network's /24 without a word (a helper's finding)."""
    networks = checks.discover({"alpha": facts("alpha", 11), "beta": facts("beta", 12)})
    sessions = cast(dict[str, Session], {"alpha": QuietSession()})
    with pytest.raises(AnswerError) as caught:
        deploy.ask_vip(Asker({"vip": given}, False), sessions, networks)
    assert "the VIP takes its network's prefix, /24 (10.0.1.0/24): give 10.0.1.60 alone" in str(
        caught.value
    )


@pytest.mark.parametrize("given", ["10.0.1.60", "10.0.1.60/24", "10.0.1.60/255.255.255.0"])
def test_the_vip_alone_or_with_its_network_s_prefix_is_taken(given: str) -> None:
    networks = checks.discover({"alpha": facts("alpha", 11), "beta": facts("beta", 12)})
    sessions = cast(dict[str, Session], {"alpha": QuietSession()})
    vip = deploy.ask_vip(Asker({"vip": given}, False), sessions, networks)
    assert vip == ipaddress.IPv4Interface("10.0.1.60/24")
