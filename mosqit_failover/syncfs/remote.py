"""The synchronous mode's channel over ssh: the command the active runs, and what the
standby's forced command does with it.

The active runs (as :func:`..sync.commands.move_argv`, but on a connection of its own)::

    ssh -o ControlMaster=no -o ControlPath=none <ssh options> user@peer \
        'mosqit-sync EPOCH --syncfs DEST'

and the standby's forced command (``mosqit-failover sync-receive``) sees that as
SSH_ORIGINAL_COMMAND. :func:`serve_forced` is that form's whole handling: the same
checks as the rsync and rename forms (:func:`..sync.receive.admissible`: DEST exactly a
configured synced directory, its own real path; this node not ACTIVE and its epoch not
above EPOCH), then the applier (:mod:`.apply`) on stdin/stdout, whose stream must open
with the same EPOCH. ``mosqit-failover sync-receive`` (:mod:`..sync.receive`) dispatches
that form here.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import BinaryIO, TextIO

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.sync import receive
from mosqit_failover.sync.commands import MARKER, SYNCFS, Peer, full_argv, ssh_options
from mosqit_failover.sync.receive import Refused, _split, admissible, hold_writing
from mosqit_failover.syncfs.apply import Guard, die_with_parent, serve
from mosqit_failover.syncfs.join import UNDER

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def channel_argv(sync: configuration.SyncDir, peer: Peer, epoch: int) -> list[str]:
    """The channel to one standby, for ``mount --channel NAME=shlex.join(this)``.

    A connection of its own (ControlPath=none, ahead of the shared options: ssh keeps the
    first value), not a session of the agent's ssh master: the master dies with the agent,
    and a channel riding on it would drop (degraded) on every agent restart, while the
    mount itself outlives the agent."""
    remote = shlex.join([MARKER, str(epoch), SYNCFS, sync.target])
    return ["ssh", *_OWN, *ssh_options(peer), peer.destination, remote]


_OWN = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]


def catch_up_argv(sync: configuration.SyncDir, peer: Peer, epoch: int) -> list[str]:
    """The full sync the mount runs under its freeze when the standby rejoins
    (:mod:`.join`): the engine's, from the directory under the mount (:data:`.join.UNDER`),
    on a connection of its own (as :func:`channel_argv`: the mount outlives the agent)."""
    argv = full_argv(sync, peer, epoch)
    argv[argv.index("-e") + 1] = shlex.join(["ssh", *_OWN, *ssh_options(peer)])
    argv[-2] = f"{UNDER}/"  # the source, sync.path + "/": through the mount it would wait
    return argv


def is_syncfs(original: str) -> bool:
    words = original.split()
    return len(words) > 2 and words[2] == SYNCFS


def decide(original: str, cfg: configuration.Config, state: StateFile) -> tuple[int, str]:
    """(the sender's epoch, the synced directory) of an admissible request, or Refused."""
    epoch, args = _split(original)
    if len(args) != 2 or args[0] != SYNCFS:
        raise Refused(f"a synchronous channel is {MARKER} EPOCH {SYNCFS} DEST, nothing more")
    root = admissible(epoch, args[1], cfg, state)
    # admitted once, at the start; each chunk holds the writing lock (apply.Guard)
    hold_writing(epoch, state).release()
    return epoch, root


def serve_forced(
    original: str,
    cfg: configuration.Config,
    state: StateFile,
    stdin: BinaryIO,
    stdout: TextIO,
    own_process: bool = False,
) -> int:
    """Apply the stream on stdin to the requested directory; Refused for anything else.

    ``own_process``: this process serves only this stream (sshd's forced command), so it
    dies with its parent (:func:`~.apply.die_with_parent`)."""
    epoch, root = decide(original, cfg, state)
    os.makedirs(root, mode=0o755, exist_ok=True)
    if own_process:
        die_with_parent()
    root_fd = os.open(root, _DIR)
    try:
        return serve(root_fd, Guard(state, root, command_epoch=epoch), stdin, stdout)
    finally:
        os.close(root_fd)


def run(args: argparse.Namespace) -> int:
    """``python -m mosqit_failover.syncfs forced``: ``sync-receive`` itself (it dispatches
    this form), kept for the tests and benchmarks that name it."""
    return receive.run(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    receive.add_arguments(parser)
