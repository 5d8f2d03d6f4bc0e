"""An asyncio route-netlink socket on every pyroute2 this agent supports.

pyroute2 0.9 has ``AsyncIPRoute``. pyroute2 0.7 (Debian 12 ships 0.7.2) has
only the synchronous ``IPRoute``: :class:`LegacyAsyncIPRoute` offers the
calls of ``AsyncIPRoute`` that :mod:`mosqit_failover.effects.vip` and
:mod:`mosqit_failover.probes.links` make, on top of it:

- requests (``link_lookup``, ``addr``, ``link``) run in a worker thread, so a
  kernel that holds the RTNL lock for long does not stall the event loop;
  a dump comes back as an async iterator, as from ``AsyncIPRoute``;
- :meth:`LegacyAsyncIPRoute.get` (the multicast events of a bound socket)
  waits for the socket in the event loop, with no thread: a cancelled link
  monitor leaves no thread blocked in a read behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

try:
    from pyroute2 import AsyncIPRoute as _AsyncIPRoute
except ImportError:  # pyroute2 < 0.8: no asyncio API (feature test, not a version test)
    _AsyncIPRoute = None

from pyroute2 import IPRoute


def async_iproute(groups: int = 0) -> Any:
    """A fresh route-netlink socket with ``AsyncIPRoute``'s calls, bound to ``groups`` on bind()."""
    if _AsyncIPRoute is not None:
        return _AsyncIPRoute(groups=groups) if groups else _AsyncIPRoute()
    return LegacyAsyncIPRoute(groups)


async def _iterate(messages: Iterable[Any]) -> AsyncIterator[Any]:
    for message in messages:
        yield message


class LegacyAsyncIPRoute:
    """pyroute2 0.7's ``IPRoute`` behind the ``AsyncIPRoute`` calls this agent makes."""

    def __init__(self, groups: int = 0) -> None:
        self._groups = groups
        self._ipr: Any = IPRoute()
        self._nonblocking = False

    async def __aenter__(self) -> LegacyAsyncIPRoute:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    async def bind(self) -> None:
        # binding a netlink socket never waits: no thread needed
        self._ipr.bind(groups=self._groups)

    async def link_lookup(self, **match: Any) -> list[int]:
        return list(await asyncio.to_thread(self._ipr.link_lookup, **match))

    async def addr(self, command: str, **kwargs: Any) -> Any:
        return await self._request(self._ipr.addr, command, kwargs)

    async def link(self, command: str, **kwargs: Any) -> Any:
        return await self._request(self._ipr.link, command, kwargs)

    async def _request(self, call: Any, command: str, kwargs: dict[str, Any]) -> Any:
        # 0.7 collects a whole answer (a dump too) into a tuple before returning
        answer = await asyncio.to_thread(call, command, **kwargs)
        if command == "dump":
            return _iterate(answer)
        return answer

    async def get(self) -> AsyncIterator[Any]:
        """The next batch of multicast messages, waiting for it without blocking the loop."""
        if not self._nonblocking:
            # only now: the requests before (the dump after bind) read blocking, in a thread
            self._ipr.setblocking(False)
            self._nonblocking = True
        while True:
            try:
                # messages that arrived during an earlier request wait in the
                # backlog and come back without a read; otherwise one read
                messages = self._ipr.get()
            except (BlockingIOError, InterruptedError):
                await self._readable()
                continue
            for message in messages:
                yield message
            return

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self._ipr.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
