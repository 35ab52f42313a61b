"""Write and read throughput of a mimicdata store against np.save/np.load, pickle streams and Parquet,
on the same deployment-log data in the same run.

    python benchmarks/store_throughput.py [--rows 60000] [--quick]

Data: observation + action records of a simulated G1 at 50 Hz (joint vectors of 29, a 154-float policy
input), tiled to --rows. Every format writes to and reads from the same temporary folder on local disk.
Ratios are against np.save/np.load (uncompressed, one file per field) measured in the same run.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import mimicdata as md

BATCH = 5000  # rows per append (100 s at 50 Hz): how the logger and converters write


def make_data(rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from mimicdata.sim.g1_loop import simulate_deployment

    recs = list(simulate_deployment(seconds=min(rows, 3000) / 50.0))
    reps = -(-rows // len(recs))
    obs = {k: np.tile(np.stack([np.asarray(o[k]) for o, _ in recs]), (reps,) + (1,) * np.ndim(recs[0][0][k]))[:rows]
           for k in recs[0][0]}
    act = {k: np.tile(np.stack([np.asarray(a[k]) for _, a in recs]), (reps,) + (1,) * np.ndim(recs[0][1][k]))[:rows]
           for k in recs[0][1]}
    stamps = 1_790_000_000_000_000_000 + np.arange(rows, dtype=np.int64) * 20_000_000
    obs["counter_step"] = act["counter_step"] = np.arange(rows, dtype=np.int64)
    obs["timestamp"] = act["timestamp"] = stamps
    return obs, act


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def bench(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = 10_000 if args.quick else args.rows
    repeat = 1 if args.quick else 3
    obs, act = make_data(rows)
    streams = {"observations": obs, "actions": act}
    raw = sum(v.nbytes for s in streams.values() for v in s.values())
    tmp = Path(tempfile.mkdtemp(prefix="mimicdata-bench-"))
    results: dict[str, tuple[float, float, int]] = {}

    def run(name: str, write: Callable[[Path], None], read: Callable[[Path], object]) -> None:
        target = tmp / "".join(c if c.isalnum() else "_" for c in name)

        def do_write() -> None:
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            write(target)

        w = bench(do_write, repeat)
        r = bench(lambda: read(target), repeat)
        results[name] = (w, r, size_of(target))

    # --- np.save / np.load: the baseline
    def npy_write(p: Path) -> None:
        p.mkdir()
        for s, fields in streams.items():
            for k, v in fields.items():
                np.save(p / f"{s}.{k}.npy", v)

    run("np.save/np.load", npy_write, lambda p: [np.load(f) for f in sorted(p.iterdir())])

    # --- mimicdata store, appended in batches
    def md_write(p: Path) -> None:
        store = md.create(p, ["observations", "actions"], robot="g1_29dof", fps=50,
                          dims={"obs": obs["full_obs"].shape[1]})
        for start in range(0, rows, BATCH):
            for s, fields in streams.items():
                store[s].append({k: v[start:start + BATCH] for k, v in fields.items()})
        store.close()

    def md_read(p: Path) -> object:
        store = md.open(p)
        return [store[s].read(k) for s in streams for k in store[s].fields]

    run("mimicdata store", md_write, md_read)

    # --- pickle streams, the seed's format: one pickle.dump per record
    def pickle_write(p: Path) -> None:
        p.mkdir()
        for s, fields in streams.items():
            with open(p / f"{s}.pkl", "wb") as fh:
                for i in range(rows):
                    pickle.dump({k: v[i] for k, v in fields.items()}, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def pickle_read(p: Path) -> object:
        out = []
        for f in sorted(p.iterdir()):
            with open(f, "rb") as fh:
                recs = []
                while True:
                    try:
                        recs.append(pickle.load(fh))
                    except EOFError:
                        break
                out.append({k: np.stack([r[k] for r in recs]) for k in recs[0]})
        return out

    run("pickle stream (seed)", pickle_write, pickle_read)

    # --- Parquet with fixed-size lists, zstd
    def parquet_write(p: Path) -> None:
        p.mkdir()
        for s, fields in streams.items():
            cols = {}
            for k, v in fields.items():
                arr = pa.array(v.reshape(len(v), -1).reshape(-1)) if v.ndim > 1 else pa.array(v)
                cols[k] = pa.FixedSizeListArray.from_arrays(arr, v.shape[1]) if v.ndim > 1 else arr
            pq.write_table(pa.table(cols), p / f"{s}.parquet", compression="zstd")

    def parquet_read(p: Path) -> object:
        return [pq.read_table(f) for f in sorted(p.iterdir())]

    run("parquet (zstd)", parquet_write, parquet_read)

    base_w, base_r, _ = results["np.save/np.load"]
    print(f"{rows} rows of observations + actions ({raw / 1e6:.1f} MB raw), best of {repeat}")
    print(f"{'format':24s} {'write MB/s':>10s} {'vs npy':>7s} {'read MB/s':>10s} {'vs npy':>7s} {'size/raw':>9s}")
    for name, (w, r, size) in results.items():
        print(f"{name:24s} {raw / 1e6 / w:10.1f} {base_w / w:6.2f}x {raw / 1e6 / r:10.1f} {base_r / r:6.2f}x "
              f"{size / raw:8.3f}x")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
