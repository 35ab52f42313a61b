"""Retargeting real motion capture meets the quality bounds, for all three skeletons in the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimicdata.motion import ReadOptions, read_motion
from mimicdata.motion.kinematics import load_robot_model
from mimicdata.motion.rotations import mat_to_quat
from mimicdata.retarget.clip import RetargetSettings, retarget_motion
from mimicdata.retarget.quality import quality_table
from mimicdata.schema import load_robot

CLIPS = {
    "lafan_bvh": ("mocap/bvhtools/test1.bvh", None, 0),
    "mocapbank_bvh": ("mocap/bvhtoolbox/test_mocapbank.bvh", None, 200),
    "holosoma_points": ("mocap/holosoma_climb/mocap_climb_seq_0_joint_positions_f900-3700.npy", 30.0, 1500),
}


def _clip(shared: Path, key: str, seconds: float = 3.0):
    rel, fps, start = CLIPS[key]
    [motion] = read_motion(shared / rel, ReadOptions(source_fps=fps, start=start, stop=start + int(30 * seconds)))
    return motion


@pytest.mark.parametrize("key", sorted(CLIPS))
def test_real_clip_meets_quality_bounds(shared_data: Path, key: str) -> None:
    motion = _clip(shared_data, key)
    result = retarget_motion(motion)
    q = result.quality
    assert q.penetration_max_cm <= 1.0
    assert q.limit_violations == 0
    assert q.kp_err_leg_mean_cm <= 5.0
    assert q.velocity_spikes == 0
    assert q.problems() == []
    assert 0.6 < result.row["scale"] < 0.95 and 1.5 < result.row["human_height"] < 2.0
    # 3 s at 30 fps -> 50 fps
    assert len(result.frames["qpos"]) == int(np.floor((motion.num_frames - 1) / 30 * 50 + 1e-6)) + 1


def test_stored_frames_are_self_consistent(shared_data: Path) -> None:
    result = retarget_motion(_clip(shared_data, "lafan_bvh", seconds=2.0))
    frames = result.frames
    model = load_robot_model("g1_29dof")
    desc = load_robot("g1_29dof")
    assert frames["qpos"].shape[1] == len(desc.qpos_names) and frames["qvel"].shape[1] == len(desc.qvel_names)
    assert frames["body_pos"].shape[1:] == (len(desc.body_names), 3)
    assert all(v.dtype == np.float32 for v in frames.values())
    xpos, xmat = model.fk(frames["qpos"].astype(np.float64))
    np.testing.assert_allclose(frames["body_pos"], xpos, atol=1e-5)
    dots = np.abs(np.sum(frames["body_quat"] * mat_to_quat(xmat), axis=-1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(frames["qpos"][:, 3:7], axis=1), 1.0, atol=1e-5)
    # Root linear velocity is the derivative of the root position; the pelvis body velocity matches it.
    inner = slice(2, -2)
    deriv = np.gradient(frames["qpos"][:, :3].astype(np.float64), 1 / 50, axis=0)
    np.testing.assert_allclose(frames["qvel"][inner, :3], deriv[inner], atol=1e-3)
    np.testing.assert_allclose(frames["body_lin_vel"][:, 0], frames["qvel"][:, :3], atol=1e-3)


def test_restricting_to_23_dof(shared_data: Path) -> None:
    result = retarget_motion(_clip(shared_data, "mocapbank_bvh", seconds=2.0), RetargetSettings(joints="g1_23dof"))
    desc = load_robot("g1_23dof")
    assert result.frames["qpos"].shape[1] == 7 + 23 == len(desc.qpos_names)
    assert result.frames["qvel"].shape[1] == 6 + 23
    assert result.quality.problems() == []


def test_planting_the_feet_reduces_skating(shared_data: Path) -> None:
    # A stretch of walking and turning where the first IK pass lets the planted feet slide.
    [motion] = read_motion(shared_data / "mocap/bvhtools/test1.bvh", ReadOptions(start=2100, stop=2250))
    planted = retarget_motion(motion).quality
    free = retarget_motion(motion, RetargetSettings(foot_lock=False)).quality
    assert planted.skating_cm_s < 0.75 * free.skating_cm_s
    assert planted.kp_err_leg_mean_cm < 5.0


def test_quality_table_lists_every_clip() -> None:
    clips = {"start": np.array([0, 10]), "end": np.array([10, 30]), "name": np.array(["walk", "run"]),
             "kp_err_mean_cm": np.array([2.5, 3.25], np.float32), "limit_violations": np.array([0, 2], np.int32)}
    text = quality_table(clips).splitlines()
    assert text[0].split()[:3] == ["clip", "name", "frames"] and "kp mean cm" in text[0]
    assert text[2].split() == ["1", "run", "20", "3.25", "2"]


def test_robot_motion_retargets_onto_itself(tmp_path: Path) -> None:
    """A G1 motion written as Unitree CSV comes back with scale 1 and (almost) no key-point error."""
    from mimicdata.motion.robot_keypoints import robot_keypoints
    from mimicdata.motion.rotations import quat_from_rotvec
    from mimicdata.retarget.contact import ground_fix

    g1 = load_robot_model("g1_29dof")
    t = np.arange(60) / 30.0
    qpos = np.zeros((60, g1.nq))
    qpos[:, 0], qpos[:, 2] = 0.3 * t, 0.76
    qpos[:, 3:7] = quat_from_rotvec(np.stack([0 * t, 0 * t, 0.3 * t], axis=1))
    for side, phase in (("left", 0.0), ("right", np.pi)):
        col = {n: 7 + g1.joint_names.index(f"{side}_{n}_joint") for n in ("hip_pitch", "knee", "ankle_pitch")}
        qpos[:, col["hip_pitch"]] = -0.3 + 0.3 * np.sin(2 * np.pi * t + phase)
        qpos[:, col["knee"]] = 0.6 + 0.3 * np.sin(2 * np.pi * t + phase + 1)
        qpos[:, col["ankle_pitch"]] = -0.3
    qpos, _ = ground_fix(g1, robot_keypoints("g1_29dof"), qpos, 30.0)
    rows = np.concatenate([qpos[:, :3], qpos[:, [4, 5, 6, 3]], qpos[:, 7:]], axis=1)  # quaternion as x, y, z, w
    np.savetxt(tmp_path / "walk.csv", rows, delimiter=",")
    [motion] = read_motion(tmp_path / "walk.csv", ReadOptions(source_fps=30.0))
    result = retarget_motion(motion, RetargetSettings(fps=30.0))
    assert result.row["scale"] == pytest.approx(1.0, abs=0.01)
    assert result.quality.kp_err_mean_cm < 0.5
    legs = [7 + g1.joint_names.index(f"{s}_{n}_joint") for s in ("left", "right") for n in ("hip_pitch", "knee")]
    np.testing.assert_allclose(result.frames["qpos"][:, legs], qpos[:, legs], atol=0.1)
