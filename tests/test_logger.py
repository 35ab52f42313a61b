"""StreamingLogger: round trip, multi-rate streams, threads, queue-full policy, bad records, write errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.logger import LoggerWriteError, StreamingLogger, load_log

ROBOT = "g1_29dof"


@pytest.fixture(scope="module")
def g1_records() -> list[tuple[dict, dict]]:
    """The seed's observation/action records of 2 s of a simulated G1 at 50 Hz (MuJoCo)."""
    from mimicdata.sim import simulate_deployment

    return list(simulate_deployment(seconds=2.0, rate_hz=50.0, robot=ROBOT, seed=3))


def imu(i: int) -> dict[str, np.ndarray]:
    return {"acc": np.array([i, 2 * i, 3 * i], np.float32), "gyro": np.full(3, -i, np.float64),
            "temperature": float(i)}


def test_round_trip_of_every_field(tmp_path: Path, g1_records: list[tuple[dict, dict]]) -> None:
    path = tmp_path / "run.zarr"
    before = time.time_ns()
    with StreamingLogger(path, robot=ROBOT, fps=50, attrs={"operator": "test"}) as logger:
        for i, (obs, act) in enumerate(g1_records):
            assert logger.log("observations", obs)
            assert logger.log("actions", act)
            logger.log("imu", imu(i))
    status = logger.status
    n = len(g1_records)
    assert (status.logged, status.written, status.dropped, status.errors) == (3 * n, 3 * n, 0, 0)
    log = load_log(path)
    assert log.session_id == logger.session_id and log.attrs["operator"] == "test"
    assert log.closed_cleanly and log.attrs["start_time_ns"] >= before
    assert sorted(log.streams) == ["actions", "imu", "observations"]
    for name, idx in (("observations", 0), ("actions", 1)):
        view = log[name]
        assert view.num_rows == n
        for field in g1_records[0][idx]:
            expected = np.stack([np.asarray(r[idx][field]) for r in g1_records])
            np.testing.assert_array_equal(view[field], expected.astype(view[field].dtype), err_msg=field)
        stamps, mono = view["timestamp"], view["monotonic_ns"]
        assert stamps[0] >= before and (np.diff(stamps) >= 0).all() and (np.diff(mono) > 0).all()
    assert log.store["observations"].schema == "observations"  # the shipped schema, not a custom stream
    np.testing.assert_array_equal(log["imu"]["gyro"][:, 0], -np.arange(n, dtype=np.float64))
    assert log["imu"]["gyro"].dtype == np.float64 and log["imu"]["acc"].dtype == np.float32
    np.testing.assert_array_equal(log["imu"]["counter_step"], np.arange(n))  # filled in by the logger
    assert log.records("actions")[5]["counter_step"] == 5
    frame = log.to_polars("observations", ["counter_step", "joint_pos"])
    assert frame.height == n and frame["counter_step"].to_list() == list(range(n))
    assert log.drops == []


def test_streams_at_different_rates_line_up_by_time(tmp_path: Path, g1_records: list[tuple[dict, dict]]) -> None:
    """A 10x faster imu stream keeps its own clock and counter; its times interleave with the observations'."""
    with StreamingLogger(tmp_path / "rates.zarr", robot=ROBOT, fps=50) as logger:
        logger.declare("imu", imu(0), fps=500)
        k = 0
        for obs, _ in g1_records[:20]:
            for _ in range(10):
                logger.log("imu", imu(k))
                k += 1
                time.sleep(0.0002)
            logger.log("observations", obs)
    log = load_log(tmp_path / "rates.zarr")
    assert log["imu"].num_rows == 200 and log["observations"].num_rows == 20
    assert log["imu"].fps == 500 and log["observations"].fps == 50
    t_imu, t_obs = log.time_s("imu"), log.time_s("observations")
    # exactly 10 imu samples precede each observation in time
    np.testing.assert_array_equal(np.searchsorted(t_imu, t_obs), 10 * np.arange(1, 21))
    assert (t_obs > 0).all()


def test_caller_may_reuse_its_arrays(tmp_path: Path) -> None:
    buffer = np.zeros(3, np.float32)
    with StreamingLogger(tmp_path / "reuse.zarr") as logger:
        for i in range(50):
            buffer[:] = i  # the same array, changed in place after every log()
            logger.log("imu", {"acc": buffer})
    np.testing.assert_array_equal(load_log(tmp_path / "reuse.zarr")["imu"]["acc"][:, 0], np.arange(50))


def test_several_threads_log_concurrently(tmp_path: Path) -> None:
    threads, per_thread = 4, 400

    def work(tid: int, logger: StreamingLogger) -> None:
        for i in range(per_thread):
            logger.log("shared", {"thread": tid, "i": i, "value": np.full(8, tid * 10_000 + i, np.float32)})
            logger.log(f"own{tid}", {"i": i})

    with StreamingLogger(tmp_path / "threads.zarr", queue_size=4096) as logger:
        workers = [threading.Thread(target=work, args=(t, logger)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    log = load_log(tmp_path / "threads.zarr")
    shared = log["shared"]
    assert shared.num_rows == threads * per_thread and logger.status.dropped == 0
    np.testing.assert_array_equal(np.sort(shared["counter_step"]), np.arange(threads * per_thread))
    for t in range(threads):
        mine = shared["thread"] == t
        np.testing.assert_array_equal(shared["i"][mine], np.arange(per_thread))  # each thread's order kept
        np.testing.assert_array_equal(shared["value"][mine][:, 3], t * 10_000 + np.arange(per_thread))
        np.testing.assert_array_equal(log[f"own{t}"]["i"], np.arange(per_thread))


def test_queue_full_drops_are_counted_and_recorded(tmp_path: Path) -> None:
    """A burst into a 16-slot queue: log() never waits, drops are counted, and the store shows the gaps."""
    path = tmp_path / "drops.zarr"
    logger = StreamingLogger(path, queue_size=16)
    accepted = [logger.log("burst", {"x": np.float32(i)}) for i in range(2000)]
    status = logger.close()
    dropped = accepted.count(False)
    assert dropped > 0 and status.dropped == dropped and status.logged == 2000
    assert status.written == 2000 - dropped
    log = load_log(path)
    kept = log["burst"]["x"].astype(int)
    np.testing.assert_array_equal(kept, np.flatnonzero(accepted))  # exactly the accepted records, in order
    np.testing.assert_array_equal(log["burst"]["counter_step"], kept)  # gaps in the counter show the drops
    drops = log.drops
    assert sum(d["count"] for d in drops) == dropped and log.dropped("burst") == dropped
    missing = np.flatnonzero(~np.asarray(accepted))
    ranges = np.concatenate([np.arange(d["first_seq"], d["last_seq"] + 1) for d in drops])
    np.testing.assert_array_equal(np.sort(ranges), missing)
    assert {d["reason"] for d in drops} == {"queue_full"} and all(d["gap_end"] >= d["timestamp"] for d in drops)


def test_block_policy_waits_for_room_instead_of_dropping(tmp_path: Path) -> None:
    # the timeout only bounds the wait: generous, so a writer starved on a loaded machine still frees a slot
    logger = StreamingLogger(tmp_path / "block.zarr", queue_size=16, on_full="block", block_timeout=120.0)
    assert all(logger.log("burst", {"x": np.float32(i)}) for i in range(300))
    assert logger.close().dropped == 0
    np.testing.assert_array_equal(load_log(tmp_path / "block.zarr")["burst"]["x"], np.arange(300))


def test_bad_records_raise_clear_errors_and_keep_what_was_logged(
        tmp_path: Path, g1_records: list[tuple[dict, dict]]) -> None:
    path = tmp_path / "bad.zarr"
    obs0 = g1_records[0][0]
    with StreamingLogger(path, robot=ROBOT, fps=50) as logger:
        for obs, _ in g1_records[:10]:
            logger.log("observations", obs)
        with pytest.raises(md.ValidationError, match=r"joint_pos.*expected shape \(29,\), got \(23,\)"):
            logger.log("observations", {**obs0, "joint_pos": np.zeros(23, np.float32)})
        with pytest.raises(md.ValidationError, match=r"joint_vel.*NaN/Inf at index \(4,\)"):
            bad = obs0["joint_vel"].copy()
            bad[4] = np.nan
            logger.log("observations", {**obs0, "joint_vel": bad})
        with pytest.raises(md.ValidationError, match=r"unknown field\(s\) \['imu'\]"):
            logger.log("observations", {**obs0, "imu": np.zeros(4)})
        with pytest.raises(md.ValidationError, match=r"missing field\(s\) \['ang_vel'\]"):
            logger.log("observations", {k: v for k, v in obs0.items() if k != "ang_vel"})
        with pytest.raises(md.ValidationError, match=r"counter_step.*integers"):
            logger.log("observations", {**obs0, "counter_step": 1.5})
        with pytest.raises(md.ValidationError, match="strings cannot be logged"):
            logger.log("notes", {"text": "hello"})
        with pytest.raises(md.ValidationError, match=r"unknown field\(s\) \['foo'\].*schema actions v1"):
            logger.log("actions", {"foo": np.zeros(3)})  # the first record of a schema stream is checked too
        for obs, _ in g1_records[10:20]:
            assert logger.log("observations", obs)
    log = load_log(path)
    np.testing.assert_array_equal(log["observations"]["counter_step"], np.arange(20))  # no gap, nothing lost
    np.testing.assert_array_equal(log["observations"]["joint_vel"][4], g1_records[4][0]["joint_vel"])
    assert "actions" not in log.streams and logger.status.dropped == 0


def test_wrong_robot_shape_in_first_record_names_the_robot(tmp_path: Path, g1_records: list) -> None:
    with StreamingLogger(tmp_path / "robot.zarr", robot="g1_23dof", fps=50) as logger:
        with pytest.raises(md.ValidationError, match="robot g1_23dof has 23 joints"):
            logger.log("observations", g1_records[0][0])


def test_nan_allowed_where_declared(tmp_path: Path) -> None:
    with StreamingLogger(tmp_path / "nan.zarr") as logger:
        logger.declare("sensor", fields={"depth": {"dtype": "float32", "shape": [2], "allow_nan": True,
                                                   "unit": "m"}})
        logger.log("sensor", {"depth": np.array([np.nan, 1.0], np.float32)})
    depth = load_log(tmp_path / "nan.zarr")["sensor"]["depth"]
    assert np.isnan(depth[0, 0]) and depth[0, 1] == 1.0


def test_flush_commits_while_logging_continues(tmp_path: Path) -> None:
    path = tmp_path / "flush.zarr"
    logger = StreamingLogger(path, flush_interval=60.0)
    for i in range(100):
        logger.log("imu", imu(i))
    assert logger.status.written == 0  # far from the 60 s flush deadline
    assert logger.flush()
    assert logger.status.written == 100 and logger.status.queue_depth == 0
    assert md.open(path, "r")["imu"].num_rows == 100  # a reader sees them while the logger still runs
    logger.log("imu", imu(100))
    logger.close()
    assert md.open(path, "r")["imu"].num_rows == 101
    assert not logger.log("imu", imu(101))  # after close: refused (counted), no exception


def test_write_error_surfaces_in_status_and_close_then_recovers(tmp_path: Path) -> None:
    """The disk refuses a chunk mid-run: log() carries on, status and flush() tell, nothing committed is lost."""
    path = tmp_path / "err.zarr"
    logger = StreamingLogger(path, flush_interval=60.0)
    row = {"x": np.ones(4096, np.float32)}  # 16 KiB rows: 256 rows per chunk
    for _ in range(256):
        logger.log("big", row)
    assert logger.flush()
    blocker = path / "big" / "x" / "c" / "1"
    blocker.write_text("not a folder")  # the next chunk cannot be written
    for _ in range(100):
        assert logger.log("big", row)
    assert not logger.flush()
    status = logger.status
    assert status.errors >= 1 and "big" in status.last_error and status.written == 256 and status.writer_alive
    assert md.open(path, "r")["big"].num_rows == 256  # what was committed is intact
    blocker.unlink()  # space comes back: the kept rows are written on the next try
    assert logger.flush(timeout=30)
    with pytest.raises(LoggerWriteError, match="last error: writing"):
        logger.close()  # the error is still reported at close, though every record got stored
    assert logger.status.written == 356 and md.open(path, "r")["big"].num_rows == 356


def test_unwritable_location_never_raises_in_log(tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match="cannot create the log store"):
        logger = StreamingLogger("/proc/mimicdata-cannot-write-here.zarr")
    assert logger.log("observations", {"x": 1.0}) is False
    status = logger.status
    assert status.dropped == 1 and "cannot create" in status.last_error
    with pytest.raises(LoggerWriteError):
        logger.close()


def test_usage_errors_raise_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="memory://"):
        StreamingLogger("memory://x")
    with pytest.raises(ValueError, match="on_full"):
        StreamingLogger(tmp_path / "a.zarr", on_full="wait")
    with pytest.raises(md.SchemaError, match="unknown robot"):
        StreamingLogger(tmp_path / "b.zarr", robot="nao")
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "c.zarr" / "file").write_text("x")
    with pytest.raises(md.StoreExistsError):
        StreamingLogger(tmp_path / "c.zarr")


def test_writer_in_a_thread_stores_the_same(tmp_path: Path) -> None:
    """writer="thread" (the design not chosen: it shares the GIL) still stores every record."""
    with StreamingLogger(tmp_path / "thread.zarr", writer="thread") as logger:
        for i in range(200):
            logger.log("imu", imu(i))
    assert logger.status.written == 200
    np.testing.assert_array_equal(load_log(tmp_path / "thread.zarr")["imu"]["acc"][:, 1], 2 * np.arange(200))


def test_stream_names_and_half_precision_checks(tmp_path: Path) -> None:
    with StreamingLogger(tmp_path / "names.zarr") as logger:
        for bad in ("bad name", "drops", "_hidden", "a/b"):
            with pytest.raises(ValueError, match="stream name"):
                logger.log(bad, {"x": 1.0})
        logger.log("half", {"h": np.ones(2, np.float16)})
        with pytest.raises(md.ValidationError, match=r"half.h \(record 1\): NaN/Inf at index \(1,\)"):
            logger.log("half", {"h": np.array([1, np.inf], np.float16)})
    assert load_log(tmp_path / "names.zarr")["half"]["h"].dtype == np.float16


def test_plain_python_numbers_and_their_limits(tmp_path: Path) -> None:
    with StreamingLogger(tmp_path / "scalars.zarr") as logger:
        logger.declare("s", fields={"i64": {"dtype": "int64"}, "f64": {"dtype": "float64"},
                                    "f32": {"dtype": "float32"}, "i32": {"dtype": "int32"}, "b": {"dtype": "bool"}})
        for i in range(5):
            logger.log("s", {"i64": 2**40 + i, "f64": i / 3, "f32": i + 0.5, "i32": -i, "b": True})
        logger.log("s", {"i64": np.int64(7), "f64": 1, "f32": np.float32(2), "i32": np.int32(3), "b": False})
        with pytest.raises(md.ValidationError, match=r"s.i32 \(record 6\): 3000000000 does not fit in int32"):
            logger.log("s", {"i64": 0, "f64": 0.0, "f32": 0.0, "i32": 3_000_000_000, "b": True})
        with pytest.raises(md.ValidationError, match="does not fit in int64"):
            logger.log("s", {"i64": 2**70, "f64": 0.0, "f32": 0.0, "i32": 0, "b": True})
    s = load_log(tmp_path / "scalars.zarr")["s"]
    np.testing.assert_array_equal(s["i64"], [2**40 + i for i in range(5)] + [7])
    np.testing.assert_array_equal(s["f64"], [i / 3 for i in range(5)] + [1.0])
    np.testing.assert_array_equal(s["f32"], np.float32([0.5, 1.5, 2.5, 3.5, 4.5, 2.0]))
    np.testing.assert_array_equal(s["i32"], [0, -1, -2, -3, -4, 3])
    np.testing.assert_array_equal(s["b"], [True] * 5 + [False])
    assert s["counter_step"].tolist() == list(range(6))  # rejected records take no sequence number
