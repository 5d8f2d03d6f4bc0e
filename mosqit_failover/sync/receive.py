"""The receiving side's forced command: only a fresh, legitimate sender may write.

authorized_keys on each node holds the peer's sync key as

    command="mosqit-failover sync-receive --config CONFIG",restrict ssh-ed25519 AAAA...

sshd then runs this command whatever the client asked; the request is in
SSH_ORIGINAL_COMMAND, e.g. ``mosqit-sync 7 --server -logDtpre.iLsfxCIvu
--delete . /srv/data/`` (see :mod:`.commands`). It is carried out only if:

- it is an rsync *receiving* server (``--server``, no ``--sender``) with
  only the options our sender uses (no --log-file, --temp-dir, ...);
- the destination is one of the configured sync directories (``peer_path``
  or ``path``), exactly, and is a directory (created if missing);
- the sender's epoch is at least this node's persisted epoch
  (``state.json``), and this node is not ACTIVE: a stale old active can
  never overwrite newer files, even if its own agent is confused.

Then it execs ``rsync --server ...`` (nothing of this process remains).

The second allowed form renames inside a synced directory, before a batch:
``mosqit-sync EPOCH --move DEST`` with NUL-separated ``SRC DEST`` pairs on
stdin, both relative to DEST; same directory, epoch and role checks. A pair
must stay inside the directory: no absolute path, no ``..``, and the real
path of each parent (symlinks resolved) must lie inside the directory's real
path. Each pair gets one line on stdout: ``moved`` or ``kept: why`` (e.g. the
source is not here: the sender then sends the destination whole).

Anything else is refused: one line starting with
:data:`~.commands.REFUSED` on stderr and exit status 77.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateError, StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync.commands import MARKER, MOVE, MOVED, REFUSED

REFUSED_EXIT = 77
MOVE_INPUT_MAX = 64 << 20
"""Largest rename request read from stdin (bytes)."""

_SHORT = re.compile(r"^-[A-Za-z]+(\.[A-Za-z]*)?$")
_LONG = re.compile(
    r"^--(delete|delete-missing-args|force|numeric-ids|from0|ignore-errors|"
    r"(timeout|bwlimit)=\d+)$"
)


class Refused(Exception):
    """The request is not allowed; the message says why and what to fix."""


def _split(original: str) -> tuple[int, list[str]]:
    """(sender epoch, the words after it) from SSH_ORIGINAL_COMMAND."""
    try:
        words = shlex.split(original)
    except ValueError as error:
        raise Refused(f"cannot parse the command ({error})") from None
    if len(words) < 2 or words[0] != MARKER:
        raise Refused(
            f"this key only runs the mosqit-failover sync receiver, not {original[:80]!r}"
        )
    if not words[1].isdigit():
        raise Refused(f"the sender's epoch {words[1]!r} is not a whole number")
    return int(words[1]), words[2:]


def is_move(original: str) -> bool:
    """Whether the request is the rename form (its checks are in :func:`decide_move`)."""
    words = original.split()
    return len(words) > 2 and words[2] == MOVE


def parse_request(original: str) -> tuple[int, list[str], str]:
    """(sender epoch, rsync server arguments, destination) from SSH_ORIGINAL_COMMAND."""
    epoch, args = _split(original)
    if len(args) < 4 or args[0] != "--server" or args[-2] != ".":
        raise Refused("not an rsync server command (expected --server ... . DEST)")
    options = args[1:-2]
    for option in options:
        if option == "--sender":
            raise Refused("reading from this node is not allowed (--sender)")
        if not (_SHORT.match(option) or _LONG.match(option)):
            raise Refused(f"rsync option {option!r} is not allowed by the sync receiver")
    return epoch, args, args[-1]


def check_destination(dest: str, allowed: Sequence[str]) -> str:
    """The normalized destination if it is one of the allowed directories."""
    norm = os.path.normpath(dest) if dest.startswith("/") else ""
    if norm not in allowed:
        raise Refused(
            f"destination {dest!r} is not a synced directory here "
            f"(allowed: {', '.join(allowed) or 'none'}); check [[sync]] path/peer_path"
        )
    path = Path(norm)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise Refused(f"{norm} exists on the receiver but is not a directory; move it away")
    return norm


def check_epoch(sender: int, own: int, role: Role) -> None:
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


def _admit(epoch: int, dest: str, cfg: configuration.Config, state: StateFile) -> str:
    """The normalized destination if this sender may write there now."""
    norm = check_destination(dest, [s.target for s in cfg.sync])
    try:
        own, role = state.load()
    except StateError as error:
        raise Refused(f"cannot read this node's epoch: {error}") from None
    check_epoch(epoch, own, role)
    return norm


def decide(original: str, cfg: configuration.Config, state: StateFile) -> list[str]:
    """The rsync argv to exec, or raise Refused."""
    epoch, args, dest = parse_request(original)
    norm = _admit(epoch, dest, cfg, state)
    return ["rsync", *args[:-1], norm + "/"]


def decide_move(original: str, cfg: configuration.Config, state: StateFile) -> str:
    """The synced directory a rename request may work in, or raise Refused."""
    epoch, args = _split(original)
    if len(args) != 2 or args[0] != MOVE:
        raise Refused(f"a rename request is {MOVE} DEST (the pairs on stdin)")
    return _admit(epoch, args[1], cfg, state)


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


def inside(root: str, rel: str) -> str:
    """``root/rel`` with its parent's symlinks resolved; Refused if that leaves ``root``.

    ``root`` is a real path; the last component itself is not followed (a rename
    moves a symlink, not what it points to).
    """
    norm = os.path.normpath(rel)
    parent = os.path.realpath(os.path.join(root, os.path.dirname(norm)))
    if parent != root and not parent.startswith(root.rstrip("/") + "/"):
        raise Refused(f"rename path {rel!r} leads outside {root} (through a symlink)")
    return os.path.join(parent, os.path.basename(norm))


def move_one(root: str, src: str, dest: str) -> str:
    """Rename ``src`` to ``dest`` inside ``root``; the result line (Refused on escape)."""
    old, new = inside(root, src), inside(root, dest)
    if not os.path.lexists(old):
        return "kept: the source is not here"
    try:
        os.makedirs(os.path.dirname(new), mode=0o755, exist_ok=True)
        os.rename(old, new)
    except OSError as error:
        return f"kept: {error.strerror or error}"
    return MOVED


def serve_moves(root: str, stdin: BinaryIO, stdout: TextIO) -> None:
    """Carry out the renames read from ``stdin`` in order, one result line each."""
    data = stdin.read(MOVE_INPUT_MAX + 1)
    if len(data) > MOVE_INPUT_MAX:
        raise Refused(f"a rename request larger than {MOVE_INPUT_MAX} bytes")
    pairs = parse_pairs(data)
    real = os.path.realpath(root)
    for src, dest in pairs:
        stdout.write(move_one(real, src, dest) + "\n")
        stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mosqit-failover sync-receive")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(configuration.DEFAULT_PATH), help="config file")


def run(args: argparse.Namespace) -> int:
    original = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        if not original:
            raise Refused("no command given (this key only runs the sync receiver)")
        try:
            cfg = configuration.load(Path(args.config))
        except configuration.ConfigError as error:
            raise Refused(f"bad config on the receiver: {error}") from None
        state = StateFile(cfg.state_dir / "state.json")
        if is_move(original):
            serve_moves(decide_move(original, cfg, state), sys.stdin.buffer, sys.stdout)
            return 0
        argv = decide(original, cfg, state)
        os.makedirs(argv[-1], mode=0o755, exist_ok=True)
    except (Refused, OSError) as error:
        print(f"{REFUSED} {error}", file=sys.stderr, flush=True)
        return REFUSED_EXIT
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
