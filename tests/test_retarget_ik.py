"""Kinematics and IK: batched FK/Jacobians equal MuJoCo's, the IK recovers known poses within limits."""

from __future__ import annotations

import itertools

import mujoco
import numpy as np
import pytest

from mimicdata.motion.kinematics import load_robot_model
from mimicdata.motion.rotations import quat_from_rotvec, quat_normalize
from mimicdata.retarget.clip import RetargetSettings, problem_for, split_ranges, stitch
from mimicdata.retarget.ik import IKConfig
from mimicdata.robots import mjcf_path


@pytest.fixture(scope="module")
def mj():
    m = mujoco.MjModel.from_xml_path(str(mjcf_path("g1_29dof")))
    return m, mujoco.MjData(m)


def _random_qpos(model, rng: np.random.Generator, n: int) -> np.ndarray:
    q = np.zeros((n, model.nq))
    q[:, :3] = rng.normal(size=(n, 3))
    q[:, 3:7] = quat_normalize(rng.normal(size=(n, 4)))
    lo, hi = model.joint_range[:, 0], model.joint_range[:, 1]
    q[:, 7:] = rng.uniform(lo, hi, size=(n, len(lo)))
    return q


def test_batched_fk_matches_mujoco(mj) -> None:
    m, d = mj
    model = load_robot_model("g1_29dof")
    assert model.body_names == tuple(m.body(b).name for b in range(1, m.nbody))
    q = _random_qpos(model, np.random.default_rng(0), 8)
    xpos, xmat = model.fk(q)
    for t in range(len(q)):
        d.qpos[:] = q[t]
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(xpos[t], d.xpos[1:], atol=1e-12)
        np.testing.assert_allclose(xmat[t].reshape(-1, 9), d.xmat[1:], atol=1e-12)


def test_point_jacobians_match_mj_jac(mj) -> None:
    m, d = mj
    model = load_robot_model("g1_29dof")
    rng = np.random.default_rng(1)
    q = _random_qpos(model, rng, 4)
    bodies = np.array([6, 12, 22, 29])
    offsets = rng.normal(size=(4, 3)) * 0.1
    active = np.arange(29)
    xpos, xmat = model.fk(q)
    jac = model.point_jacobians(q, xpos, xmat, bodies, offsets, active)
    for t in range(len(q)):
        d.qpos[:] = q[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        for k, b in enumerate(bodies):
            point = d.xpos[b + 1] + d.xmat[b + 1].reshape(3, 3) @ offsets[k]
            jp = np.zeros((3, m.nv))
            mujoco.mj_jac(m, d, jp, None, point, b + 1)
            np.testing.assert_allclose(jac[t, k, :, :3], jp[:, :3], atol=1e-12)
            np.testing.assert_allclose(jac[t, k, :, 6:], jp[:, 6:], atol=1e-12)
            # MuJoCo's free-joint rotation columns are in the body frame; ours in the world frame.
            np.testing.assert_allclose(jac[t, k, :, 3:6] @ d.xmat[1].reshape(3, 3), jp[:, 3:6], atol=1e-12)


def test_ik_recovers_a_reachable_pose() -> None:
    exact = IKConfig(iterations=40, rest_weight=0.0, smooth_weight=0.0, joint_rest_weights=())
    problem = problem_for(RetargetSettings(ik=exact))
    model = problem.model
    rng = np.random.default_rng(2)
    q_true = problem.rest_qpos(5)
    q_true[:, :3] = [0.2, -0.1, 0.75]
    q_true[:, 3:7] = quat_from_rotvec(np.array([0.05, -0.1, 0.8]))
    lo, hi = model.joint_range[:, 0], model.joint_range[:, 1]
    # Moderate poses: legs and arms bent, well inside the limits.
    q_true[:, 7:] = np.clip(rng.normal(scale=0.3, size=(5, 29)), lo + 0.1, hi - 0.1)
    targets = problem.keypoint_positions(q_true)
    q, _ = problem.solve(targets)
    err = np.linalg.norm(problem.keypoint_positions(q) - targets, axis=-1)
    assert err.max() < 2e-3  # metres
    assert np.all(q[:, 7:] >= lo) and np.all(q[:, 7:] <= hi)


def test_ik_respects_joint_limits_when_targets_ask_for_more() -> None:
    problem = problem_for(RetargetSettings())
    q_rest = problem.rest_qpos(3)
    q_rest[:, 2] = 0.79
    targets = problem.keypoint_positions(q_rest)
    k = [1, 3, 5, 7]  # left hip, knee, ankle, toe: pull the left foot far behind and up (knee would hyperextend)
    targets[:, k[2]] += [-0.6, 0.0, 0.5]
    targets[:, k[3]] += [-0.6, 0.0, 0.5]
    q, _ = problem.solve(targets)
    lo, hi = problem.model.joint_range[:, 0], problem.model.joint_range[:, 1]
    assert np.all(q[:, 7:] >= lo - 1e-12) and np.all(q[:, 7:] <= hi + 1e-12)
    knee = problem.model.joint_names.index("left_knee_joint")
    assert np.any(np.isclose(q[:, 7 + knee], [lo[knee], hi[knee]][1]) | (q[:, 7 + knee] > 1.0))


def test_restricted_robot_keeps_missing_joints_fixed() -> None:
    problem = problem_for(RetargetSettings(joints="g1_23dof"))
    names = problem.model.joint_names
    assert len(problem.active) == 23
    fixed = [names.index(j) for j in ("waist_roll_joint", "waist_pitch_joint", "left_wrist_yaw_joint")]
    assert not set(fixed) & set(problem.active.tolist())
    rng = np.random.default_rng(3)
    q0 = problem.rest_qpos(4)
    q0[:, 2] = 0.78
    targets = problem.keypoint_positions(q0) + rng.normal(scale=0.03, size=(4, 15, 3))
    q, _ = problem.solve(targets)
    np.testing.assert_array_equal(q[:, [7 + f for f in fixed]], q0[:, [7 + f for f in fixed]])


def test_split_and_stitch_cover_the_clip_and_blend() -> None:
    ranges = split_ranges(100, piece=40, overlap=10)
    assert ranges[0] == (0, 40) and ranges[-1][1] == 100
    assert all(b[0] == a[1] - 10 for a, b in itertools.pairwise(ranges))
    truth = np.zeros((100, 36))
    truth[:, 3] = 1.0
    truth[:, 7] = np.linspace(0, 1, 100)
    pieces = [(a, b, truth[a:b].copy()) for a, b in ranges]
    np.testing.assert_allclose(stitch(pieces), truth, atol=1e-12)
    pieces[1][2][:, 7] += 0.1  # a piece that disagrees is blended in over the overlap, no jump
    out = stitch(pieces)[:, 7]
    assert np.abs(np.diff(out)).max() < 0.03
    with pytest.raises(ValueError, match="overlap"):
        split_ranges(100, piece=40, overlap=25)
