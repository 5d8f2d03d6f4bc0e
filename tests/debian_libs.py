"""Check that this Python runs the agent on Debian's own libraries, not PyPI's.

`make test` runs the unit tests a second time in `.venv-debian` (Debian's
/usr/bin/python3 with --system-site-packages, the test tools from PyPI): the
.deb depends on Debian 12's python3-* packages, so the code must work with
them. A PyPI copy of one of these libraries in that venv (pulled in by a test
tool's dependencies, say) would hide an incompatibility; this fails instead.

Usage: .venv-debian/bin/python tests/debian_libs.py   (exit 1 if any is not Debian's)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

DIST_PACKAGES = "/usr/lib/python3/dist-packages/"

# import name -> (distribution name, Debian 12 package that provides it)
LIBRARIES = {
    "icmplib": ("icmplib", "python3-icmplib"),
    "paramiko": ("paramiko", "python3-paramiko"),
    "scapy": ("scapy", "python3-scapy"),
    "prometheus_client": ("prometheus-client", "python3-prometheus-client"),
}


def check(name: str, distribution: str, package: str) -> str | None:
    """None if ``name`` imports from Debian's dist-packages, else the one-line problem."""
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        return f"{name}: cannot import ({error}); fix: apt-get install {package}"
    where = str(getattr(module, "__file__", None) or "")
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    print(f"{name:18} {version:10} {where}")
    if not where.startswith(DIST_PACKAGES):
        return (
            f"{name} {version} comes from {where or 'nowhere'}, not {DIST_PACKAGES}; fix: "
            f"pip uninstall {distribution} in this venv (Debian's {package} must be used)"
        )
    return None


def main() -> int:
    problems = []
    if sys.base_prefix != "/usr":  # a venv of pyenv's Python cannot see dist-packages
        problems.append(
            f"this venv is made from {sys.base_prefix}'s Python, not Debian's; fix: "
            "rm -rf .venv-debian and make install (it uses /usr/bin/python3)"
        )
    problems += [
        problem
        for name, (distribution, package) in LIBRARIES.items()
        if (problem := check(name, distribution, package)) is not None
    ]
    for problem in problems:
        print(f"debian_libs: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
