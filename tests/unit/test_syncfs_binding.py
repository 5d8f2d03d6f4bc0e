"""The FUSE binding: pyfuse3's asyncio layer under either of its names."""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

import pytest

from mosqit_failover.syncfs import binding


def version() -> tuple[int, ...]:
    return tuple(int(x) for x in importlib.metadata.version("pyfuse3").split(".")[:2])


def test_the_layer_of_the_installed_pyfuse3_is_found_and_switches_it_to_asyncio() -> None:
    layer = binding.asyncio_layer()
    # Debian 12's 3.2 has only pyfuse3_asyncio; 3.4.0 moved it to pyfuse3.asyncio (3.4.2
    # dropped the old name): PyPI's newest has only that
    expected = "pyfuse3.asyncio" if version() >= (3, 4) else "pyfuse3_asyncio"
    assert layer.__name__ == expected
    binding.enable_asyncio()
    pyfuse3 = importlib.import_module("pyfuse3")
    assert pyfuse3.trio is layer  # pyfuse3 now awaits through asyncio
    layer.disable()


def test_the_old_name_is_used_where_the_new_one_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = ModuleType("pyfuse3_asyncio")
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == "pyfuse3.asyncio":
            raise ModuleNotFoundError("No module named 'pyfuse3.asyncio'")
        if name == "pyfuse3_asyncio":
            return old
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    assert binding.asyncio_layer() is old


def test_no_binding_is_one_line_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, package: str | None = None) -> ModuleType:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(binding.BindingError) as caught:
        binding.asyncio_layer()
    assert "apt-get install fuse3 python3-pyfuse3" in str(caught.value)
    assert "pip install pyfuse3" in str(caught.value)
    assert "\n" not in str(caught.value)
