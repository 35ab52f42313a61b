"""Kill the logging process at random moments; count stores that open and records lost vs the flush bound.

Claim (issue 3): after SIGKILL at any moment the store opens and holds every record up to the last
completed flush (loss <= about one flush interval), and nothing invalid; when only the logging
process dies, its writer process still commits everything that was logged.

Each trial starts a logging process (StreamingLogger, two streams: "obs" at --rate and "slow" at a
quarter of it, values derived from the record index), lets it log for a random time, then sends
SIGKILL either to the logging process and its writer together ("both": the worst case, as on a power
cut of the processes) or to the logging process alone ("parent"). The store is then opened
read-only and checked: rows must be exactly records 0..n-1 with the right values. Lost records are
``logged - stored``; the bound is ``flush_interval`` seconds of records.

Baseline, in the same run: the seed's design (one pickle.dump per record into an open file, a
writer thread flushing every 50 records or 3 s) killed the same way; its loss and whether its file
loads completely are shown alongside.

    python benchmarks/logger_kill.py --quick        # 10 kills per kind, ~1 min
    python benchmarks/logger_kill.py                # 100 kills per kind, ~10 min
"""

from __future__ import annotations

import argparse
import mmap
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import mmap, os, sys, time
import numpy as np
kind, path, progress, rate, flush = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
words = memoryview(mmap.mmap(os.open(progress, os.O_RDWR), 16)).cast("q")
if kind == "seed":
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[6])))
    from logger_latency import SeedPickleLogger
    from pathlib import Path
    logger = SeedPickleLogger(Path(path))
else:
    from mimicdata.logger import StreamingLogger
    logger = StreamingLogger(path, flush_interval=flush)
    logger.declare("obs", {"x": np.zeros(16, np.float32), "i": 0})
    logger.declare("slow", {"y": 0.0})
words[1] = 1
deadline, i = time.perf_counter(), 0
while True:
    logger.log("obs", {"x": np.full(16, i, np.float32), "i": i})
    if i % 4 == 0:
        logger.log("slow", {"y": float(i)})
    i += 1
    words[0] = i
    deadline += 1.0 / rate
    pause = deadline - time.perf_counter()
    if pause > 0:
        time.sleep(pause)
"""


def _alive_members(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def trial(kind: str, target: str, folder: Path, rate: float, flush: float, wait_s: float) -> dict[str, float]:
    """One logging process killed after ``wait_s`` seconds of logging; returns what survived."""
    progress = folder / "progress"
    progress.write_bytes(bytes(16))
    path = folder / ("log.zarr" if kind == "mimicdata" else "")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, kind, str(path), str(progress), str(rate), str(flush),
                             __file__], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    words = memoryview(mmap.mmap(os.open(progress, os.O_RDWR), 16)).cast("q")
    try:
        while not words[1]:
            if proc.poll() is not None:
                raise RuntimeError(f"logging process failed: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.005)
        time.sleep(wait_s)
        if target == "both":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        logged = int(words[0])
        if kind == "mimicdata" and target == "parent":
            _wait_writer_finished(path)
        while _alive_members(proc.pid):  # the writer must be dead before the store is judged
            if target == "both":
                time.sleep(0.005)
            else:
                time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stored, valid = (_check_store(path) if kind == "mimicdata" else _check_pickles(folder))
    return {"logged": logged, "stored": stored, "valid": valid, "lost_s": (logged - stored) / rate}


def _wait_writer_finished(path: Path, timeout: float = 60.0) -> None:
    import mimicdata as md

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "end_time_ns" in md.open(path, "r").attrs:
            return
        time.sleep(0.05)


def _check_store(path: Path) -> tuple[int, bool]:
    """Rows stored, and whether the store opened and held exactly a prefix of the logged records."""
    import mimicdata as md

    try:
        store = md.open(path, "r")
        n = store["obs"].num_rows if "obs" in store else 0
        m = store["slow"].num_rows if "slow" in store else 0
        ok = (np.array_equal(store["obs"]["i"], np.arange(n)) if n else True) and (
            np.array_equal(store["obs"]["x"][:, 5], np.arange(n, dtype=np.float32)) if n else True) and (
            np.array_equal(store["slow"]["y"], 4.0 * np.arange(m)) if m else True)
        return n, bool(ok)
    except Exception as exc:
        print(f"  store failed to open or read: {type(exc).__name__}: {exc}")
        return 0, False


def _check_pickles(folder: Path) -> tuple[int, bool]:
    """Records the seed's reader (pickle.load until EOFError) gets back; False if the file ends torn."""
    files = list(folder.glob("obs_*.pkl"))
    if not files:
        return 0, True
    n, ok = 0, True
    with open(files[0], "rb") as fh:
        while True:
            try:
                record = pickle.load(fh)
            except EOFError:
                break
            except Exception:
                ok = False  # a torn last record: the seed's load_streaming_pickle raises here
                break
            ok = ok and record["i"] == n
            n += 1
    return n, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 kills per kind")
    parser.add_argument("--kills", type=int, default=100, help="kills per kind (default 100)")
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s of the main stream")
    parser.add_argument("--flush", type=float, default=1.0, help="flush_interval of the logger (s)")
    parser.add_argument("--max-wait", type=float, default=3.0, help="kills land uniformly in [0.05, this] s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kills = 10 if args.quick else args.kills
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="logger_kill_"))
    print(f"{kills} kills per kind, {args.rate:g} records/s, flush_interval {args.flush:g} s, kill after "
          f"U(0.05, {args.max_wait:g}) s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'logger':>9} {'killed':>7} {'opened+valid':>13} {'lost mean s':>11} {'p95 s':>6} {'max s':>6} "
          f"{'<= flush':>9} {'zero loss':>9}")
    try:
        for kind, target in (("mimicdata", "both"), ("mimicdata", "parent"), ("seed", "both")):
            results = []
            for k in range(kills):
                folder = root / f"{kind}_{target}_{k}"
                folder.mkdir()
                results.append(trial(kind, target, folder, args.rate, args.flush, rng.uniform(0.05, args.max_wait)))
                shutil.rmtree(folder, ignore_errors=True)
            lost = np.array([r["lost_s"] for r in results])
            valid = sum(r["valid"] for r in results)
            bound = args.flush if kind == "mimicdata" else 3.0
            print(f"{kind:>9} {target:>7} {valid:>6}/{len(results):<6} {lost.mean():11.3f} "
                  f"{np.percentile(lost, 95):6.3f} {lost.max():6.3f} {int((lost <= bound).sum()):>5}/{len(results):<3} "
                  f"{int((lost <= 1.0 / args.rate).sum()):>5}/{len(results):<3}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        from mimicdata.logger.ring import sweep_stale

        sweep_stale()
    print("'<= flush': loss within flush_interval (the seed's 3 s for the seed); 'zero loss': at most one record "
          "(a kill between log() returning and the progress counter)")


if __name__ == "__main__":
    main()
