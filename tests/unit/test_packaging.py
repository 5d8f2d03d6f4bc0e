"""The Debian package and the files it installs (docs/packaging.md).

Fast checks of the tree, no root: the unit, debian/control against setup.cfg,
the man page and the bash completion against the command line, and the
in-place restart (SIGUSR2) that the package's postinst sends on upgrade. One
test builds the .deb when the build tools are installed (`make deb` installs
them) and reads its file list.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosqit_failover import cli
from mosqit_failover import config as configuration
from mosqit_failover.authkeys import generate_secret_text, parse_secret_text
from mosqit_failover.core import Core
from mosqit_failover.daemon import Agent
from mosqit_failover.events import Inventory, Role
from mosqit_failover.journal import DecisionLog
from tests.debian_libs import LIBRARIES
from tests.unit.loopback_pair import LOOPBACK_PAIR

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "units" / "mosqit-failover.service"
DEBIAN = ROOT / "debian"
MAN = ROOT / "docs" / "man"
COMPLETION = ROOT / "completions" / "mosqit-failover"

# setup.cfg's requirement names and the Debian 12 packages that provide them.
DEBIAN_NAMES = dict(LIBRARIES.values())


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def control_fields() -> dict[str, str]:
    """The binary package's fields of debian/control, continuation lines joined."""
    stanzas = DEBIAN.joinpath("control").read_text().split("\n\n")
    binary = next(s for s in stanzas if s.startswith("Package:"))
    fields: dict[str, str] = {}
    key = ""
    for line in binary.splitlines():
        if line.startswith("#"):
            continue
        if line[:1].isspace():
            fields[key] += " " + line.strip()
        else:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def relation_names(field: str) -> set[str]:
    return {re.split(r"[\s(]", part.strip())[0] for part in field.split(",") if part.strip()}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's sub-commands (their parsers by name; aliases excluded)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names = {a.dest for a in action._choices_actions}
            return {n: p for n, p in action.choices.items() if n in names}
    return {}


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"
    }


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command the operator types on a server, nested ones as 'wizard deploy'.

    `lab` is left out: it is not in the package (a development tool).
    """
    for name, sub in subcommands(cli.build_parser()).items():
        if name == "lab":
            continue
        yield name, sub
        for inner, inner_parser in subcommands(sub).items():
            yield f"{name} {inner}", inner_parser


# ---- the unit ------------------------------------------------------------------


def test_the_unit_runs_the_agent_and_reloads_on_sighup() -> None:
    settings = unit_settings(UNIT.read_text())
    (start,) = settings["ExecStart"]
    config = "--config /etc/mosqit-failover/mosqit-failover.toml"
    assert re.fullmatch(rf"/usr/bin/mosqit-failover agent {config}", start), start
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["KillMode"] == ["process"], "services must survive an agent restart"
    assert settings["Restart"] == ["always"], "the in-place restart relies on it"
    assert settings["StateDirectory"] == ["mosqit-failover"]


def test_the_unit_starts_only_once_the_config_exists() -> None:
    """The package enables and starts the unit: without a config that must be a no-op."""
    settings = unit_settings(UNIT.read_text())
    assert settings["ConditionPathExists"] == [str(configuration.DEFAULT_PATH)]


def test_an_unusable_config_stops_the_restarts(tmp_path: Path) -> None:
    """A bad config is fixed by hand: the agent's exit code for it is the one the unit
    names in RestartPreventExitStatus, so systemd does not restart it every 100 ms."""
    settings = unit_settings(UNIT.read_text())
    assert settings["RestartPreventExitStatus"] == [str(cli.AgentConfigUnusable.exit_code)]
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster]\nname = 1\n")
    bad.chmod(0o600)
    for config in (str(bad), str(tmp_path / "missing.toml")):
        proc = subprocess.run(
            [sys.executable, "-m", "mosqit_failover.cli", "agent", "--config", config],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 78, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("mosqit-failover: ")


# ---- debian/control --------------------------------------------------------------


def test_control_names_the_debian_package_of_every_runtime_requirement() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requirements = [
        re.split(r"[<>=!~;\[ ]", line.strip())[0].lower()
        for line in cfg["options"]["install_requires"].splitlines()
        if line.strip()
    ]
    fields = control_fields()
    depends = relation_names(fields["Depends"])
    recommends = relation_names(fields["Recommends"])
    for requirement in requirements:
        assert requirement in DEBIAN_NAMES, f"add {requirement} to tests/debian_libs.py"
        wanted = DEBIAN_NAMES[requirement]
        # paramiko serves the wizard only: the agent runs without it
        where = recommends if requirement == "paramiko" else depends
        assert wanted in where, f"debian/control lacks {wanted} (for {requirement})"
    assert {"rsync", "openssh-client"} <= depends, "the sync runs rsync over ssh"


def test_control_has_no_versioned_python_dependency_debian_12_may_lack() -> None:
    """Versions come from Debian 12 itself: a bound copied from setup.cfg may not exist there."""
    fields = control_fields()
    for name in ("Depends", "Recommends"):
        versioned = [p for p in fields[name].split(",") if "(" in p and "python3-" in p]
        assert versioned == [], f"{name}: {versioned}"


def test_package_version_is_setup_cfg_version() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    first = DEBIAN.joinpath("changelog").read_text().splitlines()[0]
    assert first.startswith(f"mosqit-failover ({cfg['metadata']['version']})"), first


# ---- man pages and completion ----------------------------------------------------


def man_text(name: str) -> str:
    """The page with roff escapes undone enough to find words (\\- is a hyphen, \\fB
    bold and so on)."""
    text = MAN.joinpath(name).read_text().replace("\\-", "-").replace("\\&", "")
    return re.sub(r"\\f[BIRP]", "", text)


def test_the_man_page_describes_every_subcommand_and_option() -> None:
    text = man_text("mosqit-failover.8")
    for option in long_options(cli.build_parser()):
        assert option in text, f"mosqit-failover.8 lacks {option}"
    for name, parser in commands():
        assert re.search(rf"^\.(SS|TP|B)[^\n]*\b{re.escape(name)}\b", text, re.M) or (
            f"\n{name}" in text
        ), f"mosqit-failover.8 does not describe `{name}`"
        for option in long_options(parser):
            assert option in text, f"mosqit-failover.8 lacks {option} of `{name}`"


def test_the_config_man_page_names_every_section() -> None:
    text = man_text("mosqit-failover.toml.5")
    example = ROOT.joinpath("examples", "pair.toml").read_text()
    for section in sorted(set(re.findall(r"^\[+([a-z_]+)", example, re.M))):
        assert f"[{section}" in text or f"[[{section}" in text, f"no [{section}] in the page"


def test_the_nagios_man_page_names_every_option() -> None:
    from mosqit_failover import nagios

    text = man_text("check_mosqit_failover.8")
    for option in long_options(nagios.build_parser()):
        assert option in text, f"check_mosqit_failover.8 lacks {option}"


def test_the_completion_offers_every_subcommand_and_option() -> None:
    text = COMPLETION.read_text()
    for name, parser in commands():
        assert re.search(rf"\b{re.escape(name.split()[-1])}\b", text), f"no `{name}`"
        for option in long_options(parser):
            assert option in text, f"the completion lacks {option} of `{name}`"


def complete(words: list[str]) -> list[str]:
    """What the completion offers for the command line `words` (the last is being typed)."""
    line = " ".join(words)
    script = (
        f"source {COMPLETION}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'\n"
        f"_mosqit_failover {words[0]} {words[-1]} {words[-2]}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_completion_completes_in_bash() -> None:
    """Load the file in bash and ask it, as readline would on <TAB>."""
    offered = complete(["mosqit-failover", "s"])
    assert {"status", "switchover", "simulate", "sync-receive"} <= set(offered), offered
    assert all(word.startswith("s") for word in offered), offered
    assert complete(["mosqit-failover", "maintenance", ""]) == ["on", "off"]
    assert complete(["mosqit-failover", "wizard", ""]) == ["deploy", "resources"]
    assert complete(["mosqit-failover", "wizard", "deploy", "--d"]) == ["--dry-run"]
    # the value of --to is no sub-command or positional: `resources` options still follow
    after_value = complete(["mosqit-failover", "wizard", "resources", "--to", "2", "--mo"])
    assert after_value == ["--move"], after_value
    assert complete(["mosqit-failover", "status", "--node", ""]) == []


# ---- the in-place restart --------------------------------------------------------


SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)


def test_sigusr2_ends_the_agent_without_handing_over(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The signal the postinst sends on upgrade: the agent's run() returns, nothing is fed
    to the core (a stop would be Command.STOP: hand over), and one line says so."""
    cfg = configuration.parse(LOOPBACK_PAIR.format(tmp=tmp_path))
    keyring = parse_secret_text(generate_secret_text())
    agent = Agent(cfg, "alpha", keyring, DecisionLog(use_journal=False))
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    loop = asyncio.new_event_loop()
    try:
        held = Inventory(epoch=4, last_role=Role.ACTIVE, holds_vip=True)
        agent._loop = loop
        agent._core = Core(cfg, "alpha", held, loop.time())
        agent._handle_signals(loop)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
        loop.run_until_complete(asyncio.wait_for(agent._stopped.wait(), 5))
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, before[sig])
        loop.close()
    assert not agent.core.stopped, "the core was told to stop: that hands the service over"
    lines = [line for line in capfd.readouterr().err.splitlines() if "SIGUSR2" in line]
    assert len(lines) == 1 and "without handing over" in lines[0], lines


def test_postinst_restarts_in_place_on_upgrade_only() -> None:
    postinst = DEBIAN.joinpath("postinst").read_text()
    rules = DEBIAN.joinpath("rules").read_text()
    assert "systemctl kill --kill-whom=main -s SIGUSR2 mosqit-failover.service" in postinst
    assert '[ -n "$2" ]' in postinst, "a first install has nothing to restart"
    assert "policy-rc.d mosqit-failover.service restart" in postinst, "image builds forbid it"
    assert "--no-stop-on-upgrade" in rules and "--no-restart-after-upgrade" in rules


def test_purge_removes_config_state_and_runtime() -> None:
    postrm = DEBIAN.joinpath("postrm").read_text()
    purge = postrm[postrm.index('if [ "$1" = "purge" ]; then\n\trm') :]
    for path in ("/var/lib/mosqit-failover", "/run/mosqit-failover", "/etc/mosqit-failover"):
        assert path in purge.split("fi", 1)[0]


# ---- the package itself ----------------------------------------------------------

# What `make deb` leaves out of the copy it builds from (as .gitignore does).
NOT_BUILT = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "build",
    "dist",
    ".lab",
    "__pycache__",
    "*.egg-info",
    ".*_cache",
    ".hypothesis",
)
# Debian's python3 only, as in `make deb` (a pyenv or venv python lacks dh-python's modules)
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built from a copy of this tree, as `make deb` does (about 10 s)."""
    if shutil.which("dpkg-buildpackage") is None:
        pytest.skip("dpkg-buildpackage is not installed (make deb installs the build tools)")
    source = tmp_path_factory.mktemp("deb") / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_BUILT)
    env = {"PATH": DEBIAN_PATH, "LC_ALL": "C.UTF-8", "HOME": str(source)}  # no writes to ~
    unmet = subprocess.run(
        ["dpkg-checkbuilddeps"], cwd=source, env=env, capture_output=True, text=True
    )
    if unmet.returncode != 0:
        pytest.skip(f"{unmet.stderr.strip()} (make deb installs them)")
    build = subprocess.run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    (deb,) = source.parent.glob("mosqit-failover_*_all.deb")
    return deb


def test_the_package_installs_what_docs_packaging_md_lists(package: Path) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(package)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    for wanted in (
        "/usr/bin/mosqit-failover",
        "/usr/lib/nagios/plugins/check_mosqit_failover",
        "/lib/systemd/system/mosqit-failover.service",
        "/usr/lib/systemd/catalog/mosqit-failover.catalog",
        "/etc/mosqit-failover/mosqit-failover.toml.example",
        "/usr/share/man/man8/mosqit-failover.8.gz",
        "/usr/share/man/man5/mosqit-failover.toml.5.gz",
        "/usr/share/man/man8/check_mosqit_failover.8.gz",
        "/usr/share/bash-completion/completions/mosqit-failover",
        "/usr/share/doc/mosqit-failover/README.md",
        "/usr/share/doc/mosqit-failover/changelog.gz",
        "/usr/share/doc/mosqit-failover/copyright",
        "/usr/share/doc/mosqit-failover/examples/pair.toml",
        "/usr/lib/python3/dist-packages/mosqit_failover/wizards/deploy.py",
    ):
        assert wanted in paths, f"{wanted} is not in the package"
    site = "/usr/lib/python3/dist-packages/"
    assert not [p for p in paths if p.startswith(site + "mosqit_failover/lab")], "the lab"
    top = {p[len(site) :].split("/")[0] for p in paths if p.startswith(site)} - {""}
    assert {t for t in top if not t.startswith("mosqit_failover")} == set(), top
    assert "/usr/bin/check_mosqit_failover" not in paths
    links = [line for line in listing.splitlines() if line.startswith("l")]
    assert links == [], f"symbolic links in the package: {links}"


def test_the_package_unit_runs_the_packaged_command(package: Path) -> None:
    unit = subprocess.run(
        [
            "sh",
            "-c",
            f"dpkg-deb --fsys-tarfile {package} | tar -xO ./lib/systemd/system/{UNIT.name}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert unit == UNIT.read_text()
    control = subprocess.run(
        ["dpkg-deb", "-f", str(package), "Depends", "Recommends"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "paramiko" not in control.split("Recommends:")[0], "paramiko must not be a Depends"
    assert "(>=" not in control.replace("python3:any", ""), control
