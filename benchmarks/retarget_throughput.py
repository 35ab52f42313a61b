"""Retargeting throughput: frames per second per worker, 1 -> 2 worker scaling, store write vs IK.

Data: the real motion capture in ../shared/data/mocap (LAFAN-like BVH, MocapBank BVH, holosoma
53-point cloud), retargeted to the Unitree G1 29-DoF at 50 fps.

    python benchmarks/retarget_throughput.py [--quick] [--data ../shared/data]

Baselines measured in the same run:
  * IK: the same solver run frame by frame (warm-started from the previous frame), i.e. what a
    per-frame mj_jac / damped-least-squares loop costs, against the batched solve of all frames.
  * Scaling: one Dask worker against two, same clips, same cluster set-up (start-up not timed);
    and, as the machine's own ceiling, the same IK in one against two plain processes.
  * Store write: client time in append_segment against the summed IK task time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def clip_specs(data: Path, frames: int, copies: int) -> list:
    from mimicdata.retarget.clip import ClipSpec

    mocap = data / "mocap"
    base = [("bvhtools/test1.bvh", 0), ("bvhtools/test2.bvh", 0), ("bvhtoolbox/test_mocapbank.bvh", 0),
            ("holosoma_climb/mocap_climb_seq_0_joint_positions_f900-3700.npy", 0)]
    specs = []
    for c in range(copies):
        for rel, _ in base:
            start = c * frames
            specs.append(ClipSpec(str(mocap / rel), f"{Path(rel).stem}_{c}", start=start, stop=start + frames))
    return specs


def per_frame_baseline(data: Path, frames: int) -> tuple[float, float]:
    """(batched frames/s, per-frame-loop frames/s) for the IK alone on one real clip."""
    from mimicdata.motion import ReadOptions, read_motion
    from mimicdata.retarget.clip import ClipSpec, RetargetSettings, prepare_motion, problem_for

    settings = RetargetSettings(foot_lock=False)
    [motion] = read_motion(data / "mocap/bvhtools/test1.bvh", ReadOptions(stop=frames))
    targets = prepare_motion(motion, ClipSpec("test1"), settings).targets
    problem = problem_for(settings)
    problem.solve(targets[:5])  # warm caches
    t0 = time.perf_counter()
    problem.solve(targets)
    batched = frames / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    q, _ = problem.solve(targets[:1])
    for t in range(1, frames):
        q, _ = problem.solve(targets[t:t + 1], init=q)
    looped = frames / (time.perf_counter() - t0)
    return batched, looped


def _ik_job(args: tuple[str, int, int]) -> float:
    """One process's share of the raw-compute scaling check: IK of a clip, returns seconds."""
    from mimicdata.motion import ReadOptions, read_motion
    from mimicdata.retarget.clip import ClipSpec, RetargetSettings, prepare_motion, problem_for

    path, start, frames = args
    settings = RetargetSettings()
    [motion] = read_motion(path, ReadOptions(start=start, stop=start + frames))
    targets = prepare_motion(motion, ClipSpec(path), settings).targets
    problem_for(settings).solve(targets[:5])
    t0 = time.perf_counter()
    problem_for(settings).solve(targets)
    return time.perf_counter() - t0


def raw_process_scaling(data: Path, frames: int) -> float:
    """Speed-up of 2 processes over 1 on the same IK work, no Dask and no store: what the machine allows."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(str(data / "mocap/bvhtools/test2.bvh"), s, frames) for s in (0, frames, 2 * frames, 3 * frames)]
    walls = {}
    for n in (1, 2):
        with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_ik_job, [(jobs[0][0], 0, 10)] * n))  # start and warm the processes
            t0 = time.perf_counter()
            list(pool.map(_ik_job, jobs))
            walls[n] = time.perf_counter() - t0
    return walls[1] / walls[2]


def run_cluster(specs: list, workers: int, out: Path, piece: int) -> object:
    from distributed import LocalCluster

    from mimicdata.motion import ReadOptions
    from mimicdata.retarget.clip import RetargetSettings
    from mimicdata.retarget.pipeline import retarget_to_store

    settings = RetargetSettings(read=ReadOptions(source_fps=30.0))  # the holosoma .npy stores no rate

    import dask

    from mimicdata.retarget.pipeline import WORKER_CONFIG

    env = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with dask.config.set(WORKER_CONFIG), LocalCluster(  # the same worker set-up as the pipeline's own
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", env=env,
            silence_logs=50) as cluster:
        # Warm each worker (imports, model load) so start-up is not in the timing.
        from distributed import Client

        with Client(cluster) as client:
            client.run(lambda: __import__("mimicdata.retarget.clip").retarget.clip.problem_for(
                __import__("mimicdata.retarget.clip").retarget.clip.RetargetSettings()))
        t0 = time.perf_counter()
        report = retarget_to_store(specs, out, settings=settings, scheduler=cluster.scheduler_address,
                                   piece_frames=piece, overwrite=True, progress=False)
        report.wall_seconds = time.perf_counter() - t0
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short clips (a minute on 2 cores)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    frames, copies, loop_frames = (240, 2, 60) if args.quick else (900, 3, 300)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"cpus: {os.cpu_count()}  clips: {4 * copies} x {frames} source frames  (quick={args.quick})")

    batched, looped = per_frame_baseline(args.data, loop_frames * 4)
    print(f"IK only, one process : batched {batched:7.0f} frames/s | per-frame loop {looped:7.0f} frames/s "
          f"| ratio {batched / looped:5.1f}x")

    specs = clip_specs(args.data, frames, copies)
    piece = frames // 2  # two IK tasks per clip, so both workers stay busy
    reports = {w: run_cluster(specs, w, args.out / f"retarget_{w}w.zarr", piece) for w in (1, 2)}
    for w, rep in reports.items():
        assert rep.ok, rep.summary()
        print(f"{w} worker(s): {rep.source_frames} source frames in {rep.wall_seconds:6.2f} s = "
              f"{rep.source_frames / rep.wall_seconds:6.0f} frames/s overall, "
              f"{rep.source_frames / rep.ik_seconds:6.0f} frames/s per worker (task time)")
    speedup = reports[1].wall_seconds / reports[2].wall_seconds
    busy = reports[2].ik_seconds / (2 * reports[2].wall_seconds)
    print(f"scaling 1 -> 2 workers: {speedup:4.2f}x (target >= 1.8x); workers busy {100 * busy:3.0f}% of the wall time")
    raw = raw_process_scaling(args.data, frames)
    print(f"machine check, same IK in 1 vs 2 plain processes (no Dask, no store): {raw:4.2f}x "
          f"-> pipeline reaches {100 * speedup / raw:3.0f}% of what this machine gives")
    rep = reports[2]
    print(f"store write: {rep.write_seconds:6.3f} s for {rep.output_frames} frames "
          f"({rep.output_frames / max(rep.write_seconds, 1e-9):7.0f} frames/s) vs IK task time {rep.ik_seconds:6.2f} s "
          f"-> write is {100 * rep.write_seconds / rep.ik_seconds:4.1f}% of IK")
    q = np.array([[c["quality"]["kp_err_leg_mean_cm"], c["quality"]["penetration_max_cm"]] for c in rep.clips])
    print(f"quality over {len(rep.clips)} clips: leg key-point error mean {q[:, 0].mean():.2f} cm "
          f"(max clip {q[:, 0].max():.2f}), max penetration {q[:, 1].max():.3f} cm")


if __name__ == "__main__":
    main()
