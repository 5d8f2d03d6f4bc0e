"""The shared secret that authenticates peer messages (heartbeat's authkeys).

File format (identical on both nodes; default /etc/mosqit-failover/secret)::

    # comments and blank lines are ignored
    2 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    1 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f5e20a7b3cc

- One or two key lines, each ``KEYID SECRET`` separated by whitespace.
- KEYID is a decimal number from 1 to 255; the two key ids must differ.
- SECRET is hexadecimal (case-insensitive): an even number of hex digits, at
  least 32 of them (16 bytes). ``generate_secret_text()`` writes 64 (32 bytes).
- The FIRST key signs outgoing messages; EVERY listed key verifies incoming ones.

Key rotation without a window of rejected messages:
  1. on both nodes, add the new key as the second line (old key still signs);
  2. on both nodes, swap the two lines (new key signs, old still verifies);
  3. on both nodes, remove the old key.

The file must be a regular file (not a symlink), owned by root, with mode
0600 or 0400. Anything else is refused with a `SecretFileError` that names the
path, the problem and the fix. Error messages never contain secret material.
"""

from __future__ import annotations

import errno
import os
import secrets
import shlex
import stat
from dataclasses import dataclass, field

MIN_SECRET_BYTES = 16
GENERATED_SECRET_BYTES = 32
MAX_KEYS = 2
MAX_FILE_BYTES = 64 * 1024
ALLOWED_MODES = (0o600, 0o400)


def gen_hint(path: str | os.PathLike[str]) -> str:
    """The fix for a secret file that is missing or unusable: a fresh one at its path."""
    name = os.fspath(path)
    where = "" if name.startswith("<") else f" {shlex.quote(name)}"  # text, not a file
    return f"generate a fresh file with `mosqit-failover gen-secret{where}` (copy it to every node)"


LINE_HINT = "each key line is 'KEYID SECRET', e.g. '1 <64 hex digits>'"


class SecretFileError(Exception):
    """The secret file is missing, unsafe or unparsable."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"secret file {path}: {problem}; fix: {fix}")


@dataclass(frozen=True)
class Key:
    key_id: int  # 1..255, carried in every message
    secret: bytes = field(repr=False)  # never printed


@dataclass(frozen=True)
class Keyring:
    """One or two keys; keys[0] signs, every key verifies."""

    keys: tuple[Key, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise ValueError(f"a keyring holds 1 to {MAX_KEYS} keys, not {len(self.keys)}")
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate key id in keyring")
        for k in self.keys:
            if not 1 <= k.key_id <= 255:
                raise ValueError(f"key id {k.key_id} outside 1..255")
            if len(k.secret) < MIN_SECRET_BYTES:
                raise ValueError(f"key {k.key_id}: secret shorter than {MIN_SECRET_BYTES} bytes")

    @property
    def signing(self) -> Key:
        return self.keys[0]

    def secret_for(self, key_id: int) -> bytes | None:
        """The secret that verifies messages signed with `key_id`, or None."""
        for k in self.keys:
            if k.key_id == key_id:
                return k.secret
        return None

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(k.key_id for k in self.keys)


def parse_secret_text(text: str, path: str = "<secret>") -> Keyring:
    """Parse the content of a secret file (no file-system checks)."""
    if text.startswith("\ufeff"):  # read as part of the first key id, it said "not a number"
        raise SecretFileError(
            path,
            "starts with a byte-order mark (an editor saved it as 'UTF-8 with BOM')",
            "save it as plain UTF-8, or " + gen_hint(path),
        )
    keys: list[Key] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {lineno}"
        parts = line.split()
        if len(parts) != 2:
            raise SecretFileError(
                path, f"{where}: expected 2 fields 'KEYID SECRET', found {len(parts)}", LINE_HINT
            )
        id_text, secret_text = parts
        if not (id_text.isascii() and id_text.isdigit()) or not 1 <= int(id_text) <= 255:
            # The token is not echoed: a swapped line would put the secret in the journal.
            raise SecretFileError(path, f"{where}: key id is not a number from 1 to 255", LINE_HINT)
        key_id = int(id_text)
        try:
            if not secret_text.isascii():
                raise ValueError
            secret = bytes.fromhex(secret_text)
        except ValueError:
            raise SecretFileError(
                path,
                f"{where}: secret is not hexadecimal (an even number of 0-9a-f digits)",
                gen_hint(path),
            ) from None
        if len(secret) < MIN_SECRET_BYTES:
            raise SecretFileError(
                path,
                f"{where}: secret has {len(secret_text)} hex digits, "
                f"at least {2 * MIN_SECRET_BYTES} are required",
                gen_hint(path),
            )
        if len(set(secret_text.lower())) <= 2:
            # a placeholder typed by hand (all zeros, "abab..."): anyone can guess it
            raise SecretFileError(
                path, f"{where}: secret is a repeated pattern, not a random one", gen_hint(path)
            )
        if any(k.key_id == key_id for k in keys):
            raise SecretFileError(
                path, f"{where}: key id {key_id} is listed twice", "give each key its own id"
            )
        if len(keys) == MAX_KEYS:
            raise SecretFileError(
                path,
                f"{where}: more than {MAX_KEYS} keys",
                "keep the signing key first and at most one other (during rotation)",
            )
        keys.append(Key(key_id, secret))
    if not keys:
        raise SecretFileError(path, "no key found (empty or only comments)", gen_hint(path))
    return Keyring(tuple(keys))


def load_keyring(path: str | os.PathLike[str], *, owner_uid: int = 0) -> Keyring:
    """Check and read the secret file.

    `owner_uid` is the uid that must own the file: root (0) in production;
    tests pass their own uid instead of chown'ing.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretFileError(p, "does not exist", gen_hint(p)) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SecretFileError(
                p, "is a symbolic link", "point secret_file at the real file"
            ) from None
        raise SecretFileError(
            p, f"cannot be opened ({e.strerror})", "check the path and run the agent as root"
        ) from None
    chunks: list[bytes] = []
    try:
        st = os.fstat(fd)  # the file we opened, not whatever the path names now
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError(
                p,
                "is not a regular file",
                "point cluster.secret_file at a file; make one with "
                "`mosqit-failover gen-secret FILE`",
            )
        size = 0
        while chunk := os.read(fd, 8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise SecretFileError(p, f"is larger than {MAX_FILE_BYTES} bytes", gen_hint(p))
    except OSError as e:
        raise SecretFileError(p, f"cannot be read ({e.strerror})", gen_hint(p)) from None
    finally:
        os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(p, "is not UTF-8 text", gen_hint(p)) from None
    # the content first: "chmod 600" is no fix for a file that is no secret file at all
    # (a helper's finding: secret_file = "/etc/passwd" was told to chmod 600 it)
    keyring = parse_secret_text(text, p)
    if st.st_uid != owner_uid:
        who = "root (uid 0)" if owner_uid == 0 else f"uid {owner_uid}"
        raise SecretFileError(p, f"is owned by uid {st.st_uid}, not {who}", f"chown root:root {p}")
    perms = stat.S_IMODE(st.st_mode)
    if perms not in ALLOWED_MODES:
        raise SecretFileError(
            p,
            f"has mode {perms:04o}; only 0600 or 0400 are allowed (no group/other access)",
            f"chmod 600 {p}",
        )
    return keyring


def generate_secret_text(key_id: int = 1) -> str:
    """A fresh secret file's content: one key of 32 random bytes."""
    if not 1 <= key_id <= 255:
        raise ValueError(f"key id {key_id} outside 1..255")
    return (
        "# mosqit-failover shared secret: identical on both nodes, root-owned, mode 0600.\n"
        "# Lines are 'KEYID SECRET'; the first key signs, every key verifies.\n"
        f"{key_id} {secrets.token_hex(GENERATED_SECRET_BYTES)}\n"
    )


def write_secret_file(path: str | os.PathLike[str], text: str, *, replace: bool = False) -> None:
    """Write a secret file that is mode 0600 from its first byte; never follows a symlink.

    Without `replace` the file is created exclusively (an existing file or link
    is refused). With `replace` the text goes into a new 0600 temporary file in
    the same directory, which is then renamed over the path: a reader that
    opened the old file keeps the old inode and never sees the new secret.
    Ownership is the caller's (root when run by the agent's installer).
    """
    p = os.fspath(path)
    try:
        st: os.stat_result | None = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SecretFileError(
            p, f"cannot be checked ({e.strerror})", "check the path and its directory"
        ) from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise SecretFileError(
            p,
            f"is a symbolic link (to {os.readlink(p)}); a secret is never written through one",
            f"remove the link (rm {p}) or give the real path",
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise SecretFileError(p, "is not a regular file", "give the path of a file")
    if st is not None and not replace:
        raise SecretFileError(p, "already exists", "remove it first, or rotate keys by editing it")
    directory, name = os.path.split(p)
    target = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp") if replace else p
    try:
        _write_new(target, text.encode("utf-8"))
        if replace:
            try:
                os.rename(target, p)  # atomic; never follows a link that appeared at p
            except OSError:
                os.unlink(target)
                raise
            _fsync_directory(directory or ".")
    except FileExistsError:
        raise SecretFileError(
            p, "already exists", "remove it first, or rotate keys by editing it"
        ) from None
    except OSError as e:
        raise SecretFileError(
            p, f"cannot be written ({e.strerror})", "check the path and that you are root"
        ) from None


def _write_new(path: str, data: bytes) -> None:
    """Create `path` exclusively with mode 0600 and write `data`; removed again on failure."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # regardless of umask
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
