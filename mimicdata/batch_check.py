"""Checking a batch of rows against a stream's schema before it is written: field names, presence, row
counts, shapes (free dimensions fixed by the first batch), dtypes, NaN/Inf, lossy rounding and string
categories. Pure: nothing here touches storage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mimicdata.codecs import round_mantissa
from mimicdata.errors import ValidationError

if TYPE_CHECKING:
    from mimicdata.stream import Stream


def normalise_batch(stream: Stream, batch: Mapping[str, Any]
                    ) -> tuple[dict[str, np.ndarray], int, dict[str, list[str]]]:
    """Check a batch against the schema; returns storage-dtype arrays, the row count, new categories."""
    if not isinstance(batch, Mapping) or not batch:
        raise ValidationError(f"{stream.name}: a batch is a non-empty mapping of field name -> array")
    where = f"{stream.store.location} {stream.name}"
    unknown = [k for k in batch if stream.spec.field_for(k) is None]
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {unknown}; schema {stream.schema} "
                              f"v{stream.schema_version} has {sorted(stream.spec.fields)}")
    present = set(stream.meta.get("fields_present", []))
    required = {k for k, f in stream.spec.fields.items() if f.required}
    missing = sorted((required | (present if stream.committed_rows else set())) - set(batch))
    if missing:
        raise ValidationError(f"{where}: missing field(s) {missing}")
    if stream.committed_rows and set(batch) - present:
        raise ValidationError(f"{where}: field(s) {sorted(set(batch) - present)} were absent from the "
                              f"first {stream.committed_rows} rows; a field is present from the first row or never")
    lengths = {k: len(np.asarray(v) if not np.isscalar(v) else [v]) for k, v in batch.items()}
    if len(set(lengths.values())) != 1:
        raise ValidationError(f"{where}: fields have different numbers of rows: {lengths}")
    n = next(iter(lengths.values()))
    cats = {k: list(v) for k, v in stream.meta.get("categories", {}).items()}
    dims = stream.dims
    out: dict[str, np.ndarray] = {}
    for name, value in batch.items():
        spec = stream.spec.field_for(name)
        assert spec is not None
        arr = np.asarray(value)
        if spec.dtype == "string":
            out[name] = encode_strings(stream, name, arr, cats)
            continue
        for dim, size in zip(spec.shape, arr.shape[1:], strict=False):
            if isinstance(dim, str) and dim not in dims:
                dims[dim] = int(size)  # a free dimension is fixed by the first batch that has it
        expected = spec.resolve(dims)
        if expected is None or arr.shape[1:] != expected:
            shown = "x".join(f"{d}" for d in spec.shape) or "scalar"
            raise ValidationError(f"{where}.{name}: expected shape (rows, {shown}) = (rows, "
                                  f"{', '.join(map(str, expected or ()))}), got {arr.shape}")
        target = spec.storage_dtype
        if arr.dtype != target:
            if not np.can_cast(arr.dtype, target, casting="same_kind"):
                raise ValidationError(f"{where}.{name}: dtype {arr.dtype} cannot be stored as {target}")
            arr = arr.astype(target)
        if target.kind == "f" and not spec.allow_nan:
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise ValidationError(f"{where}.{name}: row {row} of the batch holds NaN/Inf "
                                      f"(the field does not allow non-finite values)")
        bits = stream.meta.get("lossy", {}).get(name)
        if bits:
            arr = round_mantissa(arr, int(bits))
        out[name] = np.ascontiguousarray(arr)
    stream.meta["dims"] = dims
    new_cats = {k: v for k, v in cats.items() if v != stream.meta.get("categories", {}).get(k)}
    return out, n, new_cats

def encode_strings(stream: Stream, name: str, arr: np.ndarray, cats: dict[str, list[str]]) -> np.ndarray:
    """Category codes (int32) of one string per row; new strings are appended to ``cats[name]``."""
    if arr.ndim != 1:
        raise ValidationError(f"{stream.name}.{name}: string field takes one string per row, got shape {arr.shape}")
    table = cats.setdefault(name, [])
    lookup = {s: i for i, s in enumerate(table)}
    codes = np.empty(len(arr), np.int32)
    for i, value in enumerate(arr.tolist()):
        if not isinstance(value, str):
            raise ValidationError(f"{stream.name}.{name}: row {i} is {type(value).__name__}, not a string")
        if value not in lookup:
            lookup[value] = len(table)
            table.append(value)
        codes[i] = lookup[value]
    return codes
