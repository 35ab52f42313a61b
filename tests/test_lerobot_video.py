"""LeRobot v3.0 with video features: a dataset written by lerobot 0.4.4 itself (two AV1 cameras of different
sizes, effort, reward) imported value by value, exported again as video and read back the way lerobot reads
it (pandas + datasets for the rows, PyAV frames picked by timestamp with lerobot's tolerance)."""

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
from mimicdata.errors import CorruptStoreError, ValidationError

pytest.importorskip("av")
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
HEAD, WRIST = "observation.images.head", "observation.images.wrist"
LENGTHS = (30, 35, 40)


@pytest.fixture(scope="module")
def fixture_dir(shared_data) -> Path:
    return shared_data / "lerobot_v3" / "g1_video_fixture"


@pytest.fixture(scope="module")
def imported(fixture_dir, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("video") / "imported.zarr"
    report = lerobot.convert(fixture_dir, dst, progress=False)
    assert report.ok and report.rows == {"episodes": 3, "frames": 105}
    return dst


@pytest.fixture(scope="module")
def exported(imported, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video_out") / "g1"
    report = lerobot.export(imported, out, repo_id="mimicdata/video_fixture")
    assert report.details["videos"] == [HEAD, WRIST]
    return out


def head_pixels(e: int, t: int) -> np.ndarray:
    y, x = np.mgrid[0:60, 0:80]
    return np.stack([(3 * x + 4 * t) % 256, (4 * y + 60 * e) % 256, np.full_like(x, 128)], axis=-1)


def wrist_pixels(e: int, t: int) -> np.ndarray:
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([(5 * y) % 256, (4 * x + 8 * t) % 256, np.full_like(x, 40 * e)], axis=-1)


def test_import_keeps_every_feature_and_decodes_the_videos(imported):
    store = md.open(imported)
    frames = store["frames"]
    assert frames.segments().tolist() == [[0, 30], [30, 65], [65, 105]]
    assert frames["observation.images.head"].shape == (105, 60, 80, 3)  # cameras of different sizes
    assert frames["observation.images.wrist"].shape == (105, 48, 64, 3)
    e = np.repeat(np.arange(3), LENGTHS)
    t = np.concatenate([np.arange(n) for n in LENGTHS])
    base = (e + t / 100)[:, None] * np.ones(23)
    np.testing.assert_allclose(frames["observation.state"], base, rtol=1e-6)
    np.testing.assert_allclose(frames["observation.effort"], -base, rtol=1e-6)
    np.testing.assert_allclose(frames["action"], (e + (t + 1) / 100)[:, None] * np.ones(23), rtol=1e-6)
    np.testing.assert_allclose(frames["next.reward"], t / 10, rtol=1e-6)
    seconds = (t / 30).astype(np.float32).astype(np.float64)  # lerobot keeps float32 seconds
    assert frames["timestamp"].tolist() == np.round(seconds * 1e9).astype(np.int64).tolist()
    assert frames["task"].tolist() == [f"walk to the door {i % 2}" for i in e]
    head, wrist = frames["observation.images.head"], frames["observation.images.wrist"]
    for row in range(105):  # AV1 yuv420p is lossy: each decoded frame close to the README's formula
        assert np.abs(head[row].astype(int) - head_pixels(e[row], t[row])).mean() < 8, row
        assert np.abs(wrist[row].astype(int) - wrist_pixels(e[row], t[row])).mean() < 8, row
    recording = store.attrs["recording"]["features"]
    assert recording[HEAD]["dtype"] == "video" and recording[HEAD]["info"]["video.codec"] == "av1"


def test_video_export_matches_lerobot_layout(fixture_dir, exported):
    files = sorted(str(p.relative_to(fixture_dir)) for p in fixture_dir.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file()) == files
    assert json.loads((exported / fmt.INFO_PATH).read_text()) == json.loads((fixture_dir / fmt.INFO_PATH).read_text())
    for rel in ("data/chunk-000/file-000.parquet", EPISODES):
        assert pq.read_schema(exported / rel).equals(pq.read_schema(fixture_dir / rel), check_metadata=False), rel
    theirs, ours = (pq.read_table(p / EPISODES).to_pydict() for p in (fixture_dir, exported))
    for key in [k for k in theirs if k.startswith("videos/")]:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-9, err_msg=key)


def lerobot_frames(root: Path, key: str, rows: list[int], tolerance_s: float = 1e-4) -> np.ndarray:
    """lerobot's pyav path: the decoded frame nearest to from_timestamp + timestamp, within tolerance_s."""
    import av

    info = json.loads((root / fmt.INFO_PATH).read_text())
    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    eps = pq.read_table(root / EPISODES).to_pydict()
    out = []
    for row in rows:
        e = data["episode_index"][row]
        path = root / info["video_path"].format(video_key=key, chunk_index=eps[f"videos/{key}/chunk_index"][e],
                                                file_index=eps[f"videos/{key}/file_index"][e])
        query = eps[f"videos/{key}/from_timestamp"][e] + data["timestamp"][row]
        with av.open(str(path)) as container:
            decoded = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24"))
                       for f in container.decode(video=0)]
        times = np.array([d[0] for d in decoded])
        nearest = int(np.argmin(np.abs(times - query)))
        assert abs(times[nearest] - query) < tolerance_s, (key, row, times[nearest], query)
        out.append(decoded[nearest][1])
    return np.stack(out)


def test_lerobot_loading_path_reads_the_video_export(imported, exported):
    pd = pytest.importorskip("pandas")
    hf = pytest.importorskip("datasets")
    info = json.loads((exported / fmt.INFO_PATH).read_text())
    columns = {k: f for k, f in info["features"].items() if f["dtype"] != "video"}
    features = hf.Features({k: hf.Value(f["dtype"]) if f["shape"] == [1]
                            else hf.Sequence(length=f["shape"][0], feature=hf.Value(f["dtype"]))
                            for k, f in columns.items()})
    data = hf.Dataset.from_parquet(str(exported / "data/chunk-000/file-000.parquet"), features=features)
    tasks = pd.read_parquet(exported / fmt.TASKS_PATH)
    frames = md.open(imported)["frames"]
    rows = [0, 29, 30, 64, 65, 104]
    for row in rows:
        item = data[row]
        np.testing.assert_array_equal(np.asarray(item["observation.effort"], np.float32),
                                      frames.read("observation.effort", row, row + 1)[0])
        assert item["next.reward"] == pytest.approx(float(frames.read("next.reward", row, row + 1)[0]))
        assert tasks.index[item["task_index"]] == frames.read("task", row, row + 1)[0]
    for key in (HEAD, WRIST):  # re-encoded video: the same pictures within codec tolerance
        diff = np.abs(lerobot_frames(exported, key, rows).astype(int) - frames.read(key)[rows].astype(int))
        assert diff.mean() < 4 and np.percentile(diff, 99) < 32, (key, diff.mean())


def test_round_trip_lerobot_store_lerobot_store(imported, exported, tmp_path):
    again = tmp_path / "again.zarr"
    lerobot.convert(exported, again, progress=False)
    a, b = md.open(imported)["frames"], md.open(again)["frames"]
    for name in ("observation.state", "observation.effort", "action", "next.reward", "timestamp", "task",
                 "frame_index", "episode_index"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for name in (HEAD, WRIST):
        diff = np.abs(a[name].astype(int) - b[name].astype(int))
        assert diff.mean() < 4 and np.percentile(diff, 99) < 32, (name, diff.mean())


def test_truncated_video_is_one_clear_error_and_leaves_no_store(fixture_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(fixture_dir, broken)
    video = broken / "videos" / WRIST / "chunk-000" / "file-000.mp4"
    video.chmod(0o644)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    dst = tmp_path / "out.zarr"
    with pytest.raises((CorruptStoreError, ValidationError), match=r"file-000\.mp4") as info:
        lerobot.convert(broken, dst, progress=False)
    assert WRIST in str(info.value) or "observation.images.wrist" in str(info.value)
    assert not dst.exists() and not dst.with_name("out.zarr.partial").exists()
    # an existing store at the destination is left as it was
    md.create(dst, "episodes", fps=30).close()
    with pytest.raises((CorruptStoreError, ValidationError)):
        lerobot.convert(broken, dst, overwrite=True, progress=False)
    assert md.open(dst)["episodes"].num_rows == 0


def test_frames_off_the_timestamps_are_refused(fixture_dir, tmp_path):
    shifted = tmp_path / "shifted"
    shutil.copytree(fixture_dir, shifted)
    eps = pq.read_table(shifted / EPISODES)
    col = eps.column_names.index(f"videos/{HEAD}/from_timestamp")
    moved = eps.set_column(col, f"videos/{HEAD}/from_timestamp",
                           [np.asarray(eps.column(col)) + 0.01])  # between two frames
    (shifted / EPISODES).chmod(0o644)
    pq.write_table(moved, shifted / EPISODES)
    with pytest.raises(ValidationError, match=r"episode 0: observation.images.head frame 0 should be shown at"):
        lerobot.convert(shifted, tmp_path / "x.zarr", progress=False)
