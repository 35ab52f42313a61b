"""Compression of real joint data: stored bytes / raw float32 bytes, for layouts and codecs, in one run.

Data: bvhtools test1/test2 (joint angles in radians + velocities, 30 fps), MocapBank BVH, the holosoma
53-point climb (positions, m) and a simulated G1 deployment (joint_pos + joint_vel, 50 Hz).

    python benchmarks/compression.py [--quick] [--data ../shared/data]

Prints one table; RESULTS.md records it. The baseline is the seed's streaming pickle (one dict per record).
"""

from __future__ import annotations

import argparse
import io
import pickle
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, TransposeCodec
from zarr.storage import MemoryStore

from mimicdata.codecs import codecs_for, round_mantissa

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bvh_channels(path: Path) -> tuple[np.ndarray, float]:
    """The MOTION block of a BVH file: (frames, channels) and the frame time (s)."""
    text = path.read_text().split("MOTION", 1)[1].strip().splitlines()
    frame_time = float(text[1].split(":")[1])
    return np.loadtxt(text[2:], dtype=np.float64), frame_time


def angles_and_velocities(path: Path) -> np.ndarray:
    data, dt = bvh_channels(path)
    angles = np.deg2rad(data[:, 3:])  # rotation channels; root translation left out
    vel = np.diff(angles, axis=0) / dt
    return np.concatenate([angles[1:], vel], axis=1).astype(np.float32)


def g1_rollout(seconds: float) -> np.ndarray:
    from mimicdata.sim.g1_loop import simulate_deployment

    obs = [o for o, _ in simulate_deployment(seconds=seconds)]
    return np.concatenate([np.stack([o["joint_pos"] for o in obs]), np.stack([o["joint_vel"] for o in obs])],
                          axis=1).astype(np.float32)


def zarr_bytes(arr: np.ndarray, chunks: tuple[int, ...], **codecs: object) -> int:
    store = MemoryStore()
    z = zarr.create_array(store, shape=arr.shape, chunks=chunks, dtype=arr.dtype, **codecs)  # type: ignore[arg-type]
    z[:] = arr
    return sum(len(v.to_bytes()) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))


def pickle_stream_bytes(arr: np.ndarray) -> int:
    buf = io.BytesIO()
    for row in arr:  # the seed: one pickle.dump of a dict per control step
        pickle.dump({"joint_data": row, "_timestamp": 0.0}, buf, protocol=pickle.HIGHEST_PROTOCOL)
    return buf.tell() - len(arr) * len(pickle.dumps({"_timestamp": 0.0}, protocol=pickle.HIGHEST_PROTOCOL)) + len(arr)


def layouts(arr: np.ndarray) -> dict[str, tuple[int, float]]:
    rows = min(4096, len(arr))
    chunks = (rows, arr.shape[1])
    row_major = {"filters": (), "serializer": BytesCodec(),
                 "compressors": (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=4),)}
    time_major_9 = {"filters": (TransposeCodec(order=(1, 0)),), "serializer": BytesCodec(),
                    "compressors": (BloscCodec(cname="zstd", clevel=9, shuffle="shuffle", typesize=4),)}
    out: dict[str, tuple[int, float]] = {}

    def run(name: str, fn: object) -> None:
        start = time.perf_counter()
        size = fn()  # type: ignore[operator]
        out[name] = (size, time.perf_counter() - start)

    run("pickle stream (seed)", lambda: pickle_stream_bytes(arr))
    run("row-major blosc-zstd5", lambda: zarr_bytes(arr, chunks, **row_major))
    run("per-channel chunks zstd5", lambda: zarr_bytes(arr, (rows, 1), **row_major))
    run("mimicdata default (T+zstd7)", lambda: zarr_bytes(arr, chunks, **codecs_for("default", arr.dtype, 2)))
    run("time-major zstd9 (slow)", lambda: zarr_bytes(arr, chunks, **time_major_9))
    for bits in (16, 12, 10):
        rounded = round_mantissa(arr, bits)
        run(f"lossy {bits} bits (rel.err<={2.0 ** -(bits + 1):.0e})",
            lambda r=rounded: zarr_bytes(r, chunks, **codecs_for("default", arr.dtype, 2, lossy=True)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="shorter G1 rollout, fewer files")
    args = parser.parse_args()
    mocap = args.data / "mocap"
    sets = {"bvhtools test1 (ang+vel)": angles_and_velocities(mocap / "bvhtools" / "test1.bvh")}
    if not args.quick:
        sets["bvhtools test2 (ang+vel)"] = angles_and_velocities(mocap / "bvhtools" / "test2.bvh")
        sets["mocapbank (ang+vel)"] = angles_and_velocities(mocap / "bvhtoolbox" / "test_mocapbank.bvh")
        climb = np.load(mocap / "holosoma_climb" / "mocap_climb_seq_0_joint_positions_f900-3700.npy")
        sets["holosoma climb (pos, m)"] = climb.reshape(len(climb), -1).astype(np.float32)
    sets["G1 sim rollout (pos+vel)"] = g1_rollout(10.0 if args.quick else 60.0)
    names = None
    for label, arr in sets.items():
        res = layouts(arr)
        if names is None:
            names = list(res)
            print(f"{'data':28s} {'rows x ch':>11s} " + " ".join(f"{n[:26]:>27s}" for n in names))
        cells = [f"{res[n][0] / arr.nbytes:>6.3f}x {arr.nbytes / 1e6 / max(res[n][1], 1e-9):7.1f}MB/s" for n in names]
        print(f"{label:28s} {arr.shape[0]:>6d}x{arr.shape[1]:<4d} " + " ".join(f"{c:>27s}" for c in cells))
    print("\nratio = stored / raw float32 bytes (lower is better); MB/s = raw MB encoded per second")


if __name__ == "__main__":
    main()
