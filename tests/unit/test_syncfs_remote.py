"""The synchronous mode's channel over ssh: its command line, and the standby's forced
command for it (the receiver's checks, then the applier)."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import commands
from mosqit_failover.sync.receive import REFUSED_EXIT, Refused
from mosqit_failover.syncfs import remote, stream
from mosqit_failover.syncfs.channel import split_proof
from mosqit_failover.syncfs.records import Commit, Create, Hello, Record, Write
from mosqit_failover.wizards.deploy import receiver_command
from tests.unit.stream_sender import converse
from tests.unit.test_sync_receive import receiver_config_text


class Node:
    """A standby with a config whose one synced directory lands in ``dest``."""

    def __init__(self, tmp: Path) -> None:
        self.dest = tmp / "dest"
        (tmp / "etc").mkdir()
        self.config = tmp / "etc" / "node.toml"  # beside, not above, the synced directory
        self.config.write_text(receiver_config_text(tmp, self.dest))
        self.cfg = configuration.load(self.config)
        self.state = StateFile(self.cfg.state_dir / "state.json")
        self.state.save(5, Role.STANDBY)

    def original(self, epoch: int = 5, dest: str = "") -> str:
        return f"mosqit-sync {epoch} --syncfs {dest or self.dest}"


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def as_stream(records: list[Record]) -> bytes:
    return stream.HEADER + b"".join(stream.encode(r) for r in records)


def test_the_channel_is_the_rename_requests_ssh_with_its_own_verb(node: Node) -> None:
    sync = node.cfg.sync[0]
    peer = commands.Peer("192.0.2.12", "root", 22, "/k", 5.0, Path("/run/m/ctl"))
    argv = remote.channel_argv(sync, peer, 7)
    # a connection of its own (the agent's master dies with the agent), else the same
    assert argv[1:5] == ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    assert [*argv[:3], *argv[5:-1]] == commands.move_argv(sync, peer, 7)[:-1]
    assert argv[-1] == f"mosqit-sync 7 --syncfs {node.dest}"
    assert remote.is_syncfs(argv[-1])
    assert not remote.is_syncfs(f"mosqit-sync 7 --move {node.dest}")


def test_the_catch_up_of_a_rejoin_is_the_full_sync_from_under_the_mount(node: Node) -> None:
    sync = node.cfg.sync[0]
    peer = commands.Peer("192.0.2.12", "root", 22, "/k", 5.0, Path("/run/m/ctl"))
    argv = remote.catch_up_argv(sync, peer, 7)
    full = commands.full_argv(sync, peer, 7)
    shell = full.index("-e") + 1
    assert argv[-2:] == ["{under}/", full[-1]]  # the mount puts its descriptor's path there
    assert argv[shell].startswith("ssh -o ControlMaster=no -o ControlPath=none ")
    assert argv[:shell] + argv[shell + 1 : -2] == full[:shell] + full[shell + 1 : -2]


@pytest.mark.parametrize(
    ("original", "words"),
    [
        ("mosqit-sync 5 --syncfs /etc", "is not a synced directory here"),
        ("mosqit-sync 5 --syncfs {dest}/../x", "is not a synced directory here"),
        ("mosqit-sync 4 --syncfs {dest}", "older than this node's 5"),
        ("mosqit-sync 5 --syncfs {dest} extra", "nothing more"),
        ("mosqit-sync -1 --syncfs {dest}", "not a whole number"),
        ("rm -rf / --syncfs {dest}", "only runs the mosqit-failover sync receiver"),
    ],
)
def test_requests_the_receiver_would_refuse_are_refused(
    node: Node, original: str, words: str
) -> None:
    with pytest.raises(Refused, match=None) as caught:
        remote.decide(original.format(dest=node.dest), node.cfg, node.state)
    assert words in str(caught.value)


def test_an_active_node_takes_no_channel(node: Node) -> None:
    node.state.save(9, Role.ACTIVE)
    with pytest.raises(Refused, match="ACTIVE"):
        remote.decide(node.original(epoch=10), node.cfg, node.state)


def test_the_stream_must_carry_the_commands_epoch(node: Node) -> None:
    out = io.StringIO()
    with pytest.raises(Refused, match="the stream's epoch 6 is not the command's 5"):
        remote.serve_forced(
            node.original(), node.cfg, node.state, io.BytesIO(as_stream([Hello(6)])), out
        )
    assert out.getvalue() == ""


def test_an_admitted_channel_applies_into_the_synced_directory(node: Node) -> None:
    out = io.StringIO()
    data = as_stream([Hello(5), Create(b"f", 0o644, 0, 0), Write(b"f", 0, b"x"), Commit(1)])
    assert remote.serve_forced(node.original(), node.cfg, node.state, io.BytesIO(data), out) == 0
    assert out.getvalue() == "ready 5\nok 1\n"
    assert (node.dest / "f").read_bytes() == b"x"


def test_the_forced_command_process_answers_in_one_line(node: Node) -> None:
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "forced", "--config", str(node.config)]
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": node.original()}
    data = as_stream([Hello(5), Create(b"g", 0o600, 0, 0), Commit(1)])
    done = converse(argv, data, answers=2, env=env)
    assert (done.returncode, done.stdout) == (0, b"ready 5\nok 1\n"), done.stderr
    env["SSH_ORIGINAL_COMMAND"] = node.original(epoch=3)
    done = subprocess.run(argv, input=data, env=env, capture_output=True, timeout=30)
    assert done.returncode == REFUSED_EXIT
    assert done.stdout.startswith(b"refused: ") and b"older" in done.stdout
    assert b"Traceback" not in done.stderr


def sync_receive(node: Node, original: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """The real forced command, as sshd runs it: `mosqit-failover sync-receive` (the
    streams here have one commit: ready, then ok or a refusal)."""
    argv = [sys.executable, "-m", "mosqit_failover.cli", "sync-receive", "--config"]
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": original}
    return converse([*argv, str(node.config)], data, answers=2, env=env)


def test_sync_receive_serves_a_channel_into_the_synced_directory(node: Node) -> None:
    data = as_stream([Hello(5), Create(b"d", 0o640, 0, 0), Write(b"d", 0, b"abc"), Commit(1)])
    done = sync_receive(node, node.original(), data)
    assert (done.returncode, done.stdout) == (0, b"ready 5\nok 1\n"), done.stderr
    assert (node.dest / "d").read_bytes() == b"abc"
    assert (node.dest / "d").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("epoch", "role", "dest", "says"),
    [
        (3, Role.STANDBY, "", b"the sender's epoch 3 is older than this node's 5"),
        (5, Role.ACTIVE, "", b"this node is ACTIVE (epoch 5)"),
        (5, Role.STANDBY, "/srv/other", b"destination '/srv/other' is not a synced directory"),
    ],
)
def test_sync_receive_refuses_a_channel_in_one_line_on_both_outputs(
    node: Node, epoch: int, role: Role, dest: str, says: bytes
) -> None:
    node.state.save(5, role)
    data = as_stream([Hello(epoch), Create(b"x", 0o644, 0, 0), Commit(1)])
    done = sync_receive(node, node.original(epoch, dest), data)
    assert done.returncode == REFUSED_EXIT
    assert done.stdout.startswith(b"refused: ") and says in done.stdout, done.stdout
    assert done.stderr.startswith(commands.REFUSED.encode()) and says in done.stderr
    assert done.stdout.count(b"\n") == 1 and b"Traceback" not in done.stderr
    assert not (node.dest / "x").exists()


def test_sync_receive_refuses_a_stream_whose_epoch_is_not_the_commands(node: Node) -> None:
    data = as_stream([Hello(6), Create(b"y", 0o644, 0, 0), Commit(1)])
    done = sync_receive(node, node.original(5), data)
    assert done.returncode == REFUSED_EXIT, done
    assert b"the stream's epoch 6 is not the command's 5" in done.stdout + done.stderr
    assert not (node.dest / "y").exists() and b"Traceback" not in done.stderr


def authorized(node: Node, original: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """The forced command exactly as the deploy wizard (and the lab) writes it into
    authorized_keys: ``python3 -m mosqit_failover.sync.receive``, the module as __main__."""
    argv = shlex.split(receiver_command(sys.executable, str(node.config)))
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": original}
    return converse(argv, data, answers=2, env=env)


def test_the_authorized_forced_command_words_a_mid_stream_refusal_as_the_applier_does(
    node: Node,
) -> None:
    """The lab's full standby disk read "refused: internal error (Refused: cannot apply
    ...)": run as __main__, the receiver's Refused was another class than the one the
    applier raised, so its own handler did not know it."""
    data = as_stream([Hello(5), Write(b"not-there", 0, b"x"), Commit(1)])
    done = authorized(node, node.original(), data)
    assert done.returncode == REFUSED_EXIT, done
    ready, refusal = done.stdout.decode().splitlines()
    assert ready == "ready 5"
    assert refusal.startswith("refused: cannot apply Write not-there: "), refusal
    assert "internal error" not in done.stdout.decode() + done.stderr.decode()


def test_the_authorized_forced_command_of_a_node_that_promoted_proves_a_split(
    node: Node,
) -> None:
    """A standby that promoted while the old active streams refuses in the epoch guard's
    own words, which fence the old active (``channel.split_proof``), also through the
    forced command as authorized_keys runs it."""
    process = subprocess.Popen(
        shlex.split(receiver_command(sys.executable, str(node.config))),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SSH_ORIGINAL_COMMAND": node.original()},
    )
    assert process.stdin and process.stdout
    try:
        process.stdin.write(as_stream([Hello(5)]))
        process.stdin.flush()
        assert process.stdout.readline() == b"ready 5\n"
        node.state.save(6, Role.ACTIVE)  # promoted after the admission: checked per chunk
        process.stdin.write(stream.encode(Create(b"late", 0o644, 0, 0)) + stream.encode(Commit(1)))
        process.stdin.flush()
        refusal = process.stdout.readline().decode().strip()
        process.stdin.close()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert split_proof(refusal, 5) is not None, refusal
    assert not (node.dest / "late").exists()


def test_a_channel_with_an_unbalanced_quote_is_one_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "mount", str(tmp_path)]
    argv += ["--epoch", "1", "--channel", 'beta=ssh "unterminated']
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "--channel 'beta=ssh \"unterminated': No closing quotation" in done.stderr
