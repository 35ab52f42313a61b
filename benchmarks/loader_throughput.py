"""Training data path throughput: frames/s that ``md.batches`` delivers, against peers in the same run.

    python benchmarks/loader_throughput.py                   # the issue's size: 1,000,000 frames
    python benchmarks/loader_throughput.py --frames 200000   # smaller

An expert-like store (qpos 36 + qvel 35 float32, smooth joint signals plus noise, clips of 200-2000
frames, 2048-row chunks as in the ``expert_trajectory`` schema) is written by a subprocess. Batches of
4096 windows, shuffled, for single frames (window=1) and 10-frame windows. "frames/s" counts every frame
of every window delivered (a 10-frame window is 10 frames).

(a) ``cache="memory"`` against numpy fancy indexing of the same arrays already in RAM (the anchors
    precomputed for numpy: the most favourable baseline).
(b) cold from local disk: a fresh process per measurement, the store's pages dropped from the page cache
    first (``os.posix_fadvise(POSIX_FADV_DONTNEED)`` on every file, after ``os.sync``), then one epoch
    with ``cache="auto"`` (load + all batches), and a few batches with ``cache="none"``.
(c) peers on the same data, warm, per-item ``__getitem__`` + torch ``DataLoader`` default collate:
    LeRobot-style (an Arrow table; each item takes its rows from the table, as LeRobotDataset does with
    ``hf_dataset`` and ``delta_timestamps``) and diffusion_policy's design (whole replay buffer copied to
    numpy, then ``SequenceSampler``'s precomputed (buffer_start, buffer_end) slices). Their load time
    from the same store is reported too.
(d) ``s3://`` on a moto server (its own process, 127.0.0.1), ``cache="auto"``, prefetch 2, against (b).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCH = 4096
WINDOWS = (1, 10)


# ------------------------------------------------------------------------------------------- the store
def make_store(url: str, frames: int, seed: int = 0, storage_options: dict | None = None) -> int:
    import mimicdata as md

    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    while sum(lengths) < frames:
        lengths.append(int(min(rng.integers(200, 2001), frames - sum(lengths))))
    t = np.arange(frames, dtype=np.float64)[:, None]
    qpos = (np.sin(t * 0.02 + np.arange(36)) + rng.normal(0, 0.01, (frames, 36))).astype(np.float32)
    qvel = (np.cos(t * 0.02 + np.arange(35)) + rng.normal(0, 0.05, (frames, 35))).astype(np.float32)
    store = md.create(url, fps=50, overwrite=True, storage_options=storage_options)
    store.add_stream("frames", {"qpos": {"dtype": "float32", "shape": [36]},
                                "qvel": {"dtype": "float32", "shape": [35]}}, chunk_rows=2048)
    store.add_stream("clips", {"clip_index": {"dtype": "int64", "shape": []}, "start": {"dtype": "int64", "shape": []},
                               "end": {"dtype": "int64", "shape": []}}, segments_of="frames")
    store["frames"].append({"qpos": qpos, "qvel": qvel})
    ends = np.cumsum(lengths)
    store["clips"].append({"clip_index": np.arange(len(lengths)), "start": ends - lengths, "end": ends})
    store.close()
    return len(lengths)


def drop_page_cache(path: Path) -> None:
    """Evict a store's files from the page cache so the next read comes from the disk."""
    os.sync()
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run_child(*args: str) -> dict:
    """Run this file in a fresh process (``--child ...``) and return the JSON it prints last."""
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def epoch_rate(ds, batches_iter, limit: int | None = None) -> tuple[float, float, int]:
    """(frames/s, seconds, batches) over an iterator of batches, stopping after ``limit`` batches."""
    window = len(ds.offsets)
    t0 = time.perf_counter()
    frames = count = 0
    for batch in batches_iter:
        frames += len(batch["segment"]) * window
        count += 1
        if limit is not None and count >= limit:
            break
    seconds = time.perf_counter() - t0
    return frames / seconds, seconds, count


# ------------------------------------------------------------------------------------------- (a) memory
def bench_memory(url: str, window: int, repeats: int) -> dict:
    import mimicdata as md

    ds = md.WindowDataset(url, fields=["qpos", "qvel"], window=window)
    data = ds.load().data
    qpos, qvel = data["qpos"], data["qvel"]
    anchors = ds.index.locate(np.arange(len(ds)))[2]  # precomputed for numpy: favours the baseline
    offsets = ds.offsets

    def numpy_epoch(seed: int) -> float:
        order = np.random.default_rng(seed).permutation(len(anchors))
        t0 = time.perf_counter()
        for a in range(0, len(order), BATCH):
            rows = anchors[order[a:a + BATCH]][:, None] + offsets
            qpos[rows], qvel[rows]
        return len(order) * window / (time.perf_counter() - t0)

    ours: dict[int, list[float]] = {0: [], 2: []}
    base: list[float] = []
    for r in range(repeats):  # interleaved rounds: both see the same machine load
        base.append(numpy_epoch(r))
        for prefetch in ours:
            ours[prefetch].append(epoch_rate(ds, md.batches(ds, BATCH, seed=r, cache="memory",
                                                             prefetch=prefetch))[0])
    out = {"numpy": float(np.median(base))}
    out.update({f"memory_prefetch{p}": float(np.median(v)) for p, v in ours.items()})
    return out


# ------------------------------------------------------------------------------------------- (b) cold
def child_cold(url: str, window: int, cache: str, limit: int | None, options: str) -> dict:
    import mimicdata as md

    storage_options = json.loads(options) or None
    t0 = time.perf_counter()
    ds = md.WindowDataset(url, fields=["qpos", "qvel"], window=window, storage_options=storage_options)
    _, _, count = epoch_rate(ds, md.batches(ds, BATCH, seed=0, cache=cache, prefetch=2,
                                            chunk_cache_bytes=64 << 20), limit)
    total = time.perf_counter() - t0
    return {"frames_per_s": count * BATCH * window / total if limit else len(ds) * window / total,
            "seconds": total, "batches": count}


# ------------------------------------------------------------------------------------------- (c) peers
class LeRobotStyle:
    """Per-item reads from an Arrow table, as LeRobotDataset.__getitem__ does (hf_dataset + delta indices).

    Item ``i`` is frame ``i``; its window is the frames ``i .. i + W - 1`` clamped to the episode, with an
    ``_is_pad`` mask (LeRobot pads at episode edges instead of dropping windows).
    """

    def __init__(self, table, episode_of, ep_start, ep_end, window: int) -> None:
        self.table, self.episode_of, self.ep_start, self.ep_end = table, episode_of, ep_start, ep_end
        self.delta = np.arange(window)

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, idx: int) -> dict:
        import torch

        ep = self.episode_of[idx]
        query = idx + self.delta
        pad = (query < self.ep_start[ep]) | (query >= self.ep_end[ep])
        query = np.clip(query, self.ep_start[ep], self.ep_end[ep] - 1)
        rows = self.table.take(query)
        item = {key: torch.from_numpy(np.stack(rows.column(key).to_numpy(zero_copy_only=False)))
                for key in ("qpos", "qvel")}
        item["qpos_is_pad"] = torch.from_numpy(pad)
        item["episode_index"] = torch.tensor(int(ep))
        item["frame_index"] = torch.tensor(int(idx - self.ep_start[ep]))
        return item


class DiffusionPolicyStyle:
    """diffusion_policy's SequenceSampler over a replay buffer copied whole into numpy."""

    def __init__(self, buffer: dict, episode_ends: np.ndarray, window: int) -> None:
        self.buffer, self.window = buffer, window
        indices, start = [], 0
        for end in episode_ends.tolist():  # create_indices(pad_before=0, pad_after=0)
            for s in range(start, end - window + 1):
                indices.append((s, s + window))
            start = end
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> dict:
        import torch

        a, b = self.indices[idx]
        return {key: torch.from_numpy(arr[a:b].copy()) for key, arr in self.buffer.items()}


def bench_peers(url: str, window: int, peer_batches: int) -> dict:
    import pyarrow as pa
    import torch
    import zarr

    import mimicdata as md

    torch.set_num_threads(1)
    out: dict = {}
    t0 = time.perf_counter()
    root = zarr.open_group(url, mode="r")  # diffusion_policy: ReplayBuffer.copy_from_path -> numpy
    buffer = {key: root[f"frames/{key}"][:] for key in ("qpos", "qvel")}
    ends = root["clips/end"][:]
    out["diffusion_policy_load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = md.open(url)
    table = store["frames"].to_arrow(["qpos", "qvel"])  # LeRobot: the parquet/Arrow table, loaded
    store.close()
    out["lerobot_load_s"] = time.perf_counter() - t0
    starts = np.concatenate([[0], ends[:-1]])
    episode_of = np.repeat(np.arange(len(ends)), ends - starts)
    peers = {"lerobot": LeRobotStyle(table, episode_of, starts, ends, window),
             "diffusion_policy": DiffusionPolicyStyle(buffer, ends, window)}
    for name, dataset in peers.items():
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0,
                                             generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        count = 0
        for _ in loader:
            count += 1
            if count >= peer_batches:
                break
        out[name] = count * BATCH * window / (time.perf_counter() - t0)
    del pa
    return out


# ------------------------------------------------------------------------------------------- (d) s3
def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys, time; from moto.server import ThreadedMotoServer; "
            f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False); s.start(); "
            "sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(10**6)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc, f"http://127.0.0.1:{port}"


def upload(local: Path, endpoint: str) -> dict:
    import boto3
    import s3fs

    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="bench")
    s3fs.S3FileSystem(**options).put(str(local), "bench/expert.zarr", recursive=True)
    return options


def moto_ceiling(options: dict) -> float:
    """Bytes/s moto serves when every chunk object is fetched at once (no decoding): the bound on (d)."""
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    keys = [k for k in fs.find("bench/expert.zarr/frames") if "/c/" in k]
    t0 = time.perf_counter()
    size = sum(len(v) for v in fs.cat(keys).values())
    return size / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------- main
def versions() -> str:
    import pyarrow
    import torch
    import zarr

    import mimicdata

    return (f"python {platform.python_version()}, numpy {np.__version__}, zarr {zarr.__version__}, "
            f"pyarrow {pyarrow.__version__}, torch {torch.__version__}, mimicdata {mimicdata.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="epochs per case for (a), median reported")
    parser.add_argument("--peer-batches", type=int, default=5, help="batches timed per peer")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "make":
            print(json.dumps({"clips": make_store(rest[0], int(rest[1]))}))
        elif kind == "cold":
            drop_page_cache(Path(rest[0])) if "://" not in rest[0] else None
            limit = int(rest[3]) if rest[3] != "none" else None
            print(json.dumps(child_cold(rest[0], int(rest[1]), rest[2], limit, rest[4])))
        return

    tmp = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    url = str(tmp / "expert.zarr")
    try:
        t0 = time.perf_counter()
        clips = run_child("make", url, str(args.frames))["clips"]
        size = sum(f.stat().st_size for f in Path(url).rglob("*") if f.is_file())
        print(f"store: {args.frames} frames in {clips} clips, {size / 1e6:.0f} MB on disk "
              f"(raw {args.frames * 71 * 4 / 1e6:.0f} MB), written in {time.perf_counter() - t0:.1f} s by a subprocess")
        print(f"{versions()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        results: dict = {}
        for window in WINDOWS:
            r = results[window] = {}
            r.update(bench_memory(url, window, args.repeats))
            r["cold_auto"] = run_child("cold", url, str(window), "auto", "none", "{}")
            r["cold_none"] = run_child("cold", url, str(window), "none", "3", "{}")
            r.update(bench_peers(url, window, args.peer_batches))
        if not args.no_s3:
            proc, endpoint = start_moto()
            try:
                t0 = time.perf_counter()
                options = upload(Path(url), endpoint)
                print(f"uploaded to moto in {time.perf_counter() - t0:.1f} s")
                ceiling = moto_ceiling(options)
                print(f"moto's ceiling: all chunks in one concurrent s3fs.cat, {ceiling / 1e6:.1f} MB/s")
                for window in WINDOWS:
                    results[window]["moto_mb_s"] = ceiling / 1e6
                    results[window]["s3_auto"] = run_child("cold", "s3://bench/expert.zarr", str(window), "auto",
                                                           "none", json.dumps(options))
            finally:
                proc.terminate()
                proc.wait()
        report(results, args)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict, args: argparse.Namespace) -> None:
    def m(x: float) -> str:
        return f"{x / 1e6:8.2f} M"

    for window, r in results.items():
        print(f"\n== window {window} (batches of {BATCH}; frames/s, M = 10^6) ==")
        print(f"(a) numpy fancy indexing in RAM       {m(r['numpy'])}")
        for p in (0, 2):
            print(f"    cache='memory', prefetch={p}        {m(r[f'memory_prefetch{p}'])}   "
                  f"ratio {r[f'memory_prefetch{p}'] / r['numpy']:.2f}x (target >= 0.8x)")
        cold = r["cold_auto"]
        print(f"(b) cold local, cache='auto', 1 epoch  {m(cold['frames_per_s'])}   ({cold['seconds']:.2f} s incl. "
              f"open + load; target >= 1 M)")
        none = r["cold_none"]
        print(f"    cold local, cache='none', {none['batches']} batches {m(none['frames_per_s'])}   "
              f"(every shuffled batch touches every chunk)")
        print(f"(c) LeRobot-style per item + collate  {m(r['lerobot'])}   ours/peer "
              f"{r['memory_prefetch2'] / r['lerobot']:.0f}x (warm; Arrow load {r['lerobot_load_s']:.2f} s)")
        print(f"    diffusion_policy buffer + sampler {m(r['diffusion_policy'])}   ours/peer "
              f"{r['memory_prefetch2'] / r['diffusion_policy']:.0f}x (warm; copy to RAM "
              f"{r['diffusion_policy_load_s']:.2f} s, ours cold epoch {cold['seconds']:.2f} s)")
        if "s3_auto" in r:
            s3 = r["s3_auto"]
            print(f"(d) s3:// (moto), cache='auto', 1 epoch {m(s3['frames_per_s'])}   ratio to (b) "
                  f"{s3['frames_per_s'] / cold['frames_per_s']:.2f}x (target >= 0.8x; {s3['seconds']:.1f} s, "
                  f"moto serves {r['moto_mb_s']:.0f} MB/s at best)")


if __name__ == "__main__":
    main()
