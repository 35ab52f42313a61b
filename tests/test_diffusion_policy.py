"""Import of diffusion_policy replay buffers (Zarr v2, as diffusion_policy and UMI write them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import mimicdata as md
from mimicdata.convert import diffusion_policy as dp
from mimicdata.episodes import episode_table
from mimicdata.errors import CorruptStoreError, SchemaError, ValidationError


def replay_buffer(path, ends, *, rows=None, image_dtype=np.uint8, timestamp=False, fmt=2):
    """A replay buffer laid out like diffusion_policy's ReplayBuffer (data/<key>, meta/episode_ends)."""
    ends = np.asarray(ends, np.int64)
    n = int(ends[-1]) if rows is None else rows
    rng = np.random.default_rng(7)
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    data = root.create_group("data")
    arrays = {"state": rng.standard_normal((n, 5)).astype(np.float32),
              "keypoint": rng.standard_normal((n, 9, 2)).astype(np.float32),
              "action": rng.standard_normal((n, 2)).astype(np.float32),
              "img": rng.integers(0, 256, (n, 12, 16, 3)).astype(image_dtype)}
    if timestamp:
        arrays["timestamp"] = 1_700_000_000.0 + np.cumsum(rng.uniform(0.09, 0.11, n))
    for key, values in arrays.items():
        data.create_array(key, data=values, chunks=(min(8, n), *values.shape[1:]))
    root.create_group("meta").create_array("episode_ends", data=ends, chunks=(max(1, len(ends)),),
                                           compressors=None)
    return arrays


def test_import_zarr_v2_replay_buffer(tmp_path):
    src = tmp_path / "pusht_replay.zarr"
    arrays = replay_buffer(src, [5, 12, 20])
    assert json.loads((src / "data" / "state" / ".zarray").read_text())["zarr_format"] == 2
    assert dp.detect(src) and not dp.detect(tmp_path / "missing")
    report = dp.convert(src, tmp_path / "out.zarr", fps=10)
    assert report.ok and report.rows == {"episodes": 3, "frames": 20}
    store = md.open(tmp_path / "out.zarr")
    frames = store["frames"]
    assert frames.segments().tolist() == [[0, 5], [5, 12], [12, 20]]
    # state = keypoint (flattened) then state, in sorted key order; names say which is which
    np.testing.assert_array_equal(frames["state"], np.concatenate([arrays["keypoint"].reshape(20, -1),
                                                                   arrays["state"]], axis=1))
    names = store.attrs["recording"]["state_names"]
    assert names[0] == "keypoint[0]" and names[18] == "state[0]" and len(names) == 23
    np.testing.assert_array_equal(frames["action"], arrays["action"])
    np.testing.assert_array_equal(frames["image.img"], arrays["img"])
    assert np.diff(frames["timestamp"][:5]).tolist() == [100_000_000] * 4  # 1/fps without a timestamp array
    assert episode_table(store)["metadata"].to_list()[2] == '{"source_episode": 2}'


def test_cameras_of_different_sizes(tmp_path):
    src = tmp_path / "two_cams.zarr"
    arrays = replay_buffer(src, [4, 9])
    wrist = np.random.default_rng(1).integers(0, 256, (9, 6, 10, 3)).astype(np.uint8)
    zarr.open_group(str(src), mode="a")["data"].create_array("wrist", data=wrist, chunks=(4, 6, 10, 3))
    dp.convert(src, tmp_path / "out.zarr", fps=10)
    frames = md.open(tmp_path / "out.zarr")["frames"]
    np.testing.assert_array_equal(frames["image.img"], arrays["img"])
    np.testing.assert_array_equal(frames["image.wrist"], wrist)


def test_float_images_and_real_timestamps(tmp_path):
    src = tmp_path / "real.zarr"
    arrays = replay_buffer(src, [6, 10], image_dtype=np.float32, timestamp=True, fmt=3)
    dp.convert(src, tmp_path / "out.zarr")
    frames = md.open(tmp_path / "out.zarr")["frames"]
    np.testing.assert_array_equal(frames["image.img"], arrays["img"].astype(np.uint8))
    np.testing.assert_array_equal(frames["timestamp"], np.round(arrays["timestamp"] * 1e9).astype(np.int64))


def test_half_written_buffer_keeps_complete_episodes(tmp_path):
    src = tmp_path / "crashed.zarr"
    replay_buffer(src, [5, 12], rows=17)  # arrays resized for a third episode, episode_ends never updated
    report = dp.convert(src, tmp_path / "out.zarr")
    assert report.rows == {"episodes": 2, "frames": 12}
    assert "rows past the last episode end" in report.problems[0]
    assert md.open(tmp_path / "out.zarr")["frames"].num_rows == 12


def test_empty_episodes_are_skipped_and_reported(tmp_path):
    src = tmp_path / "gaps.zarr"
    replay_buffer(src, [4, 4, 9])
    report = dp.convert(src, tmp_path / "out.zarr")
    assert report.rows["episodes"] == 2 and report.details["skipped_empty"] == [1]


def test_bad_buffers_give_clear_errors(tmp_path):
    src = tmp_path / "short.zarr"
    replay_buffer(src, [5, 30], rows=20)
    with pytest.raises(CorruptStoreError, match="episode_ends says 30 rows"):
        dp.convert(src, tmp_path / "a.zarr")
    replay_buffer(src, [5, 20], image_dtype=np.float32)
    zarr.open_group(str(src), mode="r+")["data"]["img"][0, 0, 0, 0] = 0.5
    with pytest.raises(ValidationError, match="data/img holds float pixels"):
        dp.convert(src, tmp_path / "b.zarr", overwrite=True)
    with pytest.raises(SchemaError, match="no data/act"):
        dp.convert(src, tmp_path / "c.zarr", action_key="act")
    zarr.open_group(str(src), mode="r+")["meta"]["episode_ends"][:] = [20, 5]
    with pytest.raises(CorruptStoreError, match="non-decreasing"):
        dp.convert(src, tmp_path / "d.zarr")
