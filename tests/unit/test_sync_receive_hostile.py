"""The sync key in hostile hands: the forced command never gives root outside the synced dirs.

Two levels: the receiver's decision function fed hostile SSH_ORIGINAL_COMMANDs,
and the real rsync (our sender's argv, a hostile client's) talking to the real
forced command through a local stand-in for ssh that does what sshd does (sets
SSH_ORIGINAL_COMMAND and runs the forced command). The same attacks over a
real sshd are in tests/lab/test_sync_lab.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import stat
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.config import SyncDir
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import commands, receive
from mosqit_failover.sync.receive import RECEIVER_OPTIONS, Refused
from tests.unit.test_sync_receive import receiver_config_text

OURS = "logtprRHSd"  # H: the full sync keeps hard links; S: holes stay holes; d: a batch
CAPS = "iLsfxCIvu"
SERVER = "--server -logtpre.iLsfxCIvu --timeout=30 --delete --force --numeric-ids"


class Receiver:
    """A receiving node in a temp dir: config, state (epoch 5, STANDBY), synced dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.dest = tmp_path / "dest"
        self.dest.mkdir()
        (tmp_path / "etc").mkdir()
        self.config = tmp_path / "etc" / "mosqit-failover.toml"
        self.config.write_text(receiver_config_text(tmp_path, self.dest))
        self.cfg = configuration.load(self.config)
        self.state = StateFile(self.cfg.state_dir / "state.json")
        self.state.save(5, Role.STANDBY)

    def decide(self, command: str) -> list[str]:
        return receive.decide(command.format(dest=self.dest, server=SERVER), self.cfg, self.state)

    def sshd(self) -> Path:
        """An ``-e`` program for rsync that does what sshd does with the forced command."""
        script = self.root / "fake-sshd"
        forced = shlex.join(
            [sys.executable, "-m", "mosqit_failover.sync.receive", "--config", str(self.config)]
        )
        script.write_text(
            '#!/bin/sh\n[ "$1" = -l ] && shift 2\nshift\n'  # ssh [-l USER] HOST COMMAND
            'SSH_ORIGINAL_COMMAND="$*" ; export SSH_ORIGINAL_COMMAND\n'
            f'printf "%s\\n" "$SSH_ORIGINAL_COMMAND" >> {self.root}/commands.log\n'
            f"exec {forced}\n"
        )
        script.chmod(0o755)
        return script


@pytest.fixture
def rx(tmp_path: Path) -> Receiver:
    return Receiver(tmp_path)


# -- the decision function ---------------------------------------------------------


@pytest.mark.parametrize("letter", string.ascii_letters)
def test_only_our_short_option_letters_pass(rx: Receiver, letter: str) -> None:
    command = f"mosqit-sync 5 --server -{letter}e.{CAPS} --timeout=30 . {{dest}}/"
    if letter in OURS:
        assert rx.decide(command)[0] == "rsync"
    else:
        with pytest.raises(Refused, match=r"not allowed|not synced"):
            rx.decide(command)
    with pytest.raises(Refused):  # never as a word of its own either
        rx.decide(f"mosqit-sync 5 {SERVER} -{letter} . {{dest}}/")


@pytest.mark.parametrize("letter", string.ascii_letters)
def test_only_rsyncs_capability_flags_pass_after_the_dot(rx: Receiver, letter: str) -> None:
    command = f"mosqit-sync 5 --server -logtpre.{letter} . {{dest}}/"
    if letter in CAPS:
        assert rx.decide(command)[0] == "rsync"
    else:
        with pytest.raises(Refused, match="capability"):
            rx.decide(command)


def test_every_receiving_server_strips_setuid_and_setgid(rx: Receiver) -> None:
    argv = rx.decide(f"mosqit-sync 5 {SERVER} . {{dest}}/")
    assert argv[:4] == ["rsync", "--server", *RECEIVER_OPTIONS]
    assert argv.count("--chmod=Fug-s") == 1 and argv[-1] == f"{rx.dest}/"


HOSTILE = [
    # protect-args: rsync would read its real arguments (and destination) from stdin
    ("mosqit-sync 5 --server -slogtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -se.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu -s . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --protect-args . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --secluded-args . {dest}/", "not allowed"),
    # temp dir, partial dir, backups, logs: writes outside the directory
    ("mosqit-sync 5 --server -Tlogtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu -T esc . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --temp-dir esc . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --temp-dir=/etc . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --log-file=/etc/x . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --log-file-format=%f . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --partial-dir=../x . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --backup-dir=/etc . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -blogtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --rsync-path=sh . {dest}/", "not allowed"),
    ("mosqit-sync 5 --rsync-path=sh {server} . {dest}/", "not an rsync server"),
    ("mosqit-sync 5 {server} --copy-dest=/etc . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --link-dest=/etc . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --files-from=/etc/shadow . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --chmod=u+s . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --chown=0:0 . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --only-write-batch=/etc/x . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --remove-source-files . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --write-devices . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --devices . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --specials . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --super . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --ignore-errors . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --daemon . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -Klogtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -Llogtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logDtpre.iLsfxCIvu . {dest}/", "--no-D"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --sender . {dest}/", "--sender"),
    ("mosqit-sync 5 --server --sender -logtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvuu . {dest}/", "capability"),
    ("mosqit-sync 5 --server -llogtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -logtpre.iLsfxCIvu --timeout=30 --timeout=1 . {dest}/", "twice"),
    ("mosqit-sync 5 {server} --timeout=1;id . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --timeout=\uff10 . {dest}/", "not allowed"),
    ("mosqit-sync 5 {server} --bwlimit=-1 . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server --server -logtpre.iLsfxCIvu . {dest}/", "not allowed"),
    ("mosqit-sync 5 --server -l\u043egtpre.iLsfxCIvu . {dest}/", "not allowed"),  # Cyrillic o
    # shell syntax is never interpreted: it only makes wrong words
    ("mosqit-sync 5 {server} . {dest}/; rm -rf /", "not an rsync server"),
    ("mosqit-sync 5 {server} . {dest}/ && id", "not an rsync server"),
    ("mosqit-sync 5 {server} . $(id)", "not a synced directory"),
    ("mosqit-sync 5 {server} . `id`", "not a synced directory"),
    ("mosqit-sync $(id) {server} . {dest}/", "epoch"),
    ("mosqit-sync 5 {server} . {dest}/ | sh", "not an rsync server"),
    ("sh -c 'mosqit-sync 5 {server} . {dest}/'", "only runs the mosqit-failover sync receiver"),
    # control characters
    ("mosqit-sync 5 {server} . {dest}/\nid", "control character"),
    ("mosqit-sync 5 {server} . {dest}/\rid", "control character"),
    ("mosqit-sync 5 {server} . {dest}/\0/etc", "control character"),
    ("mosqit-sync 5 {server} .\t{dest}/", "control character"),
    ("mosqit-sync 5 {server} . {dest}/\x1b[2J", "control character"),
    ("mosqit-sync 5 {server} . {dest}/\x85", "control character"),
    # epochs that are not plain ASCII digits, or too large
    ("mosqit-sync ² {server} . {dest}/", "epoch"),
    ("mosqit-sync 1² {server} . {dest}/", "epoch"),
    ("mosqit-sync ٣ {server} . {dest}/", "epoch"),
    ("mosqit-sync \uff15 {server} . {dest}/", "epoch"),
    ("mosqit-sync " + "9" * 5000 + " {server} . {dest}/", "epoch"),
    ("mosqit-sync " + "9" * 19 + " {server} . {dest}/", "epoch"),
    ("mosqit-sync +5 {server} . {dest}/", "epoch"),
    ("mosqit-sync -5 {server} . {dest}/", "epoch"),
    ("mosqit-sync 05 {server} . {dest}/", "epoch"),
    ("mosqit-sync 0x5 {server} . {dest}/", "epoch"),
    ("mosqit-sync 5.0 {server} . {dest}/", "epoch"),
    ("mosqit-sync 1e3 {server} . {dest}/", "epoch"),
    ("mosqit-sync 5_0 {server} . {dest}/", "epoch"),
    ("mosqit-sync '' {server} . {dest}/", "epoch"),
    ("mosqit-sync ' 5' {server} . {dest}/", "epoch"),
    ("mosqit-sync " + "9" * 9000, "longer than"),
    # destinations other than exactly a synced directory
    ("mosqit-sync 5 {server} . {dest}/../dest/", "not a synced directory"),
    ("mosqit-sync 5 {server} . {dest}/./", "not a synced directory"),
    ("mosqit-sync 5 {server} . {dest}/..", "not a synced directory"),
    ("mosqit-sync 5 {server} . {dest}/sub/", "not a synced directory"),
    ("mosqit-sync 5 {server} . dest/", "not a synced directory"),
    ("mosqit-sync 5 {server} . /", "not a synced directory"),
    ("mosqit-sync 5 {server} . {dest}/ /etc/", "not an rsync server"),
    ("mosqit-sync 5 {server} {dest}/ /etc/", "not an rsync server"),
    # the other verbs with extra words
    ("mosqit-sync 5 --move {dest} /etc", "a rename request"),
    ("mosqit-sync 5 --fence {server} . {dest}/", "a fence request"),
]


@pytest.mark.parametrize(("command", "why"), HOSTILE)
def test_hostile_requests_are_refused(rx: Receiver, command: str, why: str) -> None:
    command = command.replace("{server}", SERVER)
    with pytest.raises(Refused, match=why):
        if "--move" in command:
            receive.decide_move(command.format(dest=rx.dest), rx.cfg, rx.state)
        elif "--fence" in command:
            receive.decide_fence(command.format(dest=rx.dest))
        else:
            rx.decide(command)


@pytest.mark.parametrize(
    ("command", "why"), [h for h in HOSTILE if "\0" not in h[0]] + [("", "no command")]
)
def test_the_forced_command_answers_each_with_one_line_and_77(
    rx: Receiver,
    command: str,
    why: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(
        "SSH_ORIGINAL_COMMAND", command.replace("{server}", SERVER).format(dest=rx.dest)
    )
    assert receive.main(["--config", str(rx.config)]) == 77
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mosqit-sync refused: "), captured.err
    assert "Traceback" not in captured.err


def test_a_symlinked_destination_is_refused(rx: Receiver, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rx.dest.rmdir()
    rx.dest.symlink_to(elsewhere)
    with pytest.raises(Refused, match="symlink"):
        rx.decide(f"mosqit-sync 5 {SERVER} . {{dest}}/")
    with pytest.raises(Refused, match="symlink"):
        receive.decide_move(f"mosqit-sync 5 --move {rx.dest}", rx.cfg, rx.state)


def test_a_destination_under_a_symlinked_parent_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real" / "data").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    dest = tmp_path / "link" / "data"
    cfg = configuration.parse(receiver_config_text(tmp_path, dest))
    state = StateFile(cfg.state_dir / "state.json")
    with pytest.raises(Refused, match="real path is"):
        receive.decide(f"mosqit-sync 5 {SERVER} . {dest}/", cfg, state)
    # not there yet: still refused, it would be created through the symlink
    (tmp_path / "real" / "data").rmdir()
    with pytest.raises(Refused, match="real path is"):
        receive.decide(f"mosqit-sync 5 {SERVER} . {dest}/", cfg, state)


# -- the real rsync against the real forced command -----------------------------------


def _sync(src: Path, rx: Receiver) -> SyncDir:
    return SyncDir(path=str(src), peer_path=str(rx.dest), timeout=20)


def _peer() -> commands.Peer:
    return commands.Peer("peer", "root", 22, "/nonexistent", 5, Path("none"))


def _with_rsh(argv: list[str], rsh: Path) -> list[str]:
    """Our sender's argv with ssh replaced by the local stand-in for sshd."""
    out = list(argv)
    out[out.index("-e") + 1] = str(rsh)
    return out


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kw)  # type: ignore[call-overload, no-any-return]


def _rsync_rejects_missing_args(tmp_path: Path) -> bool:
    probe = tmp_path / "missing-args-probe"
    (probe / "s").mkdir(parents=True)
    (probe / "d").mkdir()
    proc = _run(
        ["rsync", "-a", "--files-from=-", "--delete-missing-args", f"{probe}/s/", f"{probe}/d/"],
        input="gone\n",
    )
    return proc.returncode != 0


def test_our_own_senders_requests_are_exactly_what_the_receiver_allows(
    rx: Receiver, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("a")
    (src / "sub" / "b").write_text("b")
    rsh = rx.sshd()
    sync = SyncDir(path=str(src), peer_path=str(rx.dest), timeout=20, bwlimit=100_000)
    full = _run(_with_rsh(commands.full_argv(sync, _peer(), 5), rsh))
    assert full.returncode == 0, full.stderr
    (src / "a").write_text("changed")
    # Debian 12's rsync 3.2.7-1+deb12u6 rejects a missing name with --delete-missing-args
    # (upstream rsync #910; the engine then falls back to a full sync): leave it out there
    listed = ["a", "sub/b"] if _rsync_rejects_missing_args(tmp_path) else ["a", "sub/b", "gone"]
    batch = _run(
        _with_rsh(commands.batch_argv(sync, _peer(), 6), rsh),
        input=commands.files_from(listed).decode(),
    )
    assert batch.returncode == 0, batch.stderr
    assert (rx.dest / "a").read_text() == "changed" and (rx.dest / "sub" / "b").exists()
    sent = (tmp_path / "commands.log").read_text().splitlines()
    assert len(sent) == 2
    for line in sent:  # exactly the letters, flags and options the receiver names as ours
        words = line.split()
        letters, caps = words[3].removeprefix("-").split("e.")
        assert set(letters) <= set(OURS) and set(caps) <= set(CAPS), line
        assert "D" not in letters, line


def _hostile_push(
    rx: Receiver, src: Path, *options: str, dest: str = ""
) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            "rsync",
            "-a",
            *options,
            "-e",
            str(rx.sshd()),
            "--rsync-path=mosqit-sync 5",
            f"{src}/",
            f"peer:{dest or rx.dest}/",
        ]
    )


def _rewriting(rx: Receiver, sed: str) -> Path:
    """An ``-e`` program that edits the remote command (sed) before the forced command sees it:
    a hostile client is not bound to what the stock rsync client sends."""
    wrapper = rx.root / "rewrite"
    wrapper.write_text(
        '#!/bin/sh\n[ "$1" = -l ] && shift 2\nhost=$1; shift\n'
        f'exec {rx.sshd()} "$host" "$(printf %s "$*" | sed {shlex.quote(sed)})"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_protect_args_cannot_carry_the_real_destination_past_the_checks(
    rx: Receiver, tmp_path: Path
) -> None:
    src = tmp_path / "payload"
    src.mkdir()
    (src / "planted").write_text("root-owned content")
    elsewhere = tmp_path / "elsewhere"
    # the checked words name the synced directory; the real ones would come on stdin
    wrapper = _rewriting(rx, f"s|$| . {rx.dest}/|")
    proc = _run(
        ["rsync", "-s", "-a", "-e", str(wrapper), "--rsync-path=mosqit-sync 5",
         f"{src}/", f"peer:{elsewhere}/"]
    )  # fmt: skip
    assert proc.returncode != 0 and "mosqit-sync refused:" in proc.stderr, proc.stderr
    assert f"-slogDtpre.iLsfxCIvu . {rx.dest}/" in (tmp_path / "commands.log").read_text()
    assert not elsewhere.exists() and not (rx.dest / "planted").exists()


def test_a_temp_dir_through_a_pushed_symlink_is_refused(rx: Receiver, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (rx.dest / "esc").symlink_to(outside)  # pushed earlier, as any symlink may be
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(1 << 20))
    attacks = (["-T", "esc"], ["--temp-dir=esc"], ["--partial-dir=esc"], ["-b", "--backup-dir=esc"])
    for options in attacks:
        proc = _hostile_push(rx, src, "--no-D", *options)
        assert proc.returncode != 0 and "mosqit-sync refused:" in proc.stderr, (options, proc)
    # the same as a short-option word of its own (-Tesc), which the stock client never sends
    for word in ("-Tesc", "-Te.", "-logtpTe.iLsfxCIvu"):
        wrapper = _rewriting(rx, f"s| --server | --server {word} |")
        proc = _run(
            ["rsync", "-a", "--no-D", "-e", str(wrapper), "--rsync-path=mosqit-sync 5",
             f"{src}/", f"peer:{rx.dest}/"]
        )  # fmt: skip
        assert proc.returncode != 0 and "mosqit-sync refused:" in proc.stderr, (word, proc)
        assert f"--server {word} -logtpre" in (tmp_path / "commands.log").read_text()
    assert list(outside.iterdir()) == []
    assert not (rx.dest / "big").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="setuid files owned by root and mknod need root")
def test_a_pushed_tree_plants_no_setuid_file_and_no_device(rx: Receiver, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, mode in (("suid", 0o4755), ("sgid", 0o2755), ("both", 0o6711), ("plain", 0o750)):
        (src / name).write_text(name)
        (src / name).chmod(mode)
    (src / "shared").mkdir()
    (src / "shared").chmod(0o2775)  # a setgid directory keeps its bit (group inheritance)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "disk", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.mkfifo(src / "fifo")
    # our own sender: the tree arrives, without s bits and without devices or specials
    proc = _run(_with_rsh(commands.full_argv(_sync(src, rx), _peer(), 5), rx.sshd()))
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in rx.dest.iterdir()}
    assert modes == {"suid": 0o755, "sgid": 0o755, "both": 0o711, "plain": 0o750, "shared": 0o2775}
    # a hostile client asking for devices (-D) is refused outright
    for options in (["-D"], ["--devices"], ["--specials"], ["--chmod=u+s"]):
        proc = _hostile_push(rx, src, *options)
        assert proc.returncode != 0 and "mosqit-sync refused:" in proc.stderr, (options, proc)
    assert sorted(p.name for p in rx.dest.iterdir()) == sorted(modes)
    # the s bits are stripped on the receiving side, whatever the sender's modes say
    (src / "suid").chmod(0o4755)
    os.utime(src / "suid", (1, 1))  # changed: sent again
    proc = _hostile_push(rx, src, "--no-D", "--chmod=Fu+s")
    assert proc.returncode == 0, proc.stderr
    assert not any(
        p.lstat().st_mode & (stat.S_ISUID | stat.S_ISGID) for p in rx.dest.iterdir() if p.is_file()
    )


def test_a_directory_swapped_for_a_symlink_during_renames_never_leads_outside(
    tmp_path: Path,
) -> None:
    """The sync key's holder races two sessions (or a rename against an rsync push):
    `d` flips between a real directory and a symlink out of the synced directory
    while renames go into `d/`. Checked by path, then used by path, this planted
    files outside; walked from the directory's fd, it cannot."""
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "realdir").mkdir()
    (root / "lnk").symlink_to(outside)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for src, dest in (("realdir", "d"), ("d", "realdir"), ("lnk", "d"), ("d", "lnk")):
                with contextlib.suppress(OSError):
                    os.rename(root / src, root / dest)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        deadline = time.monotonic() + 3.0
        rounds = 0
        while time.monotonic() < deadline:
            for k in range(20):
                (root / f"p{k}").write_text("* * * * * root touch /PWNED\n")
            pairs = b"".join(f"p{k}\0d/p{k}\0realdir/p{k}\0p{k}\0".encode() for k in range(20))
            with contextlib.suppress(Refused, OSError):  # as the forced command refuses
                receive.serve_moves(str(root), io.BytesIO(pairs), io.StringIO())
            rounds += 1
    finally:
        stop.set()
        flipper.join()
    assert rounds > 10
    assert list(outside.iterdir()) == []
