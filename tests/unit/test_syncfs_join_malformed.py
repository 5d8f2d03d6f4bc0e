"""(Found by a breaker.) one malformed request in the peers file ends the mount's joins for good.

What breaks: ``join.Joiner`` promises that a peers file "that cannot be read or is
malformed is one line and is otherwise ignored". But a request whose command line holds
a NUL byte (valid JSON: ``"\\u0000"``) passes ``parse_requests``, and starting it raises
``ValueError`` ("embedded null byte") from ``create_subprocess_exec``, which neither
``Channel.start`` (OSError only), ``run_command`` (OSError only) nor ``Joiner._join``
catches. The exception ends ``Joiner.run``, the mount's only joining task, silently (no
line, no answer in the status file). Deeply nested JSON (``RecursionError``, not a
``ValueError``) does the same.

How: the real mount with ``--peers``; its standby lost (degraded); a request whose
catch-up holds a NUL; then a correct request with a new number (what the agent writes
next).

Why it matters: the mount never answers a join again for the rest of its epoch: the
agent waits ``JOIN_WAIT`` (150 s) for each request, says "no answer", retries every
30 s, and the directory stays degraded (block mode: every sync point EIO after
``block_timeout``) until the next promotion, with nothing in the mount's log saying why.

Expected: any bad request (or file) is one line and a ``failed: ...`` answer for that
request, and the next request is served; here the second request joins the standby.
"""

from __future__ import annotations

import contextlib
import json
import shlex

from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import ask_to_join, start_joinable, status, wait_for


def test_a_request_with_a_nul_byte_does_not_end_the_joins(mount: Mount) -> None:  # noqa: F811
    peers, shown = start_joinable(mount, "--ack-timeout", "2")
    w = mount.writer()
    mount.kill_standby()
    w.call("f = open('one', 'wb'); f.write(b'1'); f.close()")
    wait_for(shown, lambda s: s["degraded"])
    bad = {
        "name": "standby",
        "request": 1,
        "channel": shlex.split(mount.channel().partition("=")[2]),
        "catch_up": ["rsync\u0000", "-a", "{under}/", f"{mount.standby}/"],
    }
    peers.write_text(json.dumps({"epoch": mount.epoch, "peers": [bad]}))
    with contextlib.suppress(AssertionError):  # any answer to it will do, or none
        wait_for(shown, lambda s: "standby" in s["joins"], seconds=5)
    ask_to_join(mount, peers, 2)
    try:
        wait_for(shown, lambda s: s["joins"].get("standby", {}).get("request") == 2, seconds=15)
    except AssertionError:
        raise AssertionError(
            f"no answer to a correct request after a malformed one: {status(shown)['joins']}; "
            f"log: {mount.log()[-400:]}"
        ) from None
