"""terminal_safe: what an operator's terminal is shown of text from outside."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from mosqit_failover.journal import DecisionLog
from mosqit_failover.terminal import (
    SafeFormatter,
    SafeWriter,
    escaped_output,
    terminal_safe,
    write_control,
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[31mred", "a\\x1b[31mred"),  # colour: an escape sequence
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # retitle the window
        ("\x9b2J", "\\x9b2J"),  # C1 CSI: clears the screen on some terminals
        ("a\x7fb\x00c\rd", "a\\x7fb\\x00c\\x0dd"),  # DEL, NUL, a carriage return
        ("/srv/\udcfe.dat", "/srv/\\xfe.dat"),  # a file name that is not UTF-8
        ("role \ud800 \udc41", "role \\ud800 \\udc41"),  # lone surrogates from JSON
    ],
)
def test_what_a_terminal_acts_on_is_shown_as_its_code(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown
    terminal_safe(text).encode("utf-8")  # strict: a UTF-8 stdout can write it


def test_tabs_line_feeds_and_letters_of_any_script_pass_unchanged() -> None:
    text = "node\tälpha\nΣ 状态 ✓"
    assert terminal_safe(text) == text


def test_inside_escaped_output_every_print_is_escaped_but_own_control_sequences(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with escaped_output():
        print("decision \x1b]0;PWNED\x07 from a peer")
        print("error \x9b2J from a remote shell", file=sys.stderr)
        write_control(sys.stdout, "\x1b[H")  # the program's own redraw
        sys.stdout.flush()
    print("\x1b[0m after")  # restored: the wrapper is gone
    out, err = capsys.readouterr()
    assert out == "decision \\x1b]0;PWNED\\x07 from a peer\n\x1b[H\x1b[0m after\n"
    assert err == "error \\x9b2J from a remote shell\n"


def test_the_wrapper_is_the_stream_it_wraps_for_everything_else() -> None:
    inner = io.StringIO()
    writer = SafeWriter(inner)
    assert writer.write("a\x1bb") == 3  # the caller's count, as TextIO.write returns
    assert inner.getvalue() == "a\\x1bb" and writer.getvalue() == "a\\x1bb"
    assert writer.isatty() is False


def test_an_agent_run_by_hand_without_journald_writes_its_lines_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # rsync's or a fence's stderr in a note; the agent's stderr is a terminal then
    DecisionLog(use_journal=False).note("rsync: \x1b]0;PWNED\x07 vanished", priority=4)
    assert capsys.readouterr().err == "<4>rsync: \\x1b]0;PWNED\\x07 vanished\n"


def test_an_ascii_terminal_gets_what_it_cannot_show_as_escapes() -> None:
    raw = io.BytesIO()
    ascii_terminal = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    SafeWriter(ascii_terminal).write("Knoten älpha \x1b[2J\n")
    ascii_terminal.flush()
    assert raw.getvalue() == b"Knoten \\xe4lpha \\x1b[2J\n"


def test_a_closed_stream_stays_none_and_nothing_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", None)  # python's stdout when fd 1 was closed
    with escaped_output():
        print("lost, as print() loses it without the wrapper")
        assert sys.stdout is None
    assert sys.stdout is None


def test_log_lines_of_an_agent_run_by_hand_are_escaped() -> None:
    record = logging.LogRecord(
        "a", logging.ERROR, "", 0, "hook stderr: %s", ("\x1b]0;x\x07",), None
    )
    assert SafeFormatter("%(message)s").format(record) == "hook stderr: \\x1b]0;x\\x07"
