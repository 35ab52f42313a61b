"""Reading a deployment log back: numpy per field, seed-style record lists, Arrow and Polars views.

>>> log = load_log("logs/log_20261121_120000.zarr")     # doctest: +SKIP
>>> log["observations"]["joint_pos"]                      # (rows, joints) float32
>>> log.records("actions")[0]["raw_action"]               # like the seed's load_streaming_pickle
>>> log.to_polars("observations").select("timestamp", "counter_step")
>>> log.drops                                             # what the logger had to drop, if anything
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.store import Store
from mimicdata.store import open as open_store

DROPS = "drops"


class StreamView(Mapping[str, np.ndarray]):
    """The committed rows of one logged stream, field by field (read on first access, then cached)."""

    def __init__(self, store: Store, name: str) -> None:
        self._stream = store[name]
        self._cache: dict[str, np.ndarray] = {}
        self.name = name

    def __getitem__(self, field: str) -> np.ndarray:
        if field not in self._cache:
            if field not in self._stream.fields:
                raise KeyError(f"stream {self.name!r} has no field {field!r}; fields: {self._stream.fields}")
            self._cache[field] = self._stream.read(field)
        return self._cache[field]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stream.fields)

    def __len__(self) -> int:
        return len(self._stream.fields)

    @property
    def num_rows(self) -> int:
        return self._stream.num_rows

    @property
    def fps(self) -> float | None:
        return self._stream.fps

    def __repr__(self) -> str:
        return f"<logged stream {self.name!r}: {self.num_rows} rows, fields {list(self)}>"


class LogData:
    """A deployment log opened read-only. Index it by stream name for its fields."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.store = open_store(self.path, "r")
        self._views: dict[str, StreamView] = {}

    @property
    def attrs(self) -> dict[str, Any]:
        """Session attributes: session_id, start_time, host, logger settings, end stats."""
        return self.store.attrs

    @property
    def session_id(self) -> str | None:
        return self.attrs.get("session_id")

    @property
    def streams(self) -> list[str]:
        """Logged streams (the ``drops`` bookkeeping stream excluded)."""
        return [name for name in self.store.streams if name != DROPS]

    @property
    def closed_cleanly(self) -> bool:
        """Whether the writer finished the session (False after a crash of the whole logging setup)."""
        return "end_time_ns" in self.attrs

    def __getitem__(self, name: str) -> StreamView:
        if name not in self._views:
            self._views[name] = StreamView(self.store, name)
        return self._views[name]

    def __contains__(self, name: object) -> bool:
        return name in self.store.streams

    def time_s(self, name: str, *, clock: str = "monotonic_ns") -> np.ndarray:
        """Seconds since the session started, from the monotonic clock (or ``clock="timestamp"``)."""
        view = self[name]
        if clock == "monotonic_ns" and "monotonic_ns" in view:
            start = self.attrs.get("start_monotonic_ns", int(view["monotonic_ns"][0]) if view.num_rows else 0)
            return (view["monotonic_ns"] - start) / 1e9
        stamps = view["timestamp"]
        start = self.attrs.get("start_time_ns", int(stamps[0]) if len(stamps) else 0)
        return (stamps - start) / 1e9

    def records(self, name: str) -> list[dict[str, Any]]:
        """The stream as a list of per-record dicts, the shape the seed's ``load_streaming_pickle`` returned."""
        view = self[name]
        # scalar columns become Python values (tolist), vector columns stay numpy rows
        columns = {field: (view[field] if view[field].ndim > 1 else view[field].tolist()) for field in view}
        return [{field: values[i] for field, values in columns.items()} for i in range(view.num_rows)]

    @property
    def drops(self) -> list[dict[str, Any]]:
        """One dict per gap: stream, reason, first_seq, last_seq, count, timestamp (before), gap_end."""
        if DROPS not in self.store.streams or not self.store[DROPS].num_rows:
            return []
        return self.records(DROPS)

    def dropped(self, name: str) -> int:
        """Records of one stream that the logger dropped."""
        return int(sum(d["count"] for d in self.drops if d["stream"] == name))

    def to_arrow(self, name: str, fields: list[str] | None = None) -> Any:
        """The stream as a ``pyarrow.Table`` (vectors are fixed-size lists, timestamps are timestamps)."""
        return self.store[name].to_arrow(fields=fields)

    def to_polars(self, name: str, fields: list[str] | None = None) -> Any:
        """The stream as a ``polars.DataFrame``."""
        import polars as pl

        return pl.from_arrow(self.to_arrow(name, fields))

    def scan(self, name: str) -> Any:
        """A lazy ``polars.LazyFrame`` over the stream (reads chunk by chunk)."""
        from mimicdata.query import scan

        return scan(self.path, name)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LogData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rows = {name: self.store[name].num_rows for name in self.streams}
        return f"<LogData {self.path} session={self.session_id} rows={rows} dropped={len(self.drops)} gap(s)>"


def load_log(path: str | Path) -> LogData:
    """Open a log written by :class:`~mimicdata.logger.StreamingLogger` (or converted from the seed's logs)."""
    return LogData(path)
