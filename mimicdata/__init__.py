"""mimicdata: a versioned, chunked, queryable data layer for humanoid motion-imitation learning.

>>> import mimicdata as md
>>> store = md.create("memory://readme", "cmg_rollout", robot="g1_29dof", fps=50)
>>> store.streams["frames"].num_rows
0
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mimicdata._version import __version__
from mimicdata.batching import Batches, batches
from mimicdata.dataset import WindowDataset
from mimicdata.errors import (
    CorruptStoreError,
    MimicDataError,
    ReadOnlyError,
    SchemaError,
    SchemaVersionError,
    StorageFullError,
    StorageWriteError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    ValidationError,
)
from mimicdata.schema import Robot, Schema, load_robot, load_schema, robot_names, schema_names
from mimicdata.store import Store, create, open
from mimicdata.stream import Stream

if TYPE_CHECKING:
    import polars as pl


def scan(url: str | os.PathLike[str], stream: str | None = None, *, row_index: bool = False,
         storage_options: dict[str, Any] | None = None) -> pl.LazyFrame:
    """A ``polars.LazyFrame`` over one stream of a store, read batch by batch, with projection and
    time-range pushdown (see :mod:`mimicdata.query`). Polars is imported only when this is called."""
    from mimicdata.query import scan as _scan

    return _scan(os.fspath(url), stream, row_index=row_index, storage_options=storage_options)


__all__ = [
    "CorruptStoreError", "MimicDataError", "ReadOnlyError", "Robot", "Schema", "SchemaError",
    "SchemaVersionError", "Store", "StoreExistsError", "StoreLockedError", "StoreNotFoundError", "Stream",
    "ValidationError", "__version__", "create", "load_robot", "load_schema", "open", "robot_names", "scan",
    "schema_names",
]
__all__ += ["Batches", "WindowDataset", "batches"]  # the training data path (mimicdata.dataset, .batching)
__all__ += ["StorageFullError", "StorageWriteError"]
