"""The receiving side's forced command: only a fresh, legitimate sender may write.

authorized_keys on each node holds the peer's sync key as

    command="mosqit-failover sync-receive --config CONFIG",restrict ssh-ed25519 AAAA...

sshd then runs this command whatever the client asked; the request is in
SSH_ORIGINAL_COMMAND, e.g. ``mosqit-sync 7 --server -logtpre.iLsfxCIvu
--timeout=30 --delete --force --numeric-ids . /srv/data/`` (see
:mod:`.commands`). Whatever the key's holder sends, it can never write
outside the synced directories nor gain privileges there. It is carried out only if:

- the command is printable text (no control character, at most
  :data:`COMMAND_MAX` characters) and the epoch is plain ASCII digits (at most 18,
  no sign, no leading zero);
- it is an rsync *receiving* server with exactly the arguments our own
  sender produces (``rsync -a --no-D --numeric-ids --force ...`` as installed
  here, see :data:`SERVER_LETTERS`, :data:`CAPABILITIES` and :func:`check_long`):
  ``--server``, one short-option word, our long options each at most once,
  ``.`` and the destination. Anything else (``-s``/protect-args, which would
  read the real arguments from stdin past these checks; ``-T``/``--temp-dir``,
  ``--partial-dir``, ``--backup-dir``, ``--log-file``, ``-K``, ``-L``, ``--sender``,
  devices ``-D``, ...) is refused;
- the destination is one of the configured sync directories (``peer_path``
  or ``path``), exactly (trailing ``/`` aside: no ``..``, no other spelling),
  contains no symlink anywhere in its path, and is a directory (created if missing);
- the sender's epoch is at least this node's persisted epoch and data epoch
  (``state.json``) and the highest sender epoch admitted here before
  (:mod:`.admitted`), and this node is not ACTIVE: a stale old active can
  never overwrite newer files, even if its own agent is confused, also where a
  standby takes pushes from one active after another (three or more nodes); the
  first push of a newer sender starts only once every push of an older one has
  finished writing (:mod:`.admitted`).

Then it runs ``rsync --server --chmod=Fug-s ...`` as its child: the receiving rsync
strips setuid and setgid bits from every file it writes (rsync applies a server-side
``--chmod`` to the modes it receives), and without ``-D`` it creates no device node or
special file (it skips them). While rsync runs, this process watches the state
directory and kills it the moment the sender may no longer write: this node promoted,
or a newer sender was admitted (:mod:`.supervise`). A push of a synchronous directory
asks ``--fsync``: once the server succeeded, this process flushes the directory's file
system (:func:`receive_durably`); the sender's rsync waits for this process's exit, so
its success means the copy is on the receiver's disk.

The second allowed form renames inside a synced directory, before a batch:
``mosqit-sync EPOCH --move DEST`` with NUL-separated ``SRC DEST`` pairs on
stdin, both relative to DEST; same directory, epoch and role checks. A pair
must stay inside the directory: no absolute path, no ``..``, and the real
path of each parent (symlinks resolved) must lie inside the directory's real
path. Each pair gets one line on stdout: ``moved`` or ``kept: why`` (e.g. the
source is not here: the sender then sends the destination whole).

The third form fences this node: ``mosqit-sync EPOCH --fence`` (see
:mod:`.fence_target`): refused unless EPOCH is above this node's own.

The fourth form is a synchronous-mode channel (docs/sync-mode.md):
``mosqit-sync EPOCH --syncfs DEST``, the record stream on stdin, acknowledgements on
stdout (:func:`..syncfs.remote.serve_forced`: the same directory, epoch and role checks,
then the applier, whose stream must carry the same EPOCH).

Before the rsync and rename forms write anything, they begin a catch-up
(:mod:`.catchup`): a synchronous channel's stream that started earlier applies
nothing more into that directory.

Anything else is refused: one line starting with
:data:`~.commands.REFUSED` on stderr and exit status 77 (for a channel also
``refused: WHY`` on stdout, where the active's channel reads its answer).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateError, StateFile
from mosqit_failover.events import Role
from mosqit_failover.libc import libc
from mosqit_failover.sync import admitted, catchup, supervise
from mosqit_failover.sync.commands import FENCE, FSYNC, MARKER, MOVE, MOVED, REFUSED, SYNCFS

REFUSED_EXIT = 77
MOVE_INPUT_MAX = 64 << 20
"""Largest rename request read from stdin (bytes)."""

COMMAND_MAX = 8192
"""Longest SSH_ORIGINAL_COMMAND considered (characters)."""

SERVER_LETTERS = frozenset("logtprRHSd")
"""The short options our sender's rsync passes to the receiving server.

Measured with rsync 3.5.0 (protocol 32) against a logging --rsync-path:
``rsync -a --no-D --numeric-ids --force --delete ...`` sends
``-logtpre.iLsfxCIvu`` and the ``--files-from`` batch ``-ldogtpRe.LsfxCIvu --no-r``
(``d``: ``--dirs``, which ``--delete`` with ``--files-from`` passes on, so that a
directory listed as ``dir/.`` is mirrored); the full sync adds ``-H`` (hard links among the
files it sends, all inside the destination); every push ``-S`` (sparse files: holes
stay holes). A receiver from before ``d`` refuses a batch; the sender then falls back
to full syncs (:data:`.commands.Outcome.OLD_RECEIVER`).
In that word every letter before ``e`` is an option; ``e`` takes the rest of
the word as its argument, the capability flags after the ``.``.
"""

CAPABILITIES = frozenset("iLsfxCIvu")
"""rsync's protocol capability flags after ``e.`` (each at most once, any subset)."""

RECEIVER_OPTIONS = ("--chmod=Fug-s", "--modify-window=-1")
"""Added to every receiving server: no setuid/setgid file is ever written; and the quick
check compares mtimes to the nanosecond (rsync's default is whole seconds: a same-size
rewrite within the second of the copy there would be skipped, and the standby keep the
old content under a catch-up that reports success)."""

_EPOCH = re.compile(r"0|[1-9][0-9]{0,17}")
_SHORT_WORD = re.compile(r"-([A-Za-z]*)e\.([A-Za-z]*)")
_LONG_FLAGS = frozenset(
    {"--delete", "--delete-missing-args", "--force", "--numeric-ids", "--no-r", FSYNC}
)

FLUSH_FAILED = 11
"""The exit status when the flush after a ``--fsync`` push fails: rsync's own "error in
file I/O", which the sender's rsync passes on (its engine retries)."""
_LONG_VALUES = {
    "--timeout": re.compile(r"[1-9][0-9]{0,5}"),
    "--bwlimit": re.compile(r"[1-9][0-9]{0,9}"),
}


class Refused(Exception):
    """The request is not allowed; the message says why and what to fix."""


def check_text(original: str) -> None:
    """Refuse a command that is too long or holds a control character (newline, NUL, ...)."""
    if len(original) > COMMAND_MAX:
        raise Refused(f"the command is longer than {COMMAND_MAX} characters")
    for char in original:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise Refused(f"the command holds the control character {char!r}")


def parse_epoch(word: str) -> int:
    """The sender's epoch: ASCII digits only (no sign, no leading zero, at most 18)."""
    if not _EPOCH.fullmatch(word):
        raise Refused(
            f"the sender's epoch {word[:40]!r} is not a whole number of at most 18 digits"
        )
    return int(word)


def _split(original: str) -> tuple[int, list[str]]:
    """(sender epoch, the words after it) from SSH_ORIGINAL_COMMAND."""
    check_text(original)
    try:
        words = shlex.split(original)
    except ValueError as error:
        raise Refused(f"cannot parse the command ({error})") from None
    if len(words) < 2 or words[0] != MARKER:
        raise Refused(
            f"this key only runs the mosqit-failover sync receiver, not {original[:80]!r}"
        )
    return parse_epoch(words[1]), words[2:]


def verb(original: str) -> str:
    """Which form the request is: MOVE, FENCE, SYNCFS or "" (an rsync server); checks come
    later."""
    words = original.split()
    return words[2] if len(words) > 2 and words[2] in (MOVE, FENCE, SYNCFS) else ""


def is_move(original: str) -> bool:
    """Whether the request is the rename form (its checks are in :func:`decide_move`)."""
    return verb(original) == MOVE


def check_short(word: str) -> None:
    """Refuse a short-option word other than our sender's (``-LETTERSe.CAPABILITIES``)."""
    match = _SHORT_WORD.fullmatch(word)
    if not match:
        raise Refused(
            f"rsync option {word[:40]!r} is not allowed by the sync receiver "
            "(expected the sender's short options, like -logtpre.iLsfxCIvu)"
        )
    letters, caps = match.groups()
    if "D" in letters:
        raise Refused(
            "devices and special files are not synced (-D); the sender must run "
            "rsync with --no-D (update mosqit-failover on the sending node)"
        )
    bad = sorted({x for x in letters if x not in SERVER_LETTERS})
    if bad or len(set(letters)) != len(letters):
        raise Refused(
            f"rsync option letters {''.join(bad) or letters!r} in {word[:40]!r} are not allowed "
            f"by the sync receiver (allowed: {''.join(sorted(SERVER_LETTERS))})"
        )
    bad = sorted({x for x in caps if x not in CAPABILITIES})
    if bad or len(set(caps)) != len(caps):
        raise Refused(f"rsync capability flags {caps!r} in {word[:40]!r} are not allowed")


def check_long(option: str) -> str:
    """Our sender's long options only; returns the option's name (for duplicates)."""
    if option == "--sender":
        raise Refused("reading from this node is not allowed (--sender)")
    if option in _LONG_FLAGS:
        return option
    name, eq, value = option.partition("=")
    pattern = _LONG_VALUES.get(name)
    if not eq or pattern is None or not pattern.fullmatch(value):
        raise Refused(f"rsync option {option[:60]!r} is not allowed by the sync receiver")
    return name


def parse_request(original: str) -> tuple[int, list[str], str]:
    """(sender epoch, rsync server arguments, destination) from SSH_ORIGINAL_COMMAND."""
    epoch, args = _split(original)
    if len(args) < 4 or args[0] != "--server" or args[-2] != ".":
        raise Refused("not an rsync server command (expected --server ... . DEST)")
    check_short(args[1])
    seen: set[str] = set()
    for option in args[2:-2]:
        name = check_long(option)
        if name in seen:
            raise Refused(f"rsync option {name} is given twice")
        seen.add(name)
    return epoch, args, args[-1]


def check_destination(dest: str, allowed: Sequence[str]) -> str:
    """The destination without its trailing ``/`` if it is exactly an allowed directory.

    It must also be its own real path (no symlink anywhere in it: a pushed
    symlink must not redirect another synced directory) and a directory if it exists.
    """
    norm = dest.rstrip("/") if dest.startswith("/") else ""
    if not norm or norm not in allowed:
        raise Refused(
            f"destination {dest[:200]!r} is not a synced directory here "
            f"(allowed: {', '.join(allowed) or 'none'}); check [[sync]] path/peer_path"
        )
    real = os.path.realpath(norm)
    if real != norm:
        raise Refused(
            f"{norm} leads through a symlink (its real path is {real}); a synced directory "
            "must be its own real path: set peer_path (or path) to the real path"
        )
    path = Path(norm)
    if path.exists() and not path.is_dir():
        raise Refused(f"{norm} exists on the receiver but is not a directory; move it away")
    return norm


def check_epoch(sender: int, own: int, role: Role, data_epoch: int = 0) -> None:
    """Refused unless a sender of epoch ``sender`` may write here: this node is not
    ACTIVE, and the sender is not older than this node's own epoch nor than the epoch of
    the data it holds (``data_epoch``: the active that listed it in sync)."""
    if role is Role.ACTIVE:
        raise Refused(
            f"this node is ACTIVE (epoch {own}); it takes no sync (sender epoch {sender}). "
            "Only the active node with the highest epoch pushes to the other"
        )
    if sender < own:
        raise Refused(
            f"the sender's epoch {sender} is older than this node's {own}: it holds stale "
            "data and must not overwrite newer files"
        )
    if sender < data_epoch:
        raise Refused(
            f"the sender's epoch {sender} is older than the data this node holds (epoch "
            f"{data_epoch}, from the active that listed it in sync): it is an old active "
            "with stale files and must not overwrite newer ones"
        )


def load_epochs(state: StateFile) -> tuple[int, Role, int]:
    """This node's (epoch, role, data epoch); Refused if the state file cannot be read."""
    try:
        return state.load_full()
    except StateError as error:
        raise Refused(f"cannot read this node's epoch: {error}") from None


def admissible(epoch: int, dest: str, cfg: configuration.Config, state: StateFile) -> str:
    """The normalized destination if a sender of ``epoch`` may write there now (the
    checks of :func:`check_sender`); nothing is recorded: :func:`hold_writing` admits."""
    norm = check_destination(dest, [s.target for s in cfg.sync])
    check_sender(epoch, state)
    return norm


@contextlib.contextmanager
def _older_refused() -> Iterator[None]:
    """The guard of :mod:`.admitted` refusing a sender, as this module's Refused."""
    try:
        yield
    except (admitted.OlderSender, admitted.OlderStillWriting) as error:
        raise Refused(str(error)) from None


def hold_writing(epoch: int, state: StateFile) -> admitted.Writing:
    """Admit a sender of ``epoch`` (:func:`.admitted.admit`: from now on no older sender
    may write) and hold its writing lock; Refused if it may not write (any more)."""
    try:
        with _older_refused():
            return admitted.admit(state.path.parent, epoch)
    except OSError as error:
        where = error.filename or admitted.record_file(state.path.parent)
        raise Refused(
            f"cannot record the sender's epoch in {where}: {error.strerror or error}; "
            "check the state directory (writable, disk not full)"
        ) from None


def decide(original: str, cfg: configuration.Config, state: StateFile) -> list[str]:
    """The rsync argv to run once admitted (:func:`_receive`), or raise Refused."""
    epoch, args, dest = parse_request(original)
    norm = admissible(epoch, dest, cfg, state)
    return ["rsync", args[0], *RECEIVER_OPTIONS, *args[1:-1], norm + "/"]


def decide_move(original: str, cfg: configuration.Config, state: StateFile) -> str:
    """The synced directory a rename request may work in once admitted, or raise Refused."""
    epoch, args = _split(original)
    if len(args) != 2 or args[0] != MOVE:
        raise Refused(f"a rename request is {MOVE} DEST (the pairs on stdin)")
    return admissible(epoch, args[1], cfg, state)


def decide_fence(original: str) -> int:
    """The fencer's epoch of a well-formed fence request (its epoch is checked on serving)."""
    epoch, args = _split(original)
    if args != [FENCE]:
        raise Refused(f"a fence request is {MARKER} EPOCH {FENCE}, nothing more")
    return epoch


def parse_pairs(data: bytes) -> list[tuple[str, str]]:
    """(src, dest) pairs from NUL-separated stdin; each must be a plain relative path."""
    words = [os.fsdecode(w) for w in data.split(b"\0")]
    if words and words[-1] == "":
        words.pop()
    if len(words) % 2:
        raise Refused("a rename request needs pairs: SRC NUL DEST NUL ...")
    for word in words:
        norm = os.path.normpath(word) if word else ""
        if not word or word.startswith("/") or norm in (".", "..") or norm.startswith("../"):
            raise Refused(f"rename path {word!r} must be relative and stay inside the directory")
        if ".." in word.split("/"):
            raise Refused(f"rename path {word!r} must not contain '..'")
    return list(zip(words[::2], words[1::2], strict=True))


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parent_fd(root_fd: int, rel: str, create: bool) -> tuple[int, str]:
    """(an open fd of ``rel``'s parent, ``rel``'s last component), reached from
    ``root_fd`` one component at a time without following any symlink.

    The caller closes the fd. Every step is relative to a directory already
    open, so a component swapped for a symlink by a concurrent session (the
    race of a check by path and a use by path) cannot lead outside: it is
    refused. The last component itself is not followed (a rename moves a
    symlink, not what it points to).
    """
    parts = os.path.normpath(rel).split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                step = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused(
                        f"rename path {rel!r} leads through a symlink or a file ({part!r}), "
                        "maybe outside the directory"
                    ) from None
                raise
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def move_one(root_fd: int, src: str, dest: str) -> str:
    """Rename ``src`` to ``dest`` inside the directory ``root_fd``; the result line.

    Refused when either path leads through a symlink."""
    try:
        old_dir, old_name = _parent_fd(root_fd, src, create=False)
    except FileNotFoundError:
        return "kept: the source is not here"
    except OSError as error:
        return f"kept: {error.strerror or error}"
    try:
        try:
            os.lstat(old_name, dir_fd=old_dir)
        except FileNotFoundError:
            return "kept: the source is not here"
        new_dir, new_name = _parent_fd(root_fd, dest, create=True)
        try:
            os.rename(old_name, new_name, src_dir_fd=old_dir, dst_dir_fd=new_dir)
        finally:
            os.close(new_dir)
    except OSError as error:
        return f"kept: {error.strerror or error}"
    finally:
        os.close(old_dir)
    return MOVED


def read_moves(stdin: BinaryIO) -> list[tuple[str, str]]:
    """The rename pairs of a request, read whole before anything is locked or moved: a
    sender that stops midway holds nothing up."""
    data = stdin.read(MOVE_INPUT_MAX + 1)
    if len(data) > MOVE_INPUT_MAX:
        raise Refused(f"a rename request larger than {MOVE_INPUT_MAX} bytes")
    return parse_pairs(data)


def serve_moves(root: str, stdin: BinaryIO, stdout: TextIO) -> None:
    """Carry out the renames read from ``stdin`` in order, one result line each."""
    stdout.write("".join(f"{line}\n" for line in carry_out_moves(root, read_moves(stdin))))
    stdout.flush()


def carry_out_moves(
    root: str,
    pairs: list[tuple[str, str]],
    still: Callable[[], None] = lambda: None,
    results: list[str] | None = None,
) -> list[str]:
    """Carry out ``pairs`` in order; one result each, appended to ``results``. ``still``
    runs before each rename and raises to stop (the sender may no longer write): the
    results of the renames done so far are in ``results`` then.

    One request at a time per directory (an exclusive lock on it), and every
    path is walked from the directory's own fd, never by name from /. The results are
    returned, not written: a sender that stops reading them holds nothing up."""
    done = [] if results is None else results
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        fcntl.flock(root_fd, fcntl.LOCK_EX)
        for src, dest in pairs:
            still()
            done.append(move_one(root_fd, src, dest))
        return done
    finally:
        os.close(root_fd)


def begin_catch_up(state: StateFile, root: str) -> None:
    """Before writing into ``root``: a synchronous channel's stream that started earlier
    applies nothing more there (:mod:`.catchup`; its file is beside the state file)."""
    try:
        catchup.begin(state.path.parent, root)
    except catchup.CatchUpError as error:
        raise Refused(str(error)) from None


def flush_file_system(path: str) -> None:
    """Write everything of the file system holding ``path`` to its disk (``syncfs``):
    file data, directory entries, deletions, modes and times; OSError if it cannot."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc().syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def receive_durably(code: int, root: str) -> int:
    """After the receiving rsync server exited with ``code``, flush ``root``'s file
    system: the exit status, which the sender's rsync waits for, says the copy is on this
    node's disk. Once for the whole push rather than rsync's ``--fsync`` of each file,
    which costs one disk flush per file and leaves directories, deletions and metadata
    unflushed. A failed flush is one line and :data:`FLUSH_FAILED`."""
    if code != 0:
        return code
    try:
        flush_file_system(root)
    except OSError as error:
        print(
            f"mosqit-sync: the push into {root} succeeded but cannot be flushed to this "
            f"node's disk (syncfs: {error.strerror or error}); check the disk, the push is "
            "retried",
            file=sys.stderr,
            flush=True,
        )
        return FLUSH_FAILED
    return 0


def check_sender(sender: int, state: StateFile) -> None:
    """Refused if a sender of epoch ``sender`` may not write here now: the checks of its
    admission again (this node's role, epoch and data epoch, and the newest sender
    admitted), for a push or stream already running."""
    check_epoch(sender, *load_epochs(state))
    with _older_refused():
        admitted.check(state.path.parent, sender)


class SenderCheck:
    """:func:`check_sender` for a sender whose writes are under way, cheap enough to run
    before every rename or every few milliseconds of a stream: the state file (replaced
    atomically, so a stat tells when it changed) is read again only when it changed; the
    record of admitted senders, rewritten in place (its timestamps may stay the same with
    the coarse clocks of Linux before 6.13), is read every time. Raises Refused."""

    def __init__(self, sender: int, state: StateFile) -> None:
        self.sender = sender
        self.state = state
        self._seen: tuple[int, ...] | None = None
        self._path = os.fsencode(state.path)
        self._record = admitted.RecordCheck(state.path.parent)

    def __call__(self) -> None:
        seen = self._stat()
        if seen is None or seen != self._seen:
            check_sender(self.sender, self.state)
            self._seen = seen
            return
        with _older_refused():
            self._record(self.sender)

    def _stat(self) -> tuple[int, ...] | None:
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            return (0,)
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _receive(argv: list[str], epoch: int, state: StateFile) -> int:
    """Run the admitted push's rsync server, stopped if the sender may no longer write
    (:mod:`.supervise`); its exit status (after the flush a ``--fsync`` push asks)."""
    root = argv[-1]
    with hold_writing(epoch, state) as writing:
        os.makedirs(root, mode=0o755, exist_ok=True)
        begin_catch_up(state, root.rstrip("/"))
        sys.stderr.flush()
        server = [word for word in argv if word != FSYNC]
        try:
            code = supervise.run_watched(
                server, str(state.path.parent), SenderCheck(epoch, state), writing.fd
            )
        except supervise.StateDirGone as error:
            raise Refused(str(error)) from None
    return receive_durably(code, root) if FSYNC in argv else code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mosqit-failover sync-receive")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(configuration.DEFAULT_PATH), help="config file")
    parser.add_argument(
        "--node", default=None, help="this node's name (for --fence; default: the hostname)"
    )


def run(args: argparse.Namespace) -> int:
    """Serve SSH_ORIGINAL_COMMAND; never a traceback: a refusal is one line and exit 77."""
    original = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        try:
            return _serve(original, args)
        except (Refused, OSError, ValueError) as error:
            reason = str(error) or type(error).__name__
        except Exception as error:  # a forced command answers in one line, whatever happens
            reason = f"internal error ({type(error).__name__}: {error})"
        reason = reason.replace("\n", " ")
        if verb(original) == SYNCFS:  # the channel reads its answer on stdout
            print(f"refused: {reason}", flush=True)
        print(f"{REFUSED} {reason}", file=sys.stderr, flush=True)
    except Exception:  # stdout or stderr gone: the exit status still says it
        pass
    return REFUSED_EXIT


def _serve(original: str, args: argparse.Namespace) -> int:
    if not original:
        raise Refused("no command given (this key only runs the sync receiver)")
    check_text(original)
    try:
        cfg = configuration.load(Path(args.config))
    except configuration.ConfigError as error:
        raise Refused(f"bad config on the receiver: {error}") from None
    state = StateFile(cfg.state_dir / "state.json")
    kind = verb(original)
    if kind == MOVE:
        root = decide_move(original, cfg, state)
        pairs = read_moves(sys.stdin.buffer)
        epoch = _split(original)[0]
        results: list[str] = []
        try:
            with hold_writing(epoch, state):
                begin_catch_up(state, root)
                carry_out_moves(root, pairs, SenderCheck(epoch, state), results)
        finally:  # the renames done before a refusal, which follows them
            sys.stdout.write("".join(f"{line}\n" for line in results))
            sys.stdout.flush()
        return 0
    if kind == FENCE:
        from mosqit_failover.sync import fence_target

        try:
            return fence_target.serve(decide_fence(original), cfg, state, args.node, sys.stdout)
        except fence_target.FenceRefused as error:
            raise Refused(str(error)) from None
    if kind == SYNCFS:
        from mosqit_failover.syncfs import remote

        return remote.serve_forced(
            original, cfg, state, sys.stdin.buffer, sys.stdout, own_process=True
        )
    return _receive(decide(original, cfg, state), _split(original)[0], state)


if __name__ == "__main__":
    # authorized_keys runs this file as __main__ (``python3 -m mosqit_failover.sync.receive``,
    # the deploy wizard's forced command): run the imported module instead, whose Refused
    # the applier raises too; this copy's own class would take those for internal errors
    # (and the epoch guard's refusal would no longer fence the old active)
    from mosqit_failover.sync import receive as _imported

    sys.exit(_imported.main())
