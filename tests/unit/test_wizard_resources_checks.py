"""`wizard resources`: --add-dir looks at where the directory leads on the active node:
/srv/x/etc, a symlink to /etc there, passed the config's rules (which see the path as
written) and pushed the active's /etc to the standby (a helper's finding); the agents
are told to reload the new config even when one of them cannot."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.wizards import resources
from mosqit_failover.wizards.deploy import WizardError
from mosqit_failover.wizards.ssh import Result, Session
from tests.unit.test_wizard_replace_node import shop


class LocalSession:
    """The active node's shell, played by this host's (test -d, readlink -f)."""

    label = "alpha"

    def run(self, command: str, **_: Any) -> Result:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
        return Result(done.returncode, done.stdout, done.stderr)


def pair() -> resources.Pair:
    text = shop()
    return resources.Pair(
        cast(dict[str, Session], {"alpha": LocalSession()}),
        text,
        configuration.parse(text),
        {"alpha": "ACTIVE"},
    )


def test_a_directory_leading_to_etc_is_refused_naming_where_it_leads(tmp_path: Path) -> None:
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(WizardError) as caught:
        resources.validate_dir(pair(), f"{tmp_path}/etc")
    assert str(caught.value).startswith(
        f"{tmp_path}/etc leads through a symlink to /etc, which is /etc, a system directory"
    )
    assert str(caught.value).endswith("(on alpha)")


def test_a_directory_behind_a_symlink_is_asked_for_by_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "data").symlink_to(tmp_path / "real")
    with pytest.raises(WizardError) as caught:
        resources.validate_dir(pair(), f"{tmp_path}/data/")
    assert str(caught.value) == (
        f"{tmp_path}/data/ leads through a symlink to {tmp_path}/real on alpha: give "
        f"{tmp_path}/real, the directory itself"
    )


def test_a_real_directory_is_taken(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    resources.validate_dir(pair(), f"{tmp_path}/real")
    resources.validate_dir(pair(), f"{tmp_path}/real/")


# ---- reloading the agents after a change (a helper's finding: a stopped standby's
# failed reload left the active on the old config, and the error did not say so) ------


class ReloadingNode:
    def __init__(self, label: str, status: int = 0) -> None:
        self.label, self.status, self.commands = label, status, list[str]()

    def run(self, command: str, **_: Any) -> Result:
        self.commands.append(command)
        return Result(self.status, "", "reload refused" if self.status else "")


def reloading(alpha: ReloadingNode, beta: ReloadingNode, beta_role: str) -> resources.Pair:
    text = shop()
    sessions = cast(dict[str, Session], {"alpha": alpha, "beta": beta})
    roles = {"alpha": "ACTIVE", "beta": beta_role}
    return resources.Pair(sessions, text, configuration.parse(text), roles)


def test_a_stopped_agent_is_not_asked_and_the_active_still_reloads() -> None:
    alpha, beta = ReloadingNode("alpha"), ReloadingNode("beta", status=2)
    said: list[str] = []
    resources.reload_agents(reloading(alpha, beta, "DOWN"), False, said.append)
    assert beta.commands == [] and len(alpha.commands) == 1
    assert said == ["  beta: its agent is not running; it reads the new config when it starts"]


def test_a_failed_reload_does_not_keep_the_active_from_taking_the_config() -> None:
    alpha, beta = ReloadingNode("alpha"), ReloadingNode("beta", status=2)
    with pytest.raises(WizardError) as caught:
        resources.reload_agents(reloading(alpha, beta, "STANDBY"), False, lambda _t: None)
    assert len(alpha.commands) == 1 and len(beta.commands) == 1
    assert str(caught.value).startswith(
        "the agent on beta (exit 2) did not take the new config; the config is written on "
        "both nodes and alpha took it."
    )


def test_an_init_script_named_bare_is_looked_for_where_the_agent_runs_it() -> None:
    """A helper's finding: `script = "flaky"` (the agent runs /etc/init.d/flaky) was
    listed as stopped and refused by --add-sysv, run in the ssh session's directory."""
    sysv = configuration.Resource(name="flaky", kind="sysv", script="flaky")
    assert resources.state_command(sysv).startswith("/etc/init.d/flaky status ")
    absolute = configuration.Resource(name="x", kind="sysv", script="/opt/x/init")
    assert resources.state_command(absolute).startswith("/opt/x/init status ")
