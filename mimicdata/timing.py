"""Timing of a logged stream: control-period histogram, jitter, missed deadlines, gaps and drops.

The seed's ``analyze_logs.py`` printed the mean rate; a control loop fails in its tail, so this
reports the distribution. Periods come from the stream's ``monotonic_ns`` column when it has one
(immune to wall-clock steps from NTP), else from its wall-clock time field.

>>> report = timing_report(md.open("run.zarr")["observations"])   # doctest: +SKIP
>>> print(format_timing_report(report))                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mimicdata.store import Store
    from mimicdata.stream import Stream

MONOTONIC = "monotonic_ns"
DROPS = "drops"
MAX_LISTED = 10


def _clock(stream: Stream) -> tuple[np.ndarray | None, str | None]:
    if MONOTONIC in stream.fields:
        return stream.read(MONOTONIC).astype(np.int64), MONOTONIC
    stamps = stream.timestamps()
    return (stamps, stream.spec.time_field) if stamps is not None else (None, None)


def _drops_of(store: Store, name: str) -> dict[str, Any]:
    """What the logger recorded as dropped for this stream (the store's ``drops`` stream)."""
    out: dict[str, Any] = {"count": 0, "gaps": 0, "by_reason": {}, "largest": []}
    if DROPS not in store.streams or not store[DROPS].num_rows:
        return out
    drops = store[DROPS]
    mine = drops.read("stream") == name
    if not mine.any():
        return out
    counts = drops.read("count")[mine]
    reasons = drops.read("reason")[mine]
    first, last = drops.read("first_seq")[mine], drops.read("last_seq")[mine]
    start, end = drops.read("timestamp")[mine], drops.read("gap_end")[mine]
    out["count"], out["gaps"] = int(counts.sum()), int(mine.sum())
    out["by_reason"] = {str(r): int(counts[reasons == r].sum()) for r in sorted(set(reasons.tolist()))}
    order = np.argsort(-counts, kind="stable")[:MAX_LISTED]
    out["largest"] = [{"first_seq": int(first[i]), "last_seq": int(last[i]), "count": int(counts[i]),
                       "reason": str(reasons[i]), "duration_ms": (int(end[i]) - int(start[i])) / 1e6}
                      for i in order]
    return out


def timing_report(stream: Stream, *, expected_hz: float | None = None, deadline_factor: float = 1.5,
                  gap_factor: float = 3.0, bins: int = 40) -> dict[str, Any]:
    """Timing statistics of one stream as JSON-ready data.

    Args:
        stream: a stream with a time field (``observations``, ``actions``, a logged custom stream).
        expected_hz: nominal rate; default the stream's fps, else the median measured rate.
        deadline_factor: a period longer than this many nominal periods is a missed deadline.
        gap_factor: a period longer than this many nominal periods is listed as a gap.
        bins: histogram bins between 0 and ``max(2 x nominal, p99.9)``; longer periods are counted
            in ``overflow``.

    Keys: ``samples``, ``clock``, ``span_s``, ``nominal_hz`` (+ ``nominal_source``), ``measured_hz``,
    ``period_ms`` (mean, std, min, p1, p50, p99, p99_9, max), ``jitter_ms`` (std and p99 of
    |period - nominal|), ``missed_deadlines``, ``missed_ticks``, ``gaps`` (count, total_s, largest),
    ``non_monotonic``, ``histogram`` (edges_ms, counts, overflow), ``counter_gaps`` (jumps of
    ``counter_step`` > 1), ``drops`` (from the logger's drops table).
    """
    out: dict[str, Any] = {"stream": stream.name, "samples": stream.num_rows, "drops": _drops_of(stream.store,
                                                                                                  stream.name)}
    stamps, clock = _clock(stream)
    if "counter_step" in stream.fields and stream.num_rows > 1:
        steps = np.diff(stream.read("counter_step").astype(np.int64))
        out["counter_gaps"] = {"count": int((steps > 1).sum()), "missing_steps": int((steps[steps > 1] - 1).sum())}
    if stamps is None:
        out["clock"] = None
        out["error"] = f"stream {stream.name!r} has no time field"
        return out
    out["clock"] = clock
    if len(stamps) < 2:
        return out
    periods = np.diff(stamps) / 1e6  # ms
    out["span_s"] = float((stamps[-1] - stamps[0]) / 1e9)
    out["measured_hz"] = (len(stamps) - 1) / out["span_s"] if out["span_s"] > 0 else None
    positive = periods[periods > 0]
    if expected_hz:
        nominal_hz, source = float(expected_hz), "argument"
    elif stream.fps:
        nominal_hz, source = float(stream.fps), "stream fps"
    elif len(positive):
        nominal_hz, source = 1000.0 / float(np.median(positive)), "median period"
    else:
        out["error"] = "all timestamps are equal"
        return out
    nominal = 1000.0 / nominal_hz
    out["nominal_hz"], out["nominal_source"] = nominal_hz, source
    q = np.percentile(periods, [1, 50, 99, 99.9])
    out["period_ms"] = {"mean": float(periods.mean()), "std": float(periods.std()), "min": float(periods.min()),
                        "p1": float(q[0]), "p50": float(q[1]), "p99": float(q[2]), "p99_9": float(q[3]),
                        "max": float(periods.max())}
    deviation = np.abs(periods - nominal)
    out["jitter_ms"] = {"std": float(periods.std()), "p99": float(np.percentile(deviation, 99)),
                        "max": float(deviation.max())}
    late = periods > deadline_factor * nominal
    out["missed_deadlines"] = {"count": int(late.sum()), "fraction": float(late.mean()),
                               "threshold_ms": deadline_factor * nominal}
    out["missed_ticks"] = int(np.clip(np.round(periods / nominal) - 1, 0, None).sum())
    gap_idx = np.flatnonzero(periods > gap_factor * nominal)
    order = gap_idx[np.argsort(-periods[gap_idx], kind="stable")][:MAX_LISTED]
    out["gaps"] = {"count": len(gap_idx), "threshold_ms": gap_factor * nominal,
                   "total_s": float(periods[gap_idx].sum() / 1e3),
                   "largest": [{"after_row": int(i), "at_s": float((stamps[i] - stamps[0]) / 1e9),
                                "duration_ms": float(periods[i])} for i in sorted(order)]}
    out["non_monotonic"] = int((periods <= 0).sum())
    top = max(2.0 * nominal, float(q[3]))
    counts, edges = np.histogram(np.clip(periods, 0, None), bins=bins, range=(0.0, top))
    out["histogram"] = {"edges_ms": [float(e) for e in edges], "counts": [int(c) for c in counts],
                        "overflow": int((periods > top).sum())}
    return out


def timing_reports(store: Store, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """:func:`timing_report` of every stream with a clock (the drops table excluded)."""
    return {name: timing_report(stream, **kwargs) for name, stream in store.streams.items()
            if name != DROPS and stream.spec.time_field}


def format_timing_report(report: dict[str, Any], *, histogram: bool = True, width: int = 40) -> str:
    """The report as readable text, with an ASCII histogram of the control period."""
    lines = [f"{report['stream']}: {report['samples']} samples"]
    if report.get("error"):
        return "\n".join([*lines, f"  {report['error']}"])
    if "period_ms" not in report:
        return "\n".join([*lines, "  too few samples for timing"])
    p, j = report["period_ms"], report["jitter_ms"]
    lines[0] += (f" over {report['span_s']:.2f} s, {report['measured_hz']:.2f} Hz measured, "
                 f"{report['nominal_hz']:.2f} Hz nominal ({report['nominal_source']}), clock {report['clock']}")
    lines.append(f"  period ms: mean {p['mean']:.3f}  p1 {p['p1']:.3f}  p50 {p['p50']:.3f}  p99 {p['p99']:.3f}  "
                 f"p99.9 {p['p99_9']:.3f}  max {p['max']:.3f}")
    lines.append(f"  jitter ms: std {j['std']:.3f}  p99 |period-nominal| {j['p99']:.3f}  max {j['max']:.3f}")
    m = report["missed_deadlines"]
    lines.append(f"  missed deadlines (> {m['threshold_ms']:.2f} ms): {m['count']} ({100 * m['fraction']:.2f} %), "
                 f"missed ticks {report['missed_ticks']}, non-monotonic {report['non_monotonic']}")
    g = report["gaps"]
    lines.append(f"  gaps (> {g['threshold_ms']:.2f} ms): {g['count']}, {g['total_s']:.3f} s in total")
    for gap in g["largest"]:
        lines.append(f"    after row {gap['after_row']} at {gap['at_s']:.3f} s: {gap['duration_ms']:.2f} ms")
    d = report["drops"]
    reasons = ", ".join(f"{k} {v}" for k, v in d["by_reason"].items())
    lines.append(f"  dropped by the logger: {d['count']} records in {d['gaps']} gap(s)"
                 + (f" ({reasons})" if reasons else ""))
    for drop in d["largest"]:
        lines.append(f"    records {drop['first_seq']}..{drop['last_seq']} ({drop['count']}, {drop['reason']}, "
                     f"{drop['duration_ms']:.1f} ms)")
    if "counter_gaps" in report:
        c = report["counter_gaps"]
        lines.append(f"  counter_step jumps: {c['count']} ({c['missing_steps']} steps missing)")
    if histogram:
        h = report["histogram"]
        peak = max(h["counts"]) or 1
        lines.append("  period histogram (ms):")
        edges = h["edges_ms"]
        for lo, hi, count in zip(edges[:-1], edges[1:], h["counts"], strict=True):
            if count:
                lines.append(f"    {lo:8.3f}-{hi:8.3f} {count:8d} {'#' * max(1, round(width * count / peak))}")
        if h["overflow"]:
            lines.append(f"    {'>':>8} {edges[-1]:8.3f} {h['overflow']:8d}")
    return "\n".join(lines)
