"""LeRobot v3.0 import/export against a dataset written by the lerobot library itself (0.4.4)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import mimicdata as md
from mimicdata.convert import lerobot
from mimicdata.convert import lerobot_format as fmt
from mimicdata.episodes import EpisodeRecorder, episode_table
from mimicdata.errors import CorruptStoreError, SchemaError, SchemaVersionError, StoreExistsError

DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture(scope="module")
def fixture_dir(shared_data) -> Path:
    return shared_data / "lerobot_v3" / "g1_fixture"


@pytest.fixture(scope="module")
def imported(fixture_dir, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("lerobot") / "imported.zarr"
    report = lerobot.convert(fixture_dir, dst)
    assert report.ok and report.rows == {"episodes": 3, "frames": 60}
    return dst


@pytest.fixture(scope="module")
def exported(imported, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lerobot_out") / "g1"
    report = lerobot.export(imported, out, repo_id="mimicdata/fixture_g1")
    assert report.rows == {"episodes": 3, "frames": 60}
    return out


def png(cell: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))


def test_detect(fixture_dir, tmp_path):
    assert lerobot.detect(fixture_dir)
    assert not lerobot.detect(tmp_path)


def test_import_keeps_every_value(fixture_dir, imported):
    source = pq.read_table(fixture_dir / DATA).to_pydict()
    store = md.open(imported)
    frames = store["frames"]
    np.testing.assert_array_equal(frames["observation.state"], np.asarray(source["observation.state"], np.float32))
    np.testing.assert_array_equal(frames["action"], np.asarray(source["action"], np.float32))
    images = np.stack([png(c) for c in source["observation.images.head"]])
    np.testing.assert_array_equal(frames["observation.images.head"], images)
    stamps = np.asarray(source["timestamp"], np.float32)
    assert (frames["timestamp"] == np.round(stamps.astype(np.float64) * 1e9)).all()
    assert frames["task"].tolist() == [f"walk forward {i}" for i in source["task_index"]]
    assert frames.segments().tolist() == [[0, 20], [20, 40], [40, 60]]
    assert store.attrs["lerobot"]["robot_type"] == "unitree_g1"
    assert store.attrs["time_origin"] == "episode_start"
    assert episode_table(store)["task"].to_list() == ["walk forward 0", "walk forward 1", "walk forward 2"]


def test_export_matches_lerobot_layout_and_schemas(fixture_dir, exported):
    files = sorted(str(p.relative_to(fixture_dir)) for p in fixture_dir.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file()) == files
    assert (exported / fmt.INFO_PATH).read_bytes() == (fixture_dir / fmt.INFO_PATH).read_bytes()
    for rel in (DATA, EPISODES, fmt.TASKS_PATH):
        theirs, ours = pq.read_schema(fixture_dir / rel), pq.read_schema(exported / rel)
        assert ours.equals(theirs, check_metadata=False), rel
        row_groups = [pq.ParquetFile(p / rel).metadata.num_row_groups for p in (fixture_dir, exported)]
        assert row_groups[0] == row_groups[1], rel
    hf = [json.loads(pq.read_schema(p / DATA).metadata[b"huggingface"]) for p in (fixture_dir, exported)]
    assert hf[0]["info"] == hf[1]["info"]
    pandas = [json.loads(pq.read_schema(p / fmt.TASKS_PATH).metadata[b"pandas"]) for p in (fixture_dir, exported)]
    for doc in pandas:
        doc.pop("creator"), doc.pop("pandas_version")
    assert pandas[0] == pandas[1]
    theirs_stats = json.loads((fixture_dir / fmt.STATS_PATH).read_text())
    ours_stats = json.loads((exported / fmt.STATS_PATH).read_text())
    assert ours_stats.keys() == theirs_stats.keys()
    for key, stats in theirs_stats.items():
        assert ours_stats[key].keys() == stats.keys()
        for name, value in stats.items():
            assert np.shape(ours_stats[key][name]) == np.shape(value), (key, name)
        for name in ("min", "max", "mean", "count"):  # quantiles: ours are exact, lerobot's approximate
            np.testing.assert_allclose(ours_stats[key][name], stats[name], rtol=1e-6, atol=1e-6,
                                       err_msg=f"{key} {name}")


def test_export_values_equal_the_lerobot_files(fixture_dir, exported):
    theirs, ours = (pq.read_table(p / DATA).to_pydict() for p in (fixture_dir, exported))
    for key in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert ours[key] == theirs[key], key
    for a, b in zip(theirs["observation.images.head"], ours["observation.images.head"], strict=True):
        np.testing.assert_array_equal(png(a), png(b))
        assert a["path"] == b["path"]
    eps = [pq.read_table(p / EPISODES).to_pydict() for p in (fixture_dir, exported)]
    for key in [k for k in eps[0] if not k.startswith("stats/")]:
        assert eps[1][key] == eps[0][key], key
    for key in [k for k in eps[0] if k.startswith("stats/") and k.rsplit("/", 1)[1] in ("min", "max", "mean")]:
        np.testing.assert_allclose(eps[1][key], eps[0][key], rtol=1e-6, atol=1e-6, err_msg=key)
    tasks = fmt.read_tasks(pq.read_table(exported / fmt.TASKS_PATH))
    assert tasks == {0: "walk forward 0", 1: "walk forward 1", 2: "walk forward 2"}


def test_how_lerobot_reads_the_export(exported):
    """What LeRobotDataset does on load: info, tasks indexed by text, episode rows pointing at data rows."""
    info = json.loads((exported / fmt.INFO_PATH).read_text())
    assert info["codebase_version"] == "v3.0"
    episodes = pq.read_table(exported / EPISODES)
    tasks = {v: k for k, v in fmt.read_tasks(pq.read_table(exported / fmt.TASKS_PATH)).items()}
    for ep in episodes.select([c for c in episodes.column_names if not c.startswith("stats/")]).to_pylist():
        path = exported / info["data_path"].format(chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])
        data = pq.read_table(path).to_pydict()
        rows = [i for i, idx in enumerate(data["index"]) if ep["dataset_from_index"] <= idx < ep["dataset_to_index"]]
        assert len(rows) == ep["length"]
        assert {data["episode_index"][i] for i in rows} == {ep["episode_index"]}
        assert {data["task_index"][i] for i in rows} == {tasks[t] for t in ep["tasks"]}
        assert data["frame_index"][rows[0]] == 0 and data["timestamp"][rows[0]] == 0.0


def test_round_trip_through_lerobot_keeps_the_store(imported, exported, tmp_path):
    again = tmp_path / "again.zarr"
    lerobot.convert(exported, again)
    a, b = md.open(imported)["frames"], md.open(again)["frames"]
    for name in ("observation.state", "action", "observation.images.head", "timestamp", "frame_index",
                 "episode_index"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert a["task"].tolist() == b["task"].tolist()


def record_store(path: Path, episodes: int = 3, frames: int = 12) -> Path:
    rec = EpisodeRecorder.create(path, fps=50, state=["hip", "knee"], action=2, robot="g1_29dof",
                                 cameras={"left": (6, 8), "right": (6, 8)})
    rng = np.random.default_rng(0)
    t = 1_700_000_000_000_000_000
    for e in range(episodes):
        for i in range(frames):
            t += int(rng.integers(19_000_000, 23_000_000))  # a real loop: periods jitter
            rec.add_frame({"state": rng.standard_normal(2), "action": rng.standard_normal(2),
                           "image.left": rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
                           "image.right": rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
                           "timestamp": t, "task": ["reach", "grasp"][e % 2], "next.reward": float(i)})
        rec.save_episode()
        t += 2_000_000_000
    rec.close()
    return path


def test_export_of_a_recorded_store(tmp_path):
    store_path = record_store(tmp_path / "rec.zarr")
    out = tmp_path / "out"
    lerobot.export(store_path, out, repo_id="me/reach")
    info = json.loads((out / fmt.INFO_PATH).read_text())
    assert list(info["features"])[:5] == ["observation.state", "action", "observation.images.left",
                                          "observation.images.right", "next.reward"]
    assert info["features"]["observation.state"]["names"] == ["hip", "knee"]
    assert info["robot_type"] == "g1_29dof" and info["total_tasks"] == 2
    data = pq.read_table(out / DATA).to_pydict()
    store = md.open(store_path)
    stamps = store["frames"].timestamps()
    first = stamps[store["frames"].segments()[:, 0]]
    relative = (stamps - np.repeat(first, 12)) / 1e9
    np.testing.assert_array_equal(np.asarray(data["timestamp"], np.float32), relative.astype(np.float32))
    assert not np.allclose(np.diff(data["timestamp"][:12]), 0.02, atol=1e-4)  # real times, not index / fps
    right = np.stack([png(c) for c in data["observation.images.right"]])
    np.testing.assert_array_equal(right, store["frames"]["image.right"])
    stats = json.loads((out / fmt.STATS_PATH).read_text())
    state = store["frames"]["state"].astype(np.float64)
    np.testing.assert_allclose(stats["observation.state"]["q10"], np.quantile(state, 0.1, axis=0))
    np.testing.assert_allclose(stats["observation.state"]["std"], state.std(0))
    pixels = store["frames"]["image.left"].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(np.ravel(stats["observation.images.left"]["mean"]), pixels.mean(0))
    assert stats["observation.images.left"]["count"] == [36]
    back = lerobot.convert(out, tmp_path / "back.zarr")
    assert back.ok
    np.testing.assert_array_equal(md.open(tmp_path / "back.zarr")["frames"]["next.reward"],
                                  store["frames"]["next.reward"])


def test_large_exports_roll_over_to_new_files_and_import_back(tmp_path, monkeypatch):
    store_path = record_store(tmp_path / "rec.zarr", episodes=4)
    monkeypatch.setattr(fmt, "DATA_FILES_SIZE_IN_MB", 0.002)  # ~2 KB: one episode per file
    out = tmp_path / "out"
    lerobot.export(store_path, out, repo_id="me/reach")
    assert len(list((out / "data" / "chunk-000").glob("file-*.parquet"))) == 4
    eps = pq.read_table(out / EPISODES).to_pydict()
    assert eps["data/file_index"] == [0, 1, 2, 3]
    # a LeRobot session killed before finalize(): the last data file has no footer
    broken = out / "data" / "chunk-000" / "file-002.parquet"
    broken.write_bytes(broken.read_bytes()[:-200])
    with pytest.raises(CorruptStoreError, match=r"episode 2: cannot read data file .*file-002\.parquet \(truncated"):
        lerobot.convert(out, tmp_path / "broken.zarr", progress=False)
    assert not (tmp_path / "broken.zarr").exists() and not (tmp_path / "broken.zarr.partial").exists()
    report = lerobot.convert(out, tmp_path / "salvaged.zarr", salvage=True, progress=False)
    assert not report.ok and "episode 2" in report.stopped_at and "file-002.parquet" in report.stopped_at
    assert report.rows == {"episodes": 2, "frames": 24}
    salvaged = md.open(tmp_path / "salvaged.zarr")
    assert salvaged["episodes"].num_rows == 2
    assert salvaged.attrs["lerobot_import"]["complete"] is False  # it says it is not the whole dataset


def test_refusals(fixture_dir, exported, tmp_path):
    old = tmp_path / "v21"
    shutil.copytree(fixture_dir, old)
    info = json.loads((old / fmt.INFO_PATH).read_text())
    (old / fmt.INFO_PATH).write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(SchemaVersionError, match=r"v2\.1.*convert_dataset_v21_to_v30"):
        lerobot.convert(old, tmp_path / "x.zarr")
    audio = {**info, "features": {**info["features"], "observation.audio": {"dtype": "audio", "shape": [16000]}}}
    (old / fmt.INFO_PATH).write_text(json.dumps(audio))
    with pytest.raises(SchemaError, match=r"feature 'observation.audio' has dtype 'audio'"):
        lerobot.convert(old, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()
    store_path = record_store(tmp_path / "rec.zarr", episodes=1)
    with pytest.raises(StoreExistsError, match="already exists"):
        lerobot.export(store_path, exported, repo_id="a/b")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match="not a LeRobot dataset"):
        lerobot.export(store_path, tmp_path / "notes", repo_id="a/b", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="owner/name"):
        lerobot.export(store_path, tmp_path / "o", repo_id="no-slash")


def test_lerobot_loading_path_reads_the_export(fixture_dir, exported):
    """LeRobotDataset's own readers: pandas for tasks (indexed by text), ``datasets`` for frames with the
    features from info.json. Optional dependencies: skipped where pandas/datasets are not installed."""
    pd = pytest.importorskip("pandas")
    hf = pytest.importorskip("datasets")

    def features(info: dict) -> object:
        return hf.Features({
            k: hf.Image() if f["dtype"] == "image" else hf.Value(f["dtype"]) if f["shape"] == [1]
            else hf.Sequence(length=f["shape"][0], feature=hf.Value(f["dtype"])) for k, f in info["features"].items()})

    loaded = []
    for root in (fixture_dir, exported):
        info = json.loads((root / fmt.INFO_PATH).read_text())
        tasks = pd.read_parquet(root / fmt.TASKS_PATH)
        data = hf.Dataset.from_parquet([str(p) for p in sorted((root / "data").glob("*/*.parquet"))],
                                       features=features(info))
        loaded.append((tasks, data))
    (their_tasks, theirs), (our_tasks, ours) = loaded
    assert our_tasks.index.tolist() == their_tasks.index.tolist()
    assert int(our_tasks.loc["walk forward 2"].task_index) == 2
    assert len(ours) == len(theirs) == 60
    for i in (0, 19, 20, 59):
        a, b = theirs[i], ours[i]
        np.testing.assert_array_equal(np.asarray(a.pop("observation.images.head")),
                                      np.asarray(b.pop("observation.images.head")))
        assert a == b


def test_export_of_a_store_written_without_the_recorder(tmp_path):
    store = md.create(tmp_path / "plain.zarr", "episodes", fps=25, dims={"state": 3, "action": 1})
    for e, n in enumerate((4, 6)):
        store.append_segment("episodes", frames={
            "state": np.full((n, 3), e, np.float32), "action": np.zeros((n, 1), np.float32),
            "timestamp": 10**18 + np.arange(n) * 40_000_000, "frame_index": np.arange(n),
            "episode_index": np.full(n, e), "task": np.array(["sit"] * n)}, row={"task": "sit"})
    store.close()
    lerobot.export(tmp_path / "plain.zarr", tmp_path / "out", repo_id="me/plain")
    info = json.loads((tmp_path / "out" / fmt.INFO_PATH).read_text())
    assert info["fps"] == 25 and info["total_frames"] == 10 and info["features"]["observation.state"]["shape"] == [3]
    data = pq.read_table(tmp_path / "out" / DATA).to_pydict()
    assert data["episode_index"] == [0] * 4 + [1] * 6
    assert np.allclose(data["timestamp"][4:6], [0.0, 0.04])
