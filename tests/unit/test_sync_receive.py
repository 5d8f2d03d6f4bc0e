"""The receiver's forced command: what it lets through and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import receive
from mosqit_failover.sync.receive import Refused

Setup = tuple[configuration.Config, StateFile, Path]

SERVER = "--server -logDtpre.iLsfxCIvu --timeout=30 --delete --numeric-ids --force"


def _config(tmp_path: Path, dest: Path) -> configuration.Config:
    text = f"""
[cluster]
name = "t"
state_dir = "{tmp_path / "state"}"
[vip]
address = "192.0.2.50/24"
interface = "eth0"
[networks.a]
subnet = "192.0.2.0/24"
[networks.b]
subnet = "198.51.100.0/24"
[nodes.alpha]
a = {{ interface = "eth0", address = "192.0.2.11" }}
b = {{ interface = "eth1", address = "198.51.100.11" }}
[nodes.beta]
a = {{ interface = "eth0", address = "192.0.2.12" }}
b = {{ interface = "eth1", address = "198.51.100.12" }}
[[sync]]
path = "/srv/data"
peer_path = "{dest}"
"""
    return configuration.parse(text)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    dest = tmp_path / "dest"
    cfg = _config(tmp_path, dest)
    state = StateFile(cfg.state_dir / "state.json")
    state.save(5, Role.WAITING)
    return cfg, state, dest


def test_a_fresh_sender_gets_an_rsync_server_on_the_configured_path(setup: Setup) -> None:
    cfg, state, dest = setup
    argv = receive.decide(f"mosqit-sync 5 {SERVER} . {dest}/", cfg, state)
    assert argv == ["rsync", *SERVER.split(), ".", f"{dest}/"]
    argv = receive.decide(
        f"mosqit-sync 6 --server -logDtpRe.LsfxCIvu --from0 --delete-missing-args . {dest}/",
        cfg,
        state,
    )
    assert argv[0] == "rsync"


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("mosqit-sync 4 {server} . {dest}/", "older than this node's 5"),
        ("rsync {server} . {dest}/", "only runs the mosqit-failover sync receiver"),
        ("mosqit-sync x {server} . {dest}/", "not a whole number"),
        ("mosqit-sync 5 {server} . /etc/", "not a synced directory"),
        ("mosqit-sync 5 {server} . {dest}/../other/", "not a synced directory"),
        ("mosqit-sync 5 --server --sender -logDtpre.iLsfxCIvu . {dest}/", "--sender"),
        ("mosqit-sync 5 --server --log-file=/etc/passwd -a . {dest}/", "not allowed"),
        ("mosqit-sync 5 sh -c id", "not an rsync server command"),
        ("mosqit-sync 5 '{server}", "cannot parse"),
    ],
)
def test_anything_else_is_refused(setup: Setup, command: str, why: str) -> None:
    cfg, state, dest = setup
    with pytest.raises(Refused, match=why):
        receive.decide(command.format(server=SERVER, dest=dest), cfg, state)


def test_an_active_receiver_takes_nothing(setup: Setup) -> None:
    cfg, state, dest = setup
    state.save(5, Role.ACTIVE)
    with pytest.raises(Refused, match="this node is ACTIVE"):
        receive.decide(f"mosqit-sync 9 {SERVER} . {dest}/", cfg, state)


def test_a_destination_that_is_not_a_directory_is_refused(setup: Setup) -> None:
    cfg, state, dest = setup
    dest.write_text("a file")
    with pytest.raises(Refused, match="not a directory"):
        receive.decide(f"mosqit-sync 5 {SERVER} . {dest}/", cfg, state)


def test_main_refuses_with_a_clear_line_and_exit_77(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("SSH_ORIGINAL_COMMAND", raising=False)
    assert receive.main(["--config", str(tmp_path / "missing.toml")]) == 77
    assert "mosqit-sync refused:" in capsys.readouterr().err
