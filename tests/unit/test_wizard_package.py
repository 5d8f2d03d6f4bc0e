"""The operator's .deb and apt on the nodes (wizards/package.py): corrupt or odd package
files, the name it is uploaded under, apt's busy lock."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mosqit_failover.wizards import package


def _ar_member(name: str, data: bytes, size: str | None = None) -> bytes:
    header = (
        name.ljust(16).encode()
        + b"0".ljust(12)
        + b"0".ljust(6)
        + b"0".ljust(6)
        + b"100644".ljust(8)
        + (size if size is not None else str(len(data))).encode().ljust(10)
        + b"`\n"
    )
    return header + data + (b"\n" if len(data) % 2 else b"")


def test_a_negative_ar_member_size_is_a_packageerror_not_an_endless_loop(
    tmp_path: Path,
) -> None:
    # size -60 once made _ar_members advance by 60 + size = 0 bytes, for ever: run in a
    # child process with a timeout, so that a regression fails instead of spinning here
    bad = tmp_path / "mosqit-failover_0.1.0_all.deb"
    bad.write_bytes(b"!<arch>\n" + _ar_member("debian-binary", b"", size="-60") + b"x" * 10)
    code = (
        "import sys\nfrom mosqit_failover.wizards import package\n"
        "try:\n    package.find_local(sys.argv[1])\n"
        "except package.PackageError:\n    sys.exit(0)\nsys.exit(1)\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(bad)], timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("find_local hangs on a corrupt .deb (negative ar member size)")
    assert proc.returncode == 0, "a corrupt .deb must raise PackageError"


def test_a_control_file_that_is_a_symlink_is_a_packageerror(
    tmp_path: Path,
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("./control")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    bad = tmp_path / "mosqit-failover_0.1.0_all.deb"
    bad.write_bytes(
        b"!<arch>\n"
        + _ar_member("debian-binary", b"2.0\n")
        + _ar_member("control.tar.gz", buffer.getvalue())
    )
    with pytest.raises(package.PackageError, match=r"control file .* is not a regular file") as e:
        package.find_local(str(bad))
    assert "\n" not in str(e.value)


class _Run:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def __call__(self, command: str, **_: Any) -> SimpleNamespace:
        self.commands.append(command)
        if command.startswith("d=$(mktemp"):
            return SimpleNamespace(status=0, out="/var/tmp/mosqit-failover-package.abc\n")
        return SimpleNamespace(status=0, out="")


def test_a_package_file_not_named_deb_is_uploaded_as_package_version_all_deb(
    tmp_path: Path,
) -> None:
    """apt-get install takes a local file only when its name ends in .deb ("E: Unsupported
    file /var/tmp/.../pkg given on commandline", checked on Debian 12): the wizard must not
    carry the operator's file name over, or apt's refusal is reported as a broken apt."""
    deb = Path(__file__).resolve().parents[2] / "dist" / "mosqit-failover_0.1.0_all.deb"
    if not deb.is_file():
        pytest.skip("make deb first")
    odd = tmp_path / "mosqit-failover-latest"  # a copy saved without the .deb suffix
    shutil.copy(deb, odd)
    local = package.find_local(str(odd))
    assert local is not None  # the wizard accepts the file: it is a good package
    uploaded: list[str] = []
    run = _Run()
    session = SimpleNamespace(
        run=run,
        put=lambda _local, remote: uploaded.append(remote),
        login=SimpleNamespace(user="root"),
        alive=True,
        label="a",
    )
    package.check_installable(session, local)  # type: ignore[arg-type]
    assert [Path(u).name for u in uploaded] == [f"mosqit-failover_{local.version}_all.deb"]
    assert any(f"mosqit-failover_{local.version}_all.deb" in c for c in run.commands)


def test_the_uploaded_name_drops_an_epoch() -> None:
    local = package.LocalPackage(Path("x"), "1:0.2.0-1")
    assert package.remote_name(local) == "mosqit-failover_0.2.0-1_all.deb"


APT_LOCKED = (
    "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 11433 (apt-get)\n"
    "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another "
    "process using it?\n"
)  # apt-get install's output (exit 100) on Debian 12 while another apt holds the lock


def test_apt_waits_for_a_busy_dpkg_lock_and_then_says_it_was_busy() -> None:
    """A freshly booted node runs apt-daily/unattended-upgrades: apt-get waits for the
    lock (`apt-get -s` of check_installable takes none, so the check passed), and when it
    still fails on the lock the operator is told so, not to repair apt."""
    assert f"-o DPkg::Lock::Timeout={package.LOCK_WAIT} " in package.APT
    line = package.explain_failure("alpha", APT_LOCKED)
    assert "\n" not in line and "apt-get -f install" not in line
    assert line.startswith("alpha: apt is busy: 11433 (apt-get) held the dpkg lock for over 5 ")
    assert line.endswith("let it finish (ps -C apt-get,dpkg on alpha), then re-run")


def test_apt_failure_text_ending_in_a_question_mark_gets_no_extra_full_stop() -> None:
    line = package.explain_failure("beta", "E: is the disk full?\n")
    assert "?." not in line and line.startswith("beta: apt-get cannot install mosqit-failover: ")
    assert "is the disk full? Fix apt on beta" in line
    line = package.explain_failure("beta", "E: Sub-process /usr/bin/dpkg returned an error.\n")
    assert "returned an error. Fix apt on beta" in line and ".." not in line
