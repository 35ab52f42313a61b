"""Robot motion files read as motion: Unitree CSV, BeyondMimic npz, LocoMuJoCo trajectories.

Each conversion (quaternion order, joint order, body order) is checked with a file whose answer
is known: the G1's own forward kinematics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimicdata.motion import MotionFormatError, read_motion, recognise_rig
from mimicdata.motion.kinematics import load_robot_model
from mimicdata.motion.robot_formats import (
    UNITREE_G1_29DOF_ORDER,
    breadth_first_bodies,
    read_beyondmimic,
    read_locomujoco,
    read_unitree_csv,
)
from mimicdata.motion.rotations import mat_to_quat, quat_from_rotvec

FIX = Path(__file__).parent / "fixtures" / "motion"


@pytest.fixture(scope="module")
def g1():
    return load_robot_model("g1_29dof")


def _g1_motion(g1, frames: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(frames)[:, None] / 30.0
    qpos = np.zeros((frames, g1.nq))
    qpos[:, 0] = t[:, 0]
    qpos[:, 2] = 0.75
    qpos[:, 3:7] = quat_from_rotvec(np.hstack([0.1 * np.sin(3 * t), 0.05 * t, 0.4 * t]))
    qpos[:, 7:] = 0.3 * np.sin(np.outer(t[:, 0], np.linspace(1, 3, 29)) + 0.2)
    qpos[:, 7:] = np.clip(qpos[:, 7:], g1.joint_range[:, 0], g1.joint_range[:, 1])
    xpos, xmat = g1.fk(qpos)
    return qpos, xpos, mat_to_quat(xmat)


def test_unitree_csv_known_answer(g1) -> None:
    motion = read_unitree_csv(FIX / "g1_stand.csv", fps=30)
    assert motion.source_convention["quat_order"] == "xyzw" and motion.num_frames == 3
    pelvis, hip = motion.index("pelvis"), motion.index("left_hip_pitch_link")
    np.testing.assert_allclose(motion.positions[0, pelvis], [0, 0, 0.793])
    np.testing.assert_allclose(motion.positions[0, hip], [0, 0.064452, 0.793 - 0.1027], atol=1e-6)
    # Row 3: qw = qz = 0.7071 written x, y, z, w -> a 90 deg turn about z, stored as w, x, y, z.
    np.testing.assert_allclose(motion.rotations[2, pelvis], [0.7071068, 0, 0, 0.7071068], atol=1e-6)
    np.testing.assert_allclose(motion.positions[2, hip, :2], [0.2 - 0.064452, 0.0], atol=1e-6)
    # SDK column 8 is left_hip_pitch, column 11 the left knee: both bend the left leg only.
    knee = motion.index("left_knee_link")
    assert motion.positions[2, knee, 2] > motion.positions[0, knee, 2]
    assert "left_toe" in motion.names and recognise_rig(motion.names).rig == "unitree_g1"


def test_unitree_sdk_order_is_the_model_order_by_name(g1) -> None:
    assert tuple(UNITREE_G1_29DOF_ORDER) == g1.joint_names


def test_unitree_csv_wrong_quaternion_order_is_caught(tmp_path: Path) -> None:
    rows = np.loadtxt(FIX / "g1_stand.csv", delimiter=",")
    rows[:, 3:7] = rows[:, [6, 3, 4, 5]]  # written w, x, y, z by mistake
    path = tmp_path / "wxyz.csv"
    np.savetxt(path, rows, delimiter=",")
    with pytest.raises(MotionFormatError, match=r"upside down.*look like w, x, y, z"):
        read_unitree_csv(path)


def test_unitree_csv_errors_name_line(tmp_path: Path) -> None:
    lines = (FIX / "g1_stand.csv").read_text().splitlines()
    bad_cols = tmp_path / "cols.csv"
    bad_cols.write_text("\n".join([lines[0], lines[1] + ",0.0", lines[2]]))
    with pytest.raises(MotionFormatError, match=r"cols.csv:2 \(frame 1\): 37 columns, expected 36"):
        read_unitree_csv(bad_cols)
    degrees = tmp_path / "deg.csv"
    rows = np.loadtxt(FIX / "g1_stand.csv", delimiter=",")
    rows[:, 7:] = 40.0
    np.savetxt(degrees, rows, delimiter=",")
    with pytest.raises(MotionFormatError, match=r"outside the limits.*expected radians"):
        read_unitree_csv(degrees)
    nan = tmp_path / "nan.csv"
    nan.write_text("\n".join([lines[0], lines[1].replace("0.793", "nan"), lines[2]]))
    with pytest.raises(MotionFormatError, match=r"nan.csv:2 \(frame 1\): non-finite"):
        read_unitree_csv(nan)


@pytest.mark.parametrize(("order", "quat"), [("isaaclab", "wxyz"), ("isaaclab", "xyzw"), ("mujoco", "wxyz")])
def test_beyondmimic_orders_are_detected_and_converted(g1, tmp_path: Path, order: str, quat: str) -> None:
    _, xpos, xquat = _g1_motion(g1)
    names = breadth_first_bodies(g1) if order == "isaaclab" else list(g1.body_names)
    idx = [g1.body_names.index(n) for n in names]
    q = xquat[:, idx] if quat == "wxyz" else xquat[:, idx][..., [1, 2, 3, 0]]
    path = tmp_path / "motion.npz"
    np.savez(path, fps=np.array([50]), joint_pos=np.zeros((6, 29)), body_pos_w=xpos[:, idx].astype(np.float32),
             body_quat_w=q.astype(np.float32))
    [motion] = read_motion(path)
    assert motion.source_convention["body_order"] == order and motion.source_convention["quat_order"] == quat
    for b, name in enumerate(g1.body_names):
        np.testing.assert_allclose(motion.positions[:, motion.index(name)], xpos[:, b], atol=1e-5)
        dots = np.abs(np.sum(motion.rotations[:, motion.index(name)] * xquat[:, b], axis=-1))
        np.testing.assert_allclose(dots, 1.0, atol=1e-5)


def test_beyondmimic_explicit_wrong_convention_is_refused(g1, tmp_path: Path) -> None:
    _, xpos, xquat = _g1_motion(g1)
    idx = [g1.body_names.index(n) for n in breadth_first_bodies(g1)]
    path = tmp_path / "motion.npz"
    np.savez(path, fps=np.array([50]), body_pos_w=xpos[:, idx], body_quat_w=xquat[:, idx])
    with pytest.raises(MotionFormatError, match=r"motion.npz: bodies do not follow robot 'g1_29dof'"):
        read_beyondmimic(path, body_order="mujoco")
    with pytest.raises(MotionFormatError, match="do not follow"):
        read_beyondmimic(path, quat_order="xyzw")


def test_locomujoco_trajectory_splits_into_clips(g1, tmp_path: Path) -> None:
    _, xpos, xquat = _g1_motion(g1, frames=10)
    world = np.zeros((10, 1, 3))
    path = tmp_path / "traj.npz"
    np.savez(path, qpos=np.zeros((10, 36)), xpos=np.concatenate([world, xpos], axis=1),
             xquat=np.concatenate([np.tile([1.0, 0, 0, 0], (10, 1, 1)), xquat], axis=1),
             frequency=np.array(40.0), body_names=np.array(["world", *g1.body_names]),
             split_points=np.array([0, 4, 10]))
    clips = read_locomujoco(path)
    assert [c.num_frames for c in clips] == [4, 6] and [c.first_frame for c in clips] == [0, 4]
    assert clips[1].fps == 40.0 and "world" not in clips[1].names
    np.testing.assert_allclose(clips[1].positions[:, clips[1].index("pelvis")], xpos[4:, 0])
    assert recognise_rig(clips[0].names).rig == "unitree_g1"
