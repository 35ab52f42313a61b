"""Episode saving in a 50 Hz recording loop with one 240x320 camera: synchronous vs background saving.

    python benchmarks/episode_saving.py            # 1000-frame episodes (20 s each at 50 Hz), 3 per mode
    python benchmarks/episode_saving.py --quick    # 200-frame episodes, 2 per mode

Measured in one run, on the same local disk:
- how long the main loop is blocked per episode: ``save_episode()`` (sync) vs ``save_episode_async()``
  (async; target <= 1 ms);
- frame-period jitter of the loop while a background save is running, against the same loop with
  nothing saving (the first episode of the async run): std, p99 and max of the period;
- save throughput (raw episode bytes / time the save took) against the raw write speed of the disk:
  the same bytes written with plain ``file.write`` into files of one frame each, as the store's chunks are.

The loop paces itself with sleep like a real controller: each tick reads a camera frame and the robot
state, then ``add_frame``. Camera frames are smooth images with sensor noise (they compress like
real ones, unlike random bytes), generated before the run so generation does not count.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mimicdata.episodes import EpisodeRecorder

FPS, H, W, DOF = 50.0, 240, 320, 29


def camera_frames(count: int, seed: int = 0) -> np.ndarray:
    """Smooth moving gradients plus Gaussian sensor noise, uint8 (count, H, W, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    out = np.empty((count, H, W, 3), np.uint8)
    for i in range(count):
        base = np.stack([128 + 90 * np.sin((x + 3 * i) / 40), 128 + 90 * np.cos((y - 2 * i) / 30),
                         128 + 60 * np.sin((x + y + i) / 55)], axis=-1)
        out[i] = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    return out


def run_loop(rec: EpisodeRecorder, frames: int, images: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """One episode at 50 Hz; returns tick periods (s) and whether a background save was running."""
    period = 1.0 / FPS
    ticks, busy = [], []
    next_tick = time.perf_counter()
    for t in range(frames):
        ticks.append(time.perf_counter())
        busy.append(rec.get_async_save_status()["pending_tasks"] > 0)
        rec.add_frame({"state": rng.standard_normal(DOF), "action": rng.standard_normal(DOF),
                       "image.head": images[t % len(images)], "task": "walk"})
        next_tick += period
        delay = next_tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.perf_counter()
    return np.diff(ticks), np.asarray(busy[1:])


def jitter(periods: np.ndarray) -> dict[str, float]:
    ms = periods * 1e3
    return {"std_ms": float(ms.std()), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "n": len(ms)}


def raw_disk_speed(folder: Path, images: np.ndarray, frames: int) -> float:
    """MB/s of writing ``frames`` camera frames plus state/action as plain files, one file per frame."""
    folder.mkdir()
    start = time.perf_counter()
    for t in range(frames):
        (folder / f"{t}.raw").write_bytes(images[t % len(images)].tobytes())
    (folder / "vectors.raw").write_bytes(np.zeros((frames, 2 * DOF + 2), np.float32).tobytes())
    elapsed = time.perf_counter() - start
    return frames * (images[0].nbytes + (2 * DOF + 2) * 4) / elapsed / 1e6


def record(mode: str, path: Path, episodes: int, frames: int, images: np.ndarray) -> dict[str, object]:
    rec = EpisodeRecorder.create(path, fps=FPS, state=DOF, action=DOF, robot="g1_29dof",
                                 cameras={"head": (H, W)}, overwrite=True)
    rng = np.random.default_rng(1)
    if mode == "async":
        rec.enable_async_saving(max_queue_size=4, max_queue_bytes=4 << 30)
    blocked, idle_periods, busy_periods, bytes_per_episode = [], [], [], []
    for _ in range(episodes):
        periods, busy = run_loop(rec, frames, images, rng)
        idle_periods.append(periods[~busy])
        busy_periods.append(periods[busy])
        bytes_per_episode.append(rec.buffer.nbytes)
        start = time.perf_counter()
        rec.save_episode_async() if mode == "async" else rec.save_episode()
        blocked.append(time.perf_counter() - start)
    start = time.perf_counter()
    rec.wait_for_async_saves()
    drain = time.perf_counter() - start
    results = rec.get_async_save_results()
    durations = [r["duration_s"] for r in results] if mode == "async" else blocked
    raw = frames * (H * W * 3 + (2 * DOF) * 4 + 8)
    rec.close()
    return {"blocked_s": blocked, "drain_s": drain, "save_s": durations,
            "throughput_mb_s": raw / np.mean(durations) / 1e6,
            "idle": jitter(np.concatenate(idle_periods)) if sum(map(len, idle_periods)) > 1 else None,
            "busy": jitter(np.concatenate(busy_periods)) if sum(map(len, busy_periods)) > 1 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200-frame episodes, 2 per mode")
    parser.add_argument("--frames", type=int, default=None, help="frames per episode (default 1000)")
    parser.add_argument("--episodes", type=int, default=None)
    args = parser.parse_args()
    frames = args.frames or (200 if args.quick else 1000)
    episodes = args.episodes or (2 if args.quick else 3)
    images = camera_frames(64)
    tmp = Path(tempfile.mkdtemp(prefix="episode_saving_"))
    try:
        # raw disk speed before, between and after the two modes: on a shared machine one sample is noise
        disks = [raw_disk_speed(tmp / "raw0", images, frames)]
        sync = record("sync", tmp / "sync.zarr", episodes, frames, images)
        disks.append(raw_disk_speed(tmp / "raw1", images, frames))
        asyn = record("async", tmp / "async.zarr", episodes, frames, images)
        disks.append(raw_disk_speed(tmp / "raw2", images, frames))
        size = sum(p.stat().st_size for p in (tmp / "async.zarr").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    disk = float(np.median(disks))
    raw_mb = frames * (H * W * 3) / 1e6
    print(f"episodes of {frames} frames at {FPS:g} Hz, one {H}x{W} camera ({raw_mb:.0f} MB raw per episode), "
          f"{episodes} per mode; store on disk {size / 1e6:.0f} MB for {episodes} episodes")
    print(f"raw disk write speed (one file per frame): median {disk:.0f} MB/s of "
          f"{', '.join(f'{d:.0f}' for d in disks)} (before, between, after the modes)")
    sb, ab = np.asarray(sync["blocked_s"]) * 1e3, np.asarray(asyn["blocked_s"]) * 1e3
    print(f"main loop blocked per episode: sync {sb.mean():.1f} ms (max {sb.max():.1f}), "
          f"async {ab.mean():.3f} ms (max {ab.max():.3f}); ratio sync/async {sb.mean() / ab.mean():.0f}x")
    print(f"save_episode_async() call: mean {ab.mean():.3f} ms, max {ab.max():.3f} ms (target <= 1 ms): "
          f"{'met' if ab.max() <= 1.0 else 'NOT met'}")
    print(f"save throughput: sync {sync['throughput_mb_s']:.0f} MB/s, async (background) "
          f"{asyn['throughput_mb_s']:.0f} MB/s; ratio to raw disk speed {sync['throughput_mb_s'] / disk:.2f} "
          f"/ {asyn['throughput_mb_s'] / disk:.2f} (target >= 0.50: "
          f"{'met' if min(sync['throughput_mb_s'], asyn['throughput_mb_s']) / disk >= 0.5 else 'NOT met'})")
    idle, busy = asyn["idle"], asyn["busy"]
    if idle and busy:
        print(f"frame period, nothing saving: std {idle['std_ms']:.2f} ms, p99 {idle['p99_ms']:.2f} ms, "
              f"max {idle['max_ms']:.1f} ms ({idle['n']} periods)")
        print(f"frame period during background saves: std {busy['std_ms']:.2f} ms, p99 {busy['p99_ms']:.2f} ms, "
              f"max {busy['max_ms']:.1f} ms ({busy['n']} periods); p99 ratio {busy['p99_ms'] / idle['p99_ms']:.2f}")
    print(f"background saves finished {asyn['drain_s']:.2f} s after the last episode")


if __name__ == "__main__":
    main()
