"""Where stores live: URL -> Zarr store, and the one-writer lock.

- a local path (the default). zarr's LocalStore writes every key to a temporary file and renames it over
  the target, so a killed writer never leaves a torn chunk or ``zarr.json``;
- ``memory://name`` for tests: one in-process store per name while a writer holds it open, so readers
  opened meanwhile find the same data; the writer's ``close()`` frees it (handles already open keep
  reading what they see), so a test suite or a long process does not accumulate stores;
- any fsspec URL (``s3://bucket/key`` ...) through zarr's FsspecStore.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zarr.abc.store import Store as ZarrStore
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from mimicdata.errors import ReadOnlyError, StoreLockedError, storage_error

LOCK_NAME = "mimicdata.lock"
_MEMORY: dict[str, dict[str, Any]] = {}        # name -> the bytes of a memory store a writer has open
_MEMORY_LOCKS: dict[str, dict[str, Any]] = {}  # name -> lock info of that writer
_GUARD = threading.Lock()


@dataclass(frozen=True)
class Location:
    """A parsed store URL."""

    url: str
    kind: str          # "local", "memory" or "fsspec"
    path: Path | None  # for local stores

    def __str__(self) -> str:
        return self.url


def parse_url(url: str | os.PathLike[str]) -> Location:
    text = os.fspath(url)
    if text.startswith("memory://"):
        return Location(text, "memory", None)
    if "://" in text and not text.startswith("file://"):
        return Location(text, "fsspec", None)
    path = Path(text.removeprefix("file://")).expanduser().absolute()
    return Location(str(path), "local", path)


def zarr_store(loc: Location, *, read_only: bool, storage_options: dict[str, Any] | None = None) -> ZarrStore:
    """Open the Zarr store behind a location."""
    if loc.kind == "memory":
        with _GUARD:  # a new mapping is registered under the name only once a writer locks it
            mapping = _MEMORY.get(loc.url, {})
        return MemoryStore(mapping, read_only=read_only)
    if loc.kind == "fsspec":
        return FsspecStore.from_url(loc.url, storage_options=storage_options or {}, read_only=read_only)
    assert loc.path is not None
    return LocalStore(loc.path, read_only=read_only)


def forget_memory_store(url: str) -> None:
    """Drop an in-memory store now, even while a writer has it open (its handles keep their data)."""
    with _GUARD:
        _MEMORY.pop(url, None)
        _MEMORY_LOCKS.pop(url, None)


# ------------------------------------------------------------------------------------------------ lock
def _process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) so a recycled pid is not mistaken for the holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host exists and is not a zombie (killed, not yet reaped: it holds nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _process_state(pid) != "Z"


def _holder_alive(info: dict[str, Any]) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # cannot check another machine: assume alive
    pid = int(info.get("pid", -1))
    if not pid_alive(pid):
        return False
    start = info.get("proc_start")
    return start is None or _process_start(pid) in (None, start)


def _lock_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _process_start(os.getpid()),
            "since": time.time()}


def _describe(info: dict[str, Any]) -> str:
    age = time.time() - float(info.get("since", time.time()))
    return f"pid {info.get('pid')} on {info.get('host')}, for {age:.0f} s"


class WriterLock:
    """One writer per store. Local stores use an O_EXCL lock file; a lock left by a dead process on this
    host is detected (pid gone or recycled) and taken over. Remote stores use a lock object (best effort:
    object stores have no exclusive create), and memory stores an in-process table."""

    def __init__(self, loc: Location, zstore: ZarrStore) -> None:
        self.loc = loc
        self.zstore = zstore
        self.held = False
        self._memory_info: dict[str, Any] | None = None  # this writer's entry in _MEMORY_LOCKS

    def acquire(self, *, break_lock: bool = False) -> None:
        if self.loc.kind == "memory":
            with _GUARD:
                info = _MEMORY_LOCKS.get(self.loc.url)
                if info and not break_lock:
                    raise StoreLockedError(f"{self.loc}: already open for writing ({_describe(info)})")
                self._memory_info = _MEMORY_LOCKS[self.loc.url] = _lock_info()
                _MEMORY[self.loc.url] = self.zstore._store_dict  # type: ignore[attr-defined]
        elif self.loc.kind == "local":
            self._acquire_file(break_lock)
        else:
            self._acquire_object(break_lock)
        self.held = True

    def _acquire_file(self, break_lock: bool) -> None:
        assert self.loc.path is not None
        path = self.loc.path / LOCK_NAME
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    info = json.loads(path.read_text() or "{}")
                except (OSError, ValueError):
                    info = {}
                if info and _holder_alive(info) and not break_lock:
                    raise StoreLockedError(
                        f"{self.loc}: another writer holds the store ({_describe(info)}); "
                        f"close it first, or pass break_lock=True if you are sure it is gone") from None
                try:
                    path.unlink(missing_ok=True)  # stale lock of a dead process: clear it and retry
                except OSError as exc:
                    raise storage_error(exc, f"{self.loc}: cannot clear a stale writer lock") from None
                continue
            except PermissionError as exc:
                raise ReadOnlyError(f"{self.loc}: cannot write here ({exc.strerror})") from None
            except OSError as exc:
                raise storage_error(exc, f"{self.loc}: cannot create the writer lock") from None
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(_lock_info(), fh)
            except OSError as exc:  # disk full: an empty lock file would read as stale, but leave none
                path.unlink(missing_ok=True)
                raise storage_error(exc, f"{self.loc}: cannot write the writer lock") from None
            return
        raise StoreLockedError(f"{self.loc}: could not take the writer lock")

    def _acquire_object(self, break_lock: bool) -> None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        existing = sync(self.zstore.get(LOCK_NAME, prototype=default_buffer_prototype()))
        if existing is not None and not break_lock:
            info = json.loads(existing.to_bytes() or b"{}")
            if _holder_alive(info):
                raise StoreLockedError(f"{self.loc}: another writer holds the store ({_describe(info)})")
        buf = default_buffer_prototype().buffer.from_bytes(json.dumps(_lock_info()).encode())
        sync(self.zstore.set(LOCK_NAME, buf))

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.loc.kind == "memory":
            _free_memory_store(self.loc.url, self._memory_info)
        elif self.loc.kind == "local":
            assert self.loc.path is not None
            try:
                (self.loc.path / LOCK_NAME).unlink(missing_ok=True)
            except OSError:  # remounted read-only: the lock names a dead pid once this process ends
                pass
        else:
            from zarr.core.sync import sync

            sync(self.zstore.delete(LOCK_NAME))


def _free_memory_store(url: str, info: dict[str, Any] | None) -> None:
    """A memory store's writer closed: forget the name (unless another writer broke the lock since)."""
    with _GUARD:
        if _MEMORY_LOCKS.get(url) is info:
            _MEMORY_LOCKS.pop(url, None)
            _MEMORY.pop(url, None)
