"""A config that check-config accepts on a node: with a secret file of its own."""

from __future__ import annotations

from pathlib import Path

from mosqit_failover.authkeys import generate_secret_text, write_secret_file


def with_secret(text: str, directory: Path) -> str:
    """`text` (a config with `[cluster]`) naming a fresh secret file in `directory`:
    check-config on a node reads it as the agent does."""
    secret = directory / "secret"
    if not secret.exists():
        write_secret_file(secret, generate_secret_text())
    assert text.count("[cluster]\n") == 1
    return text.replace("[cluster]\n", f'[cluster]\nsecret_file = "{secret}"\n')
