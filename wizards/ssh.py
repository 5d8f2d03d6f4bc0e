"""ssh sessions to the two nodes (paramiko), with the wizard's own known_hosts.

Guarantees:
- never touches ~/.ssh: host keys are kept in
  ``~/.config/mosqit-failover/known_hosts`` (OpenSSH format, mode 0600);
- a host key never seen is used only if ``decide`` accepts it; a host key
  that differs from the stored one is refused unless ``decide`` accepts it
  explicitly (it is told the old fingerprint);
- every network operation has a timeout; every failure is an `SshError`
  whose message names the node, the problem and the fix;
- `Session.write_atomic` replaces a file by rename(2) in its own directory:
  a reader sees the old or the new content, never a part.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

DEFAULT_KNOWN_HOSTS = Path("~/.config/mosqit-failover/known_hosts")
# paramiko logs a dropped connection on its own ("Socket exception: ..."); the wizard's
# message says it with the node and the fix, so paramiko's log lines stay out of the output
logging.getLogger("paramiko").addHandler(logging.NullHandler())

# (host, fingerprint now, fingerprint stored before or None when never seen) -> accept?
HostKeyDecision = Callable[[str, str, str | None], bool]


class SshError(Exception):
    """A node could not be reached, logged into or talked to; the message says why and how."""


class AuthError(SshError):
    """The node refused the login (wrong password or key): worth another try."""


@dataclass(frozen=True)
class Login:
    """How to log into a node: a password, or a private key file (else ssh-agent/default keys)."""

    user: str = "root"
    password: str | None = None
    key_file: str | None = None
    port: int = 22
    timeout: float = 10.0


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH-style SHA256 fingerprint: 'SHA256:...' (as `ssh-keygen -lf` shows)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """The wizard's known_hosts file (not ~/.ssh/known_hosts)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or DEFAULT_KNOWN_HOSTS).expanduser()
        self._keys = paramiko.HostKeys()
        if self.path.exists():
            try:
                self._keys.load(str(self.path))
            except (OSError, paramiko.SSHException) as error:
                raise SshError(
                    f"cannot read {self.path} ({error}): fix or remove that file"
                ) from None

    @staticmethod
    def _entry(host: str, port: int) -> str:
        return host if port == 22 else f"[{host}]:{port}"

    def stored(self, host: str, port: int, key_type: str) -> paramiko.PKey | None:
        found = self._keys.lookup(self._entry(host, port))
        if found is None or key_type not in found:
            return None
        key: paramiko.PKey = found[key_type]
        return key

    def remember(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Store (or replace) the key; the file is rewritten atomically, mode 0600."""
        self._keys.add(self._entry(host, port), key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._keys.save(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


def _load_key(path: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(os.path.expanduser(path))
    except FileNotFoundError:
        raise SshError(f"key file {path} not found: give the path of your private key") from None
    except paramiko.PasswordRequiredException:
        raise SshError(
            f"key file {path} is protected by a passphrase: load it into ssh-agent "
            "(ssh-add) and leave the key empty, or use a password"
        ) from None
    except (OSError, paramiko.SSHException, ValueError) as error:
        raise SshError(f"cannot use key file {path}: {error}") from None


class Session:
    """One authenticated ssh connection to a node; commands run as root (sudo -n if needed)."""

    def __init__(self, label: str, host: str, login: Login, transport: paramiko.Transport) -> None:
        self.label = label
        self.host = host
        self.login = login
        self._transport = transport

    def __repr__(self) -> str:
        return f"Session({self.label!r}, {self.host!r})"

    @property
    def alive(self) -> bool:
        return bool(self._transport.is_active())

    def close(self) -> None:
        self._transport.close()

    def _wrap(self, command: str) -> str:
        if self.login.user == "root":
            return command
        return "sudo -n sh -c " + shlex.quote(command)

    def run(
        self, command: str, timeout: float = 30.0, input: str | None = None, check: bool = False
    ) -> Result:
        """Run a shell command on the node; raise SshError if the connection fails or times out.

        With check=True a non-zero exit status is an SshError too (naming the command).
        """
        try:
            channel = self._transport.open_session(timeout=self.login.timeout)
            channel.settimeout(timeout)
            channel.exec_command(self._wrap(command))
            if input is not None:
                channel.sendall(input.encode())
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                if channel.recv_ready():
                    out += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                elif channel.exit_status_ready() and not channel.recv_ready():
                    break
                elif not self._transport.is_active():
                    raise EOFError("connection closed")
                elif time.monotonic() > deadline:
                    channel.close()
                    raise SshError(
                        f"{self.label} ({self.host}): `{command[:60]}` did not finish within "
                        f"{timeout:g}s; the node may be overloaded: check it and re-run"
                    )
                else:
                    time.sleep(0.005)
            status = channel.recv_exit_status()
            channel.close()
        except SshError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise SshError(
                f"the connection to {self.label} ({self.host}) dropped ({str(error) or 'closed'}): "
                "check that the node is up and reachable, then re-run"
            ) from None
        result = Result(status, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and status != 0:
            raise SshError(
                f"{self.label}: `{command[:80]}` failed (exit {status}): "
                f"{(result.err or result.out).strip()[-400:]}"
            )
        return result

    def read(self, path: str) -> str | None:
        """A file's text, or None if it does not exist."""
        q = shlex.quote(path)
        result = self.run(f"if [ -e {q} ]; then cat {q}; else exit 3; fi")
        if result.status == 3:
            return None
        if result.status != 0:
            raise SshError(f"{self.label}: cannot read {path}: {result.err.strip()}")
        return result.out

    def mode(self, path: str) -> int | None:
        result = self.run(f"stat -c %a {shlex.quote(path)}")
        return int(result.out.strip(), 8) if result.status == 0 else None

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        """Replace ``path`` with ``text`` (temporary file in the same directory, then rename)."""
        q = shlex.quote(path)
        script = (
            f'set -e; umask 077; mkdir -p "$(dirname {q})"; '
            f"tmp=$(mktemp {q}.wizard.XXXXXX); trap 'rm -f \"$tmp\"' EXIT; "
            f'cat > "$tmp"; chmod {mode:o} "$tmp"; mv -f "$tmp" {q}; trap - EXIT'
        )
        self.run(script, input=text, check=True)

    def remove(self, path: str) -> None:
        self.run(f"rm -f {shlex.quote(path)}", check=True)


def connect(
    label: str,
    host: str,
    login: Login,
    known: KnownHosts,
    decide: HostKeyDecision,
) -> Session:
    """Connect and authenticate; the host key is checked against ``known`` first.

    Raises SshError for an unreachable node, a refused host key, a wrong
    password or key. A host key accepted by ``decide`` is stored in ``known``.
    """
    where = f"{label} ({host}:{login.port})"
    try:
        sock = socket.create_connection((host, login.port), timeout=login.timeout)
    except TimeoutError:
        raise SshError(
            f"cannot reach {where}: no answer within {login.timeout:g}s; check the address "
            "and that the node is up and on this network"
        ) from None
    except OSError as error:
        raise SshError(
            f"cannot reach {where}: {error.strerror or error}; check the address, that the "
            "node is up and that sshd runs there (systemctl status ssh)"
        ) from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = login.timeout
    transport.auth_timeout = login.timeout
    try:
        transport.start_client(timeout=login.timeout)
        key = transport.get_remote_server_key()
        _check_host_key(where, host, login.port, key, known, decide)
        _authenticate(where, transport, login)
    except BaseException:
        transport.close()
        raise
    return Session(label, host, login, transport)


def _check_host_key(
    where: str,
    host: str,
    port: int,
    key: paramiko.PKey,
    known: KnownHosts,
    decide: HostKeyDecision,
) -> None:
    stored = known.stored(host, port, key.get_name())
    now = fingerprint(key)
    if stored is not None and stored == key:
        return
    old = fingerprint(stored) if stored is not None else None
    if not decide(host, now, old):
        if old is None:
            raise SshError(
                f"host key of {where} ({key.get_name()} {now}) not accepted: compare it with "
                "`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the node, then accept it"
            )
        raise SshError(
            f"the host key of {where} CHANGED: it was {old}, now it is {now}. Either the "
            "node was reinstalled (then accept the new key explicitly: answer yes, or "
            f'accept_changed_host_keys = ["{host}"] in the answers) or someone is in the '
            f"middle; nothing was changed on the node. Stored keys: {known.path}"
        )
    known.remember(host, port, key)


def _authenticate(where: str, transport: paramiko.Transport, login: Login) -> None:
    try:
        if login.password is not None:
            try:
                transport.auth_password(login.user, login.password)
            except paramiko.BadAuthenticationType as error:
                if "keyboard-interactive" not in error.allowed_types:
                    raise
                password = login.password
                transport.auth_interactive(
                    login.user, lambda _t, _i, prompts: [password for _ in prompts]
                )
        elif login.key_file:
            transport.auth_publickey(login.user, _load_key(login.key_file))
        else:
            agent_keys = paramiko.Agent().get_keys()
            for agent_key in agent_keys:
                try:
                    transport.auth_publickey(login.user, agent_key)
                    break
                except paramiko.AuthenticationException:
                    continue
            if not transport.is_authenticated():
                raise paramiko.AuthenticationException("no usable key")
    except paramiko.BadAuthenticationType as error:
        raise SshError(
            f"{where} does not allow this way of logging in (it allows: "
            f"{', '.join(error.allowed_types)}): use a key instead of a password, or enable "
            "PasswordAuthentication in the node's sshd_config"
        ) from None
    except paramiko.AuthenticationException:
        how = "password" if login.password is not None else "key"
        raise AuthError(
            f"login as {login.user} on {where} refused: wrong {how}. Check the {how} "
            f"(and that {login.user} may log in over ssh), then re-run"
        ) from None
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise SshError(f"the connection to {where} dropped during login: {error}") from None
