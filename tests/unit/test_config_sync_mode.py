"""Config of the synchronous write mode ([[sync]] mode, on_standby_loss, block_timeout,
ack_timeout): the defaults, each bad input refused in one line naming the key and the fix,
and check-config's word on FUSE (docs/sync-mode.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover.config import ConfigError, SyncDir, parse
from mosqit_failover.sim_scenarios import SIM_CONFIG
from mosqit_failover.syncfs import binding
from tests.unit.node_secret import with_secret

REPO = Path(__file__).resolve().parents[2]


def with_sync(extra: str) -> str:
    head = '[[sync]]\npath = "/srv/data"'
    assert SIM_CONFIG.count(head) == 1
    return SIM_CONFIG.replace(head, f"{head}\n{extra}")


def sync_of(extra: str) -> SyncDir:
    return parse(with_sync(extra)).sync[0]


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(with_sync(extra))
    return caught.value.problems


def test_async_is_the_default_and_synchronous_takes_its_settings() -> None:
    plain = sync_of("")
    assert (plain.mode, plain.synchronous, plain.on_standby_loss) == ("async", False, "degrade")
    assert (plain.block_timeout, plain.ack_timeout) == (10.0, 10.0)
    sync = sync_of(
        'mode = "synchronous"\non_standby_loss = "block"\nblock_timeout = "3s"\nack_timeout = "20s"'
    )
    assert sync.synchronous and sync.on_standby_loss == "block"
    assert (sync.block_timeout, sync.ack_timeout) == (3.0, 20.0)
    assert sync_of('mode = "synchronous"').on_standby_loss == "degrade"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('mode = "sync"', 'sync[0].mode = \'sync\': must be one of "async", "synchronous"'),
        ("mode = true", 'sync[0].mode = True: must be one of "async", "synchronous"'),
        (
            'mode = "synchronous"\non_standby_loss = "wait"',
            'sync[0].on_standby_loss = \'wait\': must be one of "degrade", "block"',
        ),
        (
            'mode = "synchronous"\non_standby_loss = "block"\nblock_timeout = "0s"',
            "sync[0].block_timeout = '0s': must be between 0.1s and 3600s",
        ),
        (
            'mode = "synchronous"\non_standby_loss = "block"\nblock_timeout = 5',
            'sync[0].block_timeout = 5: must be a duration with a unit, like "100ms", "2s", "5m"',
        ),
        (
            'mode = "synchronous"\nack_timeout = "100ms"',
            "sync[0].ack_timeout = '100ms': must be between 1s and 600s",
        ),
        (
            'mode = "synchronous"\nexcludes = ["*.tmp"]',
            'sync[0].excludes: cannot be combined with mode = "synchronous" (the mount '
            'replicates everything under it): remove excludes, or keep mode = "async"',
        ),
        (
            'mode = "synchronous"\nblock_timeout = "5s"',
            'sync[0].block_timeout: applies only with on_standby_loss = "block": remove it, '
            'or set on_standby_loss = "block"',
        ),
        (
            'on_standby_loss = "block"',
            'sync[0].on_standby_loss: applies only with mode = "synchronous": remove it, '
            'or set mode = "synchronous"',
        ),
        (
            'ack_timeout = "5s"',
            'sync[0].ack_timeout: applies only with mode = "synchronous": remove it, '
            'or set mode = "synchronous"',
        ),
    ],
)
def test_a_bad_sync_mode_setting_is_one_line_naming_the_key_and_the_fix(
    extra: str, expected: str
) -> None:
    assert problems(extra) == [expected]


def test_excludes_stay_allowed_in_async_mode() -> None:
    assert sync_of('excludes = ["*.tmp"]').excludes == ("*.tmp",)
    assert sync_of('mode = "async"\nexcludes = ["*.tmp"]').excludes == ("*.tmp",)


def test_no_fuse_device_is_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p != "/dev/fuse" and real(p))
    problem = binding.fuse_problem()
    assert problem == "/dev/fuse is missing: modprobe fuse (or give the container /dev/fuse)"


def test_fuse_is_ready_where_the_device_and_the_binding_are() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this machine")
    assert binding.fuse_problem() is None


def check_config(tmp_path: Path, extra: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "pair.toml"
    path.write_text(with_secret(with_sync(extra), tmp_path))
    path.chmod(0o644)
    return subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", "check-config", str(path), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )


def test_check_config_reports_fuse_for_a_synchronous_directory(tmp_path: Path) -> None:
    result = check_config(tmp_path, 'mode = "synchronous"', "--node", "alpha")
    assert "Traceback" not in result.stderr
    if binding.fuse_problem() is None:
        assert result.returncode == 0, result.stderr
        assert "synchronous sync of /srv/data: FUSE is ready on this host" in result.stdout
    else:
        assert result.returncode == 2
        assert "synchronous sync of /srv/data cannot mount on this host: " in result.stderr


def test_check_config_says_nothing_of_fuse_in_async_mode(tmp_path: Path) -> None:
    result = check_config(tmp_path, "", "--node", "alpha")
    assert result.returncode == 0, result.stderr
    assert "FUSE" not in result.stdout


def test_check_config_without_fuse_fails_on_a_node_and_notes_elsewhere(tmp_path: Path) -> None:
    """A python without the binding stands for a host without FUSE (no mock of the check)."""
    path = tmp_path / "pair.toml"
    path.write_text(with_secret(with_sync('mode = "synchronous"'), tmp_path))
    path.chmod(0o644)
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("pyfuse3.py", "pyfuse3_asyncio.py"):
        (blocker / name).write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}:{REPO}"}
    argv = [sys.executable, "-m", "mosqit_failover.cli", "check-config", str(path)]
    on_node = subprocess.run([*argv, "--node", "alpha"], capture_output=True, text=True, env=env)
    assert on_node.returncode == 2 and "Traceback" not in on_node.stderr
    assert "synchronous sync of /srv/data cannot mount on this host: " in on_node.stderr
    assert on_node.stderr.splitlines()[1:] == [
        f"{path}: the file is valid, but the agent would not start here (above)"
    ], on_node.stderr
    elsewhere = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "(every node needs it)" in elsewhere.stdout
