"""Input the wizards must refuse in one line naming the problem and the fix, not with a
traceback, a secret shown or a device replaced (a helper's attack on the setup wizard)."""

from __future__ import annotations

import io
import os
import socket
import stat
from pathlib import Path
from typing import Any, cast

import paramiko
import pytest

from mosqit_failover.wizards import configedit, deploy, resources, ssh
from mosqit_failover.wizards.prompts import AnswerError, Asker, load_answers
from mosqit_failover.wizards.ssh import KnownHosts, Login, SshError, connect
from tests.unit.test_wizard_multi import _cluster
from tests.unit.test_wizard_ssh import Decisions

# ---- 10a: a default resource name made of a unit or script name ---------------------------


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ({"kind": "systemd", "unit": "openvpn@server.service"}, "openvpn-server"),
        ({"kind": "systemd", "unit": "postgresql@15-main.service"}, "postgresql-15-main"),
        ({"kind": "sysv", "script": "/etc/init.d/my app"}, "my-app"),
        ({"kind": "systemd", "unit": "nginx.service"}, "nginx"),
    ],
)
def test_an_added_unit_or_script_without_a_name_gets_a_valid_one(
    given: dict[str, str], name: str
) -> None:
    """A helper's attack: --add-unit getty@tty1.service without --name was a ValueError
    traceback (the name taken from the unit failed the name's own check)."""
    pair = resources.read_pair(cast(dict[str, ssh.Session], _cluster(2)))
    kind, values = resources.ask_addition(Asker({"action": "add", **given}, False), pair)
    assert values["name"] == name
    configedit.append(pair.text, kind, values)  # the config takes it
    # the config refuses a unit of systemd itself, like getty@tty1 (a ConfigError, one line)
    assert resources.default_name("getty@tty1") == "getty-tty1"


def test_a_default_that_does_not_fit_is_an_answer_error_naming_the_key() -> None:
    with pytest.raises(AnswerError) as caught:
        Asker({}, False).ask("name", "Resource name", deploy.check_name, "@@@")
    message = str(caught.value)
    assert message.startswith("no answer for name (Resource name), and the default '@@@' does")
    assert message.endswith("add name = ... to the answers file or pass --name")
    assert resources.default_name("@@@") is None


# ---- 10b: a command whose quotes do not balance -------------------------------------------


UNBALANCED = '/bin/echo "unbalanced'


def test_an_app_command_with_unbalanced_quotes_is_refused_or_asked_again() -> None:
    """A helper's attack: --add-app x --start '/bin/echo "unbalanced' was a ValueError
    traceback ("No closing quotation"); at the terminal it ended the session."""
    pair = resources.read_pair(cast(dict[str, ssh.Session], _cluster(2)))
    app = {"action": "add", "kind": "script", "name": "x", "stop": "true", "status": "true"}
    with pytest.raises(AnswerError, match=r"^answer start = .*balance its quotes$"):
        resources.ask_addition(Asker({**app, "start": UNBALANCED}, False), pair)
    with pytest.raises(deploy.WizardError, match=r"^the start command .*balance its quotes$"):
        resources.validate_resource(pair, {**app, "start": UNBALANCED})
    typed = iter([UNBALANCED, "/bin/echo balanced"])
    out = io.StringIO()
    asker = Asker({k: v for k, v in app.items() if k != "start"}, True, out=out)
    asker._read = lambda _prompt: next(typed)
    _kind, values = resources.ask_addition(asker, pair)
    assert values["start"] == "/bin/echo balanced"
    assert "not a valid shell command (No closing quotation): balance its quotes" in out.getvalue()


# ---- 10c, 10d: a node address that is no host name, or does not resolve --------------------


BAD_NAMES = ["beta..example.com", ".beta", "a" * 64 + ".example.com", "../../etc"]


@pytest.mark.parametrize("host", BAD_NAMES)
def test_a_node_address_that_cannot_be_a_host_name_is_refused_when_given(host: str) -> None:
    """A helper's attack: --node 'beta..example.com' was a UnicodeError traceback from
    the resolver (an empty label, one over 63 characters)."""
    with pytest.raises(ValueError, match=r"is not a valid host name or address \("):
        deploy.check_host(host)
    with pytest.raises(AnswerError, match="not a valid host name or address"):
        deploy.ask_hosts(Asker({"nodes": ["10.0.1.11", host]}, False))


def _connect(host: str, tmp_path: Path) -> str:
    with pytest.raises(SshError) as caught:
        connect("node2", host, Login(password="pw"), KnownHosts(tmp_path / "kh"), Decisions())
    message = str(caught.value)
    assert "\n" not in message and message.endswith("Nothing was changed."), message
    return message


@pytest.mark.parametrize("host", BAD_NAMES)
def test_a_host_name_the_resolver_cannot_encode_is_one_line(host: str, tmp_path: Path) -> None:
    message = _connect(host, tmp_path)  # ssh.connect itself, past the answer's check
    assert f"{host!r} is not a valid host name or address" in message


def test_a_host_name_that_does_not_resolve_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper's attack: a misspelt node name got "is sshd listening on bta:22?"."""

    def unknown(*_: Any, **__: Any) -> socket.socket:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unknown)
    message = _connect("bta", tmp_path)
    assert "the name bta does not resolve (Name or service not known)" in message
    assert "sshd" not in message


# ---- 14: a secret answer of the wrong type -------------------------------------------------


def test_a_password_of_the_wrong_type_is_refused_without_showing_it(tmp_path: Path) -> None:
    """A helper's attack: password = ["Sup3rS3cret"] printed the password."""
    path = tmp_path / "answers.toml"
    path.write_text('password = ["Sup3rS3cret"]\n')
    path.chmod(0o600)
    with pytest.raises(AnswerError) as caught:
        load_answers(path)
    message = str(caught.value)
    assert "Sup3rS3cret" not in message
    assert message == (
        f"{path}: password is not text in quotes (its value is not shown): give text in quotes"
    )


def test_a_secret_answer_that_fails_its_check_is_not_shown() -> None:
    def refuse(_text: str) -> str:
        raise ValueError("too short")

    with pytest.raises(AnswerError) as caught:
        Asker({"password": "Sup3rS3cret"}, False).ask("password", "Password", refuse, None, True)
    assert str(caught.value) == "answer password (its value is not shown): too short"


# ---- 2: --known-hosts that is not a regular file ------------------------------------------


def _key() -> paramiko.PKey:
    return paramiko.RSAKey.generate(1024)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_known_hosts_that_is_a_device_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A helper's attack: --known-hosts /dev/null (an ssh habit) replaced the device with
    a regular file (run as root: the system's /dev/null)."""
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(SshError) as caught:
        KnownHosts(null)
    assert str(caught.value).startswith(f"the known hosts file {null} is a character device, ")
    assert "give the path of a file" in str(caught.value)
    assert stat.S_ISCHR(null.lstat().st_mode)


def test_known_hosts_that_is_a_pipe_a_directory_or_a_link_to_one_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(SshError, match=r"dir is a directory, not a regular file"):
        KnownHosts(tmp_path / "dir")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    with pytest.raises(SshError, match=r"link \(a symlink to .*fifo\) is a named pipe, not a "):
        KnownHosts(tmp_path / "link")  # refused before it is read (which would block)
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode)


def test_known_hosts_that_is_a_symlink_writes_its_target_not_the_link(tmp_path: Path) -> None:
    target = tmp_path / "real_known_hosts"
    target.write_text("")
    link = tmp_path / "known_hosts"
    link.symlink_to(target)
    key = _key()
    KnownHosts(link).remember("192.0.2.11", 22, key)
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text().startswith("192.0.2.11 ssh-rsa ")
    assert KnownHosts(link).stored("192.0.2.11", 22)["ssh-rsa"].asbytes() == key.asbytes()
