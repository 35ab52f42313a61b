"""Arrow and Polars views of a stream.

- scalars -> primitive columns; vectors -> ``fixed_size_list``; (n, m) fields -> nested fixed-size lists;
- ``unix_ns`` time fields -> ``timestamp[ns, UTC]``; string fields -> ``dictionary<int32, string>``.
Decoded numpy buffers are wrapped, not copied, wherever Arrow's layout equals numpy's (C-contiguous
fixed-width values without nulls).

:func:`scan` gives a ``polars.LazyFrame`` fed chunk by chunk through Polars' IO-plugin interface, with
projection pushdown (only the asked-for fields are read) and early stop for ``head``/``limit``, so a
query over a store larger than memory streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl

    from mimicdata.stream import Stream

ROW_INDEX = "row"


def _arrow_type(stream: Stream, name: str) -> pa.DataType:
    spec = stream.field_spec(name)
    if spec.dtype == "string":
        return pa.dictionary(pa.int32(), pa.string())
    if spec.time == "unix_ns":
        return pa.timestamp("ns", tz="UTC")
    base = pa.from_numpy_dtype(spec.storage_dtype)
    for size in reversed(stream.shape_of(name)):
        base = pa.list_(base, size)
    return base


def column_to_arrow(stream: Stream, name: str, values: np.ndarray) -> pa.Array:
    """One field's numpy rows as an Arrow array of the field's Arrow type."""
    spec = stream.field_spec(name)
    if spec.dtype == "string":
        cats = stream.meta.get("categories", {}).get(name, [])
        return pa.DictionaryArray.from_arrays(pa.array(values.astype(np.int32)), pa.array(cats, pa.string()))
    if spec.time == "unix_ns":
        return pa.array(values.astype(np.int64, copy=False)).view(pa.timestamp("ns", tz="UTC"))
    flat = np.ascontiguousarray(values).reshape(-1)
    arr: pa.Array = pa.array(flat)  # zero-copy for numeric numpy buffers
    for size in reversed(values.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(size))
    return arr


def arrow_schema(stream: Stream, fields: list[str] | None = None, *, row_index: bool = False) -> pa.Schema:
    names = fields or stream.fields
    cols = [pa.field(ROW_INDEX, pa.int64())] if row_index else []
    cols += [pa.field(n, _arrow_type(stream, n), nullable=False,
                      metadata={"unit": stream.field_spec(n).unit}) for n in names]
    return pa.schema(cols)


def stream_to_arrow(stream: Stream, fields: list[str] | None = None, start: int = 0,
                    stop: int | None = None) -> pa.Table:
    """Rows ``[start, stop)`` of a stream as a ``pyarrow.Table``."""
    names = fields or stream.fields
    unknown = [n for n in names if n not in stream.fields]
    if unknown:
        raise KeyError(f"stream {stream.name!r} has no field(s) {unknown}; fields: {stream.fields}")
    columns = [column_to_arrow(stream, n, stream.read(n, start, stop, decode=False)) for n in names]
    meta = {b"mimicdata.stream": stream.name.encode(), b"mimicdata.schema": stream.schema.encode(),
            b"mimicdata.version": stream.schema_version.encode()}
    return pa.Table.from_arrays(columns, schema=arrow_schema(stream, names).with_metadata(meta))


def iter_batches(stream: Stream, fields: list[str] | None = None, batch_rows: int | None = None,
                 *, row_index: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of about one chunk each, so memory stays bounded by the chunk size."""
    names = fields or stream.fields
    n = stream.num_rows
    if batch_rows is None:
        batch_rows = min((stream.array(f).chunks[0] for f in names), default=4096) if names else 4096
        batch_rows = max(int(batch_rows), 1024)
    schema = arrow_schema(stream, names, row_index=row_index)
    for start in range(0, n, batch_rows):
        stop = min(n, start + batch_rows)
        cols = [pa.array(np.arange(start, stop, dtype=np.int64))] if row_index else []
        cols += [column_to_arrow(stream, f, stream.read(f, start, stop, decode=False)) for f in names]
        yield pa.RecordBatch.from_arrays(cols, schema=schema)


def scan(url: str, stream: str | None = None, *, row_index: bool = False,
         storage_options: dict[str, Any] | None = None) -> pl.LazyFrame:
    """A lazy Polars frame over one stream of a store (the only stream if ``stream`` is None)."""
    import polars as pl
    from polars.io.plugins import register_io_source

    from mimicdata.store import open as open_store

    store = open_store(url, "r", storage_options=storage_options)
    if stream is None:
        if len(store.streams) != 1:
            raise ValueError(f"{url} has streams {list(store.streams)}; name one with stream=...")
        stream = next(iter(store.streams))
    target = store[stream]
    full = arrow_schema(target, row_index=row_index)
    schema = pl.from_arrow(full.empty_table()).schema  # type: ignore[union-attr]

    def source(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None,
               batch_size: int | None) -> Iterator[pl.DataFrame]:
        wanted = [c for c in (with_columns or list(schema)) if c != ROW_INDEX] or target.fields[:1]
        want_index = row_index and (with_columns is None or ROW_INDEX in with_columns)
        remaining = n_rows
        for batch in iter_batches(target, wanted, batch_size, row_index=want_index):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            if with_columns is not None:
                frame = frame.select(with_columns)
            if predicate is not None:
                frame = frame.filter(predicate)
            if remaining is not None:
                frame = frame.head(remaining)
                remaining -= frame.height
            yield frame
            if remaining is not None and remaining <= 0:
                return

    return register_io_source(source, schema=schema, explain_name=f"mimicdata:{stream}")


def sql(url: str, query: str, *, storage_options: dict[str, Any] | None = None) -> pl.DataFrame:
    """Run a Polars SQL query; every stream of the store is a table named after it."""
    import polars as pl

    from mimicdata.store import open as open_store

    store = open_store(url, "r", storage_options=storage_options)
    frames = {name: scan(url, name, storage_options=storage_options) for name in store.streams}
    return pl.SQLContext(frames=frames, eager=False).execute(query).collect()
