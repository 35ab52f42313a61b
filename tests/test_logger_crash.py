"""Crash safety of StreamingLogger: SIGKILL at random moments, SIGKILL/SIGTERM/SIGINT of the logging
process alone, an uncaught exception. The logging process is a real subprocess with its writer."""

from __future__ import annotations

import mmap
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.logger.ring import FILE_PREFIX, ring_dir, sweep_stale

RATE = 400.0      # records/s of the "obs" stream; "slow" gets one record per 4
FLUSH = 0.4       # flush_interval of the logger under test (s)
KILLS = 20

# The logging process: logs two streams at RATE and RATE/4, counts what log() accepted in a shared
# int64 (word 0), says it is ready in word 1, and ends as told by its mode.
CHILD = r"""
import mmap, os, sys, time
import numpy as np
from mimicdata.logger import StreamingLogger
path, progress, mode, rate, flush = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
fd = os.open(progress, os.O_RDWR)
words = memoryview(mmap.mmap(fd, 16)).cast("q")
logger = StreamingLogger(path, flush_interval=flush, queue_size=8192)
logger.declare("obs", {"x": np.zeros(8, np.float32), "i": 0})
logger.declare("slow", {"y": 0.0})
words[1] = 1
deadline, i = time.perf_counter(), 0
while True:
    logger.log("obs", {"x": np.full(8, i, np.float32), "i": i})
    if i % 4 == 0:
        logger.log("slow", {"y": float(i)})
    i += 1
    words[0] = i
    if mode == "exception" and i == 300:
        raise RuntimeError("the policy crashed")
    deadline += 1.0 / rate
    pause = deadline - time.perf_counter()
    if pause > 0:
        time.sleep(pause)
"""


class Child:
    """A logging process in its own process group (so it and its writer can be killed together)."""

    def __init__(self, tmp: Path, mode: str = "run") -> None:
        self.path = tmp / "log.zarr"
        self.progress = tmp / "progress"
        self.progress.write_bytes(bytes(16))
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(self.path), str(self.progress), mode,
                                      str(RATE), str(FLUSH)], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        fd = os.open(self.progress, os.O_RDWR)
        self.words = memoryview(mmap.mmap(fd, 16)).cast("q")
        os.close(fd)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.words[1]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"logging process did not start: {err}")
            time.sleep(0.01)

    @property
    def logged(self) -> int:
        return int(self.words[0])

    def kill_group(self, *, reaped: bool = False) -> None:
        """SIGKILL the logging process and its writer; wait until both are dead (and reaped, if asked)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # the orphaned writer stays a zombie until init reaps it, which can take a second here
            if not _group_members(self.proc.pid, include_zombies=reaped):
                return
            time.sleep(0.005)
        raise AssertionError(f"process group {self.proc.pid} survived SIGKILL")

    def wait_committed(self, timeout: float = 120.0) -> int:
        """Wait for the writer's first commit of "obs" rows (a known point); returns the rows committed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.path.exists():
                try:
                    store = md.open(self.path, "r")
                except md.MimicDataError:  # not created yet, half-way through creation
                    store = None
                if store is not None and "obs" in store and store["obs"].num_rows:
                    return store["obs"].num_rows
            time.sleep(0.02)
        raise AssertionError(f"the writer committed nothing in {timeout} s")

    def wait_writer_done(self, timeout: float = 120.0) -> md.Store:
        """After the logging process died alone: its writer drains, commits and marks the session ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            store = md.open(self.path, "r")
            if "end_time_ns" in store.attrs:
                return store
            time.sleep(0.05)
        raise AssertionError("the writer did not finish after the logging process died")


def _group_members(pgid: int, *, include_zombies: bool) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and (include_zombies or state != "Z"):
            members.append(int(stat.parent.name))
    return members


def check_prefix(store: md.Store) -> tuple[int, int]:
    """Rows must be exactly records 0..n-1 of each stream, values intact. Returns (obs rows, slow rows)."""
    n = store["obs"].num_rows if "obs" in store else 0
    m = store["slow"].num_rows if "slow" in store else 0
    if n:
        np.testing.assert_array_equal(store["obs"]["i"], np.arange(n))
        np.testing.assert_array_equal(store["obs"]["x"], np.repeat(np.arange(n, dtype=np.float32)[:, None], 8, 1))
        np.testing.assert_array_equal(store["obs"]["counter_step"], np.arange(n))
    if m:
        np.testing.assert_array_equal(store["slow"]["y"], 4.0 * np.arange(m))
    return n, m


@pytest.mark.slow
def test_sigkill_of_both_processes_at_random_moments(tmp_path: Path) -> None:
    """SIGKILL of the logging process and its writer together, 20 times, at random moments: the store
    always opens, holds exactly a prefix of what was logged, and keeps every row it had committed.

    Half the kills land at a random moment after a known point (the store has committed rows), the
    others at a random moment right after start-up (often before the first commit). What is asserted
    is what the code guarantees on any machine, never how much got done before the kill."""
    rng = random.Random(1234)
    pids = []
    for k in range(KILLS):
        run = tmp_path / f"kill{k}"
        run.mkdir()
        child = Child(run)
        pids.append(child.proc.pid)
        committed = 0
        try:
            child.wait_ready()
            if k % 2:
                committed = child.wait_committed()
                time.sleep(rng.uniform(0.0, 1.2))  # between flushes, during appends
            else:
                time.sleep(rng.uniform(0.0, 0.3))  # before the first flush, mostly
        finally:
            child.kill_group(reaped=k == KILLS - 1)
        logged = child.logged  # the child's own count, final now that it is dead
        store = md.open(child.path, "r")  # opens: nothing invalid was left behind
        n, m = check_prefix(store)
        assert committed <= n <= logged + 1 and m <= logged // 4 + 1, (k, committed, n, logged)
    md.open(child.path, "a").close()  # a new writer can take the store over (the dead writer's lock is stale)
    sweep_stale()  # the killed pairs left their rings in shared memory: the next logger start removes them
    left = [p for p in ring_dir().glob(f"{FILE_PREFIX}*") if any(p.name.startswith(f"{FILE_PREFIX}{pid}-")
                                                                  for pid in pids)]
    assert not left


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_killing_the_logging_process_alone_loses_nothing(tmp_path: Path, how: str) -> None:
    child = Child(tmp_path)
    try:
        child.wait_ready()
        time.sleep(0.5)
        os.kill(child.proc.pid, signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        child.proc.wait()
        logged = child.logged
        store = child.wait_writer_done()
    finally:
        child.kill_group()
    n, _ = check_prefix(store)
    assert logged <= n <= logged + 1  # everything log() accepted (+1: killed between log() and the count)
    assert store.attrs["ended_by"] == "logging process exited without close()"


@pytest.mark.parametrize("mode", ["sigint", "sigint_group", "exception"])
def test_ctrl_c_and_uncaught_exception_write_everything(tmp_path: Path, mode: str) -> None:
    child = Child(tmp_path, "exception" if mode == "exception" else "run")
    try:
        child.wait_ready()
        if mode != "exception":
            time.sleep(0.4)
            if mode == "sigint":
                os.kill(child.proc.pid, signal.SIGINT)
            else:  # Ctrl-C in a terminal signals the whole foreground group, writer included
                os.killpg(child.proc.pid, signal.SIGINT)
        child.proc.wait(timeout=60)
        logged = child.logged
        stderr = child.proc.stderr.read().decode() if child.proc.stderr else ""
    finally:
        child.kill_group()
    store = md.open(child.path, "r")
    n, m = check_prefix(store)
    assert logged <= n <= logged + 1 and m == (n + 3) // 4
    assert store.attrs["ended_by"] == "close()"  # closed by atexit in the logging process itself
    assert ("KeyboardInterrupt" if mode != "exception" else "the policy crashed") in stderr
    if mode == "exception":
        assert n == 300


def test_stale_ring_files_are_swept(tmp_path: Path) -> None:
    """Ring files of a logging process and writer that are both dead are removed; live ones are kept."""
    from mimicdata.logger.ring import C_PID, Control

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    folder = tmp_path
    stale = Control.create(folder / f"{FILE_PREFIX}{dead_pid}-s1.control")
    stale[C_PID] = dead_pid
    stale.close()
    (folder / f"{FILE_PREFIX}{dead_pid}-s1-0.ring").write_bytes(b"x")
    live = Control.create(folder / f"{FILE_PREFIX}{os.getpid()}-s2.control")
    live.close()
    removed = sweep_stale(folder)
    assert sorted(p.name for p in removed) == sorted([f"{FILE_PREFIX}{dead_pid}-s1.control",
                                                      f"{FILE_PREFIX}{dead_pid}-s1-0.ring"])
    assert (folder / f"{FILE_PREFIX}{os.getpid()}-s2.control").exists()
