"""The synchronous mode's file system as a process of its own.

``python -m mosqit_failover.syncfs mount DIR --epoch N --channel NAME=COMMAND ...``

1. checks DIR (absolute, its own real path, a directory, not already a mount point) and
   that FUSE is there (``/dev/fuse``, the binding);
2. opens DIR, then starts every channel (each standby must accept the epoch);
3. mounts the file system over DIR (options ``default_permissions``, ``allow_other``,
   ``fsname=mosqit-syncfs``) and prints ``mounted DIR`` on stdout;
4. serves until SIGTERM or SIGINT, then unmounts and ends the channels cleanly;
   meanwhile, with ``--peers FILE``, adds the channel of each caught-up standby the agent
   lists there (:mod:`.join`: a standby lost earlier, or not there at the start).

Lines for the operator go to stderr (the journal under systemd), one per event: channel
lost, degraded, unmounted. Exit status: 0 after a clean stop, 2 when it could not start
(the line says why and what to do). If this process dies without unmounting (SIGKILL, a
crash), the mount stays: the call in flight fails with ECONNABORTED and every later access
at once with ENOTCONN ("Transport endpoint is not connected"), open descriptors included:
nothing hangs; ``fusermount3 -u DIR`` (or
``umount -l DIR``) makes DIR the plain directory again, with its data in place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import shlex
import signal
import sys
from collections.abc import Sequence

from mosqit_failover.deadlines import within
from mosqit_failover.syncfs import mountinfo
from mosqit_failover.syncfs.binding import (
    FUSE_DEVICE,
    INSTALL_HINT,
    NO_FUSE,
    BindingError,
    enable_asyncio,
)
from mosqit_failover.syncfs.buffers import keep_freed_buffers
from mosqit_failover.syncfs.channel import MODES, Channel, ChannelLost, Replicator, commit_base
from mosqit_failover.syncfs.join import Joiner
from mosqit_failover.syncfs.mountinfo import FS_NAME


class StartError(Exception):
    """The file system cannot start; the message says why and what to do."""


def log(line: str) -> None:
    print(f"mosqit-syncfs: {line}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="the synced directory (mounted over itself)")
    parser.add_argument("--epoch", type=_epoch, required=True, help="this node's epoch")
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a standby's channel: a command line (no shell) that reads the record stream "
        "(e.g. ssh ... to the standby's forced command); repeat for each standby",
    )
    parser.add_argument("--on-standby-loss", choices=MODES, default="degrade")
    parser.add_argument("--block-timeout", type=float, default=10.0)
    parser.add_argument("--ack-timeout", type=float, default=10.0)
    parser.add_argument(
        "--start-timeout", type=float, default=10.0, help="how long a standby may take to accept"
    )
    parser.add_argument(
        "--peers",
        default=None,
        metavar="FILE",
        help="the standbys to (re)join, written by the agent (see syncfs/join.py)",
    )
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=60.0,
        help="how long a join's catch-up may take (the writers wait meanwhile)",
    )
    parser.add_argument(
        "--status",
        default=None,
        metavar="FILE",
        help="keep FILE (JSON) up to date: degraded or not, each channel's state (for the agent)",
    )


def _epoch(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at most 18 digits")
    return int(text)


def parse_channels(specs: Sequence[str]) -> list[Channel]:
    channels = []
    for spec in specs:
        name, eq, command = spec.partition("=")
        try:
            argv = shlex.split(command) if eq else []
        except ValueError as error:  # an unbalanced quote
            raise StartError(f"--channel {spec!r}: {error}: quote it as a shell would") from None
        if not name or not argv:
            raise StartError(f"--channel {spec!r}: expected NAME=COMMAND (a command line)")
        channels.append(Channel(name, argv))
    return channels


def check_directory(path: str) -> str:
    if not path.startswith("/"):
        raise StartError(f"{path!r}: the synced directory must be an absolute path")
    norm = os.path.normpath(path)
    if not os.path.isdir(norm):
        raise StartError(f"{norm} is not a directory: create it (or fix the [[sync]] path)")
    real = os.path.realpath(norm)
    if real != norm:
        raise StartError(f"{norm} leads through a symlink (real path {real}): use the real path")
    if os.path.ismount(norm):
        raise StartError(
            f"{norm} is already a mount point (a file system of its own, or a leftover "
            f"syncfs): a synchronous directory must be a plain directory: sync one inside "
            f"it (e.g. {norm}/data), or if it is a leftover syncfs, fusermount3 -u {norm}"
        )
    if not os.path.exists(FUSE_DEVICE):
        raise StartError(NO_FUSE)
    return norm


def write_status(
    path: str, directory: str, replicator: Replicator | None, state: str, **extra: object
) -> None:
    """The status file, replaced atomically (a reader never sees half of it): ``state`` is
    starting, up (mounted), unmounted or failed (``reason`` says why)."""
    record = {"directory": directory, "state": state, "pid": os.getpid(), **extra}
    if replicator is not None:
        record.update(replicator.status())
    temp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temp, "w") as out:
            json.dump(record, out)
        os.replace(temp, path)
    except OSError as error:
        log(f"cannot write the status file {path}: {error.strerror or error}")


async def serve(args: argparse.Namespace) -> int:
    import pyfuse3

    from mosqit_failover.syncfs.fs import SyncFS, open_root

    directory = check_directory(args.directory)
    channels = parse_channels(args.channel)
    try:
        root_fd = open_root(directory)
    except OSError as error:
        raise StartError(f"cannot open {directory}: {error.strerror or error}") from None
    replicator = Replicator(
        [],
        on_standby_loss=args.on_standby_loss,
        block_timeout=args.block_timeout,
        ack_timeout=args.ack_timeout,
        log=log,
        first=commit_base(),
    )
    if args.status:
        write_status(args.status, directory, None, "starting", epoch=args.epoch)
    for channel in channels:
        try:
            await channel.start(args.epoch, args.start_timeout)
        except ChannelLost as error:
            log(f"standby channel {channel.name} did not start: {error}; degraded")
            replicator.not_started(channel)  # shown in the status with its reason
            continue
        replicator.add(channel)
    if not replicator.live:
        log(f"no standby is synchronous: degraded ({args.on_standby_loss})")
    os.umask(0)
    options = set(pyfuse3.default_options) | {"allow_other", f"fsname={FS_NAME}"}
    try:
        pyfuse3.init(SyncFS(root_fd, replicator), directory, options)
    except RuntimeError as error:
        await replicator.close()
        raise StartError(f"cannot mount {directory}: {error} (is FUSE allowed here?)") from None
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if args.status:
        # "up" only once mounted: a channel added before (Replicator.add) said so while
        # the directory was still bare, and the agent, taking the mount for up, started
        # services that wrote beneath it, hidden and never replicated
        replicator.on_change = lambda: write_status(
            args.status, directory, replicator, "up", epoch=args.epoch
        )
    replicator.on_change()
    print(f"mounted {directory}", flush=True)
    why = keep_freed_buffers()
    if why:
        log(f"large writes stay slow: malloc cannot keep freed buffers ({why})")
    main = asyncio.create_task(pyfuse3.main(min_tasks=4, max_tasks=64))
    stop = asyncio.create_task(stopping.wait())
    joining = asyncio.create_task(_join_peers(args, replicator, root_fd)) if args.peers else None
    try:
        await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop.done() and not main.done():
            pyfuse3.terminate()
            with contextlib.suppress(TimeoutError):
                await within(asyncio.shield(main), 5.0)
        if main.done() and not main.cancelled() and main.exception() is not None:
            log(f"the file system stopped: {main.exception()}")
    finally:
        stop.cancel()
        if joining is not None:
            joining.cancel()
        # libfuse's unmount is a lazy umount of the path: whatever is on top of it. Ours
        # only: after an operator's `umount -l` or with a disk mounted over it, that
        # would be someone else's mount (ours ends with this process anyway)
        ours = mountinfo.ours_on_top(directory)
        if not ours:
            log(f"not unmounting {directory}: our file system is not on top of it any more")
        pyfuse3.close(unmount=ours)
        await replicator.close()
        os.close(root_fd)
    if args.status:
        write_status(args.status, directory, replicator, "unmounted", epoch=args.epoch)
    log(f"unmounted {directory}")
    return 0


async def _join_peers(args: argparse.Namespace, replicator: Replicator, root_fd: int) -> None:
    joiner = Joiner(
        args.peers,
        args.epoch,
        replicator,
        root_fd,
        log,
        start_timeout=args.start_timeout,
        catch_up_timeout=args.join_timeout,
    )
    await joiner.run()


def raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: this process holds one descriptor per file
    the services hold open on the mount, and a transient unit keeps systemd's soft 1024
    (a spool or a database with more files open would get EMFILE from the mount)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace) -> int:
    # pyfuse3 logs a handler's unexpected error (the caller got EIO): to the journal
    logging.basicConfig(format="mosqit-syncfs: %(name)s: %(message)s", level=logging.WARNING)
    raise_open_file_limit()
    try:
        try:
            enable_asyncio()
        except ImportError as error:
            raise BindingError(f"{error}; {INSTALL_HINT}") from None
        return asyncio.run(serve(args))
    except (StartError, BindingError) as error:
        log(str(error))
        if args.status:  # the agent reads why from here (stderr is the journal's)
            write_status(args.status, args.directory, None, "failed", reason=str(error))
        return 2
    except KeyboardInterrupt:
        return 130
