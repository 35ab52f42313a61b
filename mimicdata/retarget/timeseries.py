"""Time-series operations on robot motion: smoothing, resampling, velocities.

Conventions are MuJoCo's: qpos = root position (world), root quaternion (wxyz), joint angles;
qvel = root linear velocity (world), root angular velocity (*body* frame), joint velocities.
Angular velocities come from differences on SO(3) (the log of relative rotations), never
from differences of Euler angles or quaternion components.
"""

from __future__ import annotations

import numpy as np

from mimicdata.motion.rotations import (
    quat_conj,
    quat_continuous,
    quat_mul,
    quat_normalize,
    quat_slerp,
    quat_to_mat,
    quat_to_rotvec,
)


def gaussian_smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Zero-phase Gaussian low-pass along axis 0 (edges mirrored so the ends do not sag)."""
    if sigma_frames <= 0 or x.shape[0] < 3:
        return np.array(x, dtype=np.float64)
    radius = max(1, int(np.ceil(3 * sigma_frames)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    taps /= taps.sum()
    pad = min(radius, x.shape[0] - 1)
    padded = np.concatenate([2 * x[:1] - x[pad:0:-1], x, 2 * x[-1:] - x[-2:-pad - 2:-1]], axis=0)
    if pad < radius:  # very short clips: extend with the end values
        extra = radius - pad
        padded = np.concatenate([np.repeat(padded[:1], extra, 0), padded, np.repeat(padded[-1:], extra, 0)])
    flat = padded.reshape(padded.shape[0], -1)
    out = np.empty((x.shape[0], flat.shape[1]))
    for c in range(flat.shape[1]):
        out[:, c] = np.convolve(flat[:, c], taps, mode="valid")
    return out.reshape(x.shape)


def smooth_qpos(qpos: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Smooth root position, root orientation (on a continuous quaternion path) and joints."""
    out = np.array(qpos, dtype=np.float64)
    out[:, :3] = gaussian_smooth(qpos[:, :3], sigma_frames)
    out[:, 7:] = gaussian_smooth(qpos[:, 7:], sigma_frames)
    quats = quat_continuous(qpos[:, 3:7])
    out[:, 3:7] = quat_normalize(gaussian_smooth(quats, sigma_frames))
    return out


def resample_times(num_frames: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Output sample times (s) covering the source clip: 0, 1/dst, ... up to its last frame."""
    duration = (num_frames - 1) / src_fps
    count = int(np.floor(duration * dst_fps + 1e-6)) + 1
    return np.arange(count) / dst_fps


def resample_qpos(qpos: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """qpos at `dst_fps`: cubic Hermite for positions and joints, slerp for the root quaternion."""
    num = qpos.shape[0]
    times = resample_times(num, src_fps, dst_fps)
    u = times * src_fps
    i0 = np.clip(np.floor(u).astype(int), 0, num - 2) if num > 1 else np.zeros(len(u), int)
    frac = u - i0
    out = np.empty((len(times), qpos.shape[1]))
    lin = np.concatenate([qpos[:, :3], qpos[:, 7:]], axis=1)
    interp = _hermite(lin, i0, frac)
    out[:, :3] = interp[:, :3]
    out[:, 7:] = interp[:, 3:]
    quats = quat_continuous(qpos[:, 3:7])
    out[:, 3:7] = quat_slerp(quats[i0], quats[np.minimum(i0 + 1, num - 1)], frac)
    return out


def _hermite(x: np.ndarray, i0: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation with central-difference tangents (Catmull-Rom), per frame step."""
    tangents = np.gradient(x, axis=0) if x.shape[0] > 1 else np.zeros_like(x)
    i1 = np.minimum(i0 + 1, x.shape[0] - 1)
    t = frac[:, None]
    h00 = 2 * t**3 - 3 * t**2 + 1
    h10 = t**3 - 2 * t**2 + t
    h01 = -2 * t**3 + 3 * t**2
    h11 = t**3 - t**2
    return h00 * x[i0] + h10 * tangents[i0] + h01 * x[i1] + h11 * tangents[i1]


def angular_velocity_world(quats: np.ndarray, fps: float) -> np.ndarray:
    """World-frame angular velocity (T, ..., 3) of a quaternion sequence, central differences."""
    q = quat_continuous(quats)
    vel = np.empty((*q.shape[:-1], 3))
    if q.shape[0] < 2:
        vel[:] = 0.0
        return vel
    # log(q_{t+1} q_{t-1}^-1) / (2 dt) inside; one-sided at the ends.
    vel[1:-1] = quat_to_rotvec(quat_mul(q[2:], quat_conj(q[:-2]))) * (fps / 2)
    vel[0] = quat_to_rotvec(quat_mul(q[1], quat_conj(q[0]))) * fps
    vel[-1] = quat_to_rotvec(quat_mul(q[-1], quat_conj(q[-2]))) * fps
    return vel


def qpos_velocities(qpos: np.ndarray, fps: float) -> np.ndarray:
    """MuJoCo qvel (T, nq-1) from qpos (T, nq): root angular velocity in the body frame."""
    qvel = np.empty((qpos.shape[0], qpos.shape[1] - 1))
    qvel[:, :3] = np.gradient(qpos[:, :3], 1.0 / fps, axis=0)
    omega_world = angular_velocity_world(qpos[:, 3:7], fps)
    rot = quat_to_mat(qpos[:, 3:7])
    qvel[:, 3:6] = np.einsum("tji,tj->ti", rot, omega_world)  # R^T w
    qvel[:, 6:] = np.gradient(qpos[:, 7:], 1.0 / fps, axis=0)
    return qvel


def body_velocities(body_pos: np.ndarray, body_quat: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """World linear and angular velocities (T, B, 3) of bodies from their poses."""
    lin = np.gradient(body_pos, 1.0 / fps, axis=0)
    ang = angular_velocity_world(body_quat, fps)
    return lin, ang
