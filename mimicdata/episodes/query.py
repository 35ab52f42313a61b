"""Reading recorded episodes: the episode table (Polars), statistics, and the frame-rate check.

Everything here reads committed data only: a statistics row of an episode that never committed
(writer killed between the two) is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.episodes.config import INFO_STREAM, RECORDING_ATTR, RecordingConfig
from mimicdata.episodes.info import episode_summaries
from mimicdata.episodes.stats import ImageStats, Summary, as_dict, merge_all
from mimicdata.errors import SchemaError
from mimicdata.store import Store
from mimicdata.store import open as open_store
from mimicdata.timing_kernel import period_stats

SLOW_TOLERANCE = 0.05   # an episode whose mean rate is more than 5 % below the declared fps is "slow"
LATE_FACTOR = 1.5       # a frame period above 1.5 nominal periods is a late (missed) tick


def _as_store(store: Store | str | Path) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return open_store(store, "r"), True


def _features(store: Store) -> list[str]:
    doc = store.attrs.get(RECORDING_ATTR)
    if doc:
        return [f.field for f in RecordingConfig.from_doc(doc).stat_features]
    return ["state", "action", *[f for f in store["frames"].fields if f.startswith("image.")]]


def episode_table(store: Store | str | Path) -> Any:
    """One row per committed episode as a ``polars.DataFrame``: episode_index, start, end, length, task,
    start_time / end_time (datetime, UTC), duration_s, fps (measured), success (True/False/None),
    metadata (JSON text)."""
    import polars as pl

    st, owned = _as_store(store)
    try:
        ep = st["episodes"]
        n = ep.num_rows
        ints = ("episode_index", "start", "end", "start_time", "end_time")
        cols: dict[str, Any] = {name: ep.read(name) if n else np.zeros(0, np.int64) for name in ints}
        cols["task"] = ep.read("task").astype(str) if n else np.zeros(0, str)
        success = ep.read("success") if n and "success" in ep.fields else np.full(n, -1, np.int8)
        meta = ["{}"] * n
        if INFO_STREAM in st and st[INFO_STREAM].num_rows:
            info = st[INFO_STREAM]
            rows = min(n, info.num_rows)
            meta[:rows] = info.read("metadata", 0, rows).astype(str).tolist()
    finally:
        if owned:
            st.close()
    length = cols["end"] - cols["start"]
    duration = (cols["end_time"] - cols["start_time"]) / 1e9
    with np.errstate(divide="ignore", invalid="ignore"):
        fps = np.where(duration > 0, (length - 1) / duration, np.nan)
    return pl.DataFrame({
        "episode_index": cols["episode_index"], "start": cols["start"], "end": cols["end"], "length": length,
        "task": cols["task"],
        "start_time": pl.Series(cols["start_time"], dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
        "end_time": pl.Series(cols["end_time"], dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
        "duration_s": duration, "fps": fps,
        "success": pl.Series([None if s < 0 else bool(s) for s in success.tolist()], dtype=pl.Boolean),
        "metadata": meta,
    })


def episode_metadata(store: Store | str | Path, index: int) -> dict[str, Any]:
    """User metadata saved with episode ``index``."""
    table = episode_table(store)
    if not 0 <= index < len(table):
        raise IndexError(f"episode {index} does not exist ({len(table)} committed)")
    return json.loads(table["metadata"][index])


def _summaries(st: Store, start: int, stop: int | None) -> list[dict[str, Summary]]:
    if INFO_STREAM not in st:
        raise SchemaError(f"{st.location}: no {INFO_STREAM!r} stream; record it with EpisodeRecorder")
    n = st["episodes"].num_rows
    return episode_summaries(st[INFO_STREAM], _features(st), start, min(n, stop if stop is not None else n))


def episode_stats(store: Store | str | Path, index: int) -> dict[str, dict[str, Any]]:
    """min/max/mean/std/count per feature of one committed episode (images per channel, 0..255)."""
    st, owned = _as_store(store)
    try:
        rows = _summaries(st, index, index + 1)
    finally:
        if owned:
            st.close()
    if not rows:
        raise IndexError(f"episode {index} is not committed")
    return {f: as_dict(s) for f, s in rows[0].items()}


def dataset_stats(store: Store | str | Path, quantiles: tuple[float, ...] = ()) -> dict[str, dict[str, Any]]:
    """Statistics of every committed episode together, merged exactly from the per-episode rows.

    ``quantiles`` (e.g. ``(0.01, 0.99)``) are available for images, whose histograms make them exact."""
    st, owned = _as_store(store)
    try:
        rows = _summaries(st, 0, None)
    finally:
        if owned:
            st.close()
    out: dict[str, dict[str, Any]] = {}
    for feature in (rows[0] if rows else {}):
        merged = merge_all(r[feature] for r in rows)
        assert merged is not None
        out[feature] = as_dict(merged)
        if quantiles and isinstance(merged, ImageStats):
            for q, values in zip(quantiles, merged.quantiles(quantiles), strict=True):
                out[feature][f"q{round(q * 100):02d}"] = values.tolist()
    return out


def _timed_stream(st: Store) -> str | None:
    if "frames" in st:
        return "frames"
    return next((name for name, s in st.streams.items() if s.spec.time_field and (s.fps or st.fps)), None)


def fps_check(store: Store | str | Path, stream: str | None = None) -> dict[str, Any]:
    """Does the recording loop keep the declared rate? The rate of each episode (gaps between episodes,
    e.g. resets, are not periods) against the declared fps, in both directions: stamps much faster than
    declared (frames stamped at 25 kHz in a "50 fps" store) do not describe a 50 fps loop either.
    ``stream`` defaults to ``frames``, else the first stream with a time field and an fps.
    (:func:`mimicdata.timing_kernel.period_stats` does the arithmetic.)

    Returns ``ok`` (False when an episode's mean rate is more than 5 % off the declared fps),
    ``declared_fps``, ``measured_fps`` (whole store), period percentiles in ms, ``late_frames``
    (periods above 1.5 nominal), ``slow_episodes`` / ``fast_episodes`` (index, measured fps; fps None
    when the stamps do not advance) and a one-line ``message``.
    """
    st, owned = _as_store(store)
    try:
        stream = stream or _timed_stream(st)
        if stream is None:
            return {"stream": None, "ok": None, "message": "no stream with timestamps and a declared fps"}
        s = st[stream]
        declared = s.fps or st.fps
        stamps = s.timestamps()
        spans = s.segments() if s.segment_stream() is not None else np.array([[0, s.num_rows]], np.int64)
    finally:
        if owned:
            st.close()
    out: dict[str, Any] = {"stream": stream, "declared_fps": declared, "episodes": len(spans)}
    if stamps is None or not declared:
        out.update(ok=None, message=f"{stream}: no timestamps or no declared fps; rate cannot be checked")
        return out
    stats = period_stats(stamps, declared, spans, late_factor=LATE_FACTOR, rate_tolerance=SLOW_TOLERANCE)
    if "rate" not in stats:
        out.update(ok=None, message=f"{stream}: fewer than two frames per episode; rate cannot be checked")
        return out
    p, rate = stats["period_ms"], stats["rate"]

    def listed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"episode_index": e["segment"], "fps": None if e["hz"] is None else round(e["hz"], 3)}
                for e in entries]

    slow, fast = listed(rate["slow"]), listed(rate["fast"])
    measured = stats["measured_hz"]
    out.update({
        "measured_fps": measured, "nominal_period_ms": stats["nominal_period_ms"],
        "period_ms": {"p50": p["p50"], "p99": p["p99"], "max": p["max"], "std": p["std"]},
        "late_frames": stats["late"]["count"], "late_fraction": stats["late"]["fraction"],
        "slow_episodes": slow, "fast_episodes": fast, "ok": rate["ok"],
    })
    problems = []
    if slow:
        problems.append(f"{len(slow)} of {len(spans)} episode(s) ran slower than the declared {declared:g} fps "
                        f"(slowest {min(e['fps'] for e in slow):g} fps): timestamps, not frame_index/fps, "
                        f"give the true times")
    if fast:
        rates = [e["fps"] for e in fast if e["fps"] is not None]
        fastest = f"fastest {max(rates):g} fps" if rates else "timestamps do not advance"
        problems.append(f"{len(fast)} of {len(spans)} episode(s) have timestamps faster than the declared "
                        f"{declared:g} fps ({fastest}): frames stamped when added, not when captured?")
    if problems:
        out["message"] = "; ".join(problems)
    else:
        out["message"] = (f"loop kept {declared:g} fps (measured {measured:.2f}); "
                          f"{stats['late']['count']} late frame(s)")
    return out
