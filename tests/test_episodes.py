"""EpisodeRecorder: frames and images round trip, real timestamps, statistics, episode table, resume,
bad input. Async saving is in test_episodes_async.py, SIGKILL in test_episodes_kill.py."""

from __future__ import annotations

import itertools
import json

import numpy as np
import polars as pl
import pytest

import mimicdata as md
from mimicdata.episodes import (
    EpisodeRecorder,
    dataset_stats,
    episode_metadata,
    episode_stats,
    episode_table,
    fps_check,
)
from mimicdata.episodes.stats import ImageStats, VectorStats
from mimicdata.errors import SchemaError, ValidationError

S, A, H, W = 7, 3, 12, 16
T0 = 1_700_000_000_000_000_000


def frame(e: int, t: int, period_ns: int = 20_000_000, task: str = "walk") -> dict:
    rng = np.random.default_rng(1000 * e + t)
    return {"state": rng.standard_normal(S), "action": rng.standard_normal(A),
            "image.head": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            "timestamp": T0 + e * 10**10 + t * period_ns, "task": task}


def make(path, **kw) -> EpisodeRecorder:
    return EpisodeRecorder.create(path, fps=50, state=[f"q{i}" for i in range(S)], action=A,
                                  robot="g1_29dof", cameras={"head": (H, W)}, overwrite=True, **kw)


def record(rec: EpisodeRecorder, e: int, n: int, **save) -> int:
    for t in range(n):
        rec.add_frame(frame(e, t))
    return rec.save_episode(**save)


def test_frames_and_images_round_trip(tmp_path):
    path = tmp_path / "rec.zarr"
    rec = make(path)
    assert [record(rec, e, n) for e, n in enumerate((5, 9, 3))] == [0, 1, 2]
    rec.close()
    store = md.open(path)
    frames = store["frames"]
    assert frames.segments().tolist() == [[0, 5], [5, 14], [14, 17]]
    row = 0
    for e, n in enumerate((5, 9, 3)):
        for t in range(n):
            want = frame(e, t)
            np.testing.assert_array_equal(frames.read("state", row, row + 1)[0], want["state"].astype(np.float32))
            np.testing.assert_array_equal(frames.read("image.head", row, row + 1)[0], want["image.head"])
            assert frames.read("timestamp", row, row + 1)[0] == want["timestamp"]
            assert frames.read("frame_index", row, row + 1)[0] == t
            assert frames.read("episode_index", row, row + 1)[0] == e
            row += 1
    assert store.attrs["recording"]["state_names"][0] == "q0"


def test_real_timestamps_and_fps_check_flags_slow_loop(tmp_path):
    rec = make(tmp_path / "r.zarr")
    for t in range(20):
        rec.add_frame(frame(0, t, period_ns=20_000_000))
    rec.save_episode()
    for t in range(20):  # this loop only managed 40 Hz
        rec.add_frame(frame(1, t, period_ns=25_000_000))
    rec.save_episode()
    stamps = rec.store["frames"].timestamps()
    assert np.diff(stamps[20:]).tolist() == [25_000_000] * 19  # stored as measured, not frame_index / fps
    check = fps_check(rec.store)
    assert check["ok"] is False
    assert check["slow_episodes"] == [{"episode_index": 1, "fps": 40.0}]
    assert "slower than the declared 50 fps" in check["message"]
    rec.close()
    good = make(tmp_path / "g.zarr")
    record(good, 0, 10)
    assert fps_check(good.store)["ok"] is True  # the gap before episode 1 is a reset, not a period
    record(good, 1, 10)
    assert fps_check(good.store)["ok"] is True
    good.close()


def test_default_timestamp_is_wall_clock(tmp_path):
    import time

    rec = make(tmp_path / "r.zarr")
    before = time.time_ns()
    for t in range(3):
        f = frame(0, t)
        del f["timestamp"]
        rec.add_frame(f)
    rec.save_episode()
    stamps = rec.store["frames"].timestamps()
    assert before <= stamps[0] <= stamps[-1] <= time.time_ns()
    rec.close()


def test_episode_and_dataset_statistics_match_numpy(tmp_path):
    rec = make(tmp_path / "r.zarr")
    for e, n in enumerate((6, 11)):
        record(rec, e, n)
    states = [np.stack([frame(e, t)["state"] for t in range(n)]).astype(np.float32) for e, n in enumerate((6, 11))]
    images = [np.stack([frame(e, t)["image.head"] for t in range(n)]) for e, n in enumerate((6, 11))]
    one = episode_stats(rec.store, 1)
    np.testing.assert_allclose(one["state"]["mean"], states[1].astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(one["state"]["std"], states[1].astype(np.float64).std(0), rtol=1e-9)
    np.testing.assert_array_equal(one["state"]["min"], states[1].min(0))
    np.testing.assert_allclose(one["image.head"]["mean"], images[1].reshape(-1, 3).mean(0), rtol=1e-12)
    everything = dataset_stats(rec.store, quantiles=(0.1, 0.5))
    allstate = np.concatenate(states).astype(np.float64)
    np.testing.assert_allclose(everything["state"]["mean"], allstate.mean(0), rtol=1e-12)
    np.testing.assert_allclose(everything["state"]["std"], allstate.std(0), rtol=1e-9)
    assert everything["state"]["count"] == 17
    pixels = np.concatenate(images).reshape(-1, 3)
    np.testing.assert_allclose(everything["image.head"]["std"], pixels.std(0), rtol=1e-9)
    np.testing.assert_array_equal(everything["image.head"]["q50"], np.quantile(pixels, 0.5, axis=0))
    # the incrementally refreshed cache in the attributes agrees with the merged rows
    cached = rec.store.attrs["dataset_stats"]
    assert cached["episodes"] == 2
    np.testing.assert_allclose(cached["state"]["mean"], allstate.mean(0), rtol=1e-12)
    rec.close()


def test_stats_merge_equals_whole():
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((n, 4)) * 5 + 2 for n in (1, 7, 300)]
    merged = VectorStats.of(parts[0]).merge(VectorStats.of(parts[1])).merge(VectorStats.of(parts[2]))
    whole = np.concatenate(parts)
    np.testing.assert_allclose(merged.mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, whole.std(0), rtol=1e-10)
    imgs = rng.integers(0, 256, (5, 9, 11, 3), dtype=np.uint8)
    hist = ImageStats.of(imgs[:2]).merge(ImageStats.of(imgs[2:]))
    for q in (0.0, 0.01, 0.37, 0.5, 1.0):
        np.testing.assert_allclose(hist.quantiles([q])[0], np.quantile(imgs.reshape(-1, 3), q, axis=0))


def test_episode_table_is_queryable_with_polars(tmp_path):
    rec = make(tmp_path / "r.zarr")
    record(rec, 0, 4, success=True, metadata={"operator": "ana", "scene": 1})
    record(rec, 1, 6, success=False)
    rec.add_frame(frame(2, 0, task="turn"))
    rec.save_episode()
    table = episode_table(rec.store)
    assert table.columns[:5] == ["episode_index", "start", "end", "length", "task"]
    assert table["length"].to_list() == [4, 6, 1]
    assert table["success"].to_list() == [True, False, None]
    assert table.filter(pl.col("task") == "walk")["episode_index"].to_list() == [0, 1]
    assert json.loads(table["metadata"][0]) == {"operator": "ana", "scene": 1}
    assert episode_metadata(rec.store, 0)["operator"] == "ana"
    assert table["start_time"][1].year >= 2023
    rec.close()
    by_url = episode_table(tmp_path / "r.zarr")
    assert by_url["length"].to_list() == [4, 6, 1]


def test_resume_continues_at_next_index_and_refuses_other_setup(tmp_path):
    path = tmp_path / "r.zarr"
    rec = make(path)
    record(rec, 0, 4)
    record(rec, 1, 4)
    rec.close()
    again = EpisodeRecorder.resume(path, fps=50, state=S, action=A, robot="g1_29dof", cameras={"head": (H, W)})
    assert again.next_episode_index == 2
    assert record(again, 2, 3) == 2
    again.close()
    with pytest.raises(SchemaError, match=r"fps: store has 50.0, recorder declares 30.0"):
        EpisodeRecorder.resume(path, fps=30)
    with pytest.raises(SchemaError, match="state_dim"):
        EpisodeRecorder.resume(path, state=S + 1)
    with pytest.raises(SchemaError, match="cameras"):
        EpisodeRecorder.resume(path, cameras={"wrist": (H, W)})
    with pytest.raises(SchemaError, match="robot"):
        EpisodeRecorder.resume(path, robot="g1_23dof")
    with pytest.raises(SchemaError, match="state_names"):
        EpisodeRecorder.resume(path, state=[f"x{i}" for i in range(S)])
    # a refused resume leaves the store unlocked and intact
    opened = EpisodeRecorder.open(path, fps=50, state=S, action=A, cameras={"head": (H, W)})
    assert opened.num_episodes == 3
    opened.close()
    fresh = EpisodeRecorder.open(tmp_path / "new.zarr", fps=50, state=S, action=A, cameras={"head": (H, W)})
    assert fresh.num_episodes == 0
    fresh.close()


def test_resume_refuses_non_episode_store(tmp_path):
    md.create(tmp_path / "obs.zarr", "observations", robot="g1_29dof", fps=50, dims={"obs": 4}).close()
    with pytest.raises(SchemaError, match="not an episodes store"):
        EpisodeRecorder.resume(tmp_path / "obs.zarr")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda f: f.pop("image.head"), r"missing \['image.head'\]"),
    (lambda f: f.update(state=np.zeros(S + 1)), r"'state' has shape \(8,\), expected \(7,\)"),
    (lambda f: f.update({"image.head": np.zeros((H, W, 3), np.float32)}), "images must be uint8"),
    (lambda f: f.update({"image.head": np.zeros((H, W + 1, 3), np.uint8)}), "declared"),
    (lambda f: f.update(state=np.full(S, np.nan)), "NaN"),
    (lambda f: f.update(timestamp=1.5), "int of ns"),
    (lambda f: f.update(timestamp=T0 - 1), "earlier than the previous frame"),
    (lambda f: f.update(velocity=np.zeros(3)), r"unknown key\(s\) \['velocity'\]"),
    (lambda f: f.update({"next.reward": 1.0}), "keys differ from frame 0"),
    (lambda f: f.update(task=""), "task must be a non-empty string"),
])
def test_bad_frames_are_refused_and_lose_nothing(tmp_path, mutate, message):
    rec = make(tmp_path / "r.zarr")
    record(rec, 0, 3)
    rec.add_frame(frame(1, 0))
    bad = frame(1, 1)
    mutate(bad)
    with pytest.raises(ValidationError, match=message) as info:
        rec.add_frame(bad)
    assert "episode 1 frame 1" in str(info.value)
    assert rec.buffer.num_frames == 1  # the episode so far is kept
    rec.add_frame(frame(1, 1))
    assert rec.save_episode() == 1
    assert episode_table(rec.store)["length"].to_list() == [3, 2]
    rec.close()


def test_empty_episode_and_bad_metadata_are_refused(tmp_path):
    rec = make(tmp_path / "r.zarr")
    record(rec, 0, 2)
    with pytest.raises(ValidationError, match="episode 1 is empty"):
        rec.save_episode()
    rec.add_frame(frame(1, 0))
    with pytest.raises(ValidationError, match="not JSON"):
        rec.save_episode(metadata={"x": object()})
    assert rec.buffer.num_frames == 1
    assert rec.save_episode() == 1
    assert rec.num_episodes == 2
    rec.close()


def test_failed_commit_rolls_back_and_keeps_the_buffer(tmp_path, monkeypatch):
    rec = make(tmp_path / "r.zarr")
    record(rec, 0, 3)
    for t in range(4):
        rec.add_frame(frame(1, t))
    original = rec.store.append_segment

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(rec.store, "append_segment", crash)
    with pytest.raises(OSError, match="disk full"):
        rec.save_episode()
    frames = rec.store["frames"]
    assert frames.committed_rows == frames.num_rows == 3  # the frames written before the crash are gone
    assert rec.store["episode_info"].committed_rows == 1
    monkeypatch.setattr(rec.store, "append_segment", original)
    assert rec.buffer.num_frames == 4
    assert rec.save_episode() == 1
    assert frames.segments().tolist() == [[0, 3], [3, 7]]
    rec.close()


def test_bulk_add_frames_matches_single_frames(tmp_path):
    one, bulk = make(tmp_path / "a.zarr"), make(tmp_path / "b.zarr")
    record(one, 0, 6)
    frames = [frame(0, t) for t in range(6)]
    bulk.add_frames({k: np.stack([f[k] for f in frames]) for k in ("state", "action", "image.head", "timestamp")}
                    | {"task": "walk"})
    bulk.save_episode()
    for name in ("state", "action", "image.head", "timestamp", "frame_index"):
        np.testing.assert_array_equal(one.store["frames"][name], bulk.store["frames"][name])
    with pytest.raises(ValidationError, match="timestamps go backwards"):
        bulk.add_frames({"state": np.zeros((2, S)), "action": np.zeros((2, A)),
                         "image.head": np.zeros((2, H, W, 3), np.uint8), "timestamp": np.array([T0 + 5, T0]),
                         "task": "walk"})
    one.close()
    bulk.close()


def test_fps_check_without_a_timed_stream(tmp_path):
    store = md.create(tmp_path / "plain.zarr", None, fps=50)
    store.add_stream("notes", fields={"value": {"dtype": "float32", "shape": []}})
    assert fps_check(store)["ok"] is None
    store.add_stream("imu", fields={"acc": {"dtype": "float32", "shape": [3]}}, fps=200.0, time_field="stamp")
    store["imu"].append({"acc": np.zeros((50, 3)), "stamp": T0 + np.arange(50) * 10_000_000})  # 100 Hz
    check = fps_check(store)
    assert check["stream"] == "imu" and check["ok"] is False and check["slow_episodes"][0]["fps"] == 100.0
    store.close()


def test_buffer_blocks_grow_and_save_without_joining(tmp_path):
    from mimicdata.episodes.buffer import EpisodeBuffer

    buf = EpisodeBuffer(0, block_frames=4)
    want = np.arange(45 * 2).reshape(45, 2)
    for t in range(10):
        buf.add({"x": want[t]}, "a")
    buf.extend({"x": want[10:45]}, ["a"] * 35)
    np.testing.assert_array_equal(buf.column("x"), want)
    spans = buf.spans()
    assert spans[0][1] == 0 and spans[-1][2] == 45 and all(a[2] == b[1] for a, b in itertools.pairwise(spans))
    np.testing.assert_array_equal(np.concatenate([buf.block("x", b) for b, _, _ in spans]), want)
    rec = make(tmp_path / "r.zarr")
    frames = [frame(0, t) for t in range(70)]  # past the first 64-frame block: written in two appends
    for f in frames:
        rec.add_frame(f)
    rec.save_episode()
    np.testing.assert_array_equal(rec.store["frames"]["image.head"], np.stack([f["image.head"] for f in frames]))
    stats = episode_stats(rec.store, 0)
    pixels = np.stack([f["image.head"] for f in frames]).reshape(-1, 3)
    np.testing.assert_allclose(stats["image.head"]["mean"], pixels.mean(0), rtol=1e-12)
    rec.close()
