"""The ``sync-receive`` subcommand (the forced command of the sync key)."""

from __future__ import annotations

import argparse
from typing import Any


def add_sync_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sync-receive``; the caller's main runs ``args.func(args)``."""
    from mosqit_failover.sync import receive

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sync-receive",
        help="receiving side of the directory sync (run by sshd as the sync key's forced command)",
    )
    receive.add_arguments(parser)
    parser.set_defaults(func=receive.run)
    return parser
