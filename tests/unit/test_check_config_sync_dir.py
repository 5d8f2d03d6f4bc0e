"""check-config on a node refuses a synchronous directory the mount would refuse at the
next promotion (a symlink, a mount point of its own file system): said at set-up, in one
line, rather than as a failed promotion on the one node left."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover.sim_scenarios import SIM_CONFIG
from tests.unit.node_secret import with_secret

REPO = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, directory: Path) -> Path:
    head = '[[sync]]\npath = "/srv/data"'
    text = SIM_CONFIG.replace(head, f'[[sync]]\npath = "{directory}"\nmode = "synchronous"')
    (tmp_path / "etc").mkdir(exist_ok=True)
    text = with_secret(text, tmp_path / "etc")
    path = tmp_path / "etc" / "pair.toml"  # not the synced directory's parent
    path.write_text(text)
    path.chmod(0o644)
    return path


def check(path: Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mosqit_failover.cli", "check-config", str(path)]
    command += ["--node", "alpha"]
    argv = ["sh", "-c", f"{prelude} exec {shlex.join(command)}"]
    if prelude:
        argv = ["unshare", "-m", "--propagation", "private", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO, timeout=60)


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
def test_a_synchronous_directory_through_a_symlink_fails_check_config(tmp_path: Path) -> None:
    real = tmp_path / "srv" / "real"
    real.mkdir(parents=True)
    link = tmp_path / "srv" / "spool"
    link.symlink_to(real)
    done = check(config(tmp_path, link))
    assert done.returncode != 0, done.stdout + done.stderr
    assert "symlink" in done.stdout + done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse"
)
def test_a_synchronous_directory_that_is_a_mount_point_fails_check_config(tmp_path: Path) -> None:
    spool = tmp_path / "srv" / "spool"
    spool.mkdir(parents=True)
    done = check(config(tmp_path, spool), prelude=f"mount -t tmpfs disk {shlex.quote(str(spool))};")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "mount point" in done.stdout + done.stderr


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
def test_a_plain_synchronous_directory_passes_check_config(tmp_path: Path) -> None:
    spool = tmp_path / "srv" / "spool"
    spool.mkdir(parents=True)
    done = check(config(tmp_path, spool))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FUSE is ready on this host" in done.stdout


def test_check_config_names_the_synchronous_changes_that_wait_for_the_next_promotion(
    tmp_path: Path,
) -> None:
    from mosqit_failover import config as configuration
    from mosqit_failover.cli import synchronous_changes_pending

    cfg = configuration.load(config(tmp_path, tmp_path / "new"))  # /srv/data gone, new added
    table = tmp_path / "mountinfo"
    table.write_text(
        "25 1 8:1 / / rw - ext4 /dev/vda rw\n"
        "40 25 0:50 / /srv/data rw,nosuid - fuse mosqit-syncfs rw,user_id=0\n"
    )
    assert synchronous_changes_pending(cfg, str(table)) == [
        f"{tmp_path / 'new'} is synchronous in this config but not mounted here: it becomes "
        "synchronous at the next promotion (a reload never mounts or unmounts under the "
        "running services)",
        "/srv/data is not synchronous in this config but mounted here: its mount serves until "
        "this node demotes (a reload never mounts or unmounts under the running services)",
    ]
    table.write_text("25 1 8:1 / / rw - ext4 /dev/vda rw\n")  # a standby: nothing to tell
    assert synchronous_changes_pending(cfg, str(table)) == []
