"""ssh and rsync command lines, and the meaning of rsync's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosqit_failover.config import SyncDir
from mosqit_failover.sync import commands
from mosqit_failover.sync.commands import Outcome, Peer

PEER = Peer("10.0.0.2", "root", 2222, "/etc/k", 4.0, Path("/run/x/sync-1.ssh"))
SYNC = SyncDir("/srv/data", ("*.tmp", "cache/"), bwlimit=500, timeout=20.0)


def test_ssh_always_has_timeouts_and_never_prompts() -> None:
    opts = " ".join(commands.ssh_options(PEER))
    for wanted in (
        "BatchMode=yes",
        "ConnectTimeout=4",
        "ServerAliveInterval=2",
        "ServerAliveCountMax=3",
        "ControlPath=/run/x/sync-1.ssh",
        "-p 2222",
        "-i /etc/k",
    ):
        assert wanted in opts
    master = commands.master_argv(PEER)
    assert master[:3] == ["ssh", "-M", "-N"] and master[-1] == "root@10.0.0.2"
    assert "ControlMaster=no" in commands.rsh(PEER)


def test_full_sync_deletes_and_carries_epoch_excludes_and_limits() -> None:
    argv = commands.full_argv(SYNC, PEER, epoch=7)
    assert argv[0] == "rsync" and "-a" in argv and "--delete" in argv
    assert "--rsync-path=mosqit-sync 7" in argv
    assert "--timeout=20" in argv and "--bwlimit=500" in argv
    assert "--exclude=*.tmp" in argv and "--exclude=cache/" in argv
    assert "--inplace" not in argv
    assert argv[-2:] == ["/srv/data/", "root@10.0.0.2:/srv/data/"]


def test_batch_reads_paths_from_stdin_and_deletes_missing_ones() -> None:
    """--delete deletes only in a directory listed with its entries (``dir/.``: the
    directories of a new tree, sync/listing.py), which the batch mirrors."""
    sync = SyncDir("/srv/data", peer_path="/backup/data")
    argv = commands.batch_argv(sync, PEER, epoch=3)
    assert "--files-from=-" in argv and "--from0" in argv and "--delete-missing-args" in argv
    assert "--delete" in argv and "-r" not in argv and "--recursive" not in argv
    assert argv[-1] == "root@10.0.0.2:/backup/data/"
    assert commands.files_from(["a b", "c\nd"]) == b"a b\0c\nd\0"


@pytest.mark.parametrize(
    ("code", "stderr", "outcome"),
    [
        (0, "", Outcome.OK),
        (24, "file has vanished", Outcome.VANISHED),
        (23, "some files could not be transferred", Outcome.PARTIAL),
        (23, 'change_dir "/srv/x" failed: No such file or directory (2)', Outcome.SOURCE),
        (11, "write failed: No space left on device (28)", Outcome.DISK_FULL),
        (30, "timeout in data send/receive", Outcome.TIMEOUT),
        (255, "ssh: connect to host 10.0.0.2 port 22: Connection timed out", Outcome.UNREACHABLE),
        (12, "mosqit-sync refused: the sender's epoch 1 is older", Outcome.REFUSED),
        (1, "syntax error", Outcome.FAILED),
    ],
)
def test_exit_codes(code: int, stderr: str, outcome: Outcome) -> None:
    assert commands.classify(code, stderr) is outcome


def test_summary_prefers_the_refusal_line() -> None:
    err = "noise\nmosqit-sync refused: stale\nrsync: connection unexpectedly closed\n"
    assert commands.summary(err) == "mosqit-sync refused: stale"


def test_renames_go_to_the_forced_command_over_the_master() -> None:
    sync = SyncDir("/srv/data", peer_path="/backup/my data")
    argv = commands.move_argv(sync, PEER, epoch=4)
    assert argv[0] == "ssh" and "ControlPath=/run/x/sync-1.ssh" in argv
    assert "ConnectTimeout=4" in argv and "BatchMode=yes" in argv
    assert argv[-2:] == ["root@10.0.0.2", "mosqit-sync 4 --move '/backup/my data'"]
    assert commands.move_results("moved\nkept: the source is not here\nmoved\n") == [
        True,
        False,
        True,
    ]


def test_only_a_failed_connection_means_no_rename_ran() -> None:
    assert commands.never_connected(255, "ssh: connect to host x port 22: No route to host")
    assert commands.never_connected(255, "Connection timed out during banner exchange")
    assert not commands.never_connected(255, "Timeout, server x not responding.")
    assert not commands.never_connected(255, "client_loop: send disconnect: Broken pipe")
    assert not commands.never_connected(1, "ssh: connect to host x port 22: refused")
