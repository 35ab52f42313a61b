"""Background episode saving: same bytes as synchronous saving, bounded queue with synchronous fallback,
failures reported with their episode and data, draining at exit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import mimicdata as md
from mimicdata.episodes import AsyncEpisodeSaver, EpisodeRecorder, episode_table

S, A, H, W = 5, 2, 8, 10
T0 = 1_700_000_000_000_000_000
STATUS_KEYS = {"is_running", "total_submitted", "total_completed", "total_failed", "queue_size",
               "pending_tasks", "last_error", "worker_alive"}


def make(path) -> EpisodeRecorder:
    return EpisodeRecorder.create(path, fps=50, state=S, action=A, cameras={"cam": (H, W)}, overwrite=True,
                                  default_task="pick")


def fill(rec: EpisodeRecorder, e: int, n: int) -> None:
    rng = np.random.default_rng(e)
    for t in range(n):
        rec.add_frame({"state": rng.standard_normal(S), "action": rng.standard_normal(A),
                       "image.cam": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                       "timestamp": T0 + e * 10**10 + t * 20_000_000})


def chunk_files(root: Path) -> dict[str, bytes]:
    """Every data chunk of the frames/episodes/episode_info streams (metadata holds creation times)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "zarr.json" and p.name != "mimicdata.lock"}


def test_async_and_sync_saving_write_the_same_bytes(tmp_path):
    sync_rec, async_rec = make(tmp_path / "sync.zarr"), make(tmp_path / "async.zarr")
    async_rec.enable_async_saving(max_queue_size=10)  # room for all: no synchronous fallback here
    lengths = (7, 12, 3, 30, 9)
    for e, n in enumerate(lengths):
        fill(sync_rec, e, n)
        sync_rec.save_episode(success=e % 2 == 0, metadata={"e": e})
        fill(async_rec, e, n)
        async_rec.save_episode_async(success=e % 2 == 0, metadata={"e": e})
    assert async_rec.wait_for_async_saves(timeout=60)
    results = async_rec.get_async_save_results()
    assert sorted(r["stored_index"] for r in results) == list(range(len(lengths)))
    assert all(r["success"] for r in results)
    sync_rec.close()
    async_rec.close()
    a, b = chunk_files(tmp_path / "sync.zarr"), chunk_files(tmp_path / "async.zarr")
    assert a.keys() == b.keys() and len(a) > 20
    assert [k for k in a if a[k] != b[k]] == []
    assert episode_table(tmp_path / "sync.zarr").drop("start_time", "end_time").equals(
        episode_table(tmp_path / "async.zarr").drop("start_time", "end_time"))


def test_status_has_the_design_keys_and_counts(tmp_path):
    rec = make(tmp_path / "r.zarr")
    assert STATUS_KEYS <= set(rec.get_async_save_status())
    rec.enable_async_saving(max_queue_size=4)
    fill(rec, 0, 5)
    assert rec.save_episode_async() is True
    assert rec.wait_for_async_saves(timeout=30)
    status = rec.get_async_save_status()
    assert STATUS_KEYS <= set(status)
    assert (status["total_submitted"], status["total_completed"], status["total_failed"]) == (1, 1, 0)
    assert status["queued_bytes"] == 0 and status["worker_alive"] and status["is_running"]
    rec.disable_async_saving()
    assert rec.get_async_save_status()["is_running"] is False
    rec.close()


def test_full_queue_falls_back_to_synchronous_save(tmp_path):
    rec = make(tmp_path / "r.zarr")
    rec.enable_async_saving(max_queue_size=1)
    gate, in_flight = threading.Event(), threading.Event()
    commit = rec._commit
    calls = []

    def slow_commit(buf):  # the worker's saves wait for the gate; the fallback (main thread) does not
        worker = threading.current_thread() is not threading.main_thread()
        if worker:
            in_flight.set()
            assert gate.wait(120)
        calls.append((worker, rec.num_episodes))
        return commit(buf)

    rec._saver._save_fn = slow_commit
    queued = []
    for e in range(3):
        fill(rec, e, 4)
        queued.append(rec.save_episode_async() if e < 2 else None)
        if e == 0:
            assert in_flight.wait(120)  # episode 0 is in flight, holding the worker
    # episode 0 in flight, episode 1 queued (queue of 1): episode 2 does not fit
    fill_status = rec.get_async_save_status()
    assert fill_status["pending_tasks"] == 2 and fill_status["queue_size"] == 1
    threading.Timer(0.3, gate.set).start()  # the fallback must wait for it: the worker holds episodes 0, 1
    assert rec.save_episode_async() is False  # saved synchronously, after the queued ones
    assert queued[:2] == [True, True]
    # episodes 0 and 1 by the worker (episode 2 by the caller itself, after them: see the stamps below)
    assert calls == [(True, 0), (True, 1)] and rec.num_episodes == 3
    assert rec.get_async_save_status()["rejected"] == 1
    stamps = rec.store["frames"].timestamps()[rec.store["frames"].segments()[:, 0]]
    assert (stamps == T0 + np.arange(3) * 10**10).all()  # stored in recording order
    rec.close()


def test_caller_fallback_keeps_the_frames_for_save_episode(tmp_path):
    rec = make(tmp_path / "r.zarr")
    fill(rec, 0, 3)  # async saving not enabled: the seed's pattern `if not ok: save_episode()`
    assert rec.save_episode_async(fallback_to_sync=False) is False
    assert rec.buffer.num_frames == 3
    assert rec.save_episode() == 0
    rec.close()


def test_memory_bound_rejects_and_is_visible(tmp_path):
    rec = make(tmp_path / "r.zarr")
    rec.enable_async_saving(max_queue_size=10, max_queue_bytes=1)  # one episode at a time
    gate = threading.Event()
    commit = rec._commit
    rec._saver._save_fn = lambda buf: (gate.wait(30), commit(buf))[1]
    fill(rec, 0, 70)
    assert rec.save_episode_async() is True
    held = rec.get_async_save_status()["queued_bytes"]
    assert held >= 70 * (H * W * 3 + 4 * (S + A))
    fill(rec, 1, 3)
    assert rec.save_episode_async(fallback_to_sync=False) is False  # bound reached: caller saves
    gate.set()
    assert rec.wait_for_async_saves(timeout=30)
    assert rec.get_async_save_status()["queued_bytes"] == 0
    rec.close()


def test_failed_save_is_reported_with_its_index_and_can_be_retried(tmp_path):
    rec = make(tmp_path / "r.zarr")
    rec.enable_async_saving()
    commit = rec._commit
    failing = {1}

    def flaky(buf):
        if buf.episode_index in failing:
            raise OSError("disk went away")
        return commit(buf)

    rec._saver._save_fn = flaky
    for e in range(3):
        fill(rec, e, 4 + e)
        assert rec.save_episode_async()
    assert rec.wait_for_async_saves(timeout=30)
    status = rec.get_async_save_status()
    assert status["total_failed"] == 1 and "episode 1" in status["last_error"]
    results = {r["episode_index"]: r for r in rec.get_async_save_results()}
    assert results[1]["success"] is False and "disk went away" in results[1]["error"]
    assert results[2]["stored_index"] == 1  # later episodes stay dense
    assert [r.episode_index for r in rec.failed_episodes] == [1]
    assert rec.failed_episodes[0].episode_buffer.num_frames == 5  # the data is kept
    failing.clear()
    assert rec.retry_failed_saves() == [2]
    assert episode_table(rec.store)["length"].to_list() == [4, 6, 5]
    rec.close()


def test_saver_alone_wait_timeout_and_stop():
    release = threading.Event()
    saved = []

    class Buf:
        nbytes = 10
        num_frames = 1

    started = threading.Event()

    def save(buf):
        started.set()
        assert release.wait(120)
        saved.append(buf)
        return len(saved) - 1

    saver = AsyncEpisodeSaver(save, max_queue_size=2, save_timeout=0.05)
    assert saver.submit_episode(Buf(), 0) and saver.submit_episode(Buf(), 1)
    assert saver.wait_for_completion(timeout=0.2) is False  # still blocked
    assert started.wait(120)
    time.sleep(0.1)  # at least twice save_timeout since the save began, however slow the machine
    assert saver.get_status()["stalled"] is True  # the save in flight is past save_timeout
    release.set()
    saver.stop(wait=True, timeout=10)
    assert len(saved) == 2
    assert not saver.get_status()["worker_alive"]
    assert saver.submit_episode(Buf(), 2) is False  # stopped: nothing accepted
    assert "longer than save_timeout" in saver.get_status()["last_error"]
    assert [r.success for r in saver.get_results()] == [True, True]


SCRIPT = """
import sys, numpy as np
from mimicdata.episodes import EpisodeRecorder
rec = EpisodeRecorder.create(sys.argv[1], fps=50, state=3, action=2, overwrite=True, default_task="t")
rec.enable_async_saving(max_queue_size=20)
for e in range(6):
    for t in range(50):
        rec.add_frame({"state": np.full(3, e), "action": np.zeros(2)})
    assert rec.save_episode_async()
print("queued", rec.get_async_save_status()["pending_tasks"], flush=True)
# no wait, no close: the interpreter exits with episodes still queued
"""


def test_queued_episodes_are_saved_before_the_interpreter_exits(tmp_path):
    path = tmp_path / "exit.zarr"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    store = md.open(path)
    assert store["episodes"].num_rows == 6
    np.testing.assert_array_equal(store["frames"]["state"][::50, 0], np.arange(6))
