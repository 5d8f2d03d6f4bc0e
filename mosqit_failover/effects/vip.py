"""Add and remove the virtual IP address with route netlink (:mod:`mosqit_failover.netlink`)."""

from __future__ import annotations

import errno
import ipaddress
import time
from collections.abc import Coroutine
from typing import Any

from mosqit_failover.deadlines import within
from mosqit_failover.effects import EffectError
from mosqit_failover.netlink import NetlinkError, RouteSocket

NETLINK_TIMEOUT = 5.0
"""Seconds one claim/release/held may take (netlink answers in milliseconds)."""


class Vip:
    """The virtual IP on one interface of this host (in this network namespace).

    Guarantees:

    - :meth:`claim` adds ``address`` (with its prefix length) to ``ifname``;
      already present is success. :meth:`release` removes every address equal
      to ``address.ip`` from ``ifname``, whatever its prefix length (a VIP left
      with another prefix by an earlier configuration goes too); already absent
      is success. Both are idempotent and safe to repeat or interleave.
    - Both are coroutines that talk netlink without blocking the event loop
      (:mod:`mosqit_failover.netlink`: the answers are awaited in the event
      loop, no thread; one short-lived socket per call) and take at most
      :data:`NETLINK_TIMEOUT` seconds.
    - :meth:`held` is synchronous (for start-up: find a VIP left behind by a
      crashed agent); it works with or without a running event loop, blocking
      the caller for a few milliseconds (at most :data:`NETLINK_TIMEOUT`).
    - A missing interface raises :class:`EffectError` naming it; any other
      netlink failure and the timeout raise :class:`EffectError` too.
    """

    def __init__(self, address: ipaddress.IPv4Interface, ifname: str) -> None:
        self.address = ipaddress.IPv4Interface(address)
        self.ifname = ifname

    def __repr__(self) -> str:
        return f"Vip({str(self.address)!r}, {self.ifname!r})"

    async def claim(self) -> None:
        """Add the VIP to the interface (present already is success)."""
        await self._bounded(self._claim(), "add")

    async def release(self) -> None:
        """Remove the VIP from the interface (absent already is success)."""
        await self._bounded(self._release(), "remove")

    def held(self) -> bool:
        """True if the VIP's address (any prefix length) is on the interface now."""
        try:
            with RouteSocket() as rt:
                deadline = time.monotonic() + NETLINK_TIMEOUT
                index = rt.link_index_sync(self.ifname, deadline)
                if index is None:
                    raise self._no_interface()
                addresses = rt.addresses_sync(index, deadline)
                return any(a.ip == str(self.address.ip) for a in addresses)
        except TimeoutError:
            raise EffectError(
                f"cannot list the addresses of {self.ifname}: netlink did not answer "
                f"within {NETLINK_TIMEOUT:g}s; check the host's load and kernel log"
            ) from None
        except NetlinkError as error:
            raise EffectError(
                f"cannot list the addresses of {self.ifname}: {_describe(error)}"
            ) from None
        except OSError as error:
            raise EffectError(
                f"cannot list the addresses of {self.ifname}: {error}; "
                "the agent needs CAP_NET_ADMIN (run it as root)"
            ) from None

    # -- internals ------------------------------------------------------------

    async def _bounded(self, work: Coroutine[Any, Any, None], verb: str) -> None:
        try:
            await within(work, NETLINK_TIMEOUT)
        except TimeoutError:
            raise EffectError(
                f"cannot {verb} VIP {self.address} on {self.ifname}: netlink did not answer "
                f"within {NETLINK_TIMEOUT:g}s; check the host's load and kernel log"
            ) from None
        except NetlinkError as error:
            raise EffectError(
                f"cannot {verb} VIP {self.address} on {self.ifname}: {_describe(error)}"
            ) from None
        except OSError as error:
            raise EffectError(
                f"cannot {verb} VIP {self.address} on {self.ifname}: {error}; "
                "the agent needs CAP_NET_ADMIN (run it as root)"
            ) from None

    async def _claim(self) -> None:
        with RouteSocket() as rt:
            index = await self._index(rt)
            try:
                await rt.add_address(index, str(self.address.ip), self.address.network.prefixlen)
            except NetlinkError as error:
                if error.errno != errno.EEXIST:
                    raise

    async def _release(self) -> None:
        with RouteSocket() as rt:
            index = await self._index(rt)
            found = [a for a in await rt.addresses(index) if a.ip == str(self.address.ip)]
            for address in found:  # every prefix length
                try:
                    await rt.delete_address(index, address)
                except NetlinkError as error:
                    if error.errno != errno.EADDRNOTAVAIL:
                        raise

    async def _index(self, rt: RouteSocket) -> int:
        index = await rt.link_index(self.ifname)
        if index is None:
            raise self._no_interface()
        return index

    def _no_interface(self) -> EffectError:
        return EffectError(
            f"interface {self.ifname!r} for VIP {self.address} does not exist; fix "
            "vip.interface (or nodes.NAME.vip_interface) or create the interface "
            "(see `ip link`)"
        )


def _describe(error: NetlinkError) -> str:
    code = error.errno or 0
    text = errno.errorcode.get(code, str(code))
    if code in (errno.EPERM, errno.EACCES):
        return f"{text}: permission denied; run the agent as root (CAP_NET_ADMIN)"
    return f"netlink error {text} ({error})"


def addresses_here(ports: list[tuple[ipaddress.IPv4Address, str]]) -> list[bool]:
    """For each (address, interface), whether the address is on that interface now (an
    interface that is missing, or cannot be asked, counts as no). Blocking, quick: for
    start-up and check-config, from a worker thread in the agent."""
    found = []
    for address, ifname in ports:
        try:
            found.append(Vip(ipaddress.IPv4Interface(address), ifname).held())
        except EffectError:
            found.append(False)
    return found
