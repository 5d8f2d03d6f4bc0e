"""terminal_safe: what an operator's terminal is shown of text from outside."""

from __future__ import annotations

import pytest

from mosqit_failover.terminal import terminal_safe


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[31mred", "a\\x1b[31mred"),  # colour: an escape sequence
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # retitle the window
        ("\x9b2J", "\\x9b2J"),  # C1 CSI: clears the screen on some terminals
        ("a\x7fb\x00c\rd", "a\\x7fb\\x00c\\x0dd"),  # DEL, NUL, a carriage return
        ("/srv/\udcfe.dat", "/srv/\\xfe.dat"),  # a file name that is not UTF-8
    ],
)
def test_what_a_terminal_acts_on_is_shown_as_its_code(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown
    terminal_safe(text).encode("utf-8")  # strict: a UTF-8 stdout can write it


def test_tabs_line_feeds_and_letters_of_any_script_pass_unchanged() -> None:
    text = "node\tälpha\nΣ 状态 ✓"
    assert terminal_safe(text) is not None and terminal_safe(text) == text
