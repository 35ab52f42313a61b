"""Schema migrations: planning. Old stores are read through the plan's view (aliases), or rewritten by
:meth:`mimicdata.stream.Stream.apply_migration` when opened for append.

A newer schema document lists, under ``migrate_from``, the operations that turn the previous
version's fields into its own:

- ``{"op": "rename", "from": "_timestamp", "to": "timestamp"}``
- ``{"op": "scale", "field": "timestamp", "factor": 1e9, "dtype": "int64"}``
- ``{"op": "add", "field": "monotonic_ns"}`` (an optional field: nothing to do for old rows)

Versions without an entry are additive (new optional fields only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mimicdata.errors import SchemaError
from mimicdata.schema import Schema, StreamSpec, load_schema, parse_version, schema_versions

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass
class MigrationPlan:
    """How to see an old stream as the current schema."""

    source_version: str
    target: Schema
    spec: StreamSpec
    aliases: dict[str, tuple[str, Transform | None]]   # visible name -> (array on disk, transform)
    fields_present: list[str]                          # arrays on disk, as before


def _compose(first: Transform | None, factor: float, dtype: str) -> Transform:
    def transform(values: np.ndarray) -> np.ndarray:
        base = first(values) if first else values
        out = base.astype(np.float64) * factor
        return np.round(out).astype(dtype) if np.dtype(dtype).kind in "iu" else out.astype(dtype)

    return transform


def plan_migration(schema: str, version: str, target: Schema, meta: dict[str, Any], stream: str) -> MigrationPlan:
    """Chain the shipped versions from ``version`` to ``target`` and collect the field mapping."""
    versions = [v for v in schema_versions(schema)
                if parse_version(version) < parse_version(v) <= target.version_tuple]
    present = list(meta.get("fields_present", []))
    table: dict[str, tuple[str, Transform | None]] = {name: (name, None) for name in present}
    for step in versions:
        for op in load_schema(schema, step).migrate_from.get(_previous(schema, step), []):
            kind = op.get("op")
            if kind == "rename":
                if op["from"] in table:
                    table[op["to"]] = table.pop(op["from"])
            elif kind == "scale":
                if op["field"] in table:
                    phys, fn = table[op["field"]]
                    table[op["field"]] = (phys, _compose(fn, float(op["factor"]), op["dtype"]))
            elif kind != "add":
                raise SchemaError(f"schema {schema} v{step}: unknown migration op {kind!r}")
    if stream not in target.streams:
        raise SchemaError(f"schema {schema} v{target.version} has no stream {stream!r}")
    aliases = {vis: entry for vis, entry in table.items() if entry != (vis, None)}
    return MigrationPlan(version, target, target.streams[stream], aliases, present)


def _previous(schema: str, version: str) -> str:
    versions = schema_versions(schema)
    return versions[versions.index(version) - 1]
