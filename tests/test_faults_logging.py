"""Real faults for the streaming logger and the episode recorder: a full disk, a read-only file system.

The control loop never sees an exception; the status counts what could not be stored; what was
committed before stays a valid store.
"""

from __future__ import annotations

import numpy as np
import pytest

import mimicdata as md
from mimicdata.episodes import EpisodeRecorder
from mimicdata.logger import LoggerWriteError, StreamingLogger, load_log
from mimicdata.report import validate_store
from tests.conftest import SmallDisk

ROW = 256  # float32 values per record, incompressible (random)


def _rows(n: int, start: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(start)
    return [{"x": rng.normal(size=ROW).astype(np.float32), "i": np.int64(start + k)} for k in range(n)]


def test_logger_on_a_disk_that_fills_keeps_the_loop_running_and_a_valid_prefix(small_disk: SmallDisk) -> None:
    path = small_disk.path / "run.zarr"
    logger = StreamingLogger(path, flush_interval=60.0, queue_size=512)
    for row in _rows(64):
        assert logger.log("big", row)
    assert logger.flush()
    assert logger.status.written == 64
    small_disk.fill()
    for row in _rows(40, start=64):
        assert logger.log("big", row)  # never raises, never refuses: the ring takes them
    assert not logger.flush()  # the append fails on the full disk
    status = logger.status
    assert status.errors >= 1 and "No space left" in (status.last_error or "")
    assert status.writer_alive and status.written == 64
    # the records the store refuses are counted while it refuses them, not only at close()
    assert status.dropped == 40 and status.logged == 104
    with pytest.raises(LoggerWriteError, match=r"64 of 104 records stored, 40 dropped"):
        logger.close()
    assert logger.status.dropped == 40
    log = load_log(path)
    np.testing.assert_array_equal(log["big"]["i"], np.arange(64))  # the prefix, whole
    assert validate_store(str(path)) == []


def test_logger_on_a_read_only_disk_never_raises_in_log(small_disk: SmallDisk) -> None:
    small_disk.read_only()
    with pytest.warns(RuntimeWarning, match="Read-only file system"):
        logger = StreamingLogger(small_disk.path / "run.zarr")
    assert logger.log("imu", {"acc": np.zeros(3, np.float32)}) is False
    assert logger.status.dropped == 1
    with pytest.raises(LoggerWriteError, match="1 dropped"):
        logger.close()
    assert not (small_disk.path / "run.zarr").exists()


def test_logger_that_fills_the_disk_itself_leaves_a_valid_prefix(small_disk: SmallDisk) -> None:
    """Incompressible records into the last 300 kB, committed in steps: the loop never notices, the
    store keeps every record up to the last append that fitted, and status and close() agree."""
    path = small_disk.path / "run.zarr"
    logger = StreamingLogger(path, flush_interval=60.0, queue_size=512)
    assert logger.flush()  # the store exists
    small_disk.fill(leave=300_000)
    for start in range(0, 600, 100):  # 600 kB
        for row in _rows(100, start):
            assert logger.log("big", row)
        logger.flush()
    status = logger.status
    assert status.errors >= 1 and status.writer_alive and 0 < status.written < 600
    assert status.written + status.dropped == status.logged == 600  # every record is counted somewhere
    with pytest.raises(LoggerWriteError, match=rf"{status.written} of 600 records stored"):
        logger.close()
    log = load_log(path)
    np.testing.assert_array_equal(log["big"]["i"], np.arange(status.written))
    assert validate_store(str(path)) == []


def _episode(rec: object, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        rec.add_frame({"state": rng.normal(size=8), "action": rng.normal(size=4), "task": "walk",  # type: ignore[attr-defined]
                       "image.front": rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)})


def _check_episodes(path: object, expected: int) -> None:
    store = md.open(path)
    assert store["episodes"].num_rows == expected
    assert validate_store(str(path)) == []


def test_recorder_on_a_full_disk_keeps_committed_episodes_and_the_frames(small_disk: SmallDisk) -> None:
    path = small_disk.path / "eps.zarr"
    rec = EpisodeRecorder.create(path, fps=50, state=8, action=4, cameras={"front": (48, 64)})
    for k in range(2):
        _episode(rec, 20, seed=k)
        assert rec.save_episode() == k
    small_disk.fill()
    _episode(rec, 60, seed=2)  # 550 kB of images
    with pytest.raises(md.StorageFullError, match="No space left"):
        rec.save_episode()
    _check_episodes(path, 2)
    assert rec.buffer.num_frames == 60  # the frames wait in the buffer for another try
    small_disk.free()
    assert rec.save_episode() == 2  # with room again: the same episode, the next index
    rec.close()
    _check_episodes(path, 3)
    assert md.open(path)["frames"].segments().tolist()[-1] == [40, 100]


def test_recorder_background_saves_on_a_full_disk_fail_and_retry(small_disk: SmallDisk) -> None:
    path = small_disk.path / "eps.zarr"
    rec = EpisodeRecorder.create(path, fps=50, state=8, action=4, cameras={"front": (48, 64)})
    rec.enable_async_saving()
    _episode(rec, 20, seed=0)
    assert rec.save_episode_async()
    assert rec.wait_for_async_saves(timeout=120)
    small_disk.fill()
    _episode(rec, 60, seed=1)
    assert rec.save_episode_async()
    assert rec.wait_for_async_saves(timeout=120)
    results = rec.get_async_save_results()
    assert [r["success"] for r in results] == [True, False]
    assert "No space left" in str(results[-1]["error"])
    _check_episodes(path, 1)
    small_disk.free()
    assert rec.retry_failed_saves() == [1]
    rec.close()
    _check_episodes(path, 2)


def test_recorder_on_a_read_only_disk(small_disk: SmallDisk) -> None:
    path = small_disk.path / "eps.zarr"
    rec = EpisodeRecorder.create(path, fps=50, state=8, action=4, cameras={"front": (48, 64)})
    _episode(rec, 10, seed=0)
    rec.save_episode()
    rec.close()
    small_disk.read_only()
    with pytest.raises(md.ReadOnlyError, match="Read-only file system"):
        EpisodeRecorder.resume(path)
    with pytest.raises(md.ReadOnlyError, match="Read-only file system"):
        EpisodeRecorder.create(small_disk.path / "new.zarr", fps=50, state=8, action=4)
    _check_episodes(path, 1)
