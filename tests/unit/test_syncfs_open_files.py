"""The file system process holds one descriptor per file the services hold open.

``SyncFS.open``/``create`` answer with ``FileInfo(fh=os.open(...))``, so every descriptor a
service has open on the mount is one in the mount process too. Under systemd that process
is a transient unit with systemd's soft NOFILE limit 1024 (Debian 12:
DefaultLimitNOFILE=1024:524288): a service allowed many files got EMFILE from the mount
after ~1011 (breaker's finding 9). The mount raises its soft limit to its hard limit at
its start; the prelude ``ulimit -Sn 1024`` reproduces the transient unit's default.
"""

from __future__ import annotations

from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)


def test_a_service_may_hold_more_than_1024_files_open_on_the_mount(mount: Mount) -> None:  # noqa: F811
    mount.start(prelude="ulimit -Sn 1024;")
    w = mount.writer()
    w.call("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))")
    w.call("fds = []")
    code = (
        "n = 0\n"
        "err = None\n"
        "for i in range(1500):\n"
        "    try:\n"
        "        fds.append(os.open(f'f{i}', os.O_WRONLY | os.O_CREAT, 0o644)); n += 1\n"
        "    except OSError as e:\n"
        "        err = e.strerror; break\n"
        "result = [n, err]\n"
    )
    opened = w.call(code, timeout=120)
    w.call("[os.close(fd) for fd in fds]", timeout=120)
    assert opened == [1500, None], opened
