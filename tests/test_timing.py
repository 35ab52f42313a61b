"""Timing report: period histogram, jitter, missed deadlines, gaps, drops, on streams with known timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mimicdata as md
from mimicdata.logger.writer import DROP_FIELDS
from mimicdata.timing import format_timing_report, timing_report, timing_reports

MS = 1_000_000
T0 = 1_790_000_000_000_000_000


def known_periods() -> np.ndarray:
    """1000 periods at 1 kHz: 990 x 1 ms, 5 x 2 ms (one tick missed each), 4 x 1.2 ms, one 10 ms gap."""
    periods = np.full(1000, 1.0)
    periods[100:105] = 2.0
    periods[200:204] = 1.2
    periods[500] = 10.0
    return periods


@pytest.fixture
def store(tmp_path: Path) -> md.Store:
    path = tmp_path / "timing.zarr"
    stamps = np.concatenate([[0], np.cumsum(np.round(known_periods() * MS))]).astype(np.int64)
    with md.create(path) as st:
        st.add_stream("imu", fields={"acc": {"dtype": "float32", "shape": [3]},
                                     "monotonic_ns": {"dtype": "int64", "shape": [], "time": "monotonic_ns"},
                                     "counter_step": {"dtype": "int64", "shape": []}},
                      fps=1000, time_field="timestamp")
        steps = np.arange(1001)
        steps[700:] += 3  # three records missing from the counter
        st["imu"].append({"acc": np.zeros((1001, 3), np.float32), "monotonic_ns": 5_000 * MS + stamps,
                          "timestamp": T0 + stamps + 7, "counter_step": steps})
        st.add_stream("drops", fields=DROP_FIELDS, time_field="timestamp")
        st["drops"].append({"stream": np.array(["imu", "imu", "other"]),
                            "reason": np.array(["queue_full", "write_error", "queue_full"]),
                            "first_seq": np.array([700, 900, 5]), "last_seq": np.array([702, 900, 5]),
                            "count": np.array([3, 1, 1]), "timestamp": T0 + np.array([699, 899, 4]) * MS,
                            "gap_end": T0 + np.array([703, 901, 6]) * MS})
    return md.open(path)


def test_report_numbers(store: md.Store) -> None:
    r = timing_report(store["imu"])
    periods = known_periods()
    assert r["clock"] == "monotonic_ns" and r["samples"] == 1001
    assert r["nominal_hz"] == 1000 and r["nominal_source"] == "stream fps"
    assert r["span_s"] == pytest.approx(periods.sum() / 1000)
    assert r["period_ms"]["mean"] == pytest.approx(periods.mean())
    assert r["period_ms"]["max"] == pytest.approx(10.0) and r["period_ms"]["p50"] == pytest.approx(1.0)
    assert r["jitter_ms"]["std"] == pytest.approx(periods.std()) and r["jitter_ms"]["max"] == pytest.approx(9.0)
    assert r["missed_deadlines"]["count"] == 6  # > 1.5 ms: five 2 ms periods and the 10 ms gap
    assert r["missed_ticks"] == 5 + 9
    assert r["gaps"]["count"] == 1 and r["gaps"]["largest"] == [
        {"after_row": 500, "at_s": pytest.approx(periods[:500].sum() / 1000), "duration_ms": pytest.approx(10.0)}]
    assert r["non_monotonic"] == 0
    h = r["histogram"]
    assert sum(h["counts"]) + h["overflow"] == 1000 and h["overflow"] == 1  # the 10 ms gap is beyond p99.9
    edges = np.asarray(h["edges_ms"])
    one_ms_bin = np.searchsorted(edges, 1.0, side="right") - 1
    assert h["counts"][one_ms_bin] == 990
    assert r["drops"]["count"] == 4 and r["drops"]["gaps"] == 2
    assert r["drops"]["by_reason"] == {"queue_full": 3, "write_error": 1}
    assert r["drops"]["largest"][0] == {"first_seq": 700, "last_seq": 702, "count": 3, "reason": "queue_full",
                                        "duration_ms": 4.0}
    assert r["counter_gaps"] == {"count": 1, "missing_steps": 3}
    json.dumps(r)  # JSON-ready


def test_nominal_rate_from_argument_or_median(store: md.Store) -> None:
    r = timing_report(store["imu"], expected_hz=500)
    assert r["nominal_source"] == "argument" and r["missed_deadlines"]["count"] == 1  # only > 3 ms
    text = format_timing_report(timing_report(store["imu"]))
    assert "missed deadlines (> 1.50 ms): 6" in text and "records 700..702 (3, queue_full" in text
    assert "after row 500" in text and "counter_step jumps: 1 (3 steps missing)" in text


def test_wall_clock_when_no_monotonic_column(tmp_path: Path) -> None:
    with md.create(tmp_path / "w.zarr") as st:
        st.add_stream("s", fields={"v": {"dtype": "float32", "shape": []}}, time_field="timestamp")
        st["s"].append({"v": np.zeros(4, np.float32), "timestamp": T0 + np.array([0, 20, 40, 30]) * MS})
    r = timing_report(md.open(tmp_path / "w.zarr")["s"])
    assert r["clock"] == "timestamp" and r["nominal_source"] == "median period"
    assert r["nominal_hz"] == pytest.approx(50.0) and r["non_monotonic"] == 1
    assert timing_reports(md.open(tmp_path / "w.zarr")).keys() == {"s"}


def test_cli_timing(store: md.Store, tmp_path: Path) -> None:
    from mimicdata_cli.main import app

    runner = CliRunner()
    path = str(store.location)
    result = runner.invoke(app, ["timing", path, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["imu"]["missed_ticks"] == 14
    out = tmp_path / "hist.png"
    text = runner.invoke(app, ["timing", path, "--stream", "imu", "--out", str(out)])
    assert text.exit_code == 0 and "period histogram" in text.output and out.read_bytes()[:4] == b"\x89PNG"
    missing = runner.invoke(app, ["timing", path, "--stream", "nope"])
    assert missing.exit_code == 1 and "no stream(s) ['nope']" in missing.output
