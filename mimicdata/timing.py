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

from mimicdata.timing_kernel import GAP_FACTOR, LATE_FACTOR, MAX_LISTED, period_stats, segment_periods

if TYPE_CHECKING:
    from mimicdata.store import Store
    from mimicdata.stream import Stream

MONOTONIC = "monotonic_ns"
DROPS = "drops"


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


def timing_report(stream: Stream, *, expected_hz: float | None = None, deadline_factor: float = LATE_FACTOR,
                  gap_factor: float = GAP_FACTOR, bins: int = 40) -> dict[str, Any]:
    """Timing statistics of one stream as JSON-ready data (:func:`mimicdata.timing_kernel.period_stats`
    over its clock, plus the logger's drops, ``counter_step`` jumps and a histogram).

    Args:
        stream: a stream with a time field (``observations``, ``actions``, a logged custom stream). A
            segmented stream (episode frames, clip frames) is timed within its segments: resets are no gaps.
        expected_hz: nominal rate; default the stream's fps, else the median measured rate.
        deadline_factor: a period longer than this many nominal periods is a missed deadline.
        gap_factor: a period longer than this many nominal periods is listed as a gap.
        bins: histogram bins between 0 and ``max(2 x nominal, p99.9)``; longer periods are counted
            in ``overflow``.

    Keys: ``samples``, ``clock``, ``span_s``, ``nominal_hz`` (+ ``nominal_source``), ``measured_hz``,
    ``period_ms`` (mean, std, min, p1, p50, p99, p99_9, max), ``jitter_ms`` (std and p99 of
    |period - nominal|), ``missed_deadlines``, ``missed_ticks``, ``gaps`` (count, total_s, largest),
    ``non_monotonic`` (periods <= 0), ``backwards`` (< 0), ``rate`` (segments off the declared rate),
    ``histogram`` (edges_ms, counts, overflow), ``counter_gaps`` (jumps of ``counter_step`` > 1),
    ``drops`` (from the logger's drops table).
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
    segments = stream.segments() if stream.segment_stream() is not None else None
    declared = expected_hz or stream.fps
    stats = period_stats(stamps, declared, segments, late_factor=deadline_factor, gap_factor=gap_factor)
    out["span_s"] = stats["span_s"]
    if "period_ms" not in stats:
        return out
    out["measured_hz"] = stats["measured_hz"]
    if "nominal_hz" not in stats:
        out["error"] = "all timestamps are equal"
        return out
    out["nominal_hz"] = stats["nominal_hz"]
    out["nominal_source"] = ("argument" if expected_hz else "stream fps") if declared else stats["nominal_source"]
    for key in ("period_ms", "jitter_ms", "missed_ticks", "gaps", "non_monotonic", "backwards"):
        out[key] = stats[key]
    out["missed_deadlines"] = stats["late"]
    if "rate" in stats:
        out["rate"] = stats["rate"]
    periods, _ = segment_periods(stamps, segments)
    top = max(2.0 * stats["nominal_period_ms"], stats["period_ms"]["p99_9"])
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
    rate = report.get("rate")
    if rate and not rate["ok"]:
        lines.append(f"  ! off the nominal rate by more than {100 * rate['tolerance']:g} %: "
                     f"{len(rate['slow'])} segment(s) slower, {len(rate['fast'])} faster")
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
