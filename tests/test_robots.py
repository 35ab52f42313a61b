"""G1 robot descriptions: JSON == generator == formulas == MJCF; the compiled MuJoCo model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mimicdata.errors import SchemaError
from mimicdata.robots import G1_MJCF, g1, mjcf_path

REPO = Path(__file__).resolve().parents[1]
ROBOT_DIR = REPO / "schemas" / "robots"
ROBOTS = ("g1_29dof", "g1_23dof")
# Written out here on purpose, not imported from mimicdata.robots.g1: the test checks the library against
# an independent statement of which six joints the 23-DoF G1 lacks.
DROPPED = {
    "waist_roll_joint",
    "waist_pitch_joint",
    "left_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_wrist_pitch_joint",
    "right_wrist_yaw_joint",
}

# Independent anchors (BeyondMimic whole_body_tracking/robots/g1.py, rounded as published there).
PUBLISHED_KD = {"5020": (14.25, 0.907), "7520_14": (40.18, 2.558), "7520_22": (99.10, 6.309), "4010": (16.78, 1.068)}
# Per-joint effort / velocity limits of the BeyondMimic G1 actuator groups.
EXPECTED_LIMITS = {
    "hip_pitch": (88.0, 32.0),
    "hip_roll": (139.0, 20.0),
    "hip_yaw": (88.0, 32.0),
    "knee": (139.0, 20.0),
    "ankle_pitch": (50.0, 37.0),
    "ankle_roll": (50.0, 37.0),
    "waist_yaw": (88.0, 32.0),
    "waist_roll": (50.0, 37.0),
    "waist_pitch": (50.0, 37.0),
    "shoulder_pitch": (25.0, 37.0),
    "shoulder_roll": (25.0, 37.0),
    "shoulder_yaw": (25.0, 37.0),
    "elbow": (25.0, 37.0),
    "wrist_roll": (25.0, 37.0),
    "wrist_pitch": (5.0, 22.0),
    "wrist_yaw": (5.0, 22.0),
}


def _kind(joint: str) -> str:
    return joint.removeprefix("left_").removeprefix("right_").removesuffix("_joint")


def _load(robot: str) -> dict:
    return json.loads((ROBOT_DIR / f"{robot}.json").read_text())


@pytest.fixture(scope="module")
def mj_model():
    mujoco = pytest.importorskip("mujoco")
    return mujoco.MjModel.from_xml_path(str(mjcf_path("g1_29dof")))


@pytest.mark.parametrize("robot", ROBOTS)
def test_shipped_json_is_what_the_generator_writes(robot: str, tmp_path: Path) -> None:
    assert _load(robot) == g1.robot_description(robot), f"regenerate: python -m mimicdata.robots.g1 ({robot})"
    written = g1.write_descriptions(tmp_path)
    assert [p.name for p in written] == ["g1_29dof.json", "g1_23dof.json"]
    assert (tmp_path / f"{robot}.json").read_text() == (ROBOT_DIR / f"{robot}.json").read_text()


def test_generator_cli_writes_into_the_given_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert g1._main([str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "g1_23dof.json").read_text())["parent"] == "g1_29dof"
    assert "g1_29dof.json" in capsys.readouterr().out
    assert g1._main(["a", "b"]) == 2


@pytest.mark.parametrize("robot", ROBOTS)
def test_gains_follow_the_formulas(robot: str) -> None:
    omega = 2 * math.pi * 10.0
    doc = _load(robot)
    for joint, c in doc["joints"].items():
        motor = g1.MOTORS[c["motor"]]
        n = 2 if _kind(joint) in {"ankle_pitch", "ankle_roll", "waist_roll", "waist_pitch"} else 1
        assert c["motor_count"] == n, joint
        assert c["armature"] == pytest.approx(n * motor.armature, rel=1e-12)
        assert c["stiffness"] == pytest.approx(c["armature"] * omega**2, rel=1e-12)
        assert c["damping"] == pytest.approx(2 * 2.0 * c["armature"] * omega, rel=1e-12)
        assert c["action_scale"] == pytest.approx(0.25 * c["effort_limit"] / c["stiffness"], rel=1e-12)
        k, d = PUBLISHED_KD[c["motor"]]
        assert c["stiffness"] == pytest.approx(n * k, abs=0.01 * n), joint
        assert c["damping"] == pytest.approx(n * d, abs=0.001 * n), joint
        assert (c["effort_limit"], c["velocity_limit"]) == EXPECTED_LIMITS[_kind(joint)], joint


def test_stiffness_differs_by_motor_unlike_seed_001() -> None:
    gains = g1.actuator_gains("g1_29dof")
    # Seed 001 gives every motor K = 99.098..., D = 6.3088...: only the 7520_22 joints have those.
    big = np.isclose(gains["stiffness"], 99.098427777, atol=1e-3)
    assert [j for j, b in zip(g1.G1_29DOF_JOINTS, big, strict=True) if b] == [
        "left_hip_roll_joint",
        "left_knee_joint",
        "right_hip_roll_joint",
        "right_knee_joint",
    ]
    assert np.isclose(gains["damping"][big], 6.308801853, atol=1e-6).all()
    assert len(np.unique(np.round(gains["stiffness"], 6))) == 5  # 4 motors + doubled 5020


def test_joint_names_order_and_ranges_match_mujoco(mj_model) -> None:
    import mujoco

    doc = _load("g1_29dof")
    hinges = [i for i in range(mj_model.njnt) if mj_model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
    names = [mj_model.joint(i).name for i in hinges]
    assert names == doc["joint_names"] == doc["motor_names"] == list(g1.G1_29DOF_JOINTS)
    for i, name in zip(hinges, names, strict=True):
        np.testing.assert_allclose(doc["joints"][name]["range"], mj_model.jnt_range[i], rtol=0, atol=1e-12)
    assert [mj_model.body(i).name for i in range(1, mj_model.nbody)] == doc["body_names"]
    assert len(doc["qpos_names"]) == mj_model.nq and len(doc["qvel_names"]) == mj_model.nv
    assert doc["qpos_names"][7:] == doc["qvel_names"][6:] == names
    assert mj_model.body(doc["root_body"]).id == 1


def test_23dof_is_the_29dof_without_six_joints() -> None:
    full, small = _load("g1_29dof"), _load("g1_23dof")
    assert small["parent"] == "g1_29dof" and full["parent"] is None
    assert small["joint_names"] == [j for j in full["joint_names"] if j not in DROPPED]
    assert len(small["joint_names"]) == 23
    assert small["motor_names"] == full["motor_names"] and len(small["motor_names"]) == 29
    assert small["qpos_names"] == full["qpos_names"][:7] + small["joint_names"]
    assert small["qvel_names"] == full["qvel_names"][:6] + small["joint_names"]
    assert set(small["joints"]) == set(small["default_joint_pos"]) == set(small["joint_names"])
    for j in small["joint_names"]:
        assert small["joints"][j] == full["joints"][j]
    assert small["body_names"] == full["body_names"] and small["mjcf"] == full["mjcf"] == G1_MJCF


@pytest.mark.parametrize("robot", ROBOTS)
def test_default_pose_is_the_knees_bent_stand_inside_ranges(robot: str) -> None:
    doc = _load(robot)
    pose = doc["default_joint_pos"]
    assert list(pose) == doc["joint_names"]
    assert pose["left_hip_pitch_joint"] == -0.312 and pose["right_knee_joint"] == 0.669
    for j, q in pose.items():
        lo, hi = doc["joints"][j]["range"]
        assert lo < q < hi, j
    np.testing.assert_array_equal(g1.default_joint_pos(robot), [pose[j] for j in doc["joint_names"]])


@pytest.mark.parametrize("robot", ROBOTS)
def test_actuator_gains_arrays_follow_joint_order(robot: str) -> None:
    doc = _load(robot)
    gains = g1.actuator_gains(robot)
    assert set(gains) == {"stiffness", "damping", "armature", "effort_limit", "velocity_limit", "action_scale"}
    for key, values in gains.items():
        assert values.shape == (len(doc["joint_names"]),) and values.dtype == np.float64
        np.testing.assert_array_equal(values, [doc["joints"][j][key] for j in doc["joint_names"]])


def test_loads_through_the_store_robot_loader() -> None:
    import mimicdata as md

    robot = md.load_robot("g1_23dof")
    assert robot.dims()["joint"] == 23 and robot.dims()["motor"] == 29 and robot.dims()["qpos"] == 30


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(SchemaError, match="g1_12dof"):
        g1.actuator_gains("g1_12dof")
    with pytest.raises(ValueError, match="h1"):
        mjcf_path("h1")
    with pytest.raises(SchemaError, match="elbow_joint"):
        g1.joint_actuator("elbow_joint")


def test_mjcf_path_points_at_the_vendored_model() -> None:
    path = mjcf_path("g1_23dof")
    assert path == mjcf_path("g1_29dof") and path.name == "g1.xml" and path.is_file()
    assert (path.parent / "assets").is_dir() and (path.parent / "LICENSE").is_file()
    assert path.as_posix().endswith("mimicdata/robots/" + G1_MJCF)


@pytest.mark.parametrize("robot", ROBOTS)
def test_build_model_has_armature_and_pd_actuators(robot: str) -> None:
    mujoco = pytest.importorskip("mujoco")
    m = g1.build_g1_model(robot, timestep=0.004)
    assert m.opt.timestep == 0.004 and m.nu == 29
    gains = {j: g1.joint_actuator(j) for j in g1.G1_29DOF_JOINTS}
    for i, joint in enumerate(g1.G1_29DOF_JOINTS):
        act = m.actuator(i)
        assert act.name == joint and m.joint(act.trnid[0]).name == joint
        c = gains[joint]
        assert act.gainprm[0] == pytest.approx(c["stiffness"])
        assert act.biasprm[1] == pytest.approx(-c["stiffness"]) and act.biasprm[2] == pytest.approx(-c["damping"])
        np.testing.assert_allclose(act.forcerange, [-c["effort_limit"], c["effort_limit"]])
        assert m.dof_armature[m.jnt_dofadr[act.trnid[0]]] == pytest.approx(c["armature"])
    held = sorted(m.equality(i).name for i in range(m.neq))
    assert held == ([] if robot == "g1_29dof" else sorted(f"hold_{j}" for j in DROPPED))
    assert m.geom("floor").type == mujoco.mjtGeom.mjGEOM_PLANE


def test_position_servo_reaches_its_target_without_gravity() -> None:
    mujoco = pytest.importorskip("mujoco")
    m = g1.build_g1_model("g1_29dof")
    m.opt.gravity[:] = 0.0
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    elbow = m.actuator("left_elbow_joint").id
    d.ctrl[elbow] = 1.2
    for _ in range(200):  # 1 s: several time constants of the 10 Hz servo
        mujoco.mj_step(m, d)
    q = d.qpos[m.jnt_qposadr[m.joint("left_elbow_joint").id]]
    assert q == pytest.approx(1.2, abs=0.02)
    assert np.isfinite(d.qpos).all()


def test_23dof_model_holds_absent_joints_at_default() -> None:
    mujoco = pytest.importorskip("mujoco")
    m = g1.build_g1_model("g1_23dof")
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    d.ctrl[m.actuator("waist_pitch_joint").id] = 0.4  # a servo cannot move a welded joint
    for _ in range(100):
        mujoco.mj_step(m, d)
    for j in DROPPED:
        assert abs(d.qpos[m.jnt_qposadr[m.joint(j).id]] - g1.DEFAULT_JOINT_POS[j]) < 5e-3, j
