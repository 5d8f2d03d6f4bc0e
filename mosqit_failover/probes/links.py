"""Carrier of the uplinks, from netlink link events (RTNLGRP_LINK).

The monitor subscribes to the kernel's link notifications before it dumps the
links, so no change can fall between the dump and the first event. It never
polls: between changes it sleeps in a netlink read.

Carrier means the kernel's ``IFF_LOWER_UP`` flag is set and the operational
state (RFC 2863) is ``UP`` or ``UNKNOWN`` (drivers without operstate support).
A veth whose peer is down is ``NO-CARRIER``/``LOWERLAYERDOWN``: no carrier. An
administratively down interface has no ``IFF_LOWER_UP`` either. An interface
that does not exist (never existed, was deleted, or was renamed away) has no
carrier; one that appears (again) is reported with its actual carrier.

Only changes are reported: the monitor remembers the last value it reported
for every network, across netlink reconnects too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from mosqit_failover.netlink import (
    OPERSTATES,
    RTM_DELLINK,
    RTM_NEWLINK,
    RTMGRP_LINK,
    Link,
    Message,
    RouteSocket,
    decode_link,
)

LOGGER = logging.getLogger("mosqit_failover.probes")

IFF_LOWER_UP = 0x10000
_CARRIER_OPERSTATES = frozenset({OPERSTATES.index("UP"), OPERSTATES.index("UNKNOWN")})
_AF_BRIDGE = int(getattr(socket, "AF_BRIDGE", 7))

BACKOFF_MIN = 0.1  # first retry after a netlink failure (seconds)
BACKOFF_MAX = 2.0  # retries back off up to this
_STABLE = 10.0  # a session that lived this long resets the backoff


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno and not exc.strerror:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {os.strerror(exc.errno)}"
    return f"{type(exc).__name__}: {exc}"


def carrier_of(link: Link) -> bool:
    """Carrier from one RTM_NEWLINK message: IFF_LOWER_UP and operstate UP/UNKNOWN."""
    if not link.flags & IFF_LOWER_UP:
        return False
    return link.operstate is None or link.operstate in _CARRIER_OPERSTATES


class LinkMonitor:
    """Reports ``report(network, carrier)`` for each watched interface, on every change.

    ``interfaces`` maps network name to interface name, e.g. ``{"a": "eth0"}``.
    :meth:`run` first reports the current carrier of every interface, then
    each change as the kernel announces it, until cancelled. If the netlink
    socket fails it is re-opened after a short backoff and the current state
    is read again; whatever changed meanwhile is reported then.
    """

    def __init__(
        self,
        interfaces: Mapping[str, str],
        report: Callable[[str, bool], None],
    ) -> None:
        self.interfaces = dict(interfaces)
        self._report = report
        self._networks: dict[str, list[str]] = {}  # ifname -> networks using it
        for network, ifname in self.interfaces.items():
            self._networks.setdefault(ifname, []).append(network)
        self._reported: dict[str, bool] = {}  # network -> last value reported
        self._index: dict[int, str] = {}  # ifindex -> watched ifname it carries now
        self.reconnects = 0  # netlink sockets re-opened after a failure
        self.events = 0  # link messages seen (all interfaces)

    @property
    def carrier(self) -> dict[str, bool]:
        """Last carrier reported per network (empty before the first report)."""
        return dict(self._reported)

    async def run(self) -> None:
        """Watch the links until cancelled; never returns otherwise."""
        delay = BACKOFF_MIN
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started >= _STABLE:
                    delay = BACKOFF_MIN
                LOGGER.warning(
                    "link monitor: netlink socket failed (%s); re-opening in %.1fs",
                    _describe(exc),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            self.reconnects += 1

    async def _session(self) -> None:
        """One netlink socket's life: subscribe, dump, then follow events until it fails."""
        with RouteSocket(groups=RTMGRP_LINK) as rt:
            # Subscribed first (bound to the group), dump second: events racing
            # the dump wait in the socket and are applied after it (a late event
            # only repeats history). Lost events (ENOBUFS) fail the session: the
            # next one dumps again.
            present: dict[str, bool] = {}
            self._index.clear()
            for link in await rt.dump_links():
                ifname = link.ifname
                if ifname is not None and ifname in self._networks and link.family != _AF_BRIDGE:
                    self._index[link.index] = ifname
                    present[ifname] = carrier_of(link)
            for ifname in self._networks:
                if ifname not in present:
                    LOGGER.warning("link monitor: interface %s does not exist", ifname)
                self._set(ifname, present.get(ifname, False))
            while True:
                for message in await rt.events():
                    self._handle(message)

    def _handle(self, message: Message) -> None:
        if message.type not in (RTM_NEWLINK, RTM_DELLINK):
            return
        link = decode_link(message)
        if link.family == _AF_BRIDGE:
            # bridge port notifications: an RTM_DELLINK here means "left the
            # bridge", not "deleted"; the AF_UNSPEC messages tell the carrier.
            return
        self.events += 1
        index = link.index
        ifname = link.ifname
        known = self._index.get(index)
        if link.kind == RTM_DELLINK:
            name = self._index.pop(index, None)
            if name is None and ifname in self._networks:
                name = ifname
            if name is not None:
                LOGGER.info("link monitor: interface %s was deleted", name)
                self._set(name, False)
            return
        if known is not None and known != ifname:
            del self._index[index]
            LOGGER.info("link monitor: interface %s was renamed to %s", known, ifname)
            self._set(known, False)
        if ifname is not None and ifname in self._networks:
            self._index[index] = ifname
            self._set(ifname, carrier_of(link))

    def _set(self, ifname: str, carrier: bool) -> None:
        for network in self._networks[ifname]:
            if self._reported.get(network) == carrier:
                continue
            self._reported[network] = carrier
            LOGGER.debug(
                "link monitor: %s (%s) carrier %s", network, ifname, "up" if carrier else "down"
            )
            try:
                self._report(network, carrier)
            except Exception:
                LOGGER.exception("link monitor: report callback failed for %s", network)
