"""The wizard reads the operator's private key files, of every common type, with any paramiko.

paramiko 3.2+ tells a key file's type itself (PKey.from_path); paramiko 2.12
(Debian 12) does not, and the wizard tries each type. Keys are made by
ssh-keygen, as an operator's are (with the default comment: paramiko 2.12
misreads some OpenSSH ECDSA keys whose comment is empty, an upstream bug); the
public half paramiko read must be the one ssh-keygen derives from the file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mosqit_failover.wizards.ssh import SshError, _load_key

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def keygen(path: Path, kind: str, passphrase: str = "", *extra: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", str(path), *extra],
        check=True,
    )
    return path


def public_of(path: Path) -> str:
    """'TYPE BASE64' of the key file, as ssh-keygen derives it."""
    out = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return " ".join(out.split()[:2])


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("ed25519", ()), ("ecdsa", ()), ("rsa", ("-b", "2048")), ("rsa", ("-b", "2048", "-m", "PEM"))],
)
def test_each_key_type_is_read(tmp_path: Path, kind: str, extra: tuple[str, ...]) -> None:
    path = keygen(tmp_path / "id", kind, "", *extra)
    key = _load_key(str(path))
    assert f"{key.get_name()} {key.get_base64()}" == public_of(path)


def test_a_key_with_a_passphrase_names_ssh_agent_as_the_fix(tmp_path: Path) -> None:
    path = keygen(tmp_path / "id", "ed25519", "secret words")
    with pytest.raises(SshError, match=r"protected by a passphrase: load it into ssh-agent"):
        _load_key(str(path))


def test_a_file_that_is_no_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "id"
    path.write_text("not a key\n")
    with pytest.raises(SshError, match=rf"cannot use key file {path}: "):
        _load_key(str(path))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SshError, match="not found: give the path of your private key"):
        _load_key(str(tmp_path / "absent"))
