"""Zero-copy loaned slots: records written straight into the ring read back like logged ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.logger import StreamingLogger, load_log


def test_loaned_slots_round_trip_with_log_and_abandon_on_error(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    example = {"acc": np.zeros(3, np.float32), "gyro": np.zeros(3), "temperature": 0.0}
    with StreamingLogger(path, fps=100) as logger:
        with pytest.raises(ValueError, match="not declared"):
            logger.slot("imu")
        logger.declare("imu", example)
        for i in range(300):
            if i % 3 == 1:  # in place, through views into the slot
                with logger.slot("imu") as rec:
                    rec["acc"][:] = (i, 2 * i, 3 * i)
                    rec["gyro"][:] = -i
                    rec["temperature"][()] = float(i)
            elif i % 3 == 2:  # whole values: exact dtype as a byte copy, others converted by numpy
                with logger.slot("imu") as rec:
                    rec["acc"] = np.array([i, 2 * i, 3 * i], np.float64)
                    rec["gyro"] = np.full(3, -i, np.float64)
                    rec["temperature"] = float(i)
            else:
                assert logger.log("imu", {"acc": np.array([i, 2 * i, 3 * i], np.float32),
                                          "gyro": np.full(3, -i, np.float64), "temperature": float(i)})
        with pytest.raises(RuntimeError), logger.slot("imu") as rec:  # the body fails: nothing is published
            rec["temperature"] = 1e9
            raise RuntimeError("control loop error")
        with pytest.raises(md.ValidationError, match="NaN"), logger.slot("imu") as rec:
            rec["acc"][:] = np.nan  # checked on leaving the block like log() checks a record
        with logger.slot("imu") as rec:
            rec["acc"][0] = 7.0  # fields left unwritten read as zeros, never as an older record's values
        assert logger.log("imu", example)  # the stream goes on after both
    status = logger.status
    assert (status.logged, status.dropped, status.errors) == (302, 0, 0)
    imu = load_log(path)["imu"]
    assert imu.num_rows == 302
    np.testing.assert_array_equal(imu["temperature"][:300], np.arange(300, dtype=np.float64))
    np.testing.assert_array_equal(imu["acc"][:300, 2], 3 * np.arange(300, dtype=np.float32))
    np.testing.assert_array_equal(imu["gyro"][:300, 1], -np.arange(300, dtype=np.float64))
    np.testing.assert_array_equal(imu["acc"][300], [7, 0, 0])
    assert imu["temperature"][300] == 0 and (np.diff(imu["monotonic_ns"]) > 0).all()
