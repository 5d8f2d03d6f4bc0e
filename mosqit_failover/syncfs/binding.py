"""The FUSE binding: pyfuse3 in asyncio mode, as Debian 12 ships it and as PyPI does.

pyfuse3 runs on Trio by default; its asyncio layer must be enabled before the file
system's main loop starts. That layer is spelled two ways:

- pyfuse3 3.2 (Debian 12's python3-pyfuse3 3.2.1): a top-level module ``pyfuse3_asyncio``
  beside the ``pyfuse3`` extension module;
- pyfuse3 3.3 and later (PyPI, 3.5 at the time of writing): a submodule, ``pyfuse3.asyncio``.

Both have the same ``enable()``. See docs/sync-mode.md for why this binding.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

INSTALL_HINT = (
    "install the FUSE binding: apt-get install fuse3 python3-pyfuse3 "
    "(in a virtualenv: apt-get install libfuse3-dev pkg-config, then pip install pyfuse3)"
)


class BindingError(Exception):
    """pyfuse3 (or its asyncio layer) cannot be imported; the message says how to install it."""


def asyncio_layer() -> ModuleType:
    """The module whose ``enable()`` switches pyfuse3 to asyncio, whichever version is here."""
    for name in ("pyfuse3.asyncio", "pyfuse3_asyncio"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BindingError(f"pyfuse3's asyncio layer is missing; {INSTALL_HINT}")


def enable_asyncio() -> None:
    asyncio_layer().enable()


FUSE_DEVICE = "/dev/fuse"
NO_FUSE = f"{FUSE_DEVICE} is missing: modprobe fuse (or give the container {FUSE_DEVICE})"


def fuse_problem() -> str | None:
    """Why a synchronous directory cannot be mounted on this machine (one line), or None."""
    if not os.path.exists(FUSE_DEVICE):
        return NO_FUSE
    try:
        asyncio_layer()
    except BindingError as error:
        return str(error)
    return None
