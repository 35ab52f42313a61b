"""Store create/open/append/read, segments, lossy precision, locks and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
import mimicdata.report
from mimicdata.codecs import round_mantissa
from tests.conftest import SmallDisk
from tests.helpers import act_batch, cmg_frames, episode_frames, expert_frames, obs_batch


def make_log(path: Path | str, rows: int = 300) -> md.Store:
    store = md.create(path, ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 160})
    store["observations"].append(obs_batch(rows))
    store["actions"].append(act_batch(rows))
    return store


def test_round_trip_every_field(tmp_path: Path) -> None:
    expected = obs_batch(300)
    make_log(tmp_path / "log.zarr").close()
    store = md.open(tmp_path / "log.zarr")
    obs = store["observations"]
    assert obs.num_rows == 300 and obs.schema == "observations" and obs.schema_version == "1.1"
    for name, values in expected.items():
        np.testing.assert_array_equal(obs[name], values, err_msg=name)
    assert store.robot is not None and store.robot.joint_names[0] == "left_hip_pitch_joint"
    assert store.meta["quat_order"] == "wxyz" and store.fps == 50
    np.testing.assert_array_equal(obs.timestamps(), expected["timestamp"])
    np.testing.assert_array_equal(obs.read("joint_pos", 10, 20), expected["joint_pos"][10:20])


def test_appends_accumulate_and_reopen_for_append(tmp_path: Path) -> None:
    make_log(tmp_path / "a.zarr", rows=100).close()
    store = md.open(tmp_path / "a.zarr", "a")
    store["observations"].append(obs_batch(50, start=100))
    store.close()
    obs = md.open(tmp_path / "a.zarr")["observations"]
    np.testing.assert_array_equal(obs["counter_step"], np.arange(150))
    # plain zarr sees exactly the committed rows after a clean close
    meta = json.loads((tmp_path / "a.zarr/observations/joint_pos/zarr.json").read_text())
    assert meta["shape"] == [150, 29] and meta["dimension_names"] == ["time", "joint"]


@pytest.mark.parametrize("kind,seg,frames", [
    ("expert_trajectory", "clips", expert_frames),
    ("cmg_rollout", "trajectories", cmg_frames),
])
def test_segments_and_boundaries(kind: str, seg: str, frames: object) -> None:
    store = md.create(f"memory://seg-{kind}", kind, robot="g1_29dof", fps=50, overwrite=True)
    row = {"name": "walk", "source": "a.bvh", "fps": 50.0} if kind == "expert_trajectory" else {}
    for n in (40, 25, 60):
        store.append_segment(seg, frames=frames(n), row=row)  # type: ignore[operator]
    np.testing.assert_array_equal(store["frames"].segments(), [[0, 40], [40, 65], [65, 125]])
    index = "clip_index" if kind == "expert_trajectory" else "traj_index"
    np.testing.assert_array_equal(store[seg][index], [0, 1, 2])
    store.close()


def test_episode_segment_fills_indices_and_times() -> None:
    store = md.create("memory://episodes", "episodes", robot="g1_29dof", fps=50, dims={"state": 29, "action": 29},
                      overwrite=True)
    store.append_segment("episodes", frames=episode_frames(20), row={"task": "walk", "success": 1})
    later = int(store["frames"].timestamps()[-1]) + 10**9
    store.append_segment("episodes", frames=episode_frames(10, task="run", t0=later), row={"task": "run", "success": 0})
    frames, eps = store["frames"], store["episodes"]
    np.testing.assert_array_equal(frames["episode_index"], [0] * 20 + [1] * 10)
    np.testing.assert_array_equal(frames["frame_index"], list(range(20)) + list(range(10)))
    assert list(eps["task"]) == ["walk", "run"] and list(frames["task"][18:22]) == ["walk", "walk", "run", "run"]
    ts = frames.timestamps()
    assert eps["start_time"][1] == ts[20] and eps["end_time"][1] == ts[29]
    assert frames["image.front"].shape == (30, 24, 32, 3)
    assert md.report.validate_store("memory://episodes") == []  # type: ignore[attr-defined]
    store.close()


def test_frames_without_a_committed_segment_are_invisible_and_discarded(tmp_path: Path) -> None:
    path = tmp_path / "ep.zarr"
    store = md.create(path, "episodes", robot="g1_29dof", dims={"state": 29, "action": 29})
    store.append_segment("episodes", frames=episode_frames(5, image=None), row={"task": "a"})
    store["frames"].append({**episode_frames(7, image=None), "episode_index": np.ones(7, np.int64),
                            "frame_index": np.arange(7)})
    assert store["frames"].num_rows == 5 and store["frames"].committed_rows == 12
    store._lock.release()  # simulate the recording process dying here (no close)
    reader = md.open(path)
    assert reader["frames"].num_rows == 5
    writer = md.open(path, "a")  # resume: the half episode is dropped, the next episode index is 1
    assert writer["frames"].committed_rows == 5
    assert writer.append_segment("episodes", frames=episode_frames(3, image=None), row={"task": "b"}) == 1
    writer.close()


def test_lossy_precision_states_and_meets_its_bound(tmp_path: Path) -> None:
    data = obs_batch(2000)
    store = md.create(tmp_path / "l.zarr", "observations", robot="g1_29dof", dims={"obs": 160},
                      lossy={"joint_vel": 12, "full_obs": 10})
    store["observations"].append(data)
    store.close()
    obs = md.open(tmp_path / "l.zarr")["observations"]
    for name, bits in (("joint_vel", 12), ("full_obs", 10)):
        got, want = obs[name], data[name]
        rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-30)
        assert rel.max() <= 2.0 ** -(bits + 1) and rel.max() > 0
        assert obs.spec.fields[name].mantissa_bits == bits
    np.testing.assert_array_equal(obs["joint_pos"], data["joint_pos"])  # others stay lossless
    info = md.report.inspect_store(str(tmp_path / "l.zarr"))  # type: ignore[attr-defined]
    assert info["streams"]["observations"]["arrays"]["joint_vel"]["lossy"]["max_relative_error"] == 2.0 ** -13


def test_round_mantissa_is_round_half_even_and_keeps_specials() -> None:
    x = np.array([1.0, 1.0 + 2**-23, np.nan, np.inf, -3.3, 0.0], np.float32)
    out = round_mantissa(x, 10)
    assert out[0] == 1.0 and out[1] == 1.0 and np.isnan(out[2]) and np.isinf(out[3]) and out[5] == 0
    assert abs(out[4] + 3.3) / 3.3 <= 2**-11


def test_custom_stream_at_its_own_rate() -> None:
    store = md.create("memory://imu", ["observations"], robot="g1_29dof", fps=50, dims={"obs": 160}, overwrite=True)
    imu = store.add_stream("imu", {"acc": {"dtype": "float32", "shape": [3], "unit": "m/s^2"}}, fps=1000,
                           time_field="timestamp")
    imu.append({"acc": np.ones((1000, 3), np.float32), "timestamp": np.arange(1000) * 1_000_000})
    again = md.open("memory://imu")  # while the writer is open: closing it frees a memory store
    store.close()
    assert again["imu"].fps == 1000 and again["imu"].num_rows == 1000 and again["imu"].schema == "custom"


# ------------------------------------------------------------------------------------------- bad input
@pytest.fixture()
def log(tmp_path: Path) -> md.Store:
    return make_log(tmp_path / "bad.zarr", rows=10)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b.update(bogus=np.zeros(10)), "unknown field"),
    (lambda b: b.pop("joint_pos"), "missing field"),
    (lambda b: b.update(joint_pos=np.zeros((10, 28), np.float32)), "expected shape"),
    (lambda b: b.update(joint_pos=np.zeros((10, 29), np.complex64)), "cannot be stored"),
    (lambda b: b["joint_vel"].__setitem__((3, 4), np.nan), "row 3 of the batch holds NaN"),
    (lambda b: b.update(counter_step=np.arange(9)), "different numbers of rows"),
])
def test_bad_batches_are_refused_and_change_nothing(log: md.Store, mutate: object, message: str) -> None:
    batch = obs_batch(10, start=10)
    mutate(batch)  # type: ignore[operator]
    with pytest.raises(md.ValidationError, match=message):
        log["observations"].append(batch)
    assert log["observations"].num_rows == 10
    np.testing.assert_array_equal(log["observations"]["counter_step"], np.arange(10))


def test_unknown_schema_robot_and_joint_names(tmp_path: Path) -> None:
    with pytest.raises(md.SchemaError, match="unknown schema 'observation'"):
        md.create(tmp_path / "x.zarr", "observation", robot="g1_29dof")
    with pytest.raises(md.SchemaError, match="unknown robot 'g2'"):
        md.create(tmp_path / "x.zarr", "observations", robot="g2")
    assert not (tmp_path / "x.zarr").exists()  # nothing created for a bad request
    with pytest.raises(md.SchemaError, match="no joint"):
        md.load_robot("g1_29dof").joint_indices(["left_knee_joint", "left_tail_joint"])


def test_existing_path_needs_overwrite_and_overwrite_refuses_non_stores(tmp_path: Path) -> None:
    make_log(tmp_path / "e.zarr", rows=5).close()
    with pytest.raises(md.StoreExistsError, match="already exists"):
        md.create(tmp_path / "e.zarr", "observations", robot="g1_29dof")
    assert md.open(tmp_path / "e.zarr")["observations"].num_rows == 5
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("precious")
    with pytest.raises(md.StoreExistsError, match="not a Zarr store"):
        md.create(tmp_path / "notes", "observations", robot="g1_29dof", overwrite=True)
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "precious"


def test_read_only_location(small_disk: SmallDisk) -> None:
    """A real read-only file system (a tmpfs remounted ro: chmod does not bind root, and CI runs as root)."""
    make_log(small_disk.path / "s.zarr", rows=5).close()
    small_disk.read_only()
    with pytest.raises(md.ReadOnlyError):
        md.create(small_disk.path / "new.zarr", "observations", robot="g1_29dof")
    with pytest.raises(md.ReadOnlyError):
        md.open(small_disk.path / "s.zarr", "a")
    assert md.open(small_disk.path / "s.zarr")["observations"].num_rows == 5


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    make_log(tmp_path / "r.zarr", rows=5).close()
    store = md.open(tmp_path / "r.zarr")
    with pytest.raises(md.ReadOnlyError, match="read-only"):
        store["observations"].append(obs_batch(1))


def test_missing_and_foreign_paths(tmp_path: Path) -> None:
    with pytest.raises(md.StoreNotFoundError, match="does not exist"):
        md.open(tmp_path / "nope.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(md.StoreNotFoundError, match="not a Zarr store"):
        md.open(tmp_path / "empty")


def test_one_writer_at_a_time_and_stale_lock_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "w.zarr"
    store = make_log(path, rows=5)
    with pytest.raises(md.StoreLockedError, match="another writer"):
        md.open(path, "a")
    assert md.open(path)["observations"].num_rows == 5  # readers are never blocked
    store.close()
    # a writer process that dies without closing leaves its lock behind
    code = f"import mimicdata as md, os; s = md.open({str(path)!r}, 'a'); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (path / "mimicdata.lock").exists()
    md.open(path, "a").close()  # the dead pid is detected and the lock taken over
    assert not (path / "mimicdata.lock").exists()


def test_newer_major_version_is_refused_with_the_version_needed(tmp_path: Path) -> None:
    make_log(tmp_path / "n.zarr", rows=5).close()
    meta_path = tmp_path / "n.zarr/observations/zarr.json"
    doc = json.loads(meta_path.read_text())
    doc["attributes"]["mimicdata"].update(version="2.0", min_reader="0.4.0")
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(md.SchemaVersionError, match=r"v2\.0.*needs mimicdata >= 0\.4\.0"):
        md.open(tmp_path / "n.zarr")


def test_newer_minor_version_reads_but_refuses_append(tmp_path: Path) -> None:
    make_log(tmp_path / "m.zarr", rows=5).close()
    meta_path = tmp_path / "m.zarr/observations/zarr.json"
    doc = json.loads(meta_path.read_text())
    doc["attributes"]["mimicdata"]["version"] = "1.9"
    meta_path.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="newer"):
        assert md.open(tmp_path / "m.zarr")["observations"].num_rows == 5
    with pytest.raises(md.SchemaVersionError, match=r"cannot|not appended"):
        md.open(tmp_path / "m.zarr", "a")


def test_shipped_schemas_load_and_state_units() -> None:
    for name in md.schema_names():
        schema = md.load_schema(name)
        for stream in schema.streams.values():
            for spec in stream.fields.values():
                assert spec.unit and spec.description, (name, spec.name)
    assert md.load_robot("g1_23dof").joint_names == tuple(
        j for j in md.load_robot("g1_29dof").joint_names
        if j not in ("waist_roll_joint", "waist_pitch_joint", "left_wrist_pitch_joint", "left_wrist_yaw_joint",
                     "right_wrist_pitch_joint", "right_wrist_yaw_joint"))


def test_permission_denied_maps_to_read_only_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs as root too (where chmod does not bite): the OS refusing the write is what is simulated."""
    make_log(tmp_path / "p.zarr", rows=5).close()
    real_open = os.open

    def deny(path: str, *args: object, **kwargs: object) -> int:
        if str(path).endswith("mimicdata.lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(md.ReadOnlyError, match="cannot write here"):
        md.open(tmp_path / "p.zarr", "a")
    monkeypatch.undo()
    assert md.open(tmp_path / "p.zarr")["observations"].num_rows == 5


def test_lock_of_a_killed_but_unreaped_writer_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "z.zarr"
    make_log(path, rows=1).close()
    code = f"import mimicdata as md, time; s = md.open({str(path)!r}, 'a'); print('ok', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
    proc.kill()
    stat = Path(f"/proc/{proc.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # dead but not reaped: still in the table
        os.sched_yield()
    md.open(path, "a").close()
    proc.wait()


def test_declared_fields_of_a_stream_without_rows_read_as_zero_rows(tmp_path: Path) -> None:
    store = md.create(tmp_path / "e.zarr", ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 8})
    store.close()
    store = md.open(tmp_path / "e.zarr")
    acts = store["actions"]
    assert acts.num_rows == 0 and acts["counter_step"].shape == (0,)
    assert acts["kps"].shape == (0, 29) and acts["kps"].dtype == np.float32
    assert store["observations"]["full_obs"].shape == (0, 8)
    with pytest.raises(KeyError, match="no field 'nope'"):
        acts["nope"]
