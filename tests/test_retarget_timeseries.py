"""Resampling and velocities: consistent with positions, SO(3) angular velocity, MuJoCo conventions."""

from __future__ import annotations

import mujoco
import numpy as np

from mimicdata.motion.rotations import quat_from_rotvec, quat_to_mat
from mimicdata.retarget.timeseries import (
    angular_velocity_world,
    body_velocities,
    gaussian_smooth,
    qpos_velocities,
    resample_qpos,
    resample_times,
)
from mimicdata.robots import mjcf_path

RATES = np.linspace(0.5, 2.0, 29)


def _analytic(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth qpos(t) (root turning steadily about z while tilting) and its joint velocities."""
    q = np.zeros((len(t), 36))
    q[:, 0], q[:, 1], q[:, 2] = np.sin(t), 0.5 * t, 0.8 + 0.05 * np.cos(2 * t)
    q[:, 3:7] = quat_from_rotvec(np.stack([0.2 * np.sin(t), 0.1 * np.cos(t), 1.2 * t], axis=1))
    q[:, 7:] = 0.4 * np.sin(np.outer(t, RATES))
    dq = 0.4 * np.cos(np.outer(t, RATES)) * RATES
    return q, dq


def test_resampling_30_to_50_fps_keeps_velocities_consistent() -> None:
    src_t = np.arange(91) / 30.0
    q_src, _ = _analytic(src_t)
    q50 = resample_qpos(q_src, 30.0, 50.0)
    t50 = resample_times(91, 30.0, 50.0)
    assert len(q50) == 151 and t50[-1] == 3.0
    truth, dq_truth = _analytic(t50)
    np.testing.assert_allclose(q50[:, 7:], truth[:, 7:], atol=2e-4)
    v50 = qpos_velocities(q50, 50.0)
    inner = slice(2, -2)
    np.testing.assert_allclose(v50[inner, 6:], dq_truth[inner], atol=0.01)
    np.testing.assert_allclose(v50[inner, 0], np.cos(t50[inner]), atol=0.01)
    # Same motion sampled at 30 fps: the velocities agree at the shared instants (every 0.1 s).
    v30 = qpos_velocities(q_src, 30.0)
    np.testing.assert_allclose(v50[5:-5:5, 6:], v30[3:-3:3, 6:], atol=0.02)


def test_velocities_integrate_back_to_positions_in_mujoco() -> None:
    m = mujoco.MjModel.from_xml_path(str(mjcf_path("g1_29dof")))
    q, _ = _analytic(np.arange(60) / 50.0)
    v = qpos_velocities(q, 50.0)
    for i in range(5, 55, 7):
        # Midpoint rule: q[i+1] = q[i] integrated with (v[i] + v[i+1]) / 2 over one step.
        nxt = q[i].copy()
        mujoco.mj_integratePos(m, nxt, 0.5 * (v[i] + v[i + 1]), 1 / 50.0)
        np.testing.assert_allclose(nxt[:3], q[i + 1, :3], atol=1e-4)
        np.testing.assert_allclose(np.abs(nxt[3:7] @ q[i + 1, 3:7]), 1.0, atol=1e-6)
        np.testing.assert_allclose(nxt[7:], q[i + 1, 7:], atol=1e-4)
        ref = np.zeros(m.nv)  # MuJoCo's own finite difference over the same two frames
        mujoco.mj_differentiatePos(m, ref, 2 / 50.0, q[i - 1], q[i + 1])
        np.testing.assert_allclose(v[i], ref, atol=2e-3)


def test_angular_velocity_is_on_so3_not_euler_differences() -> None:
    # A constant spin of 2 rad/s about a tilted axis: Euler-angle differences would wrap and wobble.
    axis = np.array([0.3, -0.5, 0.81])
    axis /= np.linalg.norm(axis)
    t = np.arange(100) / 50.0
    quats = quat_from_rotvec(np.outer(2.0 * t, axis))
    omega = angular_velocity_world(quats, 50.0)
    np.testing.assert_allclose(omega, np.tile(2.0 * axis, (100, 1)), atol=1e-9)
    q = np.zeros((100, 36))
    q[:, 3:7] = quats
    body = qpos_velocities(q, 50.0)[:, 3:6]
    world_from_body = np.einsum("tij,tj->ti", quat_to_mat(quats), body)
    np.testing.assert_allclose(world_from_body, omega, atol=1e-9)


def test_body_velocities_and_smoothing() -> None:
    t = np.arange(50)[:, None] / 50.0
    pos = np.stack([np.hstack([t, 2 * t, 0 * t])], axis=1)
    lin, ang = body_velocities(pos, np.tile([1.0, 0, 0, 0], (50, 1, 1)), 50.0)
    np.testing.assert_allclose(lin[:, 0], np.tile([1.0, 2.0, 0.0], (50, 1)), atol=1e-9)
    np.testing.assert_allclose(ang, 0.0, atol=1e-12)
    line = np.linspace(0, 1, 40)[:, None]
    np.testing.assert_allclose(gaussian_smooth(line, 2.0), line, atol=1e-12)  # linear trends survive, ends too
    noisy = line + np.random.default_rng(0).normal(scale=0.05, size=line.shape)
    inner = slice(5, -5)  # the ends keep their sample (odd reflection), the inside loses the noise
    assert np.abs(gaussian_smooth(noisy, 2.0) - line)[inner].mean() < np.abs(noisy - line)[inner].mean() * 0.6
