"""The receiver's forced command: what it lets through and what it refuses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import receive
from mosqit_failover.sync.receive import RECEIVER_OPTIONS, Refused

Setup = tuple[configuration.Config, StateFile, Path]

# what our sender sends (rsync 3.5.0, see receive.SERVER_LETTERS)
SERVER = "--server -logtpre.iLsfxCIvu --timeout=30 --delete --numeric-ids --force"


def _config(tmp_path: Path, dest: Path) -> configuration.Config:
    return configuration.parse(receiver_config_text(tmp_path, dest))


def receiver_config_text(tmp_path: Path, dest: Path) -> str:
    """A pair whose one synced directory lands in `dest` on the receiver."""
    return f"""
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
    server, *rest = SERVER.split()
    assert argv == ["rsync", server, *RECEIVER_OPTIONS, *rest, ".", f"{dest}/"]
    argv = receive.decide(
        f"mosqit-sync 6 --server -logtpRe.LsfxCIvu --timeout=30 --force "
        f"--delete-missing-args --numeric-ids . {dest}",
        cfg,
        state,
    )
    assert argv[:4] == ["rsync", "--server", *RECEIVER_OPTIONS] and argv[-1] == f"{dest}/"


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("mosqit-sync 4 {server} . {dest}/", "older than this node's 5"),
        ("rsync {server} . {dest}/", "only runs the mosqit-failover sync receiver"),
        ("mosqit-sync x {server} . {dest}/", "not a whole number"),
        ("mosqit-sync 5 {server} . /etc/", "not a synced directory"),
        ("mosqit-sync 5 {server} . {dest}/../other/", "not a synced directory"),
        ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --sender . {dest}/", "--sender"),
        ("mosqit-sync 5 {server} --log-file=/etc/passwd . {dest}/", "not allowed"),
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


def _tree(dest: Path) -> None:
    (dest / "d" / "x").mkdir(parents=True)
    (dest / "d" / "x" / "f").write_text("1")
    (dest / "a").write_text("a")


def _serve(root: Path, pairs: list[str]) -> list[str]:
    out = io.StringIO()
    stdin = io.BytesIO(b"".join(p.encode() + b"\0" for p in pairs))
    receive.serve_moves(str(root), stdin, out)
    return out.getvalue().splitlines()


def test_renames_inside_the_directory_are_done_in_order(setup: Setup) -> None:
    cfg, state, dest = setup
    _tree(dest)
    assert receive.decide_move(f"mosqit-sync 5 --move {dest}", cfg, state) == str(dest)
    lines = _serve(dest, ["d", "e", "a", "new/dir/b", "e/x/f", "e/x/g", "never-sent", "z"])
    assert lines == ["moved", "moved", "moved", "kept: the source is not here"]
    assert (dest / "e" / "x" / "g").read_text() == "1" and (dest / "new" / "dir" / "b").exists()
    assert not (dest / "d").exists() and not (dest / "a").exists()


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("mosqit-sync 4 --move {dest}", "older than this node's 5"),
        ("mosqit-sync 5 --move /etc", "not a synced directory"),
        ("mosqit-sync 5 --move {dest}/..", "not a synced directory"),
        ("mosqit-sync 5 --move {dest} extra", "a rename request is --move DEST"),
    ],
)
def test_a_rename_request_has_the_same_checks(setup: Setup, command: str, why: str) -> None:
    cfg, state, dest = setup
    with pytest.raises(Refused, match=why):
        receive.decide_move(command.format(dest=dest), cfg, state)
    state.save(5, Role.ACTIVE)
    with pytest.raises(Refused, match="this node is ACTIVE"):
        receive.decide_move(f"mosqit-sync 9 --move {dest}", cfg, state)


@pytest.mark.parametrize(
    "pairs",
    [
        ["a", "../outside"],
        ["../../etc/passwd", "b"],
        ["a", "/etc/x"],
        ["a", "x/../../y"],
        ["a", "."],
        ["a", ""],
        ["a"],
    ],
)
def test_a_rename_that_leaves_the_directory_is_refused(setup: Setup, pairs: list[str]) -> None:
    _, _, dest = setup
    _tree(dest)
    with pytest.raises(Refused):
        _serve(dest, pairs)
    assert (dest / "a").exists()


def test_a_rename_through_a_symlink_out_of_the_directory_is_refused(
    setup: Setup, tmp_path: Path
) -> None:
    _, _, dest = setup
    _tree(dest)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (dest / "link").symlink_to(outside)
    with pytest.raises(Refused, match="outside"):
        _serve(dest, ["a", "link/a"])
    with pytest.raises(Refused, match="outside"):
        _serve(dest, ["link/secret", "stolen"])
    assert not (outside / "a").exists() and (outside / "secret").exists()
    assert _serve(dest, ["link", "link2"]) == ["moved"]  # the link itself moves
    assert (dest / "link2").is_symlink()


def test_main_serves_a_rename_request_from_stdin(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, _, dest = setup
    _tree(dest)
    config = tmp_path / "etc" / "c.toml"
    config.parent.mkdir()
    config.write_text(receiver_config_text(tmp_path, dest))
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"mosqit-sync 5 --move {dest}")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a\0b\0")))
    assert receive.main(["--config", str(config)]) == 0
    assert capsys.readouterr().out == "moved\n" and (dest / "b").exists()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"b\0../b\0")))
    assert receive.main(["--config", str(config)]) == 77
    assert "mosqit-sync refused:" in capsys.readouterr().err and (dest / "b").exists()
