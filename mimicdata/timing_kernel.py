"""The one computation behind every timing check: control periods of a clock column, within segments.

`mimicdata inspect` (:func:`mimicdata.report.timing_summary`), `mimicdata timing`
(:func:`mimicdata.timing.timing_report`) and :func:`mimicdata.episodes.fps_check` are thin adapters over
:func:`period_stats`; they used to be three implementations that disagreed on what counts as a
non-monotonic step and whether the reset between two episodes is a gap, and the episode check only
looked for loops *slower* than declared, so frames stamped at ~25 kHz passed as "kept 50 fps".

Rules, in one place:

- A period is the difference between two consecutive rows *of the same segment* (episode, clip). With
  segments, the time between one segment's last row and the next one's first (a reset) is no period,
  and rows outside every segment (uncommitted) are ignored.
- A clock must strictly increase: a period ``<= 0`` is ``non_monotonic``; ``< 0`` is also ``backwards``.
- A segment keeps the declared rate when its measured rate, ``(rows - 1) / (last - first stamp)``, is within
  ``rate_tolerance`` of it, in *both* directions: faster is as wrong as slower (the stamps then do
  not describe the loop that the fps claims). A segment whose stamps do not advance is "fast".
- A period longer than ``late_factor`` nominal periods is late; one of ``k`` nominal periods means
  ``k - 1`` missed ticks; one longer than ``gap_factor`` nominal periods is a gap.

Pure numpy over int64 nanoseconds; no store access (that is the adapters' job).
"""

from __future__ import annotations

from typing import Any

import numpy as np

LATE_FACTOR = 1.5        # a period above 1.5 nominal periods is a late (missed-deadline) tick
GAP_FACTOR = 3.0         # a period above 3 nominal periods is listed as a gap
RATE_TOLERANCE = 0.05    # a segment more than 5 % off the declared rate does not keep it
MAX_LISTED = 10          # largest gaps listed


def _valid_segments(segments: np.ndarray | None, rows: int) -> np.ndarray:
    """Row ranges ``[start, end)`` clipped to the column (one range of every row without segments)."""
    if segments is None:
        segs = np.array([[0, rows]], np.int64)
    else:
        segs = np.clip(np.asarray(segments, np.int64).reshape(-1, 2), 0, rows)
    return segs


def segment_periods(stamps_ns: np.ndarray, segments: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Periods (ms, float64) between consecutive rows of the same segment, and the row each follows."""
    stamps = np.asarray(stamps_ns, np.int64)
    n = len(stamps)
    if n < 2:
        return np.zeros(0), np.zeros(0, np.int64)
    segs = _valid_segments(segments, n)
    segs = segs[segs[:, 1] - segs[:, 0] >= 2]
    # period i (rows i -> i+1) is inside a segment when start <= i < end - 1: a +1/-1 sweep over the periods
    cover = np.zeros(n, np.int64)
    np.add.at(cover, segs[:, 0], 1)
    np.add.at(cover, segs[:, 1] - 1, -1)
    inside = np.cumsum(cover)[:-1] > 0
    after_row = np.flatnonzero(inside)
    return np.diff(stamps)[inside] / 1e6, after_row


def segment_rates(stamps_ns: np.ndarray, segments: np.ndarray | None = None) -> np.ndarray:
    """Measured rate (Hz) of each segment: ``(rows - 1) / span``; NaN below two rows, inf if the span is <= 0."""
    stamps = np.asarray(stamps_ns, np.int64)
    segs = _valid_segments(segments, len(stamps))
    rates = np.full(len(segs), np.nan)
    for i, (start, end) in enumerate(segs.tolist()):
        if end - start >= 2:
            span = int(stamps[end - 1]) - int(stamps[start])
            rates[i] = (end - start - 1) * 1e9 / span if span > 0 else np.inf
    return rates


def period_stats(stamps_ns: np.ndarray, nominal_hz: float | None = None, segments: np.ndarray | None = None, *,
                 late_factor: float = LATE_FACTOR, gap_factor: float = GAP_FACTOR,
                 rate_tolerance: float = RATE_TOLERANCE, max_listed: int = MAX_LISTED) -> dict[str, Any]:
    """Timing statistics of a clock column (int64 ns), as JSON-ready data.

    Args:
        stamps_ns: one timestamp per row.
        nominal_hz: the declared rate. Without it the median positive period stands in
            (``nominal_source`` says which) and no rate check is made: a rate measured from the data
            cannot be wrong about itself.
        segments: ``(k, 2)`` row ranges ``[start, end)`` (episodes, clips); None for one segment of all rows.

    Keys (each only once computable): ``samples``, ``start_ns``, ``end_ns``, ``span_s``, ``periods``,
    ``period_ms`` (mean, std, min, p1, p50, p99, p99_9, max), ``measured_hz`` (1 / mean period),
    ``non_monotonic``, ``backwards``, ``nominal_hz``, ``nominal_source`` (``declared`` or ``median
    period``), ``nominal_period_ms``, ``jitter_ms`` (std of the period; p99 and max of
    |period - nominal|), ``late`` (count, fraction, threshold_ms), ``missed_ticks``, ``gaps`` (count,
    threshold_ms, total_s, largest: after_row, at_s, duration_ms), and with a declared rate ``rate``
    (tolerance, ``ok``, ``slow`` / ``fast``: lists of ``{"segment", "hz"}``; hz None when the stamps
    do not advance).
    """
    stamps = np.asarray(stamps_ns, np.int64)
    out: dict[str, Any] = {"samples": len(stamps)}
    if len(stamps) == 0:
        return out
    out["start_ns"], out["end_ns"] = int(stamps[0]), int(stamps[-1])
    out["span_s"] = (int(stamps[-1]) - int(stamps[0])) / 1e9
    periods, after_row = segment_periods(stamps, segments)
    out["periods"] = len(periods)
    if len(periods) == 0:
        return out
    q = np.percentile(periods, [1, 50, 99, 99.9])
    mean = float(periods.mean())
    out["period_ms"] = {"mean": mean, "std": float(periods.std()), "min": float(periods.min()), "p1": float(q[0]),
                        "p50": float(q[1]), "p99": float(q[2]), "p99_9": float(q[3]), "max": float(periods.max())}
    out["measured_hz"] = 1000.0 / mean if mean > 0 else None
    out["non_monotonic"] = int((periods <= 0).sum())
    out["backwards"] = int((periods < 0).sum())
    positive = periods[periods > 0]
    if nominal_hz:
        source = "declared"
    elif len(positive):
        nominal_hz, source = 1000.0 / float(np.median(positive)), "median period"
    else:
        return out
    nominal = 1000.0 / float(nominal_hz)
    out["nominal_hz"], out["nominal_source"], out["nominal_period_ms"] = float(nominal_hz), source, nominal
    deviation = np.abs(periods - nominal)
    out["jitter_ms"] = {"std": float(periods.std()), "p99": float(np.percentile(deviation, 99)),
                        "max": float(deviation.max())}
    late = periods > late_factor * nominal
    out["late"] = {"count": int(late.sum()), "fraction": float(late.mean()), "threshold_ms": late_factor * nominal}
    out["missed_ticks"] = int(np.clip(np.round(periods / nominal) - 1, 0, None).sum())
    gap = np.flatnonzero(periods > gap_factor * nominal)
    largest = np.sort(gap[np.argsort(-periods[gap], kind="stable")][:max_listed])
    rows = after_row[largest]
    out["gaps"] = {"count": len(gap), "threshold_ms": gap_factor * nominal, "total_s": float(periods[gap].sum() / 1e3),
                   "largest": [{"after_row": int(row), "at_s": (int(stamps[row]) - int(stamps[0])) / 1e9,
                                "duration_ms": float(p)} for row, p in zip(rows, periods[largest], strict=True)]}
    if source == "declared":
        out["rate"] = rate_check(segment_rates(stamps, segments), float(nominal_hz), rate_tolerance)
    return out


def rate_check(rates_hz: np.ndarray, declared_hz: float, tolerance: float = RATE_TOLERANCE) -> dict[str, Any]:
    """Which segments are more than ``tolerance`` slower or faster than ``declared_hz`` (NaN rates skipped)."""
    slow = [{"segment": i, "hz": float(r)} for i, r in enumerate(rates_hz) if r < declared_hz * (1 - tolerance)]
    fast = [{"segment": i, "hz": None if np.isinf(r) else float(r)}
            for i, r in enumerate(rates_hz) if r > declared_hz * (1 + tolerance)]
    return {"tolerance": tolerance, "ok": not slow and not fast, "slow": slow, "fast": fast}
