"""Queries over a long 1 kHz actions log: a mimicdata store through ``md.scan`` against Polars on Parquet,
same data, same queries, same run.

    python benchmarks/query_speed.py [--minutes 60] [--repeat 5] [--keep DIR]

Builds the log: ``--minutes`` of a G1 actions stream at 1 kHz (5 joint vectors of 29 float32 — noisy
sinusoidal joint signals, constant gains — plus ``counter_step`` and an int64-ns ``timestamp``), written
to a store in 1-minute appends and to Parquet-zstd twice: as one row group and with 1-minute row groups.
Reports (best of ``--repeat``):

- a 10-second window in the middle (``counter_step`` between two values), all columns — target: the
  store >= 10x faster than Polars on Parquet (the store turns the predicate into a row range before
  reading, Parquet skips row groups by their statistics);
- a whole-log group-by per second (mean and std of joint 0 of two vectors, row count) — target: the
  store's time <= 1.0x Parquet's;
- build time and size (store vs Parquet with 1-minute row groups).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import mimicdata as md

T0 = 1_790_000_000_000_000_000
RATE = 1000
MINUTE = 60 * RATE
VECTORS = ("raw_action", "scaled_action", "target_pos_full", "kps", "kds")


def minute_batch(minute: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One minute of the log: noisy joint signals, as a robot's policy output looks."""
    rows = np.arange(minute * MINUTE, (minute + 1) * MINUTE, dtype=np.int64)
    t = rows[:, None] / RATE
    phase = np.arange(29) * 0.37
    target = (0.4 * np.sin(2 * np.pi * 0.8 * t + phase) + rng.normal(0, 0.01, (MINUTE, 29))).astype(np.float32)
    raw = (target / 0.25 + rng.normal(0, 0.05, (MINUTE, 29))).astype(np.float32)
    return {"raw_action": raw, "scaled_action": (raw * 0.25).astype(np.float32), "target_pos_full": target,
            "kps": np.full((MINUTE, 29), 40.0, np.float32), "kds": np.full((MINUTE, 29), 2.5, np.float32),
            "counter_step": rows, "timestamp": T0 + rows * 1_000_000 + rng.integers(0, 50_000, MINUTE)}


def arrow_batch(batch: dict[str, np.ndarray]) -> pa.Table:
    cols = {k: pa.FixedSizeListArray.from_arrays(pa.array(batch[k].reshape(-1)), 29) for k in VECTORS}
    cols["counter_step"] = pa.array(batch["counter_step"])
    cols["timestamp"] = pa.array(batch["timestamp"]).view(pa.timestamp("ns", tz="UTC"))
    return pa.table(cols)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def best(fn: Callable[[], pl.DataFrame], repeat: int) -> tuple[float, pl.DataFrame]:
    times, out = [], pl.DataFrame()
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def build(folder: Path, minutes: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    spent = {"store": 0.0, "parquet 1-min row groups": 0.0}
    store = md.create(folder / "log.zarr", "actions", robot="g1_29dof", fps=RATE)
    writer: pq.ParquetWriter | None = None
    for minute in range(minutes):
        batch = minute_batch(minute, rng)
        start = time.perf_counter()
        store["actions"].append(batch)
        spent["store"] += time.perf_counter() - start
        table = arrow_batch(batch)
        start = time.perf_counter()
        if writer is None:
            writer = pq.ParquetWriter(folder / "log_minutes.parquet", table.schema, compression="zstd")
        writer.write_table(table, row_group_size=MINUTE)
        spent["parquet 1-min row groups"] += time.perf_counter() - start
    start = time.perf_counter()
    store.close()
    spent["store"] += time.perf_counter() - start
    assert writer is not None
    writer.close()
    # one row group: the whole log as one table (what a converter writing it at the end produces)
    whole = pq.read_table(folder / "log_minutes.parquet")
    pq.write_table(whole, folder / "log_one.parquet", compression="zstd", row_group_size=len(whole))
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build into (and keep) this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="mimicdata-query-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        spent = build(folder, args.minutes)
        rows = args.minutes * MINUTE
        raw = rows * (len(VECTORS) * 29 * 4 + 16)
        store_path = folder / "log.zarr"
        sources: dict[str, Callable[[], pl.LazyFrame]] = {
            "mimicdata store (md.scan)": lambda: md.scan(store_path, "actions"),
            "parquet, 1-min row groups": lambda: pl.scan_parquet(folder / "log_minutes.parquet"),
            "parquet, one row group": lambda: pl.scan_parquet(folder / "log_one.parquet"),
        }
        middle = rows // 2
        window = pl.col("counter_step").is_between(middle, middle + 10 * RATE - 1)
        queries: dict[str, Callable[[pl.LazyFrame], pl.LazyFrame]] = {
            "10-s window, all columns": lambda lf: lf.filter(window),
            "group-by per second, whole log": lambda lf: lf.group_by(
                pl.col("timestamp").dt.truncate("1s").alias("second")).agg(
                pl.col("raw_action").arr.get(0).mean().alias("raw0_mean"),
                pl.col("target_pos_full").arr.get(0).std().alias("target0_std"),
                pl.len().alias("rows")).sort("second"),
        }
        print(f"{args.minutes}-minute 1 kHz actions log: {rows} rows, {raw / 1e6:.0f} MB raw; best of {args.repeat}")
        print(f"build: store {spent['store']:.2f} s ({size_of(store_path) / raw:.3f}x raw), parquet 1-min row "
              f"groups {spent['parquet 1-min row groups']:.2f} s "
              f"({size_of(folder / 'log_minutes.parquet') / raw:.3f}x raw); store write speed "
              f"{spent['parquet 1-min row groups'] / spent['store']:.2f}x parquet's")
        for qname, query in queries.items():
            results = {name: best(lambda src=src, q=query: q(src()).collect(), args.repeat)
                       for name, src in sources.items()}
            ours, ours_frame = results["mimicdata store (md.scan)"]
            print(f"\n{qname}:")
            for name, (seconds, frame) in results.items():
                same = frame.equals(ours_frame)
                print(f"  {name:28s} {seconds * 1e3:9.1f} ms   store is {seconds / ours:6.2f}x faster   "
                      f"{frame.height} rows, same result as the store: {same}")
        print("\ntargets: 10-s window >= 10x faster than Parquet; whole-log group-by <= 1.0x Parquet's time")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
