"""Which other hosts answer ARP for the VIP (the monitor's look on the active node).

A node that held the VIP astray (added by hand, or by its network configuration)
answered the clients' ARP requests beside the active: clients and routers that
learned its MAC kept sending there after it let the address go, until their ARP
entry expired (hours on some routers). The active cannot see those replies, so
it asks itself: one RFC 5227 probe ("who-has VIP tell 0.0.0.0", which changes no
host's ARP table) and every reply or announcement of the VIP from another MAC
read for a moment. The core then announces the VIP with gratuitous ARP while
another host answers, and once more after it stopped.

Guarantees:

- :meth:`VipConflictProbe.others` opens an ``AF_PACKET`` socket bound to the
  interface that receives ARP only, sends one probe, reads for ``wait`` seconds
  in the event loop (no thread, no blocking), and closes the socket on every
  path (also when cancelled). It returns the MACs ("aa:bb:...", sorted) of the
  other hosts that said they have the VIP: replies and announcements whose
  sender IP is the VIP and whose sender MAC is not this interface's.
- Frames are checked before use: short, non-ARP or non-IPv4-over-Ethernet
  frames are skipped; nothing a frame holds can raise.
- It raises :class:`EffectError` naming the interface and the fix when it
  cannot ask (no interface, no CAP_NET_RAW, no Ethernet address).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket

from mosqit_failover.deadlines import within
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.garp import (
    ARP_FRAME,
    ETH_P_ARP,
    build_frame,
    ethernet_address,
    interface_problem,
)

PROBE_WAIT = 0.2
"""Seconds the replies are read: a LAN answers in well under a millisecond."""

_UNSPECIFIED = ipaddress.IPv4Address(0)


class VipConflictProbe:
    def __init__(self, vip: ipaddress.IPv4Address, ifname: str, wait: float = PROBE_WAIT) -> None:
        self.vip = ipaddress.IPv4Address(vip)
        self.ifname = ifname
        self.wait = wait

    def __repr__(self) -> str:
        return f"VipConflictProbe({str(self.vip)!r} on {self.ifname!r})"

    async def others(self) -> tuple[str, ...]:
        """The MACs of the other hosts that answer for the VIP now."""
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        except OSError as error:
            raise EffectError(self._why(error)) from None
        with contextlib.closing(sock):
            try:
                sock.setblocking(False)
                sock.bind((self.ifname, ETH_P_ARP))
                mac = ethernet_address(sock)
                if mac is None:
                    raise EffectError(
                        f"cannot probe ARP for the VIP on {self.ifname}: the interface has "
                        "no Ethernet address"
                    )
                sock.send(build_frame(_UNSPECIFIED, mac, target=self.vip))
            except OSError as error:
                raise EffectError(self._why(error)) from None
            return tuple(sorted(await self._read(sock, mac)))

    async def _read(self, sock: socket.socket, own: bytes) -> set[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        found: set[str] = set()
        while (left := deadline - loop.time()) > 0:
            try:
                frame = await within(loop.sock_recv(sock, 2048), left)
            except (TimeoutError, OSError):
                break
            sender = self._claimant(frame, own)
            if sender is not None:
                found.add(sender)
        return found

    def _claimant(self, frame: bytes, own: bytes) -> str | None:
        """The sender MAC of a frame that says another host has the VIP, else None."""
        if len(frame) < ARP_FRAME.size:
            return None
        fields = ARP_FRAME.unpack_from(frame)
        ethertype, hardware, protocol, hlen, plen = fields[2:7]
        sender_mac, sender_ip = fields[8], fields[9]
        if (ethertype, hardware, protocol, hlen, plen) != (ETH_P_ARP, 1, 0x0800, 6, 4):
            return None
        if sender_ip != self.vip.packed or sender_mac == own:
            return None
        return ":".join(f"{b:02x}" for b in sender_mac)

    def _why(self, error: OSError) -> str:
        what = f"cannot probe ARP for the VIP on {self.ifname}"
        return interface_problem(error, what, self.ifname, "fix vip.interface")
