"""Write and read throughput of a mimicdata store against Parquet-zstd, np.save/np.load and pickle
streams, on the same data in the same run, plus the blosc level sweep the default level was chosen by.

    python benchmarks/store_throughput.py [--rows 60000] [--quick] [--mocap ../shared/data/mocap/bvhtools]

Data: (1) observation + action records of a simulated G1 at 50 Hz (joint vectors of 29, a 154-float
policy input), tiled to --rows; (2) real motion capture: the bvhtools test1 + test2 BVH files as joint
angles + velocities (132 float32 channels, 11 127 frames), one custom stream. Every format writes to and
reads from the same temporary folder on local disk. Ratios against Parquet-zstd (the targets: write
>= 2x, read >= 1x, size <= 0.8x) and np.save/np.load are measured in the same run.
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
from numcodecs import Blosc

import mimicdata as md
from mimicdata.codecs import chunk_rows_for

BATCH = 5000  # rows per append (100 s at 50 Hz): how the logger and converters write
DEFAULT_MOCAP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap" / "bvhtools"


def mocap_data(folder: Path) -> np.ndarray:
    """Joint angles (rad) and velocities (rad/s) of every BVH file in ``folder``, as (frames, 132) float32."""
    parts = []
    for path in sorted(folder.glob("*.bvh")):
        text = path.read_text().split("MOTION", 1)[1].strip().splitlines()
        frame_time = float(text[1].split(":")[1])
        angles = np.deg2rad(np.loadtxt(text[2:], dtype=np.float64)[:, 3:])  # root translation left out
        vel = np.diff(angles, axis=0) / frame_time
        parts.append(np.concatenate([angles[1:], vel], axis=1).astype(np.float32))
    return np.concatenate(parts)


def level_sweep(data: np.ndarray, chunk_rows: int) -> list[str]:
    """Stored/raw size and encode speed of time-major blosc-zstd + shuffle per level, chunk by chunk."""
    chunks = [np.ascontiguousarray(data[i:i + chunk_rows].T) for i in range(0, len(data), chunk_rows)]
    raw = sum(c.nbytes for c in chunks)
    out = []
    for level in (1, 3, 5, 7):
        codec = Blosc("zstd", level, Blosc.SHUFFLE, typesize=data.dtype.itemsize)
        start = time.perf_counter()
        size = sum(len(codec.encode(c)) for c in chunks)
        out.append(f"level {level}: {size / raw:.3f}x raw at {raw / 1e6 / (time.perf_counter() - start):6.1f} MB/s")
    return out


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


def bench(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall-clock seconds and best process CPU seconds (all threads, user + system) over ``repeat``."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def parquet_table(fields: dict[str, np.ndarray]) -> pa.Table:
    cols = {}
    for k, v in fields.items():
        flat = pa.array(v.reshape(-1))
        cols[k] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(v.shape[1:]))) if v.ndim > 1 else flat
    return pa.table(cols)


def run_case(title: str, streams: dict[str, dict[str, np.ndarray]], create: Callable[[Path], md.Store],
             batch: int, repeat: int, tmp: Path, peers: bool) -> None:
    rows = len(next(iter(next(iter(streams.values())).values())))
    raw = sum(v.nbytes for s in streams.values() for v in s.values())
    results: dict[str, tuple[float, float, int]] = {}
    cpu: dict[str, tuple[float, float]] = {}

    def run(name: str, write: Callable[[Path], None], read: Callable[[Path], object]) -> None:
        target = tmp / "".join(c if c.isalnum() else "_" for c in name)

        def do_write() -> None:
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            write(target)

        w, w_cpu = bench(do_write, repeat)
        r, r_cpu = bench(lambda: read(target), repeat)
        results[name] = (w, r, size_of(target))
        cpu[name] = (w_cpu, r_cpu)
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    def npy_write(p: Path) -> None:
        p.mkdir()
        for s, fields in streams.items():
            for k, v in fields.items():
                np.save(p / f"{s}.{k}.npy", v)

    run("np.save/np.load", npy_write, lambda p: [np.load(f) for f in sorted(p.iterdir())])

    def md_write(p: Path) -> None:
        store = create(p)
        for start in range(0, rows, batch):
            for s, fields in streams.items():
                store[s].append({k: v[start:start + batch] for k, v in fields.items()})
        store.close()

    def md_read(p: Path) -> object:
        store = md.open(p)
        return [store[s].read(k) for s in streams for k in store[s].fields]

    run("mimicdata store", md_write, md_read)

    if peers:  # the seed's format: one pickle.dump per record
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

    def parquet_write(p: Path) -> None:
        p.mkdir()
        for s, fields in streams.items():
            pq.write_table(parquet_table(fields), p / f"{s}.parquet", compression="zstd")

    run("parquet (zstd)", parquet_write, lambda p: [pq.read_table(f) for f in sorted(p.iterdir())])

    base_w, base_r, _ = results["np.save/np.load"]
    pq_w, pq_r, pq_size = results["parquet (zstd)"]
    print(f"\n{title}: {rows} rows ({raw / 1e6:.1f} MB raw), best of {repeat}")
    print(f"{'format':24s} {'write MB/s':>10s} {'vs npy':>7s} {'vs pq':>7s} {'read MB/s':>10s} {'vs npy':>7s} "
          f"{'vs pq':>7s} {'size/raw':>9s} {'vs pq':>7s}")
    for name, (w, r, size) in results.items():
        print(f"{name:24s} {raw / 1e6 / w:10.1f} {base_w / w:6.2f}x {pq_w / w:6.2f}x {raw / 1e6 / r:10.1f} "
              f"{base_r / r:6.2f}x {pq_r / r:6.2f}x {size / raw:8.3f}x {size / pq_size:6.2f}x")
    mw, mr, msize = results["mimicdata store"]
    verdict = [f"write {pq_w / mw:.2f}x parquet (target >= 2): {'met' if pq_w / mw >= 2 else 'NOT met'}",
               f"read {pq_r / mr:.2f}x (target >= 1): {'met' if pq_r / mr >= 1 else 'NOT met'}",
               f"size {msize / pq_size:.2f}x (target <= 0.8): {'met' if msize / pq_size <= 0.8 else 'NOT met'}"]
    print("targets: " + "; ".join(verdict))
    (mwc, mrc), (pwc, prc) = cpu["mimicdata store"], cpu["parquet (zstd)"]
    print(f"CPU seconds (all threads): store write {mwc:.2f} / read {mrc:.2f}, parquet write {pwc:.2f} / read "
          f"{prc:.2f}: the store uses {mwc / pwc:.2f}x parquet's CPU to write and {mrc / prc:.2f}x to read")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mocap", type=Path, default=DEFAULT_MOCAP)
    args = parser.parse_args()
    rows = 10_000 if args.quick else args.rows
    repeat = 1 if args.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="mimicdata-bench-"))
    try:
        obs, act = make_data(rows)
        run_case("Simulated G1 deployment log (observations + actions)", {"observations": obs, "actions": act},
                 lambda p: md.create(p, ["observations", "actions"], robot="g1_29dof", fps=50,
                                     dims={"obs": obs["full_obs"].shape[1]}), BATCH, repeat, tmp, peers=True)
        if args.mocap.is_dir():
            mocap = mocap_data(args.mocap)

            def create_mocap(p: Path) -> md.Store:
                store = md.create(p, None)
                store.add_stream("mocap", {"angles_vel": {"dtype": "float32", "shape": [mocap.shape[1]],
                                                          "unit": "rad, rad/s"}}, fps=30)
                return store

            run_case(f"Real mocap ({args.mocap.name}: joint angles + velocities, {mocap.shape[1]} channels)",
                     {"mocap": {"angles_vel": mocap}}, create_mocap, 1000, repeat, tmp, peers=False)
            chunk_rows = chunk_rows_for(mocap.shape[1] * mocap.dtype.itemsize)
            print(f"\nblosc-zstd level sweep on the real mocap, time-major + shuffle, {chunk_rows}-row chunks "
                  "(the store's chunking):")
            for line in level_sweep(mocap, chunk_rows):
                print("  " + line)
        else:
            print(f"\n(no mocap at {args.mocap}: real-data case skipped)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
