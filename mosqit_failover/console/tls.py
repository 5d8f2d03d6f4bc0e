"""The console's own TLS: checking the certificate and key files, the server context.

`[console] tls_cert` and `tls_key` name a PEM certificate (chain) and its PEM
private key, unencrypted (the agent starts unattended). The key must not be
readable or writable by group or others (mode 0600 or 0400, like the secret).

Guarantees:
- `file_problems()` never raises; it returns what is wrong with the two files,
  as (setting, path, problem with its fix), for config errors. It reads the
  files (they must load together into a server context), nothing else.
- `server_context()` is a server-side context: TLS 1.2 or newer, the ssl
  module's default server ciphers, no client certificates asked, no
  compression, HTTP/1.1 offered in ALPN. An encrypted key fails to load
  (`EncryptedKeyError`): no passphrase prompt on a terminal, ever.
This module does not import the config (the config imports it to check files).
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path


class EncryptedKeyError(ValueError):
    """The private key wants a passphrase (nobody types one at the agent's start)."""


def _no_passphrase() -> bytes:
    raise EncryptedKeyError("encrypted")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The TLS server context for the console; raises ssl.SSLError or OSError."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert), str(key), password=_no_passphrase)
    return context


def _file_problem(path: Path, secret: bool) -> str | None:
    try:
        st = path.stat()  # follows a symlink: what counts is the file it names
    except FileNotFoundError:
        return "no such file; give the path of an existing PEM file"
    except OSError as error:
        return f"cannot be looked at ({error.strerror}); fix the path or its permissions"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file; give the path of a PEM file"
    mode = stat.S_IMODE(st.st_mode)
    if secret and mode & 0o077:
        return (
            f"mode {mode:04o}: the private key must not be readable or writable by group "
            f"or others; fix: chmod 600 {path}"
        )
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        return f"cannot be read ({error.strerror}); the agent runs as root: fix its permissions"
    return None


def file_problems(cert: Path, key: Path) -> list[tuple[str, str, str]]:
    """What is wrong with the certificate and key files: [(setting, path, problem)]."""
    out = [
        (setting, str(path), problem)
        for setting, path, secret in (("tls_cert", cert, False), ("tls_key", key, True))
        if (problem := _file_problem(path, secret)) is not None
    ]
    if out:
        return out
    try:
        server_context(cert, key)
    except EncryptedKeyError:
        problem = (
            "the private key is encrypted, and nobody types a passphrase when the agent "
            f"starts; fix: openssl pkey -in {key} -out {key}.new && mv {key}.new {key}"
        )
        out.append(("tls_key", str(key), problem))
    except (ssl.SSLError, ValueError, OSError) as error:
        reason = getattr(error, "reason", None) or str(error) or type(error).__name__
        problem = (
            f"the certificate and the key in {os.fspath(key)} do not load together "
            f"({reason}); give a PEM certificate (chain) and its own PEM private key"
        )
        out.append(("tls_cert", str(cert), problem))
    return out
