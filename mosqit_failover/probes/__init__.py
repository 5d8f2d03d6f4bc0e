"""Probes: the only places in the agent that read the network state.

Each probe turns what it observes into plain callbacks, which the daemon turns
into core events; the core itself never touches a socket or a netlink handle.

- :class:`~mosqit_failover.probes.links.LinkMonitor`: carrier of the uplinks,
  from netlink link events (RTNLGRP_LINK), never by polling.
- :class:`~mosqit_failover.probes.echo.EchoProber`: ICMP echo to one target on
  a fixed cadence, one report per probe. The probers of one event loop share
  one filtered raw socket per source address and one timer per interval, so
  four probers at 10 Hz wake the agent about ten times a second.

Both log to the ``mosqit_failover.probes`` logger and never crash on a socket
error: they count it, re-open what they need, and keep reporting.
"""

from .echo import EchoProber
from .links import LinkMonitor

__all__ = ["EchoProber", "LinkMonitor"]
