"""Through the mount, as on a plain directory, a new entry in a setgid directory takes the
directory's group (the kernel's rule shared spools and team directories rely on: ``chmod
g+s``), and a new directory keeps the setgid bit; the standby's copy the same.
"""

from __future__ import annotations

import os

from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)

GROUP = 4321


def test_a_new_entry_in_a_setgid_directory_takes_the_directorys_group(mount: Mount) -> None:  # noqa: F811
    mount.start()
    w = mount.writer()
    w.call(f"os.mkdir('team'); os.chown('team', 0, {GROUP}); os.chmod('team', 0o2775)")
    w.call(
        "f = open('team/report', 'wb'); f.write(b'x'); f.close(); os.mkdir('team/sub');"
        "os.symlink('report', 'team/link')"
    )
    names = ("team/report", "team/sub", "team/link")
    seen = w.call(f"result = [os.lstat(p).st_gid for p in {list(names)!r}]")
    assert seen == [GROUP] * 3, seen  # the kernel's rule, as on the plain directory
    assert w.call("result = os.stat('team/sub').st_mode & 0o2000") == 0o2000
    assert [os.lstat(mount.standby / p).st_gid for p in names] == [GROUP] * 3
    assert os.stat(mount.standby / "team/sub").st_mode & 0o2000 == 0o2000


def test_without_setgid_a_new_entry_takes_the_callers_group(mount: Mount) -> None:  # noqa: F811
    mount.start()
    w = mount.writer()
    w.call(f"os.mkdir('plain'); os.chown('plain', 0, {GROUP}); os.chmod('plain', 0o775)")
    w.call("f = open('plain/report', 'wb'); f.close(); os.mkdir('plain/sub')")
    mine = w.call("result = os.getgid()")
    seen = w.call("result = [os.stat(p).st_gid for p in ('plain/report', 'plain/sub')]")
    assert seen == [mine, mine], seen
    assert [os.stat(mount.standby / p).st_gid for p in ("plain/report", "plain/sub")] == seen
