"""Bulk row gathers from a stream's Zarr arrays: all in memory, or chunk by chunk through a bounded cache.

A gather takes any array of store rows and returns, per field, the rows in that shape. Reads are
grouped by chunk: the chunks a gather needs are fetched concurrently (one request each, all in flight
together) and decoded on a thread pool, never one request per row.

Why not ``zarr.Array.__getitem__``: zarr-python spends ~1 ms of Python per chunk in its codec pipeline
and decodes on its event loop. For the codec chains mimicdata writes (transpose, little-endian bytes,
blosc; see :mod:`mimicdata.chunkwrite`) this module fetches the stored chunk bytes with the store's own
``get`` (local files, memory, s3, ...) and decodes them with that module's :class:`ChunkCodec` (blosc
releases the GIL) on its per-process thread pool. Arrays with any other layout go through zarr.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import _get_loop, sync
from zarr.storage import LocalStore

from mimicdata.chunkwrite import ChunkCodec, pool
from mimicdata.errors import CorruptStoreError

Transform = Callable[[np.ndarray], np.ndarray] | None
GROUP = 64  # chunks fetched per round trip: bounds memory held as compressed bytes

def _direct_getter(zstore: Any) -> Callable[[str], Any] | None:
    """For object stores: a ``get(key)`` that skips s3fs's size probe (a HEAD before every GET, which
    it makes to split big objects into parallel ranged GETs; chunks are ~1 MiB, so one GET does)."""
    fs, root = getattr(zstore, "fs", None), getattr(zstore, "path", None)
    if fs is None or root is None or not getattr(fs, "async_impl", False):
        return None
    try:
        takes_concurrency = "max_concurrency" in inspect.signature(fs._cat_file).parameters
    except (TypeError, ValueError):
        return None
    options = {"max_concurrency": 1} if takes_concurrency else {}
    missing = tuple(getattr(zstore, "allowed_exceptions", ())) or (FileNotFoundError,)

    async def get(key: str) -> bytes | None:
        try:
            return await fs._cat_file(f"{root}/{key}", **options)
        except missing:
            return None

    return get


class ChunkSource:
    """Whole chunks of one field, fetched concurrently and decoded in parallel."""

    def __init__(self, array: Any, zstore: Any, rows: int, where: str) -> None:
        self.array, self.zstore, self.rows, self.where = array, zstore, rows, where
        self.size = int(array.chunks[0])
        self.shape = tuple(array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self.codec = ChunkCodec.for_array(array)  # None: a layout chunkwrite does not know, read through zarr
        self._direct = _direct_getter(zstore)
        # local files: read and decode in the same pool task (no event-loop round trip per chunk)
        root = getattr(zstore, "root", None)
        self._local = Path(root) if isinstance(zstore, LocalStore) and root is not None else None

    def bounds(self, c: int) -> tuple[int, int]:
        return c * self.size, min((c + 1) * self.size, self.rows)

    def read_into(self, ids: list[int], outs: list[np.ndarray]) -> None:
        """Decode chunks ``ids`` into ``outs`` (each sized to the chunk's committed rows).

        Chunks go in groups; the next group's bytes are fetched while this group decodes.
        """
        groups = [(ids[g:g + GROUP], outs[g:g + GROUP]) for g in range(0, len(ids), GROUP)]
        try:
            if self.codec is None:
                for group, targets in groups:
                    self._zarr_read(group, targets)
                return
            if self._local is not None:
                jobs = [pool().submit(self._read_local, c, out) for c, out in zip(ids, outs, strict=True)]
                for job in jobs:
                    job.result()
                return
            loop = _get_loop()
            pending = asyncio.run_coroutine_threadsafe(self._fetch(groups[0][0]), loop) if groups else None
            for k, (_group, targets) in enumerate(groups):
                assert pending is not None
                blobs = pending.result()
                if k + 1 < len(groups):
                    pending = asyncio.run_coroutine_threadsafe(self._fetch(groups[k + 1][0]), loop)
                jobs = []
                for blob, out in zip(blobs, targets, strict=True):
                    if blob is None:  # never written: zarr's fill value
                        out[...] = self.array.fill_value
                    else:
                        jobs.append(pool().submit(self._decode, blob, out))
                for job in jobs:
                    job.result()
        except Exception as exc:  # a codec failure or a truncated chunk: a damaged store
            raise CorruptStoreError(f"{self.where}: cannot read chunk(s) {ids[:3]}{'...' if len(ids) > 3 else ''}: "
                                    f"{type(exc).__name__}: {exc}") from exc

    def _decode(self, blob: Any, out: np.ndarray) -> None:
        assert self.codec is not None
        # the full chunk, rows first; rows past the committed ones (a chunk still filling up) are dropped
        out[...] = self.codec.decode(blob)[:len(out)]

    def _read_local(self, c: int, out: np.ndarray) -> None:
        assert self._local is not None and self.codec is not None
        try:
            blob = (self._local / self.codec.key(c)).read_bytes()
        except FileNotFoundError:  # never written: zarr's fill value
            out[...] = self.array.fill_value
            return
        self._decode(blob, out)

    async def _fetch(self, ids: list[int]) -> list[Any]:
        assert self.codec is not None
        keys = [self.codec.key(c) for c in ids]
        if self._direct is not None:
            return list(await asyncio.gather(*(self._direct(k) for k in keys)))
        prototype = default_buffer_prototype()
        found = await asyncio.gather(*(self.zstore.get(k, prototype) for k in keys))
        return [None if b is None else b.as_numpy_array() for b in found]

    def _zarr_read(self, ids: list[int], outs: list[np.ndarray]) -> None:
        async def read() -> list[Any]:
            return await asyncio.gather(*(self.array._async_array.getitem((slice(*self.bounds(c)),)) for c in ids))

        for part, out in zip(sync(read()), outs, strict=True):
            out[...] = np.asarray(part)

    def read(self, ids: list[int]) -> list[np.ndarray]:
        outs = [np.empty((self.bounds(c)[1] - self.bounds(c)[0], *self.shape), self.dtype) for c in ids]
        self.read_into(ids, outs)
        return outs


class MemoryGather:
    """Every needed field loaded once, rows ``[0, rows)``; gathers are numpy takes."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.data = data

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.data.values())

    def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        # np.take on the flat rows then a reshape is the fastest numpy gather for (rows, ...) arrays
        flat = rows.reshape(-1)
        return {name: np.take(arr, flat, axis=0).reshape(*rows.shape, *arr.shape[1:])
                for name, arr in self.data.items()}


def load_fields(sources: dict[str, ChunkSource], rows: int, transforms: dict[str, Transform]) -> MemoryGather:
    """Read rows ``[0, rows)`` of every field into memory, decoding straight into the result."""
    data: dict[str, np.ndarray] = {}
    for name, src in sources.items():
        out = np.empty((rows, *src.shape), dtype=src.dtype)
        ids = list(range(-(-rows // src.size)))
        src.read_into(ids, [out[slice(*src.bounds(c))] for c in ids])
        transform = transforms.get(name)
        data[name] = transform(out) if transform is not None else out
    return MemoryGather(data)


class ChunkGather:
    """Gathers that fetch whole chunks on demand and keep the most recent in a bounded LRU cache.

    ``max_bytes`` bounds the decoded bytes kept between gathers (a single gather that needs more
    holds them only while it runs).
    """

    def __init__(self, sources: dict[str, ChunkSource], transforms: dict[str, Transform],
                 max_bytes: int = 256 << 20) -> None:
        self.sources = sources
        self.transforms = transforms
        self.max_bytes = int(max_bytes)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()  # a DataLoader or a prefetch thread may share one dataset
        self.chunks_read = 0  # chunks fetched from the store so far (tests and benchmarks check it)
        self.gathers = 0

    def _store(self, key: tuple[str, int], chunk: np.ndarray) -> None:
        self._cache[key] = chunk
        self._cached_bytes += chunk.nbytes
        while self._cached_bytes > self.max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes

    def _chunks(self, name: str, src: ChunkSource, unique: list[int]) -> dict[int, np.ndarray]:
        chunks: dict[int, np.ndarray] = {}
        for c in unique:
            hit = self._cache.get((name, c))
            if hit is not None:
                self._cache.move_to_end((name, c))
                chunks[c] = hit
        missing = [c for c in unique if c not in chunks]
        if missing:
            self.chunks_read += len(missing)
            for c, chunk in zip(missing, src.read(missing), strict=True):
                chunks[c] = chunk
                self._store((name, c), chunk)
        return chunks

    def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        flat = rows.reshape(-1)
        out: dict[str, np.ndarray] = {}
        with self._lock:
            self.gathers += 1
            for name, src in self.sources.items():
                cid = flat // src.size
                order = np.argsort(cid, kind="stable")
                unique, starts = np.unique(cid[order], return_index=True)
                chunks = self._chunks(name, src, unique.tolist())
                result = np.empty((len(flat), *src.shape), dtype=src.dtype)
                bounds = np.concatenate([starts, [len(flat)]])
                for k, c in enumerate(unique.tolist()):
                    take = order[bounds[k]:bounds[k + 1]]
                    result[take] = chunks[c][flat[take] - c * src.size]
                transform = self.transforms.get(name)
                result = result.reshape(*rows.shape, *src.shape)
                out[name] = transform(result) if transform is not None else result
        return out
