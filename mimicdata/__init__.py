"""mimicdata: a versioned, chunked, queryable data layer for humanoid motion-imitation learning.

>>> import mimicdata as md
>>> store = md.create("memory://readme", "cmg_rollout", robot="g1_29dof", fps=50)
>>> store.streams["frames"].num_rows
0
"""

from __future__ import annotations

__version__ = "0.1.0"

from mimicdata.batching import Batches, batches
from mimicdata.dataset import WindowDataset
from mimicdata.errors import (
    CorruptStoreError,
    MimicDataError,
    ReadOnlyError,
    SchemaError,
    SchemaVersionError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    ValidationError,
)
from mimicdata.schema import Robot, Schema, load_robot, load_schema, robot_names, schema_names
from mimicdata.store import Store, create, open
from mimicdata.stream import Stream


def scan(url: str, stream: str | None = None, **kwargs: object) -> object:
    """A ``polars.LazyFrame`` over one stream of a store, read chunk by chunk (see :mod:`mimicdata.arrow`)."""
    from mimicdata.arrow import scan as _scan

    return _scan(url, stream, **kwargs)  # type: ignore[arg-type]


__all__ = [
    "Batches",
    "CorruptStoreError",
    "MimicDataError",
    "ReadOnlyError",
    "Robot",
    "Schema",
    "SchemaError",
    "SchemaVersionError",
    "Store",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotFoundError",
    "Stream",
    "ValidationError",
    "WindowDataset",
    "__version__",
    "batches",
    "create",
    "load_robot",
    "load_schema",
    "open",
    "robot_names",
    "scan",
    "schema_names",
]
