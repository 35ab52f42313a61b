"""``WindowDataset``: fixed-shape windows of frames from one stream of a store, never across a segment.

>>> import mimicdata as md
>>> ds = md.WindowDataset("expert.zarr", fields=["qpos", "qvel"], window=10)  # doctest: +SKIP
>>> ds[0]["qpos"].shape                                                        # doctest: +SKIP
(10, 36)

Only rows committed when the dataset is opened are read (a store still being appended to can be trained
on). The dataset pickles as its URL, fields and index (never open handles or loaded data), and opens the
store lazily in each process, so a torch ``DataLoader`` with worker processes works under fork and spawn.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.errors import ValidationError
from mimicdata.gather import ChunkGather, ChunkSource, MemoryGather, load_fields
from mimicdata.windows import WindowIndex, resolve_offsets

RESERVED = ("segment", "frame")


def _pick_stream(store: Any, stream: str | None, fields: Sequence[str] | None) -> Any:
    if stream is not None:
        if stream not in store.streams:
            raise ValidationError(f"{store.location}: no stream {stream!r}; streams: {list(store.streams)}")
        return store.streams[stream]
    tables = {s.spec.segments_of for s in store.streams.values() if s.spec.segments_of}
    candidates = [s for s in store.streams.values()
                  if s.name not in {t.name for t in store.streams.values() if t.spec.segments_of}
                  and not s.name.startswith("disc_obs.")]
    if fields:
        candidates = [s for s in candidates if all(f in s.fields for f in fields)] or candidates
    if len(candidates) > 1:
        segmented = [s for s in candidates if s.name in tables]
        candidates = segmented if len(segmented) == 1 else candidates
    if len(candidates) != 1:
        raise ValidationError(f"{store.location}: pass stream= (one of {list(store.streams)})")
    return candidates[0]


class WindowDataset:
    """Windows of ``fields`` over the segments of one stream.

    Args:
        url: the store (local path, ``memory://``, ``s3://``...), or an open :class:`mimicdata.Store`
            (then only in this process: it cannot be sent to worker processes).
        fields: fields to read (default: every numeric field of the stream).
        window: frames per window (default 1); the anchor is the first frame.
        offsets: frame offsets relative to the anchor instead of ``window`` (e.g. a history
            ``[-32, -16, -8, -4, -2, -1, 0]``); items keep this order.
        stream: the stream when the store has several candidates.
        storage_options: fsspec options for remote URLs (credentials, endpoint).

    ``ds[i]`` is ``{field: (W, *shape), "segment": int, "frame": int}`` where ``frame`` is the anchor's
    index inside its segment. Segments are the rows of the stream's segment table (episodes, clips,
    trajectories); a stream without one (a log) is a single segment.
    """

    def __init__(self, url: str | Path | Any, fields: Sequence[str] | None = None, *, window: int | None = None,
                 offsets: Sequence[int] | None = None, stream: str | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
        import mimicdata as md

        self.offsets = resolve_offsets(window, offsets)
        self.storage_options = storage_options
        if isinstance(url, md.Store):
            store, self.url, self._handle = url, str(url.location), url
        else:
            self.url, self._handle = os.fspath(url), None
            store = md.open(self.url, storage_options=storage_options)
        try:
            src = _pick_stream(store, stream, fields)
            self.stream = src.name
            where = f"{store.location} {src.name}"
            self.rows = src.num_rows
            if self.rows == 0:
                raise ValidationError(f"{where}: the stream has no committed rows to train on")
            self.fields = self._check_fields(store, src, fields)
            self.shapes = {f: tuple(src.array(f).shape[1:]) for f in self.fields}
            self.dtypes = {f: np.dtype(src.array(f).dtype) for f in self.fields}
            segments = src.segments() if src.segment_stream() is not None else np.array([[0, self.rows]])
            if not len(segments):
                raise ValidationError(f"{where}: no committed segments to train on")
            self.index = WindowIndex(segments, self.offsets)
            if len(self.index) == 0:
                longest = int((segments[:, 1] - segments[:, 0]).max())
                raise ValidationError(f"{where}: a window spanning {self.index.span} frames (offsets "
                                      f"{self.offsets.tolist()}) is longer than every segment (the longest of "
                                      f"{len(segments)} has {longest} frames)")
        except BaseException:
            if self._handle is None:
                store.close()
            raise
        self._store = store
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._memory: MemoryGather | None = None
        self._chunks: ChunkGather | None = None

    @staticmethod
    def _check_fields(store: Any, src: Any, fields: Sequence[str] | None) -> list[str]:
        where = f"{store.location} {src.name}"
        if isinstance(fields, str):
            fields = [fields]
        names = list(fields) if fields is not None else [f for f in src.fields if src.field_spec(f).dtype != "string"]
        if not names:
            raise ValidationError(f"{where}: no fields to read")
        unknown = [f for f in names if f not in src.fields]
        if unknown:
            listing = "; ".join(f"{s.name}: {s.fields}" for s in store.streams.values())
            raise ValidationError(f"{where}: unknown field(s) {unknown}; the store's fields are {listing}")
        for f in names:
            if f in RESERVED:
                raise ValidationError(f"{where}: field {f!r} collides with the batch key {f!r}")
            if src.field_spec(f).dtype == "string":
                raise ValidationError(f"{where}.{f}: string fields cannot be batched (store codes are not features)")
        if len(set(names)) != len(names):
            raise ValidationError(f"{where}: fields {names} repeat a name")
        return names

    # ------------------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        # memory:// stores live per process: a forked worker still sees them, a spawned one does not
        state = {k: v for k, v in self.__dict__.items() if k not in ("_store", "_handle", "_lock", "_memory",
                                                                       "_chunks")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._store, self._handle, self._memory, self._chunks = None, None, None, None
        self._lock = threading.Lock()
        self._pid = -1  # reopen on first use in this process

    def _source(self) -> Any:
        """The open stream, reopened after a fork (zarr's IO thread does not survive one)."""
        import mimicdata as md

        with self._lock:
            if self._store is None or self._pid != os.getpid():
                self._store = md.open(self.url, storage_options=self.storage_options)
                self._pid = os.getpid()
                self._chunks = None
            return self._store.streams[self.stream]

    def _sources(self) -> tuple[dict[str, ChunkSource], dict[str, Any]]:
        src = self._source()
        where = f"{src.store.location} {src.name}"
        sources = {f: ChunkSource(src.array(f), src.store.zstore, self.rows, f"{where}/{f}") for f in self.fields}
        transforms = {f: src.aliases[f][1] for f in self.fields if f in src.aliases}
        return sources, transforms

    # ------------------------------------------------------------------------------------- reading
    @property
    def nbytes(self) -> int:
        """Decoded bytes of the needed fields over the committed rows (what ``cache="memory"`` holds)."""
        return sum(int(np.prod(s, dtype=np.int64)) * self.dtypes[f].itemsize * self.rows
                   for f, s in self.shapes.items())

    def load(self) -> MemoryGather:
        """Read the fields into memory (once per process); later gathers are numpy takes."""
        if self._memory is None or self._pid != os.getpid():
            sources, transforms = self._sources()
            self._memory = load_fields(sources, self.rows, transforms)
        return self._memory

    def chunk_reader(self, max_bytes: int = 256 << 20) -> ChunkGather:
        """A gatherer that reads chunks on demand through a bounded cache (shared by this process)."""
        self._source()  # reopens after a fork, which also drops a reader of the parent's
        if self._chunks is None or self._chunks.max_bytes != max_bytes:
            self._chunks = ChunkGather(*self._sources(), max_bytes=max_bytes)
        return self._chunks

    def gather(self, indices: Sequence[int] | np.ndarray, reader: MemoryGather | ChunkGather | None = None
               ) -> dict[str, np.ndarray]:
        """A batch of windows: ``{field: (n, W, *shape), "segment": (n,), "frame": (n,)}``, bulk-read."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        seg, frame, anchor = self.index.locate(idx)
        if reader is None:
            reader = self._memory if self._memory is not None and self._pid == os.getpid() else self.chunk_reader()
        batch = reader.gather(self.index.rows(anchor))
        batch["segment"], batch["frame"] = seg, frame
        return batch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"window index must be an int, got {type(i).__name__}")
        batch = self.gather([int(i)])
        return {k: (int(v[0]) if k in RESERVED else v[0]) for k, v in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Many items from one bulk read (torch's DataLoader calls this for a batch when it exists)."""
        batch = self.gather(indices)
        return [{k: (int(v[j]) if k in RESERVED else v[j]) for k, v in batch.items()} for j in range(len(indices))]

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(segment, frame)`` of every window in order, e.g. to turn per-frame probabilities into weights."""
        return self.index.windows()

    @property
    def segments(self) -> np.ndarray:
        """``(S, 2)`` store-row ranges of the segments."""
        return self.index.segments

    def close(self) -> None:
        if self._store is not None and self._handle is None:
            self._store.close()
        self._store, self._memory, self._chunks = None, None, None

    def __repr__(self) -> str:
        return (f"<WindowDataset {self.url} {self.stream}: {len(self)} windows of offsets "
                f"{self.offsets.tolist()} over {self.index.num_segments} segments, fields {self.fields}>")
