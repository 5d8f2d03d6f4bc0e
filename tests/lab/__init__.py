"""The lab suite. Run by pytest-xdist, each worker gets a lab prefix of its own.

Two workers share the machine's two cores; each builds, tears down and checks its
own lab (``mqlab0-``, ``mqlab1-``: namespaces, cgroups, mounts, /run state), so
one worker's ``lab down`` never touches the other's. This has to happen before
``mosqit_failover.lab.topology`` is imported: it reads the prefix once.
"""

from __future__ import annotations

import os

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    _BASE = os.environ.get("MQLAB_PREFIX", "mqlab-").rstrip("-")
    os.environ["MQLAB_PREFIX"] = f"{_BASE}{_WORKER.removeprefix('gw')}-"
