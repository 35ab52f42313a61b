"""What `mimicdata inspect` and `mimicdata validate` compute."""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.core.sync import sync

from mimicdata.codecs import describe_codecs, relative_error_bound
from mimicdata.errors import CorruptStoreError, MimicDataError
from mimicdata.store import Store
from mimicdata.store import open as open_store
from mimicdata.stream import Stream
from mimicdata.timing_kernel import period_stats


def timing_summary(stamps_ns: np.ndarray, fps: float | None, segments: np.ndarray | None = None) -> dict[str, Any]:
    """Mean period, jitter, longest gap and missed ticks of a clock column, for `mimicdata inspect`
    (:func:`mimicdata.timing_kernel.period_stats`, keys kept short).

    With ``segments`` (row ranges of episodes), the time between one episode's last frame and the next
    one's first (a reset) is not counted as a control period. ``slower_than_declared`` /
    ``faster_than_declared``: some segment is more than 5 % off ``fps``.
    """
    stats = period_stats(stamps_ns, fps, segments)
    out = {k: stats[k] for k in ("samples", "start_ns", "end_ns", "span_s") if k in stats}
    if "period_ms" not in stats:
        return out
    out["mean_period_ms"] = stats["period_ms"]["mean"]
    out["jitter_ms"] = stats["period_ms"]["std"]
    out["max_gap_ms"] = stats["period_ms"]["max"]
    out["non_monotonic"], out["backwards"] = stats["non_monotonic"], stats["backwards"]
    out["measured_hz"] = stats["measured_hz"]
    if "rate" in stats:
        out["nominal_period_ms"] = stats["nominal_period_ms"]
        out["missed_ticks"] = stats["missed_ticks"]
        out["late_periods"] = stats["late"]["count"]
        out["slower_than_declared"] = bool(stats["rate"]["slow"])
        out["faster_than_declared"] = bool(stats["rate"]["fast"])
    return out


def segment_table(stream: Stream, limit: int = 50) -> list[dict[str, Any]]:
    """The first rows of a segment table (episodes, clips with their quality report) as plain dicts."""
    rows = min(stream.num_rows, limit)
    scalar = [f for f in stream.fields if not stream.field_spec(f).shape]
    columns = {f: stream.read(f, 0, rows) for f in scalar}
    out = []
    for i in range(rows):
        row = {}
        for f, values in columns.items():
            v = values[i]
            row[f] = v.item() if hasattr(v, "item") else v
        if "start" in row and "end" in row:
            row["length"] = row["end"] - row["start"]
        out.append(row)
    return out


def _array_info(store: Store, stream: Stream, name: str) -> dict[str, Any]:
    arr = stream.array(name)
    phys = stream.aliases.get(name, (name, None))[0]
    stored = int(sync(store.zstore.getsize_prefix(f"{stream.name}/{phys}")))
    rows = stream.num_rows
    raw = int(rows * int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize)
    spec = stream.field_spec(name)
    bits = stream.meta.get("lossy", {}).get(name)
    info = {"shape": [rows, *arr.shape[1:]], "dims": ["time", *spec.dim_names], "dtype": spec.dtype,
            "unit": spec.unit, "chunks": list(arr.chunks), "codecs": describe_codecs(arr),
            "stored_bytes": stored, "raw_bytes": raw, "ratio": round(stored / raw, 4) if raw else None}
    if bits:
        info["lossy"] = {"mantissa_bits": int(bits), "max_relative_error": relative_error_bound(int(bits))}
    return info


def inspect_store(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything `mimicdata inspect` shows, as JSON-ready data (stable keys for scripts)."""
    store = open_store(url, "r", storage_options=storage_options)
    meta = store.meta
    robot = store.robot
    out: dict[str, Any] = {
        "url": str(store.location), "format_version": meta.get("format_version"),
        "producer": meta.get("producer"), "created": meta.get("created"),
        "robot": None if robot is None else {"name": robot.name, "joints": len(robot.joint_names),
                                             "bodies": len(robot.body_names), "joint_names": list(robot.joint_names)},
        "quat_order": meta.get("quat_order"), "fps": store.fps, "attrs": store.attrs,
        "warnings": list(store.warnings), "streams": {}}
    for name, stream in store.streams.items():
        info: dict[str, Any] = {"schema": stream.schema, "version": stream.schema_version,
                                "rows": stream.num_rows, "fps": stream.fps}
        if stream.committed_rows != stream.num_rows:
            info["uncommitted_rows"] = stream.committed_rows - stream.num_rows
        if stream.spec.segments_of:
            info["segments_of"] = stream.spec.segments_of
            info["table"] = segment_table(stream)
        if stream.segment_stream() is not None:
            segs = stream.segments()
            lengths = segs[:, 1] - segs[:, 0]
            info["segments"] = {"count": len(segs), "min_len": int(lengths.min()) if len(lengths) else 0,
                                "mean_len": float(lengths.mean()) if len(lengths) else 0.0,
                                "max_len": int(lengths.max()) if len(lengths) else 0}
        stamps = stream.timestamps()
        if stamps is not None:
            segs = stream.segments() if stream.segment_stream() is not None else None
            info["timing"] = timing_summary(stamps, stream.fps, segs)
        elif stream.fps and stream.num_rows and not stream.spec.segments_of:
            info["timing"] = {"samples": stream.num_rows, "span_s": stream.num_rows / stream.fps,
                              "clock": "frame index / fps"}
        info["arrays"] = {f: _array_info(store, stream, f) for f in stream.fields}
        stored = sum(a["stored_bytes"] for a in info["arrays"].values())
        raw = sum(a["raw_bytes"] for a in info["arrays"].values())
        info["stored_bytes"], info["raw_bytes"] = stored, raw
        info["ratio"] = round(stored / raw, 4) if raw else None
        out["streams"][name] = info
    if "episodes" in store.streams and store["episodes"].spec.segments_of:
        from mimicdata.episodes import fps_check

        out["fps_check"] = fps_check(store)
    return out


def validate_store(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """A full scan: schema conformance, lengths vs index, NaN/Inf, monotonic time, decodable chunks.
    Returns the list of problems (empty when the store is valid)."""
    try:
        store = open_store(url, "r", storage_options=storage_options)
    except MimicDataError as exc:
        return [str(exc)]
    problems: list[str] = []
    for stream in store.streams.values():
        problems += _validate_stream(stream)
        if stream.spec.segments_of:
            problems += _validate_segments(stream, store[stream.spec.segments_of])
    return problems


def _validate_stream(stream: Stream) -> list[str]:
    problems = []
    where = stream.name
    for field in stream.fields:
        spec = stream.field_spec(field)
        arr = stream.array(field)
        expected = stream.shape_of(field)
        if tuple(arr.shape[1:]) != expected:
            problems.append(f"{where}.{field}: stored shape {arr.shape[1:]} != schema {expected}")
        if arr.dtype != spec.storage_dtype and field not in stream.aliases:
            problems.append(f"{where}.{field}: stored dtype {arr.dtype} != schema {spec.storage_dtype}")
        step = max(arr.chunks[0], 1)
        for start in range(0, stream.num_rows, step):
            try:
                values = stream.read(field, start, start + step, decode=False)
            except CorruptStoreError as exc:
                problems.append(f"{where}.{field}: corrupted chunk at rows {start}..{start + step}: {exc.__cause__}")
                continue
            if values.dtype.kind == "f" and not spec.allow_nan:
                bad = ~np.isfinite(values)
                if bad.any():
                    row = start + int(np.argwhere(bad)[0][0])
                    problems.append(f"{where}.{field}: {int(bad.sum())} NaN/Inf value(s), first at row {row}")
            if spec.dtype == "string":
                cats = len(stream.meta.get("categories", {}).get(field, []))
                if values.size and (values.min() < 0 or values.max() >= cats):
                    problems.append(f"{where}.{field}: category code out of range (have {cats} categories)")
    time_field = stream.spec.time_field
    if time_field and time_field in stream.fields:
        try:
            stamps = stream.timestamps()
        except CorruptStoreError:
            stamps = None
        if stamps is not None and len(stamps) > 1:
            back = np.flatnonzero(np.diff(stamps) < 0)
            if len(back) and stream.segment_stream() is not None:  # each segment keeps its own clock
                back = back[~np.isin(back + 1, stream.segments()[:, 0])]
            if len(back):
                problems.append(f"{where}.{time_field}: timestamps go backwards {len(back)} time(s), "
                                f"first at row {int(back[0]) + 1}")
    return problems


def _validate_segments(seg: Stream, frames: Stream) -> list[str]:
    problems = []
    if not seg.num_rows:
        return problems
    try:
        starts, ends = seg.read("start"), seg.read("end")
    except CorruptStoreError as exc:
        return [f"{seg.name}: cannot read the segment index: {exc}"]
    if starts[0] != 0:
        problems.append(f"{seg.name}: first segment starts at row {starts[0]}, not 0")
    if np.any(ends <= starts):
        problems.append(f"{seg.name}: {int((ends <= starts).sum())} empty or inverted segment(s)")
    if np.any(starts[1:] != ends[:-1]):
        problems.append(f"{seg.name}: segments are not contiguous (gap or overlap)")
    if ends[-1] > frames.committed_rows:
        problems.append(f"{seg.name}: last segment ends at row {ends[-1]} but {frames.name} has "
                        f"{frames.committed_rows} committed rows")
    index_field = next((k for k in seg.spec.fields if k.endswith("_index")), None)
    if index_field and not np.array_equal(seg.read(index_field), np.arange(seg.num_rows)):
        problems.append(f"{seg.name}.{index_field}: indices are not 0..{seg.num_rows - 1}")
    if index_field and index_field in frames.fields:
        per_frame = frames.read(index_field)
        expected = np.repeat(np.arange(len(starts)), ends - starts)
        if len(per_frame) == len(expected) and not np.array_equal(per_frame, expected):
            problems.append(f"{frames.name}.{index_field}: does not match the {seg.name} row ranges")
    return problems
