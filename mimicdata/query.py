"""Lazy Polars frames and SQL over the streams of a store, by URL.

:func:`scan` gives a ``polars.LazyFrame`` fed batch by batch through Polars' IO-plugin interface, with
projection pushdown (only the asked-for fields are read), predicate pushdown on sorted fields (a time or
step window becomes a row range before any chunk of the other fields is read, see
:mod:`mimicdata.pushdown`) and early stop for ``head``/``limit``, so a query over a store larger than
memory streams. :func:`sql` runs Polars SQL with every stream as a table (``mimicdata query``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from mimicdata.arrow import ROW_INDEX, arrow_schema, iter_batches
from mimicdata.pushdown import Interval, bounds, row_range
from mimicdata.store import open as open_store
from mimicdata.stream import Stream


def scan(url: str, stream: str | None = None, *, row_index: bool = False,
         storage_options: dict[str, Any] | None = None) -> pl.LazyFrame:
    """A lazy Polars frame over one stream of a store (the only stream if ``stream`` is None)."""
    store = open_store(url, "r", storage_options=storage_options)
    if stream is None:
        if len(store.streams) != 1:
            raise ValueError(f"{url} has streams {list(store.streams)}; name one with stream=...")
        stream = next(iter(store.streams))
    return stream_frame(store[stream], row_index=row_index)


def stream_frame(target: Stream, *, row_index: bool = False) -> pl.LazyFrame:
    """A lazy Polars frame over an open stream (see :func:`scan`)."""
    full = arrow_schema(target, row_index=row_index)
    schema = pl.from_arrow(full.empty_table()).schema  # type: ignore[union-attr]

    def source(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None,
               batch_size: int | None) -> Iterator[pl.DataFrame]:
        wanted = [c for c in (with_columns or list(schema)) if c != ROW_INDEX] or target.fields[:1]
        want_index = row_index and (with_columns is None or ROW_INDEX in with_columns)
        start, stop = rows_matching(target, predicate, row_index=row_index)
        remaining = n_rows
        for batch in iter_batches(target, wanted, batch_size, row_index=want_index, start=start, stop=stop):
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

    return register_io_source(source, schema=schema, explain_name=f"mimicdata:{target.name}")


def rows_matching(stream: Stream, predicate: pl.Expr | None, *, row_index: bool = False) -> tuple[int, int]:
    """The row range outside which ``predicate`` is false, from its bounds on sorted fields (and on the
    row index); ``(0, num_rows)`` when nothing narrows it."""
    rows = stream.num_rows
    start, stop = 0, rows
    if predicate is None or rows == 0:
        return start, stop
    try:
        limits = bounds(predicate.meta.serialize(format="json"))
    except Exception:  # an expression Polars cannot serialise: no pushdown, same result
        return start, stop
    sorted_fields = set(stream.meta.get("sorted_fields") or ())
    for column, interval in limits.items():
        if column == ROW_INDEX and row_index:
            lo, hi = _index_range(interval, rows)
        elif stream.aliases.get(column, (column, None))[0] in sorted_fields and column in stream.fields:
            codec = stream._codec(column)
            chunk = codec.chunk_rows if codec is not None else 4096
            lo, hi = row_range(interval, rows, chunk,
                               lambda i, c=column, n=chunk: stream.read(c, i * n, min(rows, (i + 1) * n), decode=False))
        else:
            continue
        start, stop = max(start, lo), min(stop, hi)
    return start, max(start, stop)


def _index_range(interval: Interval, rows: int) -> tuple[int, int]:
    """Integer rows ``r`` in ``[0, rows)`` inside ``interval``, as a range."""
    low, high = interval.low, interval.high
    lo = 0 if low == -math.inf else (math.ceil(low) if interval.low_closed else math.floor(low) + 1)
    hi = rows if high == math.inf else (math.floor(high) + 1 if interval.high_closed else math.ceil(high))
    lo, hi = max(0, min(rows, lo)), max(0, min(rows, hi))
    return lo, max(lo, hi)


def sql(url: str, query: str, *, storage_options: dict[str, Any] | None = None) -> pl.DataFrame:
    """Run a Polars SQL query; every stream of the store is a table named after it."""
    store = open_store(url, "r", storage_options=storage_options)
    frames = {name: stream_frame(store[name]) for name in store.streams}
    return pl.SQLContext(frames=frames, eager=False).execute(query).collect()
