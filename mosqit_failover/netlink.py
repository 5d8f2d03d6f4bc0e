"""Route netlink (rtnetlink), the few messages this agent needs, on a plain socket.

The agent asks the kernel for three things: the index of an interface by
name, the IPv4 addresses of an interface (and adds/removes one), and the
links with their carrier (a dump, then RTM_NEWLINK/RTM_DELLINK events). This
module speaks exactly that, with :mod:`struct` on an ``AF_NETLINK`` /
``NETLINK_ROUTE`` socket (see ``linux/netlink.h``, ``linux/rtnetlink.h``,
``linux/if_link.h``, ``linux/if_addr.h``), instead of importing a general
netlink library (pyroute2: ~25 MB RSS and ~0.4 s of start-up, see
docs/design.md, "Dependencies").

Guarantees:

- Every message coming from the socket is checked before use: a header or
  attribute length that is too short, runs past its container, or a fixed
  part that is cut short raises :class:`NetlinkProtocolError` (an
  :class:`OSError` with ``errno.EPROTO`` and a message saying what is wrong),
  never anything else; parsing always advances by at least 4 bytes, so no
  length can make it loop. Datagrams not sent by the kernel (port 0) are
  dropped; a datagram cut short by the receive buffer raises.
- A request gets a sequence number of its own; only messages carrying it and
  this socket's port id count as its answer. An ``NLMSG_ERROR`` with a
  non-zero code raises :class:`NetlinkError` (``errno`` = the kernel's
  errno); a dump ends with ``NLMSG_DONE`` and is repeated (up to
  :data:`DUMP_ATTEMPTS` times) when the kernel flags it interrupted
  (``NLM_F_DUMP_INTR``).
- Everything else that arrives (multicast events, on a socket bound to
  groups) is kept in order and handed out by :meth:`RouteSocket.events`, also
  the events that arrived while a dump was being read.
- The asynchronous calls wait for the socket in the event loop
  (``loop.add_reader``), with no thread; the synchronous ones poll with a
  deadline and raise :class:`TimeoutError` when it passes. An overflow of
  the socket's receive buffer (events lost) raises ``OSError(ENOBUFS)`` from
  the read: the caller must read the state again (LinkMonitor re-dumps).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import select
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass

NETLINK_ROUTE = 0

# linux/netlink.h
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # asm-generic/socket.h
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTMGRP_LINK = 0x1

# linux/if_link.h
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
"""RFC 2863 operational states by their number in IFLA_OPERSTATE (IF_OPER_*)."""

# linux/if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2

IFNAMSIZ = 16
MAX_ERRNO = 4095  # the kernel's errno values are below this
DUMP_ATTEMPTS = 3
"""Dumps flagged NLM_F_DUMP_INTR (the table changed meanwhile) are read again, this often."""
RECV_SIZE = 1 << 16
"""Receive buffer per datagram: the kernel fills dump datagrams up to 32 KiB."""

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, (pad), type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # rtattr: len, type
_ERROR = struct.Struct("=i")  # nlmsgerr.error (then the request's header), NLMSG_DONE's int


class NetlinkError(OSError):
    """The kernel refused a request (``errno`` is its errno), or the exchange failed."""

    def __init__(self, code: int, text: str | None = None) -> None:
        super().__init__(code, text or os.strerror(code))


class NetlinkProtocolError(NetlinkError):
    """A message that does not parse: lengths that do not fit, a fixed part cut short."""

    def __init__(self, text: str) -> None:
        super().__init__(errno.EPROTO, f"malformed netlink message: {text}")


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message: the header's fields and the payload after it."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Link:
    """An RTM_NEWLINK/RTM_DELLINK message (ifinfomsg and the attributes used here)."""

    kind: int  # RTM_NEWLINK or RTM_DELLINK
    family: int
    index: int
    flags: int  # IFF_* (net/if.h)
    ifname: str | None
    operstate: int | None  # IF_OPER_*, see OPERSTATES

    @property
    def operstate_name(self) -> str | None:
        if self.operstate is None:
            return None
        if self.operstate < len(OPERSTATES):
            return OPERSTATES[self.operstate]
        return str(self.operstate)


@dataclass(frozen=True, slots=True)
class Address:
    """An RTM_NEWADDR message of family AF_INET (ifaddrmsg and its addresses)."""

    family: int
    prefixlen: int
    flags: int
    scope: int
    index: int
    local: str | None  # IFA_LOCAL: this host's address
    address: str | None  # IFA_ADDRESS: the same, or the peer on point-to-point links

    @property
    def ip(self) -> str | None:
        """The address this host holds (IFA_LOCAL, else IFA_ADDRESS)."""
        return self.local if self.local is not None else self.address


# -- encoding -------------------------------------------------------------------


def _align(length: int) -> int:
    return (length + 3) & ~3


def encode_attr(kind: int, value: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def encode_message(kind: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    """One netlink message: nlmsghdr and the payload (padded to 4 bytes)."""
    padded = payload + b"\0" * (_align(len(payload)) - len(payload))
    return _HEADER.pack(_HEADER.size + len(padded), kind, flags, seq, pid) + padded


def ifinfo(index: int = 0, family: int = socket.AF_UNSPEC, ifname: str | None = None) -> bytes:
    """An ifinfomsg, with IFLA_IFNAME when ``ifname`` is given (RTM_GETLINK)."""
    body = _IFINFO.pack(family, 0, index, 0, 0)
    if ifname is not None:
        body += encode_attr(IFLA_IFNAME, os.fsencode(ifname) + b"\0")
    return body


def ifaddr(
    index: int = 0,
    family: int = socket.AF_INET,
    prefixlen: int = 0,
    local: str | None = None,
    address: str | None = None,
) -> bytes:
    """An ifaddrmsg (scope global), with IFA_LOCAL and IFA_ADDRESS when given."""
    body = _IFADDR.pack(family, prefixlen, 0, 0, index)
    if local is not None:
        body += encode_attr(IFA_LOCAL, ipaddress.IPv4Address(local).packed)
    if address is not None:
        body += encode_attr(IFA_ADDRESS, ipaddress.IPv4Address(address).packed)
    return body


# -- decoding -------------------------------------------------------------------


def decode_messages(data: bytes) -> list[Message]:
    """The messages of one datagram; :class:`NetlinkProtocolError` if the lengths do not fit."""
    messages = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise NetlinkProtocolError(
                f"{len(data) - offset} bytes left at offset {offset}, less than a header"
            )
        length, kind, flags, seq, pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or length > len(data) - offset:
            raise NetlinkProtocolError(
                f"message length {length} at offset {offset} "
                f"(header {_HEADER.size}, {len(data) - offset} bytes left)"
            )
        messages.append(
            Message(kind, flags, seq, pid, data[offset + _HEADER.size : offset + length])
        )
        offset += _align(length)
    return messages


def decode_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type (without the NLA_F_* bits) -> value; the first of a repeated type wins."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if len(data) - offset < _RTATTR.size:
            if not data[offset:].strip(b"\0"):
                break  # trailing padding
            raise NetlinkProtocolError(f"{len(data) - offset} bytes left, less than an attribute")
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or length > len(data) - offset:
            raise NetlinkProtocolError(
                f"attribute {kind & NLA_TYPE_MASK} length {length} at offset {offset} "
                f"({len(data) - offset} bytes left)"
            )
        attrs.setdefault(kind & NLA_TYPE_MASK, data[offset + _RTATTR.size : offset + length])
        offset += _align(length)
    return attrs


def error_code(message: Message) -> int:
    """The errno of an NLMSG_ERROR (0: an ACK) or NLMSG_DONE (0: complete) message."""
    if message.type == NLMSG_DONE and not message.payload:
        return 0  # older kernels' NLMSG_DONE may carry no int
    if len(message.payload) < _ERROR.size:
        raise NetlinkProtocolError(f"NLMSG_ERROR/DONE with {len(message.payload)} bytes")
    (code,) = _ERROR.unpack_from(message.payload)
    if code >= 0:
        if code and message.type == NLMSG_ERROR:
            raise NetlinkProtocolError(f"NLMSG_ERROR with a positive code {code}")
        return 0  # old kernels put a length into NLMSG_DONE
    if code < -MAX_ERRNO:
        raise NetlinkProtocolError(f"error code {code} is no errno")
    return int(-code)


def _string(value: bytes) -> str:
    return os.fsdecode(value.split(b"\0", 1)[0])


def decode_link(message: Message) -> Link:
    """An RTM_NEWLINK/RTM_DELLINK message."""
    if message.type not in (RTM_NEWLINK, RTM_DELLINK):
        raise NetlinkProtocolError(f"type {message.type} is not a link message")
    if len(message.payload) < _IFINFO.size:
        raise NetlinkProtocolError(f"link message of {len(message.payload)} bytes")
    family, _type, index, flags, _change = _IFINFO.unpack_from(message.payload)
    attrs = decode_attrs(message.payload[_IFINFO.size :])
    name = attrs.get(IFLA_IFNAME)
    operstate = attrs.get(IFLA_OPERSTATE)
    if operstate is not None and len(operstate) < 1:
        raise NetlinkProtocolError("empty IFLA_OPERSTATE")
    return Link(
        kind=message.type,
        family=family,
        index=index,
        flags=flags,
        ifname=None if name is None else _string(name),
        operstate=None if operstate is None else operstate[0],
    )


def decode_address(message: Message) -> Address:
    """An RTM_NEWADDR/RTM_DELADDR message of family AF_INET."""
    if message.type not in (RTM_NEWADDR, RTM_DELADDR):
        raise NetlinkProtocolError(f"type {message.type} is not an address message")
    if len(message.payload) < _IFADDR.size:
        raise NetlinkProtocolError(f"address message of {len(message.payload)} bytes")
    family, prefixlen, flags, scope, index = _IFADDR.unpack_from(message.payload)
    if family != socket.AF_INET:
        raise NetlinkProtocolError(f"address family {family}, expected AF_INET")
    attrs = decode_attrs(message.payload[_IFADDR.size :])
    found: list[str | None] = []
    for kind in (IFA_LOCAL, IFA_ADDRESS):
        value = attrs.get(kind)
        if value is not None and len(value) != 4:
            raise NetlinkProtocolError(f"IPv4 address attribute {kind} of {len(value)} bytes")
        found.append(None if value is None else str(ipaddress.IPv4Address(value)))
    return Address(family, prefixlen, flags, scope, index, found[0], found[1])


# -- the socket -----------------------------------------------------------------


class _Answer:
    """The messages answering one request, collected as they arrive."""

    def __init__(self, port: int, seq: int) -> None:
        self.port = port
        self.seq = seq
        self.messages: list[Message] = []
        self.interrupted = False
        self.done = False

    def take(self, message: Message) -> bool:
        """Take ``message`` if it belongs to this answer; raise the kernel's error."""
        if message.seq != self.seq or message.pid != self.port or self.done:
            return False
        if message.type in (NLMSG_ERROR, NLMSG_DONE):
            code = error_code(message)
            if code:
                raise NetlinkError(code)
            if message.flags & NLM_F_DUMP_INTR:  # the kernel may flag only the end
                self.interrupted = True
            self.done = True
        elif message.type == NLMSG_OVERRUN:
            raise NetlinkProtocolError("NLMSG_OVERRUN: the kernel lost part of the answer")
        elif message.type != NLMSG_NOOP:
            if message.flags & NLM_F_DUMP_INTR:
                self.interrupted = True
            self.messages.append(message)
        return True


class RouteSocket:
    """One NETLINK_ROUTE socket, bound to the multicast ``groups`` (0: none).

    Use it as a (async) context manager or close() it. Requests on one socket
    run one at a time (the agent never overlaps them).
    """

    def __init__(self, groups: int = 0) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            if groups:
                _grow_receive_buffer(self._sock)
            self._sock.bind((0, groups))
            self.port: int = self._sock.getsockname()[0]
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0
        self._events: deque[Message] = deque()

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RouteSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> RouteSocket:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    # -- asynchronous ---------------------------------------------------------

    async def link_index(self, ifname: str) -> int | None:
        """The index of interface ``ifname``, None if there is none."""
        if not _possible_ifname(ifname):
            return None
        try:
            answer = await self._exchange(RTM_GETLINK, 0, ifinfo(ifname=ifname))
        except NetlinkError as error:
            if error.errno == errno.ENODEV:
                return None
            raise
        return _index_of(answer, ifname)

    async def dump_links(self) -> list[Link]:
        """Every link of this network namespace (family AF_UNSPEC)."""
        messages = await self._dump(RTM_GETLINK, ifinfo())
        return [decode_link(m) for m in messages if m.type == RTM_NEWLINK]

    async def addresses(self, index: int) -> list[Address]:
        """The IPv4 addresses of interface ``index``."""
        messages = await self._dump(RTM_GETADDR, ifaddr(index))
        return _addresses_of(messages, index)

    async def add_address(self, index: int, ip: str, prefixlen: int) -> None:
        """Add ``ip/prefixlen``; NetlinkError EEXIST if it is there."""
        body = ifaddr(index, prefixlen=prefixlen, local=ip, address=ip)
        await self._exchange(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    async def delete_address(self, index: int, address: Address) -> None:
        """Remove one address as listed by :meth:`addresses`; EADDRNOTAVAIL if gone."""
        body = ifaddr(
            index, prefixlen=address.prefixlen, local=address.local, address=address.address
        )
        await self._exchange(RTM_DELADDR, 0, body)

    async def events(self) -> list[Message]:
        """The messages that are not answers (multicast events), waiting for at least one."""
        while not self._events:
            if not self._read(None):
                await self._readable()
        events = list(self._events)
        self._events.clear()
        return events

    async def _dump(self, kind: int, body: bytes) -> list[Message]:
        for attempt in range(DUMP_ATTEMPTS):
            answer = self._send(kind, NLM_F_DUMP, body)
            await self._complete(answer)
            if not answer.interrupted or attempt == DUMP_ATTEMPTS - 1:
                break
        return answer.messages

    async def _exchange(self, kind: int, flags: int, body: bytes) -> list[Message]:
        answer = self._send(kind, flags | NLM_F_ACK, body)
        await self._complete(answer)
        return answer.messages

    async def _complete(self, answer: _Answer) -> None:
        while not answer.done:
            if not self._read(answer):
                await self._readable()

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    # -- synchronous ----------------------------------------------------------

    def link_index_sync(self, ifname: str, deadline: float) -> int | None:
        """:meth:`link_index`, blocking until ``deadline`` (time.monotonic()) at most."""
        if not _possible_ifname(ifname):
            return None
        answer = self._send(RTM_GETLINK, NLM_F_ACK, ifinfo(ifname=ifname))
        try:
            self._complete_sync(answer, deadline)
        except NetlinkError as error:
            if error.errno == errno.ENODEV:
                return None
            raise
        return _index_of(answer.messages, ifname)

    def addresses_sync(self, index: int, deadline: float) -> list[Address]:
        """:meth:`addresses`, blocking until ``deadline`` (time.monotonic()) at most."""
        for attempt in range(DUMP_ATTEMPTS):
            answer = self._send(RTM_GETADDR, NLM_F_DUMP, ifaddr(index))
            self._complete_sync(answer, deadline)
            if not answer.interrupted or attempt == DUMP_ATTEMPTS - 1:
                break
        return _addresses_of(answer.messages, index)

    def _complete_sync(self, answer: _Answer, deadline: float) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        while not answer.done:
            if self._read(answer):
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("netlink did not answer in time")
            poller.poll(left * 1000)

    # -- both -----------------------------------------------------------------

    def _send(self, kind: int, flags: int, body: bytes) -> _Answer:
        self._seq = self._seq % 0xFFFFFFFF + 1
        self._sock.sendto(encode_message(kind, NLM_F_REQUEST | flags, self._seq, body), (0, 0))
        return _Answer(self.port, self._seq)

    def _read(self, answer: _Answer | None, most: int = 64) -> int:
        """Read the datagrams waiting (up to ``most``), without blocking; how many."""
        count = 0
        while count < most and not (answer is not None and answer.done):
            try:
                data, _, flags, sender = self._sock.recvmsg(RECV_SIZE, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            count += 1
            if sender[0] != 0:
                continue  # not from the kernel
            if flags & socket.MSG_TRUNC:
                raise NetlinkProtocolError(f"datagram larger than {RECV_SIZE} bytes")
            for message in decode_messages(data):
                if answer is None or not answer.take(message):
                    self._events.append(message)
        return count


def _possible_ifname(ifname: str) -> bool:
    encoded = os.fsencode(ifname)
    return 0 < len(encoded) < IFNAMSIZ and b"\0" not in encoded


def _index_of(messages: list[Message], ifname: str) -> int | None:
    """The index in the answer to a GETLINK by name. The kernel also finds a link by
    one of its alternative names (`ip link property add altname`, udev's `enp3s0`
    beside `eth0`) and answers with the link under its main name."""
    links = [decode_link(m) for m in messages if m.type == RTM_NEWLINK]
    for link in links:
        if link.ifname == ifname:
            return link.index
    return links[0].index if len(links) == 1 else None


EVENT_BUFFER = 1 << 20
"""Receive buffer of an event socket: a burst of link changes (a switch rebooting, a
bond renegotiating) overflows the kernel's default 208 KiB after about 50 changes,
and an overflow costs a re-dump after a backoff (pyroute2 asked for 1 MiB too)."""


def _grow_receive_buffer(sock: socket.socket) -> None:
    """EVENT_BUFFER for ``sock``: past net.core.rmem_max as root, else up to that limit."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
    except OSError:  # not root (CAP_NET_ADMIN): the limit applies
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)


def _addresses_of(messages: list[Message], index: int) -> list[Address]:
    # without NETLINK_GET_STRICT_CHK the kernel ignores the index of a dump request
    found = []
    for message in messages:
        if message.type != RTM_NEWADDR or len(message.payload) < 1:
            continue
        if message.payload[0] != socket.AF_INET:
            continue
        address = decode_address(message)
        if address.index == index:
            found.append(address)
    return found
