"""mosqit-failover: a quorumless two-node failover agent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

# Kept equal to setup.cfg's version (tests/unit/test_cli.py checks): the answer of
# `--version` when the distribution metadata is absent (run from a bare checkout).
__version__ = "0.1.0"


def version() -> str:
    """The installed distribution's version, else the version this source tree carries."""
    from importlib import metadata

    try:
        return metadata.version("mosqit-failover")
    except metadata.PackageNotFoundError:
        return __version__


def add_version_option(parser: argparse.ArgumentParser, *flags: str) -> None:
    """`flags` (like --version) on `parser` print "mosqit-failover VERSION" and exit 0.

    The version is looked up only when asked: reading the distribution metadata takes
    tens of milliseconds, which every run (each Nagios check) would pay otherwise.
    """
    import argparse

    class LazyVersion(argparse._VersionAction):
        def __call__(self, *args: Any, **kwargs: Any) -> None:
            self.version = f"mosqit-failover {version()}"
            super().__call__(*args, **kwargs)

    parser.add_argument(*flags, action=LazyVersion, help="print the version and exit")
