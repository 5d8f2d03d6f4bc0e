"""Add and remove the virtual IP address with netlink (pyroute2)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mosqit_failover.effects import EffectError
from mosqit_failover.rtnl import async_iproute

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
      (pyroute2's AsyncIPRoute, or its stand-in on pyroute2 0.7, see
      :mod:`mosqit_failover.rtnl`; one short-lived socket per call) and take at
      most :data:`NETLINK_TIMEOUT` seconds.
    - :meth:`held` is synchronous (for start-up: find a VIP left behind by a
      crashed agent); it works with or without a running event loop, blocking
      the caller for a few milliseconds.
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
            asyncio.get_running_loop()
        except RuntimeError:
            return self._held_sync()
        # pyroute2's synchronous IPRoute runs its own event loop, which cannot
        # run in a thread that already has one: use a short-lived thread.
        with concurrent.futures.ThreadPoolExecutor(1, "vip-held") as pool:
            return pool.submit(self._held_sync).result(timeout=NETLINK_TIMEOUT)

    # -- internals ------------------------------------------------------------

    async def _bounded(self, work: Any, verb: str) -> None:
        try:
            await asyncio.wait_for(work, NETLINK_TIMEOUT)
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
        async with async_iproute() as ipr:
            index = await self._index(ipr)
            try:
                await ipr.addr(
                    "add",
                    index=index,
                    address=str(self.address.ip),
                    prefixlen=self.address.network.prefixlen,
                )
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise

    async def _release(self) -> None:
        async with async_iproute() as ipr:
            index = await self._index(ipr)
            dump = await ipr.addr("dump", index=index, family=socket.AF_INET)
            prefixes = [
                a["prefixlen"] async for a in dump if _address_of(a) == str(self.address.ip)
            ]
            for prefixlen in prefixes:
                try:
                    await ipr.addr(
                        "del", index=index, address=str(self.address.ip), prefixlen=prefixlen
                    )
                except NetlinkError as error:
                    if error.code != errno.EADDRNOTAVAIL:
                        raise

    async def _index(self, ipr: Any) -> int:
        found = await ipr.link_lookup(ifname=self.ifname)
        if not found:
            raise self._no_interface()
        return int(found[0])

    def _held_sync(self) -> bool:
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.ifname)
                if not found:
                    raise self._no_interface()
                addresses = ipr.get_addr(index=found[0], family=socket.AF_INET)
                return any(_address_of(a) == str(self.address.ip) for a in addresses)
        except NetlinkError as error:
            raise EffectError(
                f"cannot list the addresses of {self.ifname}: {_describe(error)}"
            ) from None

    def _no_interface(self) -> EffectError:
        return EffectError(
            f"interface {self.ifname!r} for VIP {self.address} does not exist; fix "
            "vip.interface (or nodes.NAME.vip_interface) or create the interface "
            "(see `ip link`)"
        )


def _address_of(message: Any) -> str | None:
    """The address of one RTM_NEWADDR message (an attribute: pyroute2 0.7's
    message.get("address") finds fields only, get_attr works on 0.7 and 0.9)."""
    address = message.get_attr("IFA_ADDRESS")
    return None if address is None else str(address)


def _describe(error: NetlinkError) -> str:
    text = errno.errorcode.get(error.code, str(error.code))
    if error.code == errno.EPERM:
        return f"{text}: permission denied; run the agent as root (CAP_NET_ADMIN)"
    return f"netlink error {text} ({error})"
