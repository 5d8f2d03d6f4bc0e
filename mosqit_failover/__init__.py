"""mosqit-failover: a quorumless two-node failover agent."""

from __future__ import annotations

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
