"""Chunk-level IO: whole chunks encoded and decoded with the array's own codec chain, concurrently.

zarr-python's generic path reads, decodes, merges and re-encodes the partial last chunk through several
layers of asyncio machinery: several milliseconds per array per append, and a read pays the same
machinery per chunk. An append only ever touches the chunks from the one holding row ``start`` to the
one holding row ``stop - 1``, and the writer knows every row of them (the committed tail of the first
chunk is cached), so it encodes those chunks itself — transpose, little-endian bytes, blosc, exactly the
codec chain in the array's ``zarr.json`` — and stores each with one ``set``. Reads fetch and decode the
chunks of a row range the same way. Arrays with any other codec chain use zarr.

Two measured choices:

- A blosc frame describes itself (compressor, level, shuffle and sizes are in its header; every blosc
  decoder, tensorstore's included, reads them from there). The *last, partly filled* chunk, which the
  next append rewrites anyway, is therefore stored with lz4 level 1 (~0.3 ms for a 4096 x 29 float32
  chunk, against ~1 ms at zstd 3 and ~6 ms at zstd 7); a chunk is encoded with the array's own settings
  once it is full, and on ``close()``. The store stays plain Zarr v3.
- Encoding, decoding and file IO of independent chunks run in a small thread pool: blosc, numpy copies
  and file reads/writes release the GIL, so a 2-core machine encodes two chunks at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import numpy as np
from numcodecs import Blosc
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, MemoryStore

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
PARTIAL_CODEC = {"cname": "lz4", "clevel": 1}  # a last chunk that the next append rewrites

T = TypeVar("T")
R = TypeVar("R")


class ChunkCodec:
    """Encoder/decoder of whole chunks of one array (regular grid, default keys, one chunk across the
    non-row dimensions, codec chain [transpose] bytes(little) [blosc])."""

    def __init__(self, path: str, dtype: np.dtype, chunk_shape: tuple[int, ...], fill: Any,
                 order: tuple[int, ...] | None, blosc: dict[str, Any] | None) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.chunk_shape = chunk_shape
        self.chunk_rows = chunk_shape[0]
        self.fill = fill
        self.order = order
        self.inverse = tuple(np.argsort(order)) if order else None
        self.stored_shape = tuple(chunk_shape[i] for i in order) if order else chunk_shape
        self.little = self.dtype.newbyteorder("<")
        self.blosc = Blosc(**blosc) if blosc else None
        self.partial = Blosc(**{**blosc, **PARTIAL_CODEC}) if blosc else None
        self._scratch: np.ndarray | None = None  # the last partly filled chunk, in stored order
        self._scratch_index, self._scratch_rows = -1, 0

    @classmethod
    def for_array(cls, array: Any) -> ChunkCodec | None:
        """The codec of a zarr array, or None when its layout is not one this module knows."""
        meta = array.metadata.to_dict()
        grid = meta.get("chunk_grid", {})
        keys = meta.get("chunk_key_encoding", {})
        if grid.get("name") != "regular" or keys.get("name") != "default":
            return None
        if keys.get("configuration", {}).get("separator", "/") != "/":
            return None
        if tuple(array.chunks[1:]) != tuple(array.shape[1:]):
            return None  # only one chunk across the non-row dimensions
        order: tuple[int, ...] | None = None
        blosc: dict[str, Any] | None = None
        for codec in meta.get("codecs", []):
            name, conf = codec.get("name"), codec.get("configuration", {}) or {}
            if name == "transpose":
                order = tuple(conf["order"])
            elif name == "bytes":
                if conf.get("endian", "little") != "little":
                    return None
            elif name == "blosc" and blosc is None:
                blosc = {"cname": conf["cname"], "clevel": conf["clevel"], "shuffle": _SHUFFLE[conf["shuffle"]],
                         "blocksize": conf.get("blocksize", 0),
                         "typesize": conf.get("typesize", array.dtype.itemsize)}
            else:
                return None
        return cls(array.path, array.dtype, tuple(array.chunks), array.fill_value, order, blosc)

    def key(self, chunk_index: int) -> str:
        """Store key of chunk ``chunk_index`` along the rows (default v3 key encoding)."""
        return f"{self.path}/c/" + "/".join([str(chunk_index)] + ["0"] * (len(self.chunk_shape) - 1))

    def encode(self, rows: np.ndarray, *, partial: bool = False, index: int = -1, keep: int = 0) -> bytes:
        """Bytes of the chunk whose first ``len(rows)`` rows are ``rows`` (the rest is the fill value).

        ``partial`` uses the cheap codec for a chunk that is still filling up. A chunk shorter than the
        chunk size is assembled in a scratch buffer kept between calls: when it is chunk ``index`` again
        and its first ``keep`` rows are known unchanged (the committed tail), only the rows after them
        are copied. Callers serialise encodes of one array (appends hold the store's write guard).
        """
        if len(rows) == self.chunk_rows:
            data = rows.transpose(self.order) if self.order else rows
            raw = np.ascontiguousarray(data, dtype=self.little)
        else:
            raw = self._fill_scratch(rows, index, keep)
        codec = self.partial if partial else self.blosc
        return bytes(codec.encode(raw)) if codec is not None else raw.tobytes()

    def _fill_scratch(self, rows: np.ndarray, index: int, keep: int) -> np.ndarray:
        if self._scratch is None:
            self._scratch = np.full(self.stored_shape, self.fill, dtype=self.little)
        view = self._scratch.transpose(self.inverse) if self.inverse else self._scratch
        done = min(self._scratch_rows, keep) if index == self._scratch_index and index >= 0 else 0
        view[done:len(rows)] = rows[done:]
        if self._scratch_rows > len(rows):  # rows of another chunk, or of a batch that was not committed
            view[len(rows):self._scratch_rows] = self.fill
        self._scratch_index, self._scratch_rows = index, len(rows)
        return self._scratch

    def decode(self, blob: Any) -> np.ndarray:
        """One chunk in the array's own axis order (a view where possible)."""
        raw = self.blosc.decode(blob) if self.blosc is not None else blob
        flat = np.frombuffer(raw, dtype=self.little)
        if flat.size != int(np.prod(self.stored_shape)):
            raise ValueError(f"chunk holds {flat.size} values, expected {int(np.prod(self.stored_shape))}")
        data = flat.reshape(self.stored_shape)
        return data.transpose(self.inverse) if self.inverse else data

    def pieces(self, tail: np.ndarray, values: np.ndarray, start: int
               ) -> tuple[list[tuple[int, np.ndarray, bool, int]], np.ndarray]:
        """The chunks covering rows ``[start - len(tail), start + len(values))``.

        ``tail`` holds the committed rows of the chunk containing ``start`` that precede it. Returns
        (chunk index, its rows, partly filled?, rows known unchanged) per chunk, and the new tail (rows
        of the last, partly filled chunk; never a view of ``values``, which the caller may reuse).
        """
        rows = self.chunk_rows
        first = start - len(tail)
        assert first % rows == 0, "the cached tail must start at a chunk boundary"
        data = np.concatenate([tail, values]) if len(tail) else values
        out = []
        for offset in range(0, len(data), rows):
            piece = data[offset:offset + rows]
            out.append(((first + offset) // rows, piece, len(piece) < rows, len(tail) if offset == 0 else 0))
        kept = len(data) % rows
        new_tail = data[len(data) - kept:] if kept else data[:0]
        return out, (new_tail if len(tail) else new_tail.copy())


# ------------------------------------------------------------------------------------------ thread pool
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_GUARD = threading.Lock()


def _forget_pool_in_child() -> None:
    # A forked child (a DataLoader worker) has none of the parent's pool threads, and the guard may have
    # been held by another parent thread at the fork: start both afresh rather than wait on it forever.
    global _POOL, _POOL_GUARD
    _POOL, _POOL_GUARD = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def pool() -> ThreadPoolExecutor:
    """This process's thread pool for chunk encode, decode and file IO (writes here, reads in
    :mod:`mimicdata.gather`). At least two threads, so that one chunk's IO overlaps another's decode;
    one per core, so that a training machine decodes on all of them."""
    global _POOL, _POOL_PID
    with _POOL_GUARD:
        if _POOL is None or _POOL_PID != os.getpid():  # a forked child has no threads of its parent's pool
            _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="mimicdata-chunks")
            _POOL_PID = os.getpid()
        return _POOL


def run_all(fn: Callable[[T], R], items: Iterable[T], *, parallel: bool = True) -> list[R]:
    """``[fn(x) for x in items]``, concurrently when there is more than one; the first error is raised.

    ``parallel=False`` for small jobs: handing work to a thread costs ~50-300 us of CPU on a loaded
    machine, more than encoding a few rows."""
    todo = list(items)
    if len(todo) <= 1 or not parallel:
        return [fn(x) for x in todo]
    futures = [pool().submit(fn, x) for x in todo]
    # Wait for every task before raising: a caller that cleans up after an error (a full disk, say)
    # must not race writes still in flight, which would recreate the folders it removed.
    wait(futures)
    return [f.result() for f in futures]


# ------------------------------------------------------------------------------------------ store IO
def put(zstore: Any, key: str, data: bytes) -> None:
    """Store one object: local files directly (written to a temporary name, then renamed over the key,
    so a killed writer never leaves a torn object; half the syscalls of zarr's own path), memory stores
    without an event loop, others through zarr's."""
    if isinstance(zstore, LocalStore):
        _put_file(os.path.join(zstore.root, key), data)
    elif isinstance(zstore, MemoryStore):
        zstore.set_sync(key, default_buffer_prototype().buffer.from_bytes(data))
    else:
        sync(zstore.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def json_bytes(doc: dict[str, Any]) -> bytes:
    """A metadata document as JSON (numpy scalars and arrays as plain values)."""
    return json.dumps(doc, default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _put_file(path: str, data: bytes) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:  # a new chunk row: its folder (`c/<row>/`) does not exist yet
        try:
            os.mkdir(os.path.dirname(path))  # one syscall in the usual case (the parent exists)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def get(zstore: Any, key: str) -> Any | None:
    """One object's bytes (a buffer), or None when it is absent."""
    prototype = default_buffer_prototype()
    if isinstance(zstore, LocalStore | MemoryStore):
        buf = zstore.get_sync(key, prototype=prototype)
    else:
        buf = sync(zstore.get(key, prototype=prototype))
    return None if buf is None else buf.as_numpy_array()


def read_rows(zstore: Any, codec: ChunkCodec, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of an array, its chunks fetched and decoded concurrently."""
    return read_many(zstore, [(codec, start, stop)])[0]


def read_many(zstore: Any, requests: list[tuple[ChunkCodec, int, int]]) -> list[np.ndarray]:
    """Rows ``[start, stop)`` of several arrays; all their chunks fetched and decoded in one pool."""
    outs = [np.empty((max(0, stop - start), *codec.chunk_shape[1:]), dtype=codec.dtype)
            for codec, start, stop in requests]
    jobs = [(i, index) for i, (codec, start, stop) in enumerate(requests) if stop > start
            for index in range(start // codec.chunk_rows, (stop - 1) // codec.chunk_rows + 1)]

    def load(job: tuple[int, int]) -> None:
        i, index = job
        codec, start, stop = requests[i]
        rows = codec.chunk_rows
        lo, hi = max(start, index * rows), min(stop, (index + 1) * rows)
        blob = get(zstore, codec.key(index))
        if blob is None:  # never written: the fill value, as in zarr
            outs[i][lo - start:hi - start] = codec.fill
        else:
            outs[i][lo - start:hi - start] = codec.decode(blob)[lo - index * rows:hi - index * rows]

    run_all(load, jobs)
    return outs
