"""Episodes carry any features: LeRobot's features dict at creation, LeRobot keys in add_frame, cameras of
different sizes, strings and bools, statistics per feature, LeRobot round trips (images and video), and stores
written by the v1.0 recorder (tests/fixtures/episodes_v1_0.zarr) still read and record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import mimicdata as md
from mimicdata.convert import lerobot
from mimicdata.convert import lerobot_format as fmt
from mimicdata.episodes import EpisodeRecorder, dataset_stats, episode_stats, episode_table
from mimicdata.errors import SchemaError, ValidationError

FIXTURE_V1_0 = Path(__file__).parent / "fixtures" / "episodes_v1_0.zarr"
T0 = 1_700_000_000_000_000_000
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [5], "names": [f"q{i}" for i in range(5)]},
    "observation.velocity": {"dtype": "float32", "shape": [5], "names": None},
    "observation.effort": {"dtype": "float32", "shape": [5], "names": None},
    "observation.imu": {"dtype": "float64", "shape": [6], "names": ["ax", "ay", "az", "gx", "gy", "gz"]},
    "action": {"dtype": "float32", "shape": [3], "names": None},
    "observation.images.head": {"dtype": "video", "shape": [12, 16, 3], "names": ["height", "width", "channels"]},
    "observation.images.wrist": {"dtype": "image", "shape": [6, 10, 3], "names": ["height", "width", "channels"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "language": {"dtype": "string", "shape": [1], "names": None},
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},  # lerobot's own: kept by the store itself
}


def lerobot_frame(e: int, t: int, n: int) -> dict:
    """A frame as LeRobot's add_frame takes it (smooth images, so video coding keeps them close)."""
    y, x = np.mgrid[0:12, 0:16]
    head = np.stack([(8 * x + 4 * t) % 256, 12 * y + 20 * e, np.full_like(x, 90)], -1).astype(np.uint8)
    return {"observation.state": np.full(5, e + t / 10, np.float32), "observation.velocity": np.arange(5) * t,
            "observation.effort": -np.arange(5, dtype=np.float32) * e, "observation.imu": np.linspace(0, t, 6),
            "action": np.array([t, e, 1.0], np.float32), "observation.images.head": head,
            "observation.images.wrist": np.full((6, 10, 3), 7 * t + e, np.uint8),
            "next.reward": np.array([t / 2], np.float32), "next.done": np.array([t == n - 1]),
            "language": f"pick {e}", "task": f"task {e % 2}", "timestamp": T0 + e * 10**10 + t * 33_333_333}


def record(path: Path, lengths: tuple[int, ...] = (6, 9)) -> Path:
    rec = EpisodeRecorder.create(path, fps=30, features=FEATURES, robot="g1_29dof", overwrite=True)
    for e, n in enumerate(lengths):
        for t in range(n):
            rec.add_frame(lerobot_frame(e, t, n))
        rec.save_episode()
    rec.close()
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("features") / "rec.zarr")


def test_lerobot_features_and_keys_are_stored_under_their_names(recorded):
    store = md.open(recorded)
    frames = store["frames"]
    assert store["frames"].schema_version == "1.1"
    assert frames["observation.images.head"].shape == (15, 12, 16, 3)
    assert frames["observation.images.wrist"].shape == (15, 6, 10, 3)  # another size
    want = [lerobot_frame(e, t, n) for e, n in enumerate((6, 9)) for t in range(n)]
    for key in ("observation.state", "observation.velocity", "observation.effort", "observation.imu", "action",
                "observation.images.head", "observation.images.wrist"):
        np.testing.assert_array_equal(frames[key], np.stack([w[key] for w in want]).astype(frames[key].dtype), key)
    assert frames["observation.imu"].dtype == np.float64 and frames["next.done"].dtype == bool
    assert frames["next.reward"].tolist() == [w["next.reward"][0] for w in want]
    assert frames["next.done"].tolist() == [bool(w["next.done"][0]) for w in want]
    assert frames["language"].tolist() == [w["language"] for w in want]
    assert store.attrs["recording"]["features"]["observation.imu"]["names"][0] == "ax"
    one = episode_stats(store, 1)
    np.testing.assert_allclose(one["observation.velocity"]["mean"], np.arange(5) * 4.0)
    np.testing.assert_allclose(one["next.reward"]["max"], [4.0])
    everything = dataset_stats(store)
    assert everything["observation.images.wrist"]["count"] == 15 * 6 * 10
    assert "language" not in everything  # no statistics of strings, as lerobot
    assert episode_table(store)["length"].to_list() == [6, 9]


def test_add_frame_takes_short_aliases_and_checks_every_feature(tmp_path):
    rec = EpisodeRecorder.create(tmp_path / "r.zarr", fps=30, features=FEATURES)
    frame = lerobot_frame(0, 0, 3)
    short = {("state" if k == "observation.state" else "image.wrist" if k == "observation.images.wrist" else k): v
             for k, v in frame.items()}
    short["observation.images.head"] = np.moveaxis(frame["observation.images.head"], -1, 0)  # channels first
    rec.add_frame(short)
    for key, bad, message in [
        ("observation.velocity", np.zeros(4), r"'observation.velocity' has shape \(4,\), expected \(5,\)"),
        ("observation.imu", np.full(6, np.nan), "NaN"),
        ("next.done", np.array([2]), "bool feature"),
        ("language", 3, "must be a string"),
        ("observation.images.wrist", np.zeros((10, 6, 3), np.uint8), "declared"),
    ]:
        with pytest.raises(ValidationError, match=message):
            rec.add_frame({**lerobot_frame(0, 1, 3), key: bad})
    with pytest.raises(ValidationError, match=r"missing \['observation.effort'\]"):
        rec.add_frame({k: v for k, v in lerobot_frame(0, 1, 3).items() if k != "observation.effort"})
    with pytest.raises(ValidationError, match="given twice"):
        rec.add_frame({**lerobot_frame(0, 1, 3), "state": np.zeros(5)})
    assert rec.buffer.num_frames == 1
    rec.close()


def test_unknown_feature_dtype_is_refused_by_name(tmp_path):
    with pytest.raises(SchemaError, match=r"feature 'observation.audio' has dtype 'audio'"):
        EpisodeRecorder.create(tmp_path / "r.zarr", fps=30, features={
            **FEATURES, "observation.audio": {"dtype": "audio", "shape": [16000], "names": None}})
    with pytest.raises(SchemaError, match=r"'observation.images.x': video shape must be \(height, width"):
        EpisodeRecorder.create(tmp_path / "r.zarr", fps=30, features={
            "observation.images.x": {"dtype": "video", "shape": [12, 16], "names": None}})
    assert not (tmp_path / "r.zarr").exists()


def load_rows(root: Path) -> list[dict]:
    """LeRobot's loading path for the data files: ``datasets`` with the features of info.json."""
    hf = pytest.importorskip("datasets")
    info = json.loads((root / fmt.INFO_PATH).read_text())

    def feature(f: dict) -> object:
        if f["dtype"] == "image":
            return hf.Image()
        if f["shape"] == [1]:
            return hf.Value(f["dtype"])
        return hf.Sequence(length=f["shape"][0], feature=hf.Value(f["dtype"]))

    features = hf.Features({k: feature(f) for k, f in info["features"].items() if f["dtype"] != "video"})
    data = hf.Dataset.from_parquet([str(p) for p in sorted((root / "data").glob("*/*.parquet"))], features=features)
    return [data[i] for i in range(len(data))]


@pytest.mark.parametrize("video", [False, True])
def test_round_trip_store_lerobot_store(recorded, tmp_path, video):
    out = tmp_path / "out"
    lerobot.export(recorded, out, repo_id="me/features", video=video, video_codec="libx264" if video else "libsvtav1")
    info = json.loads((out / fmt.INFO_PATH).read_text())
    assert info["features"]["observation.images.head"]["dtype"] == ("video" if video else "image")
    assert info["features"]["language"] == {"dtype": "string", "shape": [1], "names": None}
    assert info["features"]["observation.imu"]["names"][0] == "ax"
    frames = md.open(recorded)["frames"]
    if not video:  # lerobot's loading path (test_lerobot_video.py reads video exports that way)
        rows = load_rows(out)
        assert [r["language"] for r in rows] == frames["language"].tolist()
        assert [r["next.done"] for r in rows] == frames["next.done"].tolist()
        np.testing.assert_array_equal([r["observation.imu"] for r in rows], frames["observation.imu"])
        np.testing.assert_array_equal([np.asarray(r["observation.images.wrist"]) for r in rows],
                                      frames["observation.images.wrist"])
    back = tmp_path / "back.zarr"
    assert lerobot.convert(out, back, progress=False).ok
    again = md.open(back)["frames"]
    for name in ("observation.state", "observation.velocity", "observation.effort", "observation.imu", "action",
                 "next.reward", "next.done", "language", "task", "episode_index", "frame_index"):
        np.testing.assert_array_equal(again[name], frames[name], err_msg=name)
    stamps = frames["timestamp"]
    starts = np.repeat(stamps[frames.segments()[:, 0]], [6, 9])
    np.testing.assert_allclose(again["timestamp"], stamps - starts, atol=200)  # float32 seconds in lerobot
    for name in ("observation.images.head", "observation.images.wrist"):
        diff = np.abs(again[name].astype(int) - frames[name].astype(int))
        if video:  # H.264 yuv420p of 12x16 frames: chroma at half resolution
            assert diff.mean() < 6 and np.percentile(diff, 99) < 40, (name, diff.mean())
        else:
            assert diff.max() == 0, name
    if video:
        eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
        assert eps["videos/observation.images.head/from_timestamp"][1] == pytest.approx(6 / 30, abs=1e-4)


def test_v1_0_store_reads_and_records(tmp_path):
    store = md.open(FIXTURE_V1_0)  # read through the migration view, nothing rewritten
    frames = store["frames"]
    assert frames.schema_version == "1.1" and frames.segments().tolist() == [[0, 5], [5, 10]]
    assert frames["state"][7].tolist() == [1.0, 2.0, 0.5]
    assert frames["image.front"][7].max() == 12
    assert dataset_stats(store)["state"]["count"] == 10
    store.close()
    path = tmp_path / "old.zarr"
    shutil.copytree(FIXTURE_V1_0, path)
    rec = EpisodeRecorder.resume(path, state=3, cameras={"front": (4, 6)})
    assert rec.next_episode_index == 2
    rec.add_frame({"observation.state": [2, 0, 0.5], "action": [0, -2], "observation.images.front":
                   np.full((4, 6, 3), 20, np.uint8), "timestamp": T0 + 10**10, "task": "task 2", "next.reward": 1.0})
    assert rec.save_episode() == 2
    rec.close()
    again = md.open(path)
    assert again["frames"].schema_version == "1.1" and again["frames"]["state"][-1].tolist() == [2.0, 0.0, 0.5]
    assert dataset_stats(again)["image.front"]["count"] == 11 * 4 * 6
    out = tmp_path / "out"
    lerobot.export(path, out, repo_id="me/old")
    info = json.loads((out / fmt.INFO_PATH).read_text())
    assert list(info["features"])[:4] == ["observation.state", "action", "observation.images.front", "next.reward"]
    assert info["features"]["observation.state"]["names"] == ["hip", "knee", "ankle"]
