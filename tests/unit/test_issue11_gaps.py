"""Issue 11 (hostile and misconfigured input): the sub-points whose fix was in place but
had no unit test of its own.

- every single-character rsync option, not only the letters, through the receiver's
  decision function (rsync also has -0 -4 -6 -8 -@);
- `mosqit-failover status` as text shows the authentication failure and the fence;
- the safety decisions (peer-auth-failed, fence-failed, manual-peer-lost) reach the
  alert sinks by default and can be named in `alerts.events`;
- a secret file is created exclusively: a link that appears after the check is
  never written through.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover import status_watch
from mosqit_failover.actions import Decision
from mosqit_failover.alerts import Alerter, known_kinds
from mosqit_failover.authkeys import SecretFileError, generate_secret_text, write_secret_file
from mosqit_failover.config import Alerts
from mosqit_failover.events import Role
from mosqit_failover.sync.receive import Refused
from tests.unit.test_alerts import recorder, run, with_worker
from tests.unit.test_sync_receive_hostile import CAPS, SERVER, Receiver
from tests.unit.transcript import Harness, standby

NOT_LETTERS = "0468@"  # rsync's single-character options that are not letters


@pytest.fixture
def rx(tmp_path: Path) -> Receiver:
    return Receiver(tmp_path)


# ---- item 4 / Tests: every single-character rsync option ------------------------------


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_the_parametrized_characters_are_every_short_option_of_the_installed_rsync() -> None:
    """So that 'every single-letter option' is checked against rsync itself."""
    text = subprocess.run(
        ["rsync", "--help"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    short = set(re.findall(r"(?:^|, )-([^-\s,])(?=[,\s])", text, flags=re.MULTILINE))
    assert short, text[:400]
    assert short <= set(string.ascii_letters + NOT_LETTERS), sorted(short)


@pytest.mark.parametrize("char", list(NOT_LETTERS))
def test_a_short_option_that_is_no_letter_is_refused(rx: Receiver, char: str) -> None:
    for command in (
        f"mosqit-sync 5 --server -{char}logtpre.{CAPS} . {{dest}}/",
        f"mosqit-sync 5 --server -logtp{char}re.{CAPS} . {{dest}}/",
        f"mosqit-sync 5 {SERVER} -{char} . {{dest}}/",
    ):
        with pytest.raises(Refused, match="not allowed"):
            rx.decide(command)


# ---- item 1: `status` as text -------------------------------------------------------------


def _status_text(h: Harness) -> str:
    snap: dict[str, Any] = h.core.snapshot(h.now)
    snap.update(
        cluster="sim",
        vip="192.0.2.50/24",
        probes={},
        peer_link={"accepted": 0, "dropped": {"bad-mac": 300}, "from_strangers": 0, "sent": 9},
        recent_decisions=[],
        failovers=0,
        alerts={},
        sync={"dirs": []},
    )
    return status_watch.format_status(snap)


def test_status_shows_that_the_peer_fails_authentication() -> None:
    h = standby()
    h.peer = None
    h.peer_unauthenticated = "bad-mac"
    h.run_until(h.now + 10)
    text = _status_text(h)
    assert (
        "\n  !! messages from peer alpha fail authentication (bad-mac): the secrets differ" in text
    ), text
    assert "peer link  accepted 0, dropped: bad-mac 300" in text
    h.peer_unauthenticated = None  # the secret fixed: the line goes
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(h.now + 5)
    assert "!!" not in _status_text(h)


def test_status_shows_a_failed_fence() -> None:
    h = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    h.peer = None
    h.run_until(h.now + 4)
    text = _status_text(h)
    assert re.search(
        r"\n  fence for epoch \d+: failed ssh fence via 10\.0\.1\.1: no answer", text
    ), text


# ---- items 1-3: the safety decisions are alerted --------------------------------------------


def _safety_decisions() -> list[Decision]:
    """Real decisions of the core: an auth failure, a failed fence, the active lost in MANUAL."""
    auth = standby()
    auth.peer = None
    auth.peer_unauthenticated = "bad-mac"
    auth.run_until(auth.now + 5)
    fence = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    fence.peer = None
    fence.run_until(fence.now + 4)
    manual = standby()
    manual.set_carrier("a", False)
    manual.peer = manual.peer_view(Role.ACTIVE, 1, uplinks=(("a", False), ("b", True)))
    manual.peer_networks = ("b",)
    manual.run_until(manual.now + 3)
    assert manual.core.manual
    start = manual.now
    manual.peer = None
    manual.echo_answers = {"a": False, "b": False}
    manual.run_until(start + 10)
    wanted = {"peer-auth-failed", "fence-failed", "manual-peer-lost"}
    found = {
        d.kind: d
        for h in (auth, fence, manual)
        for d in h.decisions()
        if d.kind in wanted  # the first of each kind
    }
    assert set(found) == wanted, found
    return [found[k] for k in sorted(wanted)]


def test_the_safety_decisions_reach_an_alert_hook_by_default(tmp_path: Path) -> None:
    decisions = _safety_decisions()
    assert {d.kind for d in decisions} <= set(known_kinds())  # alerts.events may name them
    alerter = Alerter(Alerts(hooks=(str(recorder(tmp_path)),)), "sim", "beta")

    async def body() -> None:
        for decision in decisions:
            alerter.decision(decision)
        assert await alerter.drain(10)

    run(lambda: with_worker(alerter, body))
    for n, decision in enumerate(decisions, 1):
        env = dict(line.split("=", 1) for line in (tmp_path / f"env-{n}").read_text().splitlines())
        assert env["MOSQIT_EVENT"] == decision.kind
        assert env["MOSQIT_TEXT"] == decision.text
    texts = [d.text for d in decisions]
    assert any("fail authentication" in t for t in texts)
    assert any("force-active" in t and "MANUAL" in t for t in texts)


# ---- item 8: created exclusively ---------------------------------------------------------


@pytest.mark.parametrize("dangling", [True, False])
def test_a_link_that_appears_after_the_check_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dangling: bool
) -> None:
    """The lstat check and the create are two steps: O_EXCL|O_NOFOLLOW closes the gap."""
    target = tmp_path / "elsewhere"
    if not dangling:
        target.write_text("keep me\n")
    path = tmp_path / "secret"
    real_lstat = os.lstat
    planted: list[Path] = []

    def lstat_then_race(p: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(p) == str(path) and not planted:
            planted.append(path)
            os.symlink(target, path)  # planted between the check and the create
            raise FileNotFoundError(2, "No such file or directory", str(p))
        return real_lstat(p, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat_then_race)  # authkeys calls os.lstat
    with pytest.raises(SecretFileError, match="already exists"):
        write_secret_file(path, generate_secret_text())
    monkeypatch.undo()
    assert planted and path.is_symlink()
    if dangling:
        assert not target.exists()
    else:
        assert target.read_text() == "keep me\n"
