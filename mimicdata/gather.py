"""Bulk row gathers from a stream's Zarr arrays: all in memory, or chunk by chunk through a bounded cache.

A gather takes any array of store rows and returns, per field, the rows in that shape. Reads are
grouped by chunk: the chunks a gather needs are fetched in one concurrent request per run of adjacent
chunks (zarr decodes them in parallel), never one request per row.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from zarr.core.sync import sync

from mimicdata.errors import CorruptStoreError

Transform = Callable[[np.ndarray], np.ndarray] | None


def _runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique ints -> ``[(first, last + 1), ...]`` of consecutive runs."""
    if not len(ids):
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(ids)]])
    return [(int(ids[a]), int(ids[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


async def _read_slices(array: Any, ranges: list[tuple[int, int]]) -> list[np.ndarray]:
    parts = await asyncio.gather(*(array._async_array.getitem((slice(a, b),)) for a, b in ranges))
    return [np.asarray(p) for p in parts]


def read_ranges(array: Any, ranges: list[tuple[int, int]], where: str) -> list[np.ndarray]:
    """Rows ``[a, b)`` of a zarr array for every range, fetched and decoded concurrently."""
    try:
        return sync(_read_slices(array, ranges))
    except Exception as exc:  # a codec failure or a chunk gone missing: a damaged store
        raise CorruptStoreError(f"{where}: cannot read rows {ranges[:3]}{'...' if len(ranges) > 3 else ''}: "
                                f"{type(exc).__name__}: {exc}") from exc


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


def load_fields(arrays: dict[str, Any], rows: int, transforms: dict[str, Transform], where: str,
                chunk_batch: int = 64) -> MemoryGather:
    """Read rows ``[0, rows)`` of every array into memory, many chunks at a time."""
    data: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        out = np.empty((rows, *array.shape[1:]), dtype=array.dtype)
        step = array.chunks[0] * chunk_batch  # bounded requests: the event loop never holds the whole field twice
        ranges = [(a, min(a + step, rows)) for a in range(0, rows, step)]
        # several chunk-aligned ranges in flight at once keep every core decoding
        for group in range(0, len(ranges), 8):
            batch = ranges[group:group + 8]
            for (a, b), part in zip(batch, read_ranges(array, batch, f"{where}/{name}"), strict=True):
                out[a:b] = part
        transform = transforms.get(name)
        data[name] = transform(out) if transform is not None else out
    return MemoryGather(data)


class ChunkGather:
    """Gathers that fetch whole chunks on demand and keep the most recent in a bounded LRU cache.

    Args:
        arrays: field name -> zarr array.
        rows: committed rows; nothing past them is read.
        max_bytes: decoded bytes the cache may hold between gathers (a single gather that needs more
            holds them only while it runs).
    """

    def __init__(self, arrays: dict[str, Any], rows: int, transforms: dict[str, Transform], where: str,
                 max_bytes: int = 256 << 20) -> None:
        self.arrays = arrays
        self.rows = rows
        self.transforms = transforms
        self.where = where
        self.max_bytes = int(max_bytes)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()  # a DataLoader or a prefetch thread may share one dataset
        self.chunks_read = 0  # chunks fetched from the store so far (tests and benchmarks check it)
        self.requests = 0     # concurrent requests made (one per run of adjacent chunks)

    def _fetch(self, name: str, chunk_ids: np.ndarray) -> dict[int, np.ndarray]:
        array = self.arrays[name]
        size = array.chunks[0]
        ranges = [(a * size, min(b * size, self.rows)) for a, b in _runs(chunk_ids)]
        self.requests += len(ranges)
        self.chunks_read += len(chunk_ids)
        out: dict[int, np.ndarray] = {}
        for (a, b), part in zip(ranges, read_ranges(array, ranges, f"{self.where}/{name}"), strict=True):
            for c in range(a // size, -(-b // size)):
                out[c] = part[c * size - a:min((c + 1) * size, b) - a]
        return out

    def _store(self, key: tuple[str, int], chunk: np.ndarray) -> None:
        self._cache[key] = chunk
        self._cached_bytes += chunk.nbytes
        while self._cached_bytes > self.max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes

    def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        flat = rows.reshape(-1)
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for name, array in self.arrays.items():
                size = array.chunks[0]
                cid = flat // size
                order = np.argsort(cid, kind="stable")
                sorted_ids = cid[order]
                unique, starts = np.unique(sorted_ids, return_index=True)
                chunks: dict[int, np.ndarray] = {}
                for c in unique.tolist():
                    hit = self._cache.get((name, c))
                    if hit is not None:
                        self._cache.move_to_end((name, c))
                        chunks[c] = hit
                missing = np.asarray([c for c in unique.tolist() if c not in chunks], dtype=np.int64)
                if len(missing):
                    fresh = self._fetch(name, missing)
                    chunks.update(fresh)
                    for c, chunk in fresh.items():
                        self._store((name, c), chunk)
                result = np.empty((len(flat), *array.shape[1:]), dtype=array.dtype)
                bounds = np.concatenate([starts, [len(flat)]])
                for k, c in enumerate(unique.tolist()):
                    take = order[bounds[k]:bounds[k + 1]]
                    result[take] = chunks[c][flat[take] - c * size]
                transform = self.transforms.get(name)
                result = result.reshape(*rows.shape, *array.shape[1:])
                out[name] = transform(result) if transform is not None else result
        return out
