"""The persisted epoch and role: one small JSON file, replaced atomically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from mosqit_failover.effects import EffectError
from mosqit_failover.events import Role

VERSION = 1
"""The file format written by :meth:`StateFile.save`; :meth:`StateFile.load` accepts only it."""

_TEMP_MARK = ".tmp-"


class StateError(EffectError):
    """The state file cannot be read or written; the message names the path and the fix."""


class StateFile:
    """The node's last epoch and role, kept across restarts and crashes.

    Content: ``{"version": 1, "epoch": N, "role": "ACTIVE", "data_epoch": M}``;
    ``data_epoch`` (the newest epoch whose data this node received in full, or
    one below an epoch whose writes it missed) is optional, 0 when absent, and an
    older agent ignores it.

    Guarantees:

    - :meth:`save` is atomic and durable: the content goes to a temporary file
      in the same directory, which is fsynced, renamed over the state file,
      and then the directory is fsynced. After a crash at any point the file
      holds either the old or the new state, never a mix; a temporary file left
      behind by a crash is ignored by :meth:`load` (and removed by the next
      :meth:`save`). The directory is created if missing.
    - :meth:`load` returns ``(0, Role.WAITING)`` only when the file does not
      exist (a node that never ran). A file that exists but cannot be read or
      parsed raises :class:`StateError`: it never falls back to epoch 0, since
      a lost epoch could let stale data win.
    - Concurrent saves (from several threads) are serialized; the last one wins.
    - Both are synchronous and do disk I/O (fsync may take a while on a busy
      disk): from the event loop use :meth:`save_async` / :meth:`load_async`,
      which run them in a worker thread. There is no timeout: a disk that
      hangs hangs the caller's worker thread, not the event loop.
    - Raises only :class:`StateError`.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # concurrent saves must not remove each other's temp

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"

    def load(self) -> tuple[int, Role]:
        """The saved (epoch, role); (0, WAITING) if the file does not exist."""
        epoch, role, _ = self.load_full()
        return epoch, role

    def load_full(self) -> tuple[int, Role, int]:
        """The saved (epoch, role, data epoch) from one read of the file; (0, WAITING, 0)
        if it does not exist. Raises StateError like :meth:`load`."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0, Role.WAITING, 0
        except OSError as error:
            raise StateError(
                f"cannot read the state file {self.path}: {error.strerror or error}; "
                "fix its permissions (the agent runs as root and needs read/write access "
                "to it and its directory)"
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
            epoch, role = _parse(data)
            return epoch, role, _data_epoch(data)
        except (UnicodeDecodeError, json.JSONDecodeError, _Invalid) as error:
            raise StateError(
                f"the state file {self.path} is corrupt ({error}); it holds this node's "
                "epoch, so it is not ignored. Fix: restore it from a backup, or, only if "
                "you know this node's data is older than its peer's, delete it (the node "
                "then starts as WAITING with epoch 0 and takes the peer's data)"
            ) from None

    def save(self, epoch: int, role: Role) -> None:
        """Replace the file with (epoch, role), atomically and durably; the data epoch
        already saved stays."""
        _check_epoch(epoch)
        with self._lock:
            data_epoch = self._saved_data_epoch()
            self._write(epoch, role, data_epoch)

    def load_data_epoch(self) -> int:
        """The saved data epoch; 0 if the file or the key does not exist. Raises StateError
        like :meth:`load` for a file that cannot be read or parsed."""
        self.load()
        return self._saved_data_epoch()

    def save_data_epoch(self, data_epoch: int) -> None:
        """Replace the data epoch (the core's: raised when the active lists this node in
        sync, lowered when it withdraws it), atomically and durably like :meth:`save`;
        the epoch and role saved stay. Callers write one value at a time, in the core's
        order (the daemon's single writer): the last call is what the file holds.

        A saved value that is no whole number reads as 0: less fresh, the safe side."""
        _check_epoch(data_epoch)
        with self._lock:
            epoch, role = self.load()
            if data_epoch != self._saved_data_epoch():
                self._write(epoch, role, data_epoch)

    def _saved_data_epoch(self) -> int:
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return 0
        return _data_epoch(data)

    def _write(self, epoch: int, role: Role, data_epoch: int) -> None:
        record: dict[str, object] = {"version": VERSION, "epoch": epoch, "role": role.value}
        if data_epoch:
            record["data_epoch"] = data_epoch
        self._save(self.path.parent, json.dumps(record))

    def _save(self, directory: Path, content: str) -> None:
        temp = ""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}{_TEMP_MARK}", dir=directory)
            try:
                os.write(fd, (content + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
            temp = ""
            _fsync_directory(directory)
        except OSError as error:
            raise StateError(
                f"cannot save the state file {self.path}: {error.strerror or error}; "
                f"check that {directory} exists, is writable by the agent and its disk "
                "is not full or read-only"
            ) from None
        finally:
            if temp:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    async def save_async(self, epoch: int, role: Role) -> None:
        """:meth:`save` in a worker thread (fsync must not stall the event loop)."""
        import asyncio  # here: the sync receiver reads the state file and needs no loop

        await asyncio.to_thread(self.save, epoch, role)

    async def load_async(self) -> tuple[int, Role]:
        """:meth:`load` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.load)

    def _remove_stale_temps(self) -> None:
        for stale in self.path.parent.glob(f".{self.path.name}{_TEMP_MARK}*"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a whole number >= 0, not {epoch!r}")


class _Invalid(ValueError):
    pass


def _parse(data: object) -> tuple[int, Role]:
    if not isinstance(data, dict):
        raise _Invalid("not a JSON object")
    version = data.get("version")
    if version != VERSION:
        raise _Invalid(f"version {version!r}, this agent reads version {VERSION}")
    epoch = data.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _Invalid(f"epoch {epoch!r} is not a whole number >= 0")
    try:
        role = Role(data.get("role"))
    except ValueError:
        raise _Invalid(f"role {data.get('role')!r} is not one of the roles") from None
    return epoch, role


def _data_epoch(data: object) -> int:
    """The data epoch of a parsed file: a value that is no whole number reads as 0 (less
    fresh, the safe side)."""
    value = data.get("data_epoch", 0) if isinstance(data, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DataEpochWriter:
    """Writes the core's data epoch to a StateFile, off the event loop.

        writer = DataEpochWriter(state, note)
        writer.write(epoch)  # returns at once; the file follows

    Guarantees: one write at a time, in the order asked (a withdrawal and the record
    after it never overtake each other in threads), so the file ends with the last
    value asked for; a value asked for while another is being written replaces any
    still waiting (a flapping verdict costs at most two writes in a row). A failed
    write is told to ``note`` (one line naming the file and the fix) and the next
    value is still written. Call :meth:`write` from the event loop only.
    """

    def __init__(self, state: StateFile, note: Callable[[str], None]) -> None:
        self._state = state
        self._note = note
        self._wanted: int | None = None
        self.writing: asyncio.Task[None] | None = None  # the writer while it runs

    def write(self, epoch: int) -> None:
        self._wanted = epoch
        if self.writing is None:
            self.writing = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._wanted is not None:
                epoch, self._wanted = self._wanted, None
                try:
                    await asyncio.to_thread(self._state.save_data_epoch, epoch)
                except EffectError as error:
                    self._note(f"cannot record data epoch {epoch}: {error}")
        finally:
            self.writing = None
