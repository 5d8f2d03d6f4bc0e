"""Side-effect executors: the small classes the asyncio shell uses to turn actions into syscalls.

- :mod:`.vip`: add/remove the virtual IP with netlink (:class:`~.vip.Vip`).
- :mod:`.garp`: announce the VIP with gratuitous ARP (:class:`~.garp.Garp`).
- :mod:`.resources`: start/stop/check protected services (:func:`~.resources.make_runner`).
- :mod:`.state`: the persisted epoch and role (:class:`~.state.StateFile`).
- :mod:`.agent_lock`: one agent per node (:class:`~.agent_lock.AgentLock`).

Every executor is idempotent and asyncio-friendly (nothing blocks the event
loop for more than a few milliseconds) and reports failure by raising
:class:`EffectError`, whose message says what failed and how to fix it.
"""

from __future__ import annotations


class EffectError(Exception):
    """An effect could not be carried out; the message says what failed and how to fix it."""


class StartRefused(EffectError):
    """The agent must not start here as things are, and starting again will not change
    that (another agent runs, the state was lost): the command exits 78, which the
    unit does not restart. The message says what to do."""
