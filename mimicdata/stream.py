"""A stream: a table of rows stored as one Zarr array per field, with a commit protocol.

Commit protocol (what makes a killed writer harmless):
1. store the chunks holding the new rows (each chunk file is replaced atomically; whole chunks are
   encoded here, see :mod:`mimicdata.chunkwrite`),
2. grow the arrays' shapes to the new length,
3. commit: rewrite the stream's ``zarr.json`` (atomically) with the new ``committed_rows``.
Readers only ever look at ``[0, committed_rows)``; anything after it is the batch that was in flight.
Opening for append trims it away. A stream that is segmented by another (episode frames) is visible
only up to the end of its last committed segment.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from mimicdata.batch_check import normalise_batch
from mimicdata.chunkwrite import ChunkCodec, json_bytes, put, read_many, read_rows, run_all
from mimicdata.codecs import chunk_rows_for, codecs_for, relative_error_bound
from mimicdata.errors import CorruptStoreError, ReadOnlyError, ValidationError, storage_error
from mimicdata.pushdown import still_sorted
from mimicdata.schema import FieldSpec, StreamSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from mimicdata.migrate import MigrationPlan
    from mimicdata.store import Store

META = "mimicdata"
_PROTOTYPE = default_buffer_prototype()
PARALLEL_BYTES = 1 << 18  # batches smaller than this are encoded and stored in the calling thread
Transform = Callable[[np.ndarray], np.ndarray]


def _storage_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an OSError of a write (disk full, read-only remount) into the project's error; the rows
    committed before are untouched because the commit point is never reached."""
    @functools.wraps(method)
    def wrapper(self: Stream, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise storage_error(exc, f"{self.store.location} {self.name}: writing after committed row "
                                     f"{self.committed_rows}") from None
    return wrapper


class Stream:
    """Rows of one stream of a store. Get one with ``store["observations"]``."""

    def __init__(self, store: Store, name: str, group: zarr.Group, meta: dict[str, Any],
                 spec: StreamSpec, aliases: dict[str, tuple[str, Transform | None]] | None = None) -> None:
        self.store = store
        self.name = name
        self.group = group
        self.meta = meta
        self.spec = spec
        # visible field name -> (array name on disk, transform) for stores read through a migration
        self.aliases = aliases or {}
        self._arrays: dict[str, zarr.Array] = {}
        self._codecs: dict[str, ChunkCodec | None] = {}    # whole-chunk codecs (chunkwrite); None: use zarr
        self._tails: dict[str, np.ndarray] = {}            # committed rows of each array's last partial chunk
        self._last: dict[str, Any] = {}                    # last committed value of each sorted field
        self._shape_json: dict[str, dict[str, Any]] = {}   # each array's zarr.json, to rewrite its shape
        self._stale: set[str] = set()                      # arrays whose in-memory shape lags the disk
        self._group_doc: dict[str, Any] | None = None      # the stream group's zarr.json less attributes

    # ------------------------------------------------------------------------------------- properties
    @property
    def schema(self) -> str:
        return self.meta["schema"]

    @property
    def schema_version(self) -> str:
        return self.meta["version"]

    @property
    def fps(self) -> float | None:
        return self.meta.get("fps")

    @property
    def dims(self) -> dict[str, int]:
        return dict(self.meta.get("dims", {}))

    @property
    def committed_rows(self) -> int:
        """Rows committed on disk (for segmented streams this may include an unfinished segment)."""
        return int(self.meta.get("committed_rows", 0))

    @property
    def num_rows(self) -> int:
        """Rows a reader sees: committed, and for episode/clip frames, inside a committed segment."""
        seg = self.segment_stream()
        if seg is None:
            return self.committed_rows
        ends = seg._read_physical("end") if seg.committed_rows else np.zeros(0, np.int64)
        return int(ends[-1]) if len(ends) else 0

    @property
    def fields(self) -> list[str]:
        """Fields with stored data (required ones plus the optional ones in use)."""
        present = list(self.meta.get("fields_present", []))
        reverse = {phys: vis for vis, (phys, _) in self.aliases.items()}
        return [reverse.get(name, name) for name in present]

    def field_spec(self, name: str) -> FieldSpec:
        spec = self.spec.field_for(name)
        if spec is None:
            raise KeyError(f"stream {self.name!r} has no field {name!r}; fields: {self.fields}")
        return spec

    def shape_of(self, name: str) -> tuple[int, ...]:
        resolved = self.field_spec(name).resolve(self.dims)
        if resolved is None:
            raise ValidationError(f"{self.name}.{name}: a dimension of {self.field_spec(name).shape} is unknown")
        return resolved

    def segment_stream(self) -> Stream | None:
        """The stream that segments this one (``episodes`` for ``frames``), if any."""
        for other in self.store.streams.values():
            if other.spec.segments_of == self.name:
                return other
        return None

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return (f"<Stream {self.name!r} {self.schema} v{self.schema_version}: "
                f"{self.num_rows} rows, {len(self.fields)} fields>")

    # ------------------------------------------------------------------------------------------ reading
    def array(self, name: str) -> zarr.Array:
        """The Zarr array holding a field (physical name after migration aliases)."""
        phys = self.aliases.get(name, (name, None))[0]
        if phys in self._stale:  # appends rewrote its zarr.json directly: refresh the in-memory shape
            arr = self._arrays[phys]
            object.__setattr__(arr._async_array, "metadata", arr.metadata.update_shape(
                (self._shape_json[phys]["shape"][0], *arr.shape[1:])))
            self._stale.discard(phys)
        if phys not in self._arrays:
            try:
                self._arrays[phys] = self.group[phys]  # type: ignore[assignment]
            except KeyError:
                raise KeyError(f"stream {self.name!r} has no stored field {name!r}; fields: {self.fields}") from None
            except (ValueError, TypeError) as exc:  # a damaged zarr.json
                raise CorruptStoreError(f"{self.store.location}: cannot read the metadata of array "
                                        f"{self.name}/{phys} ({exc})") from None
        return self._arrays[phys]

    def _codec(self, name: str) -> ChunkCodec | None:
        phys = self.aliases.get(name, (name, None))[0]
        if phys not in self._codecs:
            self._codecs[phys] = ChunkCodec.for_array(self.array(phys))
        return self._codecs[phys]

    def _read_physical(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.committed_rows if stop is None else stop
        spec = self.spec.field_for(name)
        if stop <= start and spec is not None and spec.dtype != "string":
            resolved = spec.resolve(self.dims)  # no rows: nothing to read, even for a field not yet stored
            if resolved is not None:
                return np.zeros((0, *resolved), spec.storage_dtype)
        try:
            codec = self._codec(name)
            if codec is not None:
                return read_rows(self.store.zstore, codec, start, stop)
            return np.asarray(self.array(name)[start:stop])
        except KeyError:
            raise
        except Exception as exc:  # codec failure: a damaged chunk
            raise CorruptStoreError(f"{self.store.location}: cannot decode {self.name}/{name} rows "
                                    f"[{start}, {stop}): {type(exc).__name__}: {exc}") from exc

    def read(self, name: str, start: int = 0, stop: int | None = None, *, decode: bool = True) -> np.ndarray:
        """Rows ``[start, stop)`` of a field as a numpy array (strings decoded unless ``decode=False``)."""
        n = self.num_rows
        stop = n if stop is None else min(int(stop), n)
        start = max(0, min(int(start), stop))
        spec = self.field_spec(name)  # an unknown name is a KeyError naming the stream's fields
        if stop == start and name not in self.fields:
            # A declared field with no stored rows yet (the stream's first append never happened, or the
            # field is optional and unused): zero rows of the declared shape, not an error.
            shape = spec.resolve(self.dims) or tuple(0 if isinstance(d, str) else d for d in spec.shape)
            empty = np.zeros((0, *shape), spec.storage_dtype)
            return empty.astype(object) if decode and spec.dtype == "string" else empty
        data = self._read_physical(name, start, stop)
        transform = self.aliases.get(name, (name, None))[1]
        if transform is not None:
            data = transform(data)
        if decode and spec.dtype == "string":
            cats = np.asarray(self.meta.get("categories", {}).get(name, []), dtype=object)
            return cats[data] if len(cats) else data.astype(object)
        return data

    def read_columns(self, names: list[str], start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of several fields, undecoded strings (codes); all their chunks are
        fetched and decoded concurrently."""
        n = self.num_rows
        stop = n if stop is None else min(int(stop), n)
        start = max(0, min(int(start), stop))
        fast = [name for name in names if start < stop and self._codec(name) is not None]
        out = {name: self.read(name, start, stop, decode=False) for name in names if name not in fast}
        try:
            values = read_many(self.store.zstore, [(self._codec(name), start, stop) for name in fast])  # type: ignore[misc]
        except Exception as exc:  # codec failure: a damaged chunk
            raise CorruptStoreError(f"{self.store.location}: cannot decode {self.name} fields {fast} rows "
                                    f"[{start}, {stop}): {type(exc).__name__}: {exc}") from exc
        for name, data in zip(fast, values, strict=True):
            transform = self.aliases.get(name, (name, None))[1]
            out[name] = transform(data) if transform is not None else data
        return {name: out[name] for name in names}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(name)

    def timestamps(self) -> np.ndarray | None:
        """The stream's clock as int64 nanoseconds since the Unix epoch, or None for fps-timed streams."""
        time_field = self.spec.time_field
        if not time_field or time_field not in self.fields:
            return None
        values = self.read(time_field)
        if self.field_spec(time_field).unit == "s":
            return np.round(values * 1e9).astype(np.int64)
        return values.astype(np.int64)

    def segments(self) -> np.ndarray:
        """``(n, 2)`` int64 row ranges ``[start, end)`` of the committed segments (episodes, clips)."""
        seg = self.segment_stream()
        if seg is None:
            raise ValueError(f"stream {self.name!r} has no segment table")
        if not seg.num_rows:
            return np.zeros((0, 2), np.int64)
        return np.stack([seg.read("start"), seg.read("end")], axis=1).astype(np.int64)

    def to_arrow(self, fields: list[str] | None = None, start: int = 0, stop: int | None = None) -> pa.Table:
        """The stream as a ``pyarrow.Table`` (see :mod:`mimicdata.arrow`)."""
        from mimicdata.arrow import stream_to_arrow

        return stream_to_arrow(self, fields=fields, start=start, stop=stop)

    # ------------------------------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self.store.mode == "r":
            raise ReadOnlyError(f"{self.store.location}: opened read-only; open with mode='a' to append")
        if self.store.closed:
            raise ReadOnlyError(f"{self.store.location}: store is closed")

    def _create_array(self, name: str, spec: FieldSpec, shape: tuple[int, ...]) -> zarr.Array:
        dtype = spec.storage_dtype
        row_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        # the field's own chunking if the schema gives one; else the stream's rows, fewer for wide rows
        # (~1 MiB raw per chunk) so a partial chunk rewritten by each append stays cheap
        rows = spec.chunk_rows or min(self.spec.chunk_rows, chunk_rows_for(row_bytes))
        codec = self.meta.get("codecs", {}).get(name, spec.codec)
        attrs: dict[str, Any] = {"unit": spec.unit, "description": spec.description}
        bits = self.meta.get("lossy", {}).get(name)
        if bits:
            attrs["mantissa_bits"] = bits
            attrs["max_relative_error"] = relative_error_bound(int(bits))
        array = zarr.create_array(
            store=self.store.zstore, name=f"{self.name}/{name}", shape=(0, *shape),
            chunks=(rows, *shape), dtype=dtype, fill_value=0,
            dimension_names=("time", *spec.dim_names), attributes=attrs, overwrite=True,
            **codecs_for(codec, dtype, 1 + len(shape), lossy=bool(bits)))
        self._arrays[name] = array
        return array

    @_storage_errors
    def append(self, batch: Mapping[str, Any]) -> int:
        """Append a batch of rows (dict of arrays with equal first dimension); returns rows written.

        The batch is validated whole before anything is written: a bad batch changes nothing.
        """
        self._require_writable()
        with self.store._write_guard:
            data, n, new_cats = normalise_batch(self, batch)
            if n == 0:
                return 0
            start, stop = self.committed_rows, self.committed_rows + n
            present = list(self.meta.get("fields_present", []))
            arrays = {}
            for name in data:
                if name not in present:
                    spec = self.spec.field_for(name)
                    assert spec is not None
                    arrays[name] = self._create_array(name, spec, data[name].shape[1:])
                    present.append(name)
                else:  # no refresh of the in-memory shape: the writer keeps it in _shape_json
                    arrays[name] = self._arrays[name] if name in self._arrays else self.array(name)
            meta = dict(self.meta, committed_rows=stop, fields_present=present)
            if new_cats:
                meta["categories"] = {**self.meta.get("categories", {}), **new_cats}
            sorted_fields = self._still_sorted(data, start)
            if sorted_fields is not None:
                meta["sorted_fields"] = sorted_fields
            tails = self._write_rows(arrays, data, start, stop)
            self._commit(meta)
            self._tails.update(tails)  # only now are those rows committed
            self._last.update({k: data[k][-1] for k in sorted_fields or ()})
            return n

    def _still_sorted(self, data: dict[str, np.ndarray], start: int) -> list[str] | None:
        """The stream's ``sorted_fields`` after this batch (:func:`mimicdata.pushdown.still_sorted`); None
        for streams written before they were tracked."""
        if start and "sorted_fields" not in self.meta:
            return None
        before = self.meta["sorted_fields"] if start else list(data)
        for name in before if start else ():
            if name not in self._last:
                self._last[name] = self._read_physical(name, start - 1, start)[0]
        return still_sorted(before, data, self._last if start else {})

    def _write_rows(self, arrays: dict[str, zarr.Array], data: dict[str, np.ndarray], start: int,
                    stop: int) -> dict[str, np.ndarray]:
        """Write rows ``[start, stop)`` of every field; returns the new chunk tails.

        Arrays whose codec chain :mod:`mimicdata.chunkwrite` knows get their touched chunks encoded and
        stored here, all chunks of all fields concurrently, and then their new shapes (their zarr.json
        rewritten from a template: zarr's own resize costs ~1 ms per array). Others go through zarr.
        """
        zstore = self.store.zstore
        tails: dict[str, np.ndarray] = {}
        jobs: list[tuple[ChunkCodec, int, np.ndarray, bool, int]] = []
        for name, arr in arrays.items():
            codec = self._codec(name)
            if codec is None:
                if arr.shape[0] < stop:
                    arr.resize((stop, *arr.shape[1:]))
                arr[start:stop] = data[name]
                continue
            pieces, tails[name] = codec.pieces(self._tail(name, codec, start), data[name], start)
            jobs += [(codec, *piece) for piece in pieces]
        big = sum(v.nbytes for v in data.values()) > PARALLEL_BYTES
        run_all(lambda job: put(zstore, job[0].key(job[1]),
                                job[0].encode(job[2], partial=job[3], index=job[1], keep=job[4])), jobs, parallel=big)
        # the new shapes only after the chunks they make visible are stored; a shape grows to the end of
        # its last chunk, so small appends inside a chunk rewrite no array metadata (close() trims)
        grown = {}
        for name in tails:
            if self._shape_rows(name) < stop:
                rows = self._codecs[name].chunk_rows  # type: ignore[union-attr]
                grown[name] = -(-stop // rows) * rows
        run_all(lambda item: self._write_shape(*item), list(grown.items()), parallel=big)
        return tails

    def _shape_rows(self, name: str) -> int:
        doc = self._shape_json.get(name)
        if doc is None:
            doc = json.loads(self._arrays[name].metadata.to_buffer_dict(_PROTOTYPE)["zarr.json"].to_bytes())
            self._shape_json[name] = doc
        return int(doc["shape"][0])

    def _write_shape(self, name: str, rows: int) -> None:
        """Rewrite an array's zarr.json with ``rows`` rows (the in-memory array is refreshed lazily)."""
        self._shape_rows(name)
        doc = dict(self._shape_json[name])
        doc["shape"] = [rows, *doc["shape"][1:]]
        put(self.store.zstore, f"{self.name}/{name}/zarr.json", json_bytes(doc))
        self._shape_json[name] = doc  # only once stored: a failed write is retried by the next append
        self._stale.add(name)

    def _tail(self, name: str, codec: ChunkCodec, start: int) -> np.ndarray:
        """Committed rows of the chunk holding row ``start`` that come before it (cached between appends)."""
        first = start - start % codec.chunk_rows
        cached = self._tails.get(name)
        if cached is not None and len(cached) == start - first:
            return cached
        return self._read_physical(name, first, start)

    def _commit(self, meta: dict[str, Any]) -> None:
        """Atomically replace the stream's zarr.json: the single point at which rows become visible."""
        if self._group_doc is None:  # zarr's to_dict() deep-copies: ~2 ms per commit
            self._group_doc = {k: v for k, v in self.group.metadata.to_dict().items() if k != "attributes"}
        doc = {**self._group_doc, "attributes": {**self.group.metadata.attributes, META: meta}}
        put(self.store.zstore, f"{self.name}/zarr.json", json_bytes(doc))
        self.group.metadata.attributes[META] = meta
        self.meta = meta

    def apply_migration(self, plan: MigrationPlan) -> None:
        """Rewrite migrated fields under their new names, then commit the new version, then delete the
        old arrays. A crash before the commit leaves the old version intact (the migration runs again)."""
        rows = self.committed_rows
        new_present = list(plan.fields_present)
        for vis, (phys, transform) in plan.aliases.items():
            values = self._read_physical(phys, 0, rows)
            if transform is not None:
                values = transform(values)
            array = self._create_array(vis, plan.spec.fields[vis], values.shape[1:])
            if rows:
                array.resize((rows, *values.shape[1:]))
                array[0:rows] = values
            new_present[new_present.index(phys)] = vis
        stale = [phys for phys, _ in plan.aliases.values()]
        meta = dict(self.meta, version=plan.target.version, spec=plan.spec.to_doc(), fields_present=new_present,
                    migrated_from=plan.source_version)
        self.spec = plan.spec
        self._commit(meta)
        for phys in stale:
            if phys not in new_present:
                del self.group[phys]
                self._arrays.pop(phys, None)
                self._codecs.pop(phys, None)
        root_meta = dict(self.store.meta)
        root_meta["schemas"] = [dict(s, version=plan.target.version) if s.get("name") == plan.target.name else s
                                for s in root_meta.get("schemas", [])]
        self.store.root.update_attributes({META: root_meta})
        self.store.meta = root_meta

    @_storage_errors
    def truncate(self, rows: int) -> None:
        """Drop rows past ``rows`` (used to discard an unfinished segment after a crash)."""
        self._require_writable()
        with self.store._write_guard:
            self._tails.clear()
            self._commit(dict(self.meta, committed_rows=int(rows)))
            self._trim_arrays()

    def _trim_arrays(self) -> None:
        """Shrink arrays to the committed length so plain Zarr readers see exactly the committed rows,
        and store each last, partly filled chunk with the array's own codec settings (see chunkwrite)."""
        finals = []
        for name, tail in self._tails.items():
            codec = self._codecs.get(name)
            if len(tail) and codec is not None:
                finals += [(codec, index, piece, keep) for index, piece, _, keep in
                           codec.pieces(tail[:0], tail, self.committed_rows - len(tail))[0]]
        zstore = self.store.zstore
        run_all(lambda job: put(zstore, job[0].key(job[1]), job[0].encode(job[2], index=job[1], keep=job[3])),
                finals)
        self._tails.clear()
        self._last.clear()
        for name in self.meta.get("fields_present", []):
            arr = self.array(name)
            if arr.shape[0] != self.committed_rows:
                arr.resize((self.committed_rows, *arr.shape[1:]))
                self._shape_json.pop(name, None)

