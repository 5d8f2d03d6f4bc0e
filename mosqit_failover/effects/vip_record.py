"""Which VIP this agent added, on which interface: kept so that a new config's agent
can take away the old one.

The VIP cannot be reloaded: the operator changes it with maintenance on, a restart
and maintenance off. The restarted agent only knew the config's new VIP, so the old
address stayed on the interface for good, and after a switchover both nodes held it
(a helper's finding).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tempfile
from pathlib import Path

from mosqit_failover.effects import EffectError

RECORD_NAME = "vip"


class VipRecord:
    """One line in the state directory, ``ADDRESS/PREFIX INTERFACE``.

    Guarantees: :meth:`write` replaces it atomically (a temporary file renamed over
    it) and only when it changes, so an agent that claims the same VIP again writes
    nothing; it raises :class:`EffectError` naming the path when it cannot. :meth:`read`
    returns None for a missing, unreadable or garbled record (nothing is then taken
    away: the safe side). Blocking calls, quick: run them from a worker thread.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / RECORD_NAME

    def read(self) -> tuple[ipaddress.IPv4Interface, str] | None:
        try:
            address, ifname = self.path.read_text(encoding="ascii").split()
            return ipaddress.IPv4Interface(address), ifname
        except (OSError, ValueError):
            return None

    def write(self, address: ipaddress.IPv4Interface, ifname: str) -> None:
        if self.read() == (address, ifname):
            return
        temp = ""
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{RECORD_NAME}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(f"{address} {ifname}\n")
            os.replace(temp, self.path)
            temp = ""
        except OSError as error:
            raise EffectError(
                f"cannot record the VIP in {self.path}: {error.strerror or error}; check that "
                f"{self.path.parent} is writable and its disk not full or read-only"
            ) from None
        finally:
            if temp:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def clear(self) -> None:
        """Forget it (the old VIP was taken away); a missing record is no error."""
        with contextlib.suppress(OSError):
            self.path.unlink()
