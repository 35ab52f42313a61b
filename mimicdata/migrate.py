"""Schema migrations: old stores are read through a view, or rewritten when opened for append.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from mimicdata.errors import SchemaError
from mimicdata.schema import Schema, StreamSpec, load_schema, parse_version, schema_versions

if TYPE_CHECKING:
    from mimicdata.stream import Stream

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


def apply_migration_on_disk(stream: Stream, plan: MigrationPlan) -> None:
    """Rewrite migrated fields under their new names, then commit the new version, then delete the old
    arrays. A crash before the commit leaves the old version intact (the migration simply runs again)."""
    rows = stream.committed_rows
    new_present = list(plan.fields_present)
    for vis, (phys, transform) in plan.aliases.items():
        values = stream._read_physical(phys, 0, rows)
        if transform is not None:
            values = transform(values)
        spec = plan.spec.fields[vis]
        array = stream._create_array(vis, spec, values.shape[1:])
        if rows:
            array.resize((rows, *values.shape[1:]))
            array[0:rows] = values
        new_present[new_present.index(phys)] = vis
    stale = [phys for phys, _ in plan.aliases.values()]
    meta = dict(stream.meta, version=plan.target.version, spec=plan.spec.to_doc(), fields_present=new_present,
                migrated_from=plan.source_version)
    stream.spec = plan.spec
    stream._commit(meta)
    for phys in stale:
        if phys not in new_present:
            del stream.group[phys]
            stream._arrays.pop(phys, None)
    root_meta = dict(stream.store.meta)
    root_meta["schemas"] = [dict(s, version=plan.target.version) if s.get("name") == plan.target.name else s
                            for s in root_meta.get("schemas", [])]
    stream.store.root.update_attributes({"mimicdata": root_meta})
    stream.store.meta = root_meta
