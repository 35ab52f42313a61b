"""ROS 2 bags (MCAP) into stores: topics at their own rates, joints by name, truncated/corrupted bags refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mimicdata_cli.main import app
from typer.testing import CliRunner

import mimicdata as md
from mimicdata.convert import detect_format
from mimicdata.convert import mcap as mc
from mimicdata.errors import StoreExistsError, ValidationError
from mimicdata.schema import load_robot
from mimicdata.stream import Stream

pytest.importorskip("mcap_ros2")
from mcap_ros2.writer import Writer

SEP = "\n" + "=" * 80 + "\n"
HEADER = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id" + SEP + \
    "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec"
VECTOR3 = "MSG: geometry_msgs/Vector3\nfloat64 x\nfloat64 y\nfloat64 z"
QUATERNION = "MSG: geometry_msgs/Quaternion\nfloat64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1"
MSGDEFS = {
    "sensor_msgs/msg/JointState": "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\n"
                                  "float64[] effort" + SEP + HEADER,
    "sensor_msgs/msg/Imu": "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\n"
                           "float64[9] orientation_covariance\ngeometry_msgs/Vector3 angular_velocity\n"
                           "float64[9] angular_velocity_covariance\ngeometry_msgs/Vector3 linear_acceleration\n"
                           "float64[9] linear_acceleration_covariance" + SEP + HEADER + SEP + QUATERNION + SEP
                           + VECTOR3,
    "nav_msgs/msg/Odometry": "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\n"
                             "geometry_msgs/TwistWithCovariance twist" + SEP + HEADER + SEP
                             + "MSG: geometry_msgs/PoseWithCovariance\ngeometry_msgs/Pose pose\nfloat64[36] covariance"
                             + SEP + "MSG: geometry_msgs/Pose\ngeometry_msgs/Point position\n"
                             "geometry_msgs/Quaternion orientation" + SEP
                             + "MSG: geometry_msgs/Point\nfloat64 x\nfloat64 y\nfloat64 z" + SEP + QUATERNION + SEP
                             + "MSG: geometry_msgs/TwistWithCovariance\ngeometry_msgs/Twist twist\n"
                             "float64[36] covariance" + SEP + "MSG: geometry_msgs/Twist\ngeometry_msgs/Vector3 linear\n"
                             "geometry_msgs/Vector3 angular" + SEP + VECTOR3,
    "std_msgs/msg/Float32": "float32 data",
    "std_msgs/msg/String": "string data",
    "test_msgs/msg/Samples": "int32 count\nfloat64[] values",
    "unitree_hg/msg/LowState": "uint32 tick\nMotorState[3] motor_state" + SEP
                               + "MSG: unitree_hg/MotorState\nuint8 mode\nfloat32 q\nfloat32 dq\nstring name",
}
T0 = 1_790_000_000_000_000_000
JOINTS = load_robot("g1_29dof").joint_names


def stamp(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def header(ns: int) -> dict:
    return {"stamp": stamp(ns), "frame_id": "pelvis"}


def joint_value(t: np.ndarray, j: int) -> np.ndarray:
    return np.sin(0.3 * j + 2 * np.pi * t) + j


def write_bag(path: Path, *, seconds: float = 1.0, names: list[str] | None = None, chunk_size: int = 16384) -> None:
    """joint_states at 500 Hz (joints in reversed order, header 1 ms before receipt), imu at 200 Hz,
    odometry at 50 Hz, a Float32 topic at 10 Hz and a String topic (not numeric: skipped)."""
    names = list(reversed(JOINTS)) if names is None else names
    with open(path, "wb") as f:
        w = Writer(f, chunk_size=chunk_size)
        sch = {k: w.register_msgdef(k, v) for k, v in MSGDEFS.items()}
        # A JSON topic beside the ROS 2 ones (foxglove bridges write these): not decodable as CDR.
        json_schema = w._writer.register_schema("Status", "jsonschema", b'{"type": "object"}')
        json_channel = w._writer.register_channel("/status_json", "json", json_schema)
        w._writer.add_message(json_channel, log_time=T0, data=b'{"ok": true}', publish_time=T0)
        events = []
        for rate, topic in ((500, "/joint_states"), (200, "/imu/data"), (50, "/odom"), (10, "/battery"), (5, "/log"),
                            (20, "/lowstate"), (10, "/samples")):
            events += [(T0 + k * 1_000_000_000 // rate, topic, k) for k in range(int(seconds * rate))]
        for ns, topic, k in sorted(events):
            t = (ns - T0) / 1e9
            if topic == "/joint_states":
                idx = [JOINTS.index(n) if n in JOINTS else 0 for n in names]
                msg = {"header": header(ns - 1_000_000), "name": names,
                       "position": [float(joint_value(np.array(t), j)) for j in idx],
                       "velocity": [float(j) for j in idx], "effort": []}
                w.write_message(topic, sch["sensor_msgs/msg/JointState"], msg, log_time=ns, publish_time=ns)
            elif topic == "/imu/data":
                q = [np.sin(t / 2), 0.0, 0.0, np.cos(t / 2)]  # x, y, z, w: a turn about x
                msg = {"header": header(ns - 2_000_000), "orientation": dict(zip("xyzw", q, strict=True)),
                       "orientation_covariance": [0.01 * i for i in range(9)],
                       "angular_velocity": {"x": 1.0, "y": 2.0, "z": t}, "angular_velocity_covariance": [0.0] * 9,
                       "linear_acceleration": {"x": 0.0, "y": 0.0, "z": 9.81},
                       "linear_acceleration_covariance": [0.0] * 9}
                w.write_message(topic, sch["sensor_msgs/msg/Imu"], msg, log_time=ns, publish_time=ns)
            elif topic == "/odom":
                msg = {"header": header(ns), "child_frame_id": "base",
                       "pose": {"pose": {"position": {"x": t, "y": 0.0, "z": 0.8},
                                         "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
                                "covariance": [0.0] * 36},
                       "twist": {"twist": {"linear": {"x": 1.0, "y": 0.0, "z": 0.0},
                                           "angular": {"x": 0.0, "y": 0.0, "z": 0.5}}, "covariance": [0.0] * 36}}
                w.write_message(topic, sch["nav_msgs/msg/Odometry"], msg, log_time=ns, publish_time=ns)
            elif topic == "/battery":
                w.write_message(topic, sch["std_msgs/msg/Float32"], {"data": 24.0 - t}, log_time=ns, publish_time=ns)
            elif topic == "/samples":  # an array whose length changes: left out, the count kept
                w.write_message(topic, sch["test_msgs/msg/Samples"], {"count": k, "values": [1.0] * (k % 3)},
                                log_time=ns, publish_time=ns)
            elif topic == "/lowstate":
                motors = [{"mode": 1, "q": 0.5 * m + t, "dq": float(m), "name": f"m{m}"} for m in range(3)]
                w.write_message(topic, sch["unitree_hg/msg/LowState"], {"tick": k, "motor_state": motors},
                                log_time=ns, publish_time=ns)
            else:
                w.write_message(topic, sch["std_msgs/msg/String"], {"data": f"tick {k}"}, log_time=ns, publish_time=ns)
        w.finish()


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "run.mcap"
    write_bag(path, seconds=0.4)
    return path


def test_topics_become_streams_at_their_own_rates(bag: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert detect_format(bag) == "mcap"
    batches: list[int] = []
    append = Stream.append

    def counting_append(self: Stream, batch: dict) -> int:
        batches.append(len(batch["timestamp"]))
        return append(self, batch)

    monkeypatch.setattr(Stream, "append", counting_append)
    report = mc.convert(bag, tmp_path / "out.zarr", batch_rows=64)
    assert max(batches) == 64 and len(batches) == 4 + 2 + 1 + 1 + 1 + 1  # written in bounded batches as it reads
    monkeypatch.undo()
    assert report.ok and report.rows == {"joint_states": 200, "imu_data": 80, "odom": 20, "battery": 4, "lowstate": 8,
                                         "samples": 4}
    assert report.details["skipped"] == {"/log": "std_msgs/msg/String: no numeric fields",
                                         "/status_json": "Status: not a ROS 2 (CDR) topic (message encoding 'json')"}
    with md.open(tmp_path / "out.zarr") as store:
        js, imu = store["joint_states"], store["imu_data"]
        assert js.fps == pytest.approx(500) and imu.fps == pytest.approx(200) and store["odom"].fps == pytest.approx(50)
        times = js.read("timestamp")
        np.testing.assert_array_equal(times, T0 + np.arange(200) * 2_000_000)
        np.testing.assert_array_equal(js.read("header_stamp"), times - 1_000_000)
        np.testing.assert_array_equal(imu.read("timestamp"), T0 + np.arange(80) * 5_000_000)
        # Joints are in the robot's order although the bag lists them reversed.
        position = js.read("position")
        assert position.shape == (200, 29)
        t = (times - T0) / 1e9
        for j in (0, 5, 28):
            np.testing.assert_allclose(position[:, j], joint_value(t, j))
        np.testing.assert_array_equal(js.read("velocity")[0], np.arange(29.0))
        assert np.isnan(js.read("effort")).all()  # empty in the bag: not measured
        # IMU: quaternions wxyz, vectors as 3-vectors, covariances kept.
        t_imu = np.arange(80) / 200
        np.testing.assert_allclose(imu.read("orientation")[:, [0, 1]],
                                   np.stack([np.cos(t_imu / 2), np.sin(t_imu / 2)], axis=1))
        np.testing.assert_allclose(imu.read("angular_velocity")[:, 2], t_imu)
        assert imu.read("orientation_covariance").shape == (80, 9)
        odom = store["odom"]
        assert {"position", "orientation", "linear_velocity", "angular_velocity", "pose_covariance",
                "twist_covariance", "header_stamp", "timestamp"} <= set(odom.fields)
        np.testing.assert_allclose(odom.read("orientation")[0], [1, 0, 0, 0])
        np.testing.assert_allclose(store["battery"].read("data"), 24.0 - np.arange(4) / 10, rtol=1e-6)
        low = store["lowstate"]  # an array of messages: one (rows, 3) array per numeric sub-field
        assert set(low.fields) == {"tick", "motor_state_mode", "motor_state_q", "motor_state_dq", "timestamp"}
        np.testing.assert_allclose(low.read("motor_state_q")[1], [0.05, 0.55, 1.05], rtol=1e-6)
        assert store.attrs["mcap"]["topics"]["/joint_states"]["joints_missing"] == []
        assert report.details["topics"]["/samples"]["fields_left_out"] == ["values"]
        np.testing.assert_array_equal(store["samples"].read("count"), np.arange(4))
        # The SQL/polars views work on the imported streams.
        assert md.scan(tmp_path / "out.zarr", "imu_data").collect().height == 80


def test_joint_names_not_on_the_robot_refuse_the_bag(tmp_path: Path) -> None:
    path = tmp_path / "other_robot.mcap"
    write_bag(path, seconds=0.05, names=["hip_a", "knee_a", *JOINTS[2:]])
    dst = tmp_path / "out.zarr"
    with pytest.raises(ValidationError) as info:
        mc.convert(path, dst)
    message = str(info.value)
    assert "/joint_states" in message and "['hip_a', 'knee_a']" in message and "left_hip_pitch_joint" in message
    assert not dst.exists() and not (tmp_path / "out.zarr.partial").exists()


def test_a_subset_of_the_joints_leaves_the_others_nan(tmp_path: Path) -> None:
    path = tmp_path / "legs.mcap"
    write_bag(path, seconds=0.05, names=JOINTS[:12])
    report = mc.convert(path, tmp_path / "out.zarr")
    assert report.details["topics"]["/joint_states"]["joints_missing"] == list(JOINTS[12:])
    with md.open(tmp_path / "out.zarr") as store:
        position = store["joint_states"].read("position")
        assert np.isfinite(position[:, :12]).all() and np.isnan(position[:, 12:]).all()


def test_truncated_and_corrupted_bags_leave_no_store(bag: Path, tmp_path: Path) -> None:
    data = bag.read_bytes()
    existing = tmp_path / "out.zarr"
    md.create(existing, "observations", robot="g1_29dof", fps=50, dims={"obs": 3}).close()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(mc.McapFormatError, match=r"cut.mcap: truncated MCAP bag"):
        mc.convert(cut, existing, overwrite=True)
    assert md.open(existing).streams.keys() == {"observations"}  # the store it would replace is intact
    assert not (tmp_path / "out.zarr.partial").exists()
    # Bytes flipped inside a compressed chunk: the chunk's CRC or decompression fails.
    broken = bytearray(data)
    broken[300:364] = bytes(255 - b for b in broken[300:364])  # the first chunk starts after the header
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(broken))
    with pytest.raises(mc.McapFormatError, match=r"bad.mcap: corrupted MCAP bag"):
        mc.convert(bad, tmp_path / "new.zarr")
    assert not (tmp_path / "new.zarr").exists() and not (tmp_path / "new.zarr.partial").exists()
    with pytest.raises(StoreExistsError):
        mc.convert(bag, existing)
    text = tmp_path / "notes.mcap"
    text.write_text("not a bag")
    with pytest.raises(mc.McapFormatError, match="not an MCAP file"):
        mc.convert(text, tmp_path / "n.zarr")


def test_cli_convert_from_mcap(bag: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["convert", str(bag), str(tmp_path / "o.zarr"), "--from", "mcap"])
    assert res.exit_code == 0, res.output
    assert "joint_states: 200 rows" in res.output and "imu_data: 80 rows" in res.output
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(bag.read_bytes()[:1000])
    res = runner.invoke(app, ["convert", str(cut), str(tmp_path / "p.zarr"), "--from", "mcap"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith("error: ") and "truncated MCAP bag" in res.output
    assert "Traceback" not in res.output
