"""ssh sessions to the nodes (paramiko), with the wizard's own known_hosts.

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
import posixpath
import shlex
import socket
import stat
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


class OutcomeUnknown(SshError):
    """A command (or write) was sent, but whether it took effect is unknown: the
    connection dropped while it ran, or it did not finish in time. A change cut off so
    is recorded as perhaps made (`Changes`), to be undone and named on a rollback."""


class Dropped(OutcomeUnknown):
    """The connection dropped while the command ran (no exit status came back)."""


class TimedOut(OutcomeUnknown):
    """The command did not finish within its timeout (a stalled connection or node)."""


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
        # the file written: a symlink's target (as ssh does), not the link replaced by a
        # file; anything but a regular file is refused before a node is reached (a helper's
        # finding: --known-hosts /dev/null, an ssh habit, replaced the device with a file)
        self._file = Path(os.path.realpath(self.path))
        self._keys = paramiko.HostKeys()
        if self._file.exists() and not self._file.is_file():
            target = f" (a symlink to {self._file})" if self._file != self.path else ""
            raise SshError(
                f"the known hosts file {self.path}{target} is {_kind(self._file)}, not a "
                "regular file; the wizard keeps the host keys it accepts there: give the "
                "path of a file (--known-hosts PATH; it is created if missing), or leave "
                f"--known-hosts out to use {DEFAULT_KNOWN_HOSTS}. {NOTHING_CHANGED}"
            )
        if self._file.exists():
            try:
                self._keys.load(str(self.path))
            except (OSError, paramiko.SSHException) as error:
                raise SshError(
                    f"cannot read {self.path} ({error}): fix or remove that file"
                ) from None

    @staticmethod
    def _entry(host: str, port: int) -> str:
        return host if port == 22 else f"[{host}]:{port}"

    def stored(self, host: str, port: int) -> dict[str, paramiko.PKey]:
        """Every key stored for the host, by type ({} for a host never seen)."""
        found = self._keys.lookup(self._entry(host, port))
        return {} if found is None else {name: found[name] for name in found}

    def remember(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Make ``key`` the host's only stored key (an accepted key replaces every other
        type: a key no longer trusted must not be accepted later); the file is rewritten
        atomically, mode 0600."""
        entry = self._entry(host, port)
        while True:
            try:
                del self._keys[entry]
            except KeyError:
                break
        self._keys.add(entry, key.get_name(), key)
        self._file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._file.with_name(self._file.name + ".tmp")
        self._keys.save(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._file)


def _kind(path: Path) -> str:
    """What ``path`` is, when it is not a regular file: 'a directory', 'a character device'..."""
    mode = path.stat().st_mode
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _read_key(path: str) -> paramiko.PKey:
    """The private key in ``path``, whatever its type."""
    if hasattr(paramiko.PKey, "from_path"):  # paramiko >= 3.2 tells the type itself
        try:
            return paramiko.PKey.from_path(path)
        except TypeError as error:
            # an OpenSSH-format key with a passphrase: paramiko lets cryptography's
            # "password-protected, but password was not provided" through as is
            raise paramiko.PasswordRequiredException(str(error)) from None
    # paramiko 2.x (Debian 12 ships 2.12): try each type; a file of another type
    # is an SSHException, a passphrase is needed whatever the type
    last: paramiko.SSHException | None = None
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key: paramiko.PKey = kind.from_private_key_file(path)
            return key
        except paramiko.PasswordRequiredException:
            raise
        except paramiko.SSHException as error:
            last = error
    raise paramiko.SSHException(f"not an Ed25519, ECDSA or RSA private key ({last})")


def _load_key(path: str) -> paramiko.PKey:
    try:
        return _read_key(os.path.expanduser(path))
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

    def __init__(
        self,
        label: str,
        host: str,
        login: Login,
        transport: paramiko.Transport,
        host_key: str = "",
    ) -> None:
        self.label = label
        self.host = host
        self.login = login
        self._transport = transport
        self.host_key = host_key  # the node's host key fingerprint (SHA256:...), as checked

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
        self,
        command: str,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
        what: str | None = None,
    ) -> Result:
        """Run a shell command on the node; raise SshError if the connection fails or times out.

        With check=True a non-zero exit status is an SshError too (naming the command).
        ``what`` says what the command does, for the messages (else the command is quoted).
        Once the command is sent, a dropped connection or a timeout is `OutcomeUnknown`
        (it may have taken effect): `Dropped` or `TimedOut`.
        """
        said = what or f"`{command[:60]}`"
        try:
            channel = self._transport.open_session(timeout=self.login.timeout)
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise SshError(self._dropped(error)) from None
        try:
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
                    raise TimedOut(
                        f"{self.label} ({self.host}): {said} did not finish within "
                        f"{timeout:g}s (whether it took effect is unknown); the node may be "
                        "overloaded or the connection stalled: check it and re-run"
                    )
                else:
                    time.sleep(0.005)
            status = channel.recv_exit_status()
            channel.close()
        except SshError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise Dropped(self._dropped(error, said)) from None
        if status == -1:
            # the channel closed without an exit status: the connection dropped while the
            # command ran (paramiko closes the channels before it marks the connection
            # inactive: an EOF never received tells), or the command was killed by a signal
            if not channel.eof_received or not self._transport.is_active():
                raise Dropped(self._dropped(EOFError("closed"), said))
            raise OutcomeUnknown(
                f"{self.label} ({self.host}): {said} ended without an exit status (killed by "
                "a signal?), whether it took effect is unknown: check the node, then re-run"
            )
        result = Result(status, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and status != 0:
            raise SshError(
                f"{self.label}: `{command[:80]}` failed (exit {status}): "
                f"{(result.err or result.out).strip()[-400:]}"
            )
        return result

    def _dropped(self, error: BaseException, during: str | None = None) -> str:
        when = f" during {during}" if during else ""
        unknown = "; whether it took effect is unknown" if during else ""
        return (
            f"the connection to {self.label} ({self.host}) dropped{when} "
            f"({str(error) or 'closed'}){unknown}: check that the node is up and reachable, "
            "then re-run"
        )

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
        result = self.run(script, input=text, what=f"writing {path}")
        if result.status != 0:  # said as what failed, not as the shell script that did
            said = (result.err or result.out).strip().splitlines()
            detail = said[-1] if said else f"exit status {result.status}"
            directory = posixpath.dirname(path)
            fix = (
                f"free space in {directory} there"
                if "No space left" in detail
                else f"check {directory} there (writable, its filesystem mounted read-write)"
            )
            raise SshError(f"{self.label}: writing {path} failed ({detail}); {fix}")

    def remove(self, path: str) -> None:
        self.run(f"rm -f {shlex.quote(path)}", check=True)

    def put(self, local: Path, remote: str) -> None:
        """Copy ``local`` to ``remote`` over sftp, as the login user (not root: the
        remote directory must be theirs). The sftp channel rides on this session's
        connection: no second login. SshError when the copy fails."""
        try:
            sftp = paramiko.SFTPClient.from_transport(self._transport)
            if sftp is None:
                raise paramiko.SSHException("the node refused the sftp subsystem")
            with sftp:
                sftp.put(str(local), remote)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise SshError(
                f"{self.label}: copying {local.name} over sftp failed ({error}): check that "
                f"sshd offers sftp (Subsystem sftp in sshd_config) and {posixpath.dirname(remote)} "
                "has room"
            ) from None


def connect(
    label: str,
    host: str,
    login: Login,
    known: KnownHosts,
    decide: HostKeyDecision,
) -> Session:
    """Connect and authenticate; the host key is checked against ``known`` first.

    Raises SshError (one line, naming the node, the problem and the fix) for an
    unreachable node, a port that is not sshd, a dropped handshake, a refused
    host key, a wrong password or key. A host key accepted by ``decide`` is
    stored in ``known``. A host already known is asked for a key of a stored
    type; one that offers none, or a key that is not stored, is a changed key.
    """
    where = f"{label} ({host}:{login.port})"
    stored = known.stored(host, login.port)
    try:
        transport = _handshake(where, host, login, set(stored))
    except _NoStoredKeyType:
        # it offers no key of a type we know it by: fetch the key it has, to be refused
        # (or accepted, if reinstalled) as a changed key below
        transport = _handshake(where, host, login, set())
    try:
        key = transport.get_remote_server_key()
        _check_host_key(where, host, login.port, key, known, decide)
        _authenticate(where, transport, login)
    except BaseException:
        transport.close()
        raise
    return Session(label, host, login, transport, fingerprint(key))


NOTHING_CHANGED = "Nothing was changed."
# a stored key type -> the host key algorithms that prove it (RSA signs with SHA-2 now)
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


class _Recording(socket.socket):
    """A socket that keeps the first bytes it receives, to quote an answer that is not ssh."""

    first = b""

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        data = super().recv(bufsize, flags)
        if len(self.first) < 120:
            self.first += data[: 120 - len(self.first)]
        return data


class _NoStoredKeyType(Exception):
    """The node offers no host key of the types stored for it."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _handshake(where: str, host: str, login: Login, key_types: set[str]) -> paramiko.Transport:
    """An ssh transport whose key exchange is done (the host key not yet checked).

    key_types: the host key types stored for the node; when paramiko can ask for
    them, the node is asked for one of those only (a server holding several
    keys then shows the one we know). Raises _NoStoredKeyType if it has none.
    """
    try:
        raw = socket.create_connection((host, login.port), timeout=login.timeout)
    except UnicodeError:  # the name cannot even be encoded (an empty label, one too long)
        raise SshError(
            f"cannot reach {where}: {host!r} is not a valid host name or address (a part "
            "between dots is empty or longer than 63 characters): give the node's address "
            f"(like 192.0.2.11) or its host name. {NOTHING_CHANGED}"
        ) from None
    except socket.gaierror as error:
        raise SshError(
            f"cannot reach {where}: the name {host} does not resolve ({error.strerror or error}):"
            " check its spelling and the DNS (or /etc/hosts) here, or give the node's address "
            f"(like 192.0.2.11). {NOTHING_CHANGED}"
        ) from None
    except TimeoutError:
        raise SshError(
            f"cannot reach {where}: no answer within {login.timeout:g}s; check the address "
            f"and that the node is up and on this network. {NOTHING_CHANGED}"
        ) from None
    except OSError as error:
        raise SshError(
            f"cannot reach {where}: {error.strerror or error}: is sshd listening on "
            f"{_address(host, login.port)}? Check the address, that the node is up and that "
            f"sshd runs there (systemctl status ssh). {NOTHING_CHANGED}"
        ) from None
    sock = _Recording(raw.family, raw.type, raw.proto, fileno=raw.detach())
    transport: paramiko.Transport | None = None
    restricted = False
    try:
        transport = paramiko.Transport(sock)
        transport.banner_timeout = login.timeout
        transport.auth_timeout = login.timeout
        options = transport.get_security_options()
        wanted = {alg for name in key_types for alg in _ALGORITHMS.get(name, (name,))}
        preferred = tuple(alg for alg in options.key_types if alg in wanted)
        if preferred:
            options.key_types = preferred
            restricted = True
        transport.start_client(timeout=login.timeout)
        if not _kex_done(transport):
            # start_client returns when its time is up, key exchange done or not
            if not transport.is_active():
                raise transport.get_exception() or EOFError()
            raise TimeoutError
    except BaseException as error:
        if transport is not None:
            transport.close()
        sock.close()
        if not isinstance(error, Exception):
            raise
        if restricted and isinstance(error, paramiko.SSHException) and "host key" in str(error):
            raise _NoStoredKeyType from None
        raise SshError(_handshake_problem(where, host, login, error, sock.first)) from None
    return transport


def _kex_done(transport: paramiko.Transport) -> bool:
    try:
        transport.get_remote_server_key()
    except paramiko.SSHException:
        return False
    return True


def _handshake_problem(
    where: str, host: str, login: Login, error: Exception, received: bytes
) -> str:
    """One line: what went wrong in the ssh handshake, and the likely fix."""
    cause = error.__context__
    text = str(error)
    if received and not (received.startswith(b"SSH-") or b"\nSSH-" in received):
        said = (received.decode("ascii", "replace").strip().splitlines() or [""])[0]
        quoted = "".join(c if c.isprintable() else "?" for c in said)[:60]
        what = f"answered, but not with the SSH protocol (it said {quoted!r})"
    elif isinstance(error, TimeoutError) or isinstance(cause, TimeoutError):
        what = (
            f"accepted the connection but did not complete an SSH greeting within "
            f"{login.timeout:g}s (a service that is not sshd, or an overloaded node)"
        )
    elif text.startswith("Error reading SSH protocol banner"):
        what = "closed the connection before the SSH greeting"
    elif isinstance(error, paramiko.IncompatiblePeer):
        return (
            f"{where} speaks SSH, but nothing this wizard can use ({text}): update the "
            f"node's openssh-server or allow modern algorithms in its sshd_config. "
            f"{NOTHING_CHANGED}"
        )
    elif isinstance(error, ConnectionResetError):
        what = "reset the connection during the SSH handshake"
    elif isinstance(error, EOFError):
        what = "closed the connection during the SSH handshake"
    elif isinstance(error, OSError):
        what = f"failed during the SSH handshake ({error.strerror or error})"
    else:
        what = f"failed during the SSH handshake ({text or type(error).__name__})"
    address = _address(host, login.port)
    return (
        f"{where} {what}: is sshd listening on {address}? Check the address and the port "
        f"(--port), and the node's sshd log (journalctl -u ssh). {NOTHING_CHANGED}"
    )


def _check_host_key(
    where: str,
    host: str,
    port: int,
    key: paramiko.PKey,
    known: KnownHosts,
    decide: HostKeyDecision,
) -> None:
    """Accept a key that is stored for the host; ask ``decide`` about any other.

    A host known under any key type is checked against all its stored keys: a
    key of another type is a changed key, never a new host.
    """
    stored = known.stored(host, port)
    if any(old.asbytes() == key.asbytes() for old in stored.values()):
        return
    now = fingerprint(key)
    old = (
        ", ".join(f"{fingerprint(k)} ({name})" for name, k in sorted(stored.items()))
        if stored
        else None
    )
    if not decide(host, now, old):
        if old is None:
            raise SshError(
                f"host key of {where} ({key.get_name()} {now}) not accepted: compare it with "
                "`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the node, then accept it. "
                f"{NOTHING_CHANGED}"
            )
        raise SshError(
            f"the host key of {where} CHANGED: it was {old}, now it is {now} "
            f"({key.get_name()}). Either the node was reinstalled (then accept the new key "
            f'explicitly: answer yes, or accept_changed_host_keys = ["{host}"] in the '
            f"answers) or someone is in the middle. Nothing was changed on the node. Stored "
            f"keys: {known.path}"
        )
    known.remember(host, port, key)


def _authenticate(where: str, transport: paramiko.Transport, login: Login) -> None:
    how = "password" if login.password is not None else "key"
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
            if not agent_keys:
                raise SshError(
                    f"no key to log in to {where} with: ssh-agent holds none; give a key "
                    f"file or a password. {NOTHING_CHANGED}"
                )
            for agent_key in agent_keys:
                try:
                    transport.auth_publickey(login.user, agent_key)
                    break
                except paramiko.AuthenticationException:
                    continue
            if not transport.is_authenticated():
                raise paramiko.AuthenticationException("no usable key")
    except paramiko.BadAuthenticationType as error:
        allowed = ", ".join(error.allowed_types) or "nothing"
        fix = (
            "use a key instead of a password, or enable PasswordAuthentication in the "
            "node's sshd_config"
            if how == "password"
            else "use a password instead of a key, or enable PubkeyAuthentication in the "
            "node's sshd_config"
        )
        raise SshError(
            f"{where} does not allow logging in with a {how} (it allows: {allowed}): "
            f"{fix}. {NOTHING_CHANGED}"
        ) from None
    except paramiko.AuthenticationException as error:
        if "timeout" in str(error).lower():
            raise SshError(
                f"{where} did not answer the login within {login.timeout:g}s: check that the "
                f"node is not overloaded, then re-run. {NOTHING_CHANGED}"
            ) from None
        raise AuthError(
            f"login as {login.user} on {where} refused: wrong {how}. Check the {how} "
            f"(and that {login.user} may log in over ssh), then re-run. {NOTHING_CHANGED}"
        ) from None
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise SshError(
            f"the connection to {where} dropped during login ({str(error) or 'closed'}): "
            f"check that the node is up and its sshd log (journalctl -u ssh). {NOTHING_CHANGED}"
        ) from None
