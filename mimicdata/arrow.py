"""Arrow view of a stream: pure Stream -> Arrow conversion (the URL-level ``scan``/``sql`` are in
:mod:`mimicdata.query`).

- scalars -> primitive columns; vectors -> ``fixed_size_list``; (n, m) fields -> nested fixed-size lists;
- ``unix_ns`` time fields -> ``timestamp[ns, UTC]``; string fields -> ``dictionary<int32, string>``.
Decoded numpy buffers are wrapped, not copied, wherever Arrow's layout equals numpy's (C-contiguous
fixed-width values without nulls).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from mimicdata.stream import Stream

ROW_INDEX = "row"
BATCH_BYTES = 32 << 20  # raw bytes per record batch: big enough to decode many chunks at once, bounded


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
                 *, row_index: bool = False, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches over rows ``[start, stop)``, each a whole number of chunks of about BATCH_BYTES
    (decoded concurrently), so memory stays bounded whatever the stream's length."""
    names = fields or stream.fields
    stop = stream.num_rows if stop is None else min(int(stop), stream.num_rows)
    if batch_rows is None:
        chunk = max((stream.array(f).chunks[0] for f in names), default=4096) if names else 4096
        row_bytes = sum(int(np.prod(stream.array(f).shape[1:], dtype=np.int64)) * stream.array(f).dtype.itemsize
                        for f in names) or 8
        batch_rows = max(1, BATCH_BYTES // row_bytes // chunk) * chunk
    schema = arrow_schema(stream, names, row_index=row_index)
    lo = max(0, int(start))
    while lo < stop:
        hi = min(stop, (lo // batch_rows + 1) * batch_rows)  # batches end on multiples of batch_rows (chunks)
        cols = [pa.array(np.arange(lo, hi, dtype=np.int64))] if row_index else []
        values = stream.read_columns(names, lo, hi)
        cols += [column_to_arrow(stream, f, values[f]) for f in names]
        yield pa.RecordBatch.from_arrays(cols, schema=schema)
        lo = hi
