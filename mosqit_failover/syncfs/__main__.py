"""``python -m mosqit_failover.syncfs mount|apply ...`` (see :mod:`.mount`, :mod:`.apply`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mosqit_failover.syncfs import apply, mount, remote


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosqit_failover.syncfs")
    commands = parser.add_subparsers(dest="command", required=True)
    mount.add_arguments(
        commands.add_parser("mount", help="mount the synchronous file system over a directory")
    )
    apply.add_arguments(
        commands.add_parser("apply", help="apply a record stream (stdin) under a directory")
    )
    remote.add_arguments(
        commands.add_parser(
            "forced", help="the standby's forced command for a channel (SSH_ORIGINAL_COMMAND)"
        )
    )
    args = parser.parse_args(argv)
    if args.command == "mount":
        return mount.run(args)
    if args.command == "forced":
        return remote.run(args)
    return apply.run(args)


if __name__ == "__main__":
    sys.exit(main())
