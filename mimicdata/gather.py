"""Bulk row gathers from a stream's Zarr arrays: all in memory, or chunk by chunk through a bounded cache.

A gather takes any array of store rows and returns, per field, the rows in that shape. Reads are
grouped by chunk: the chunks a gather needs are fetched concurrently (one request each, all in flight
together) and decoded on a thread pool, never one request per row.

Why not ``zarr.Array.__getitem__``: zarr-python spends ~1 ms of Python per chunk in its codec pipeline
and decodes on its event loop. For the codec chains mimicdata writes (transpose, little-endian bytes,
blosc; see :mod:`mimicdata.chunkwrite`) this module fetches the stored chunk bytes with the store's own
``get`` (local files, memory, s3, ...) and decodes them with blosc, which releases the GIL, on every
core. Arrays with any other layout go through zarr.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import _get_loop, sync

from mimicdata.chunkwrite import chunk_key
from mimicdata.errors import CorruptStoreError

Transform = Callable[[np.ndarray], np.ndarray] | None
Decoder = Callable[[bytes, np.ndarray], None]
GROUP = 64  # chunks fetched per round trip: bounds memory held as compressed bytes

_POOL: list[Any] = [None, -1]  # (executor, pid): threads do not survive fork, so one pool per process
_POOL_GUARD = threading.Lock()


def decode_pool() -> ThreadPoolExecutor:
    with _POOL_GUARD:
        if _POOL[0] is None or _POOL[1] != os.getpid():
            _POOL[0] = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="mimicdata-decode")
            _POOL[1] = os.getpid()
        return _POOL[0]


def chunk_decoder(array: Any) -> Decoder | None:
    """``decode(stored bytes, out)`` filling ``out`` (a full chunk, rows first), or None for other layouts."""
    from numcodecs import Blosc

    meta = array.metadata.to_dict()
    grid, keys = meta.get("chunk_grid", {}), meta.get("chunk_key_encoding", {})
    if grid.get("name") != "regular" or keys.get("name") != "default":
        return None
    if keys.get("configuration", {}).get("separator", "/") != "/" or tuple(array.chunks[1:]) != tuple(array.shape[1:]):
        return None
    order: tuple[int, ...] | None = None
    blosc = False
    for codec in meta.get("codecs", []):
        name, conf = codec.get("name"), codec.get("configuration", {}) or {}
        if name == "transpose" and order is None and not blosc:
            order = tuple(conf["order"])
        elif name == "bytes" and conf.get("endian", "little") == "little":
            continue
        elif name == "blosc" and not blosc:
            blosc = True
        else:
            return None
    dtype = np.dtype(array.dtype).newbyteorder("<")
    stored_shape = tuple(array.chunks[i] for i in order) if order else tuple(array.chunks)
    inverse = tuple(np.argsort(order)) if order else None
    codec = Blosc()

    def decode(blob: bytes, out: np.ndarray) -> None:
        raw = codec.decode(blob) if blosc else blob
        stored = np.frombuffer(raw, dtype=dtype).reshape(stored_shape)
        values = stored.transpose(inverse) if inverse else stored
        out[...] = values[:len(out)]

    return decode


class ChunkSource:
    """Whole chunks of one field, fetched concurrently and decoded in parallel."""

    def __init__(self, array: Any, zstore: Any, rows: int, where: str) -> None:
        self.array, self.zstore, self.rows, self.where = array, zstore, rows, where
        self.size = int(array.chunks[0])
        self.shape = tuple(array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self.decoder = chunk_decoder(array)

    def bounds(self, c: int) -> tuple[int, int]:
        return c * self.size, min((c + 1) * self.size, self.rows)

    def read_into(self, ids: list[int], outs: list[np.ndarray]) -> None:
        """Decode chunks ``ids`` into ``outs`` (each sized to the chunk's committed rows).

        Chunks go in groups; the next group's bytes are fetched while this group decodes.
        """
        groups = [(ids[g:g + GROUP], outs[g:g + GROUP]) for g in range(0, len(ids), GROUP)]
        try:
            if self.decoder is None:
                for group, targets in groups:
                    self._zarr_read(group, targets)
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
                        jobs.append(decode_pool().submit(self.decoder, blob, out))
                for job in jobs:
                    job.result()
        except Exception as exc:  # a codec failure or a truncated chunk: a damaged store
            raise CorruptStoreError(f"{self.where}: cannot read chunk(s) {ids[:3]}{'...' if len(ids) > 3 else ''}: "
                                    f"{type(exc).__name__}: {exc}") from exc

    async def _fetch(self, ids: list[int]) -> list[Any]:
        prototype = default_buffer_prototype()
        found = await asyncio.gather(*(self.zstore.get(chunk_key(self.array, c), prototype) for c in ids))
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
