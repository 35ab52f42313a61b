"""One timing kernel: `inspect`, `timing` and `fps_check` agree on non-monotonic steps, resets and rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mimicdata_cli._common import print_inspect

from mimicdata.episodes import EpisodeRecorder, fps_check
from mimicdata.report import inspect_store, timing_summary
from mimicdata.timing import timing_report
from mimicdata.timing_kernel import period_stats, segment_periods, segment_rates

MS = 1_000_000
T0 = 1_790_000_000_000_000_000


def episodes_store(path: str, periods_ns: list[int], frames: int = 10, reset_s: float = 5.0) -> EpisodeRecorder:
    """One episode per period, each ``frames`` long, separated by a ``reset_s`` reset."""
    rec = EpisodeRecorder.create(path, fps=50, state=2, action=2, overwrite=True)
    start = T0
    for period in periods_ns:
        for t in range(frames):
            rec.add_frame({"state": [0.0, t], "action": [t, 0.0], "task": "walk", "timestamp": start + t * period})
        rec.save_episode()
        start += (frames - 1) * period + int(reset_s * 1e9)
    return rec


def test_kernel_non_monotonic_counts_zero_and_backwards_steps() -> None:
    stamps = T0 + np.array([0, 20, 40, 40, 30, 50]) * MS   # one repeated stamp, one step back
    stats = period_stats(stamps, 50)
    assert stats["non_monotonic"] == 2 and stats["backwards"] == 1
    assert timing_summary(stamps, 50)["non_monotonic"] == 2


def test_kernel_segments_resets_are_no_periods() -> None:
    stamps = T0 + np.r_[np.arange(5) * 20, 10_000 + np.arange(5) * 20, 99_999] * MS
    segments = np.array([[0, 5], [5, 10]])    # the last row is uncommitted: outside every segment
    periods, after = segment_periods(stamps, segments)
    assert periods.tolist() == [20.0] * 8 and after.tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    stats = period_stats(stamps, 50, segments)
    assert stats["gaps"]["count"] == 0 and stats["missed_ticks"] == 0 and stats["rate"]["ok"]
    assert period_stats(stamps, 50)["gaps"]["count"] == 2       # without the bounds both jumps are gaps
    assert segment_rates(stamps, np.array([[0, 5], [5, 6]])).tolist()[0] == pytest.approx(50.0)
    assert np.isnan(segment_rates(stamps, np.array([[5, 6]]))[0])   # one frame has no rate


def test_kernel_rate_check_both_directions() -> None:
    stamps = T0 + np.r_[np.arange(10) * 25 * MS, 10**10 + np.arange(10) * 40_000, np.full(3, 2 * 10**10)]
    rate = period_stats(stamps, 50, np.array([[0, 10], [10, 20], [20, 23]]))["rate"]
    assert not rate["ok"] and [e["segment"] for e in rate["slow"]] == [0]
    assert [e["segment"] for e in rate["fast"]] == [1, 2]
    assert rate["fast"][0]["hz"] == pytest.approx(25_000) and rate["fast"][1]["hz"] is None
    no_nominal = period_stats(stamps[:10], None)
    assert no_nominal["nominal_source"] == "median period" and "rate" not in no_nominal
    assert period_stats(stamps[:1], 50) == {"samples": 1, "start_ns": int(stamps[0]), "end_ns": int(stamps[0]),
                                            "span_s": 0.0, "periods": 0}


def test_a_25_khz_episodes_store_does_not_keep_50_fps() -> None:
    rec = episodes_store("memory://timing-kernel-fast", [40_000, 40_000])   # 25 kHz, stamped as a 50 fps store
    check = fps_check(rec.store)
    assert check["ok"] is False and check["slow_episodes"] == []
    assert [e["episode_index"] for e in check["fast_episodes"]] == [0, 1]
    assert check["fast_episodes"][0]["fps"] == pytest.approx(25_000)
    assert "faster than the declared 50 fps" in check["message"] and "kept" not in check["message"]
    frames = timing_summary(rec.store["frames"].timestamps(), 50, rec.store["frames"].segments())
    assert frames["faster_than_declared"] is True and frames["slower_than_declared"] is False
    report = timing_report(rec.store["frames"])
    assert report["rate"]["ok"] is False and report["gaps"]["count"] == 0
    rec.close()


def test_adapters_agree_on_an_episodes_store(capsys) -> None:
    url = "memory://timing-kernel-adapters"
    rec = episodes_store(url, [20 * MS, 20 * MS, 25 * MS])   # the third episode ran at 40 Hz
    info = inspect_store(url)
    summary = info["streams"]["frames"]["timing"]
    report = timing_report(rec.store["frames"])
    rec.close()
    check = info["fps_check"]
    assert check["ok"] is False and check["slow_episodes"] == [{"episode_index": 2, "fps": 40.0}]
    assert summary["slower_than_declared"] is True and summary["max_gap_ms"] == pytest.approx(25.0)  # no reset
    assert report["gaps"]["count"] == 0 and report["period_ms"]["max"] == pytest.approx(25.0)
    assert summary["missed_ticks"] == report["missed_ticks"] == 0
    assert summary["measured_hz"] == pytest.approx(report["measured_hz"]) == pytest.approx(check["measured_fps"])
    json.dumps(info)
    print_inspect(info)
    assert "! fps check: 1 of 3 episode(s) ran slower" in capsys.readouterr().out
