"""The synchronous mode's channel over ssh: the command the active runs, and what the
standby's forced command does with it.

The active runs, over the existing ssh master (as :func:`..sync.commands.move_argv`)::

    ssh -o ControlMaster=no <ssh options> user@peer 'mosqit-sync EPOCH --syncfs DEST'

and the standby's forced command (``mosqit-failover sync-receive``) sees that as
SSH_ORIGINAL_COMMAND. :func:`serve_forced` is that form's whole handling: the same
checks as the rsync and rename forms (:func:`..sync.receive._admit`: DEST exactly a
configured synced directory, its own real path; this node not ACTIVE and its epoch not
above EPOCH), then the applier (:mod:`.apply`) on stdin/stdout, whose stream must open
with the same EPOCH. Not yet dispatched from :mod:`..sync.receive` (see
docs/sync-mode.md, "What is left"); ``python -m mosqit_failover.syncfs forced --config
CONFIG`` runs it as a forced command of its own meanwhile.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.sync.commands import MARKER, REFUSED, Peer, ssh_options
from mosqit_failover.sync.receive import REFUSED_EXIT, Refused, _admit, _split, check_text
from mosqit_failover.syncfs.apply import serve, state_guard

SYNCFS = "--syncfs"
"""Second word after the epoch of a synchronous-mode channel."""

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def channel_argv(sync: configuration.SyncDir, peer: Peer, epoch: int) -> list[str]:
    """The channel to one standby, for ``mount --channel NAME=shlex.join(this)``."""
    remote = shlex.join([MARKER, str(epoch), SYNCFS, sync.target])
    return ["ssh", "-o", "ControlMaster=no", *ssh_options(peer), peer.destination, remote]


def is_syncfs(original: str) -> bool:
    words = original.split()
    return len(words) > 2 and words[2] == SYNCFS


def decide(original: str, cfg: configuration.Config, state: StateFile) -> tuple[int, str]:
    """(the sender's epoch, the synced directory) of an admissible request, or Refused."""
    epoch, args = _split(original)
    if len(args) != 2 or args[0] != SYNCFS:
        raise Refused(f"a synchronous channel is {MARKER} EPOCH {SYNCFS} DEST, nothing more")
    return epoch, _admit(epoch, args[1], cfg, state)


def serve_forced(
    original: str,
    cfg: configuration.Config,
    state: StateFile,
    stdin: BinaryIO,
    stdout: TextIO,
) -> int:
    """Apply the stream on stdin to the requested directory; Refused for anything else."""
    epoch, root = decide(original, cfg, state)
    os.makedirs(root, mode=0o755, exist_ok=True)
    guard = state_guard(state)

    def check(sender: int) -> None:
        if sender != epoch:
            raise Refused(f"the stream's epoch {sender} is not the command's {epoch}")
        guard(sender)

    root_fd = os.open(root, _DIR)
    try:
        return serve(root_fd, check, stdin, stdout)
    finally:
        os.close(root_fd)


def run(args: argparse.Namespace) -> int:
    """SSH_ORIGINAL_COMMAND as the forced command; a refusal is one line and exit 77."""
    original = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        try:
            if not original:
                raise Refused("no command given (this key only runs the sync receiver)")
            check_text(original)
            try:
                cfg = configuration.load(Path(args.config))
            except configuration.ConfigError as error:
                raise Refused(f"bad config on the receiver: {error}") from None
            state = StateFile(cfg.state_dir / "state.json")
            return serve_forced(original, cfg, state, sys.stdin.buffer, sys.stdout)
        except (Refused, OSError, ValueError) as error:
            reason = (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
        except Exception as error:  # a forced command answers in one line, whatever happens
            reason = f"internal error ({type(error).__name__}: {error})"
        reason = reason.replace("\n", " ")
        print(f"refused: {reason}", flush=True)
        print(f"{REFUSED} {reason}", file=sys.stderr, flush=True)
    except Exception:  # stdout and stderr gone: the exit status still says it
        pass
    return REFUSED_EXIT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(configuration.DEFAULT_PATH), help="config file")
