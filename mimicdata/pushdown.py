"""Predicates on sorted columns as row ranges, before any chunk of the other columns is read.

A stream records which scalar fields have never decreased (``sorted_fields`` in its metadata, kept by
every append: ``timestamp``, ``monotonic_ns``, ``counter_step``, segment indices, ``start``/``end`` of
segment tables, ...). A conjunction of comparisons of such a field with constants (``>``, ``>=``, ``<``,
``<=``, ``==``, ``is_between``, SQL ``BETWEEN``) bounds the matching rows to one range ``[lo, hi)``,
found by binary search over the field's chunks: about log2(chunks) small chunk decodes instead of a
scan. Anything else in the predicate (other columns, ``or``, casts) narrows nothing but is still
applied to the rows read, so the result is always the same as without pushdown.

:func:`bounds` is pure (it reads Polars' JSON form of an expression); :func:`row_range` does the search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_FLIP = {"Gt": "Lt", "GtEq": "LtEq", "Lt": "Gt", "LtEq": "GtEq", "Eq": "Eq"}
_TIME_UNITS = {"Nanoseconds": 1, "Microseconds": 1_000, "Milliseconds": 1_000_000}


@dataclass(frozen=True)
class Interval:
    """Values ``v`` with ``low <(=) v <(=) high`` (closed ends where ``*_closed``)."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = True

    def __and__(self, other: Interval) -> Interval:
        if (other.low, not other.low_closed) > (self.low, not self.low_closed):
            low, low_closed = other.low, other.low_closed
        else:
            low, low_closed = self.low, self.low_closed
        if (other.high, other.high_closed) < (self.high, self.high_closed):
            high, high_closed = other.high, other.high_closed
        else:
            high, high_closed = self.high, self.high_closed
        return Interval(low, high, low_closed, high_closed)


def bounds(predicate_json: str) -> dict[str, Interval]:
    """Column -> interval implied by the top-level conjunction of a serialised Polars predicate."""
    out: dict[str, Interval] = {}
    for column, interval in _conjuncts(json.loads(predicate_json)):
        out[column] = out[column] & interval if column in out else interval
    return out


def _conjuncts(node: Any) -> list[tuple[str, Interval]]:
    if not isinstance(node, dict):
        return []
    if "BinaryExpr" in node:
        expr = node["BinaryExpr"]
        op = expr.get("op")
        if op in ("And", "LogicalAnd"):
            return _conjuncts(expr.get("left")) + _conjuncts(expr.get("right"))
        if op not in _FLIP:
            return []
        left, right = expr.get("left"), expr.get("right")
        column, value = _column(left), _literal(right)
        if column is None or value is None:
            column, value, op = _column(right), _literal(left), _FLIP[op]
        if column is None or value is None:
            return []
        return [(column, _compare(op, value))]
    if "Function" in node:
        fn = node["Function"]
        kind = fn.get("function", {})
        between = kind.get("Boolean", {}).get("IsBetween") if isinstance(kind, dict) else None
        args = fn.get("input", [])
        if between is None or len(args) != 3:
            return []
        column, low, high = _column(args[0]), _literal(args[1]), _literal(args[2])
        if column is None or low is None or high is None:
            return []
        closed = between.get("closed", "Both")
        return [(column, Interval(low, high, closed in ("Both", "Left"), closed in ("Both", "Right")))]
    return []


def _compare(op: str, value: float) -> Interval:
    return {"Gt": Interval(low=value, low_closed=False), "GtEq": Interval(low=value),
            "Lt": Interval(high=value, high_closed=False), "LtEq": Interval(high=value),
            "Eq": Interval(value, value)}[op]


def _column(node: Any) -> str | None:
    return node["Column"] if isinstance(node, dict) and isinstance(node.get("Column"), str) else None


def _literal(node: Any) -> float | None:
    """A numeric or datetime constant (datetimes as int nanoseconds), else None."""
    if not isinstance(node, dict) or "Literal" not in node:
        return None
    lit = node["Literal"]
    inner = lit.get("Scalar", lit.get("Dyn")) if isinstance(lit, dict) else None
    if not isinstance(inner, dict) or len(inner) != 1:
        return None
    (kind, value), = inner.items()
    if kind == "Datetime" and isinstance(value, list) and len(value) >= 2 and value[1] in _TIME_UNITS:
        return int(value[0]) * _TIME_UNITS[value[1]]
    if kind in ("Datetime", "Date", "Duration", "Time", "Boolean", "String", "Null"):
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def still_sorted(before: list[str], batch: dict[str, np.ndarray], last: dict[str, Any]) -> list[str]:
    """Fields of ``before`` that stay non-decreasing with ``batch`` appended after rows ending in ``last``
    (no entry in ``last``: the batch is the first). Only scalar numeric fields qualify; NaN never does."""
    out = []
    for name in before:
        values = batch.get(name)
        if values is None or values.ndim != 1 or values.dtype.kind not in "iuf":
            continue
        if values.dtype.kind == "f" and bool(np.isnan(values).any()):
            continue
        if len(values) > 1 and not bool(np.all(values[1:] >= values[:-1])):
            continue
        if name in last and not values[0] >= last[name]:
            continue
        out.append(name)
    return out


def row_range(interval: Interval, rows: int, chunk_rows: int, read_chunk: Callable[[int], np.ndarray]
              ) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of a non-decreasing column of ``rows`` values whose values lie in ``interval``.

    ``read_chunk(i)`` returns rows ``[i * chunk_rows, min((i + 1) * chunk_rows, rows))``; each chunk is
    read at most once.
    """
    cache: dict[int, np.ndarray] = {}

    def chunk(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = read_chunk(i)
        return cache[i]

    def first_row(value: float, side: str) -> int:
        """First row whose value is >= value (side 'left') or > value (side 'right')."""
        if value == -math.inf:
            return 0
        if value == math.inf:
            return rows
        lo, hi = 0, -(-rows // chunk_rows)  # first chunk whose last value passes
        while lo < hi:
            mid = (lo + hi) // 2
            last = chunk(mid)[-1]
            if last > value or (side == "left" and last == value):
                hi = mid
            else:
                lo = mid + 1
        if lo * chunk_rows >= rows:
            return rows
        return lo * chunk_rows + int(np.searchsorted(chunk(lo), value, side=side))  # type: ignore[call-overload]

    if rows == 0:
        return 0, 0
    start = first_row(interval.low, "left" if interval.low_closed else "right")
    stop = first_row(interval.high, "right" if interval.high_closed else "left")
    return start, max(start, stop)
