"""CMG frames and commands from MuJoCo qpos/qvel, and left/right mirroring from the robot description.

A frame is ``[joint_pos (J), joint_vel (J), root_height, roll, pitch, vx, vy, vz, yaw_rate]``: the
original CMG's 2·J joint values plus the root state a tracking policy observes (TWIST: root height,
roll/pitch, velocity in the heading frame, yaw rate). Velocities are in the *heading frame*: the root
frame with roll and pitch removed, x forward, z up. A command is ``(vx, vy, yaw_rate)`` in that frame,
averaged over a short centred window so that it describes the walk, not the sway within a step.

Pure numpy (works on torch tensors where noted); nothing here reads a store.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from mimicdata.errors import ValidationError

ROOT_FIELDS = ("root_height", "roll", "pitch", "vx", "vy", "vz", "yaw_rate")
NUM_ROOT = len(ROOT_FIELDS)
COMMAND_FIELDS = ("vx", "vy", "yaw_rate")


def frame_dim(num_joints: int) -> int:
    """Length of one frame for a robot with ``num_joints`` hinge joints."""
    return 2 * num_joints + NUM_ROOT


def _quat_parts(quat: np.ndarray) -> tuple[np.ndarray, ...]:
    q = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    return q[..., 0], q[..., 1], q[..., 2], q[..., 3]


def yaw_roll_pitch(quat_wxyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ZYX Euler angles (yaw, roll, pitch) of wxyz quaternions, R = Rz(yaw) Ry(pitch) Rx(roll)."""
    w, x, y, z = _quat_parts(np.asarray(quat_wxyz, np.float64))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    return yaw, roll, pitch


def _rotate(quat_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate body-frame vectors into the world frame."""
    w, x, y, z = _quat_parts(np.asarray(quat_wxyz, np.float64))
    u = np.stack([x, y, z], -1)
    t = 2 * np.cross(u, v)
    return v + w[..., None] * t + np.cross(u, t)


def frames_from_qpos(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """CMG frames (T, 2J+7) float32 from MuJoCo qpos (T, 7+J) and qvel (T, 6+J).

    MuJoCo's free joint gives the root linear velocity in the world frame and the angular velocity in
    the body frame; both are brought into the heading frame here.
    """
    qpos = np.asarray(qpos, np.float64)
    qvel = np.asarray(qvel, np.float64)
    if qpos.ndim != 2 or qvel.ndim != 2 or qpos.shape[0] != qvel.shape[0] or qpos.shape[1] - 7 != qvel.shape[1] - 6:
        raise ValidationError(f"qpos {qpos.shape} and qvel {qvel.shape} are not (T, 7+J) and (T, 6+J)")
    quat = qpos[:, 3:7]
    yaw, roll, pitch = yaw_roll_pitch(quat)
    c, s = np.cos(yaw), np.sin(yaw)
    vw = qvel[:, :3]
    vx = c * vw[:, 0] + s * vw[:, 1]
    vy = -s * vw[:, 0] + c * vw[:, 1]
    yaw_rate = _rotate(quat, qvel[:, 3:6])[:, 2]
    root = np.stack([qpos[:, 2], roll, pitch, vx, vy, vw[:, 2], yaw_rate], axis=1)
    return np.concatenate([qpos[:, 7:], qvel[:, 6:], root], axis=1).astype(np.float32)


def command_indices(num_joints: int) -> list[int]:
    """Positions of (vx, vy, yaw_rate) within a frame."""
    base = 2 * num_joints
    return [base + ROOT_FIELDS.index(name) for name in COMMAND_FIELDS]


def smoothed_commands(frames: np.ndarray, num_joints: int, half_window: int) -> np.ndarray:
    """Commands (T - 2h, 3) for frames h..T-h-1: the mean heading-frame velocity over [t-h, t+h].

    Works along axis -2, so batches of windows (B, T, D) give (B, T - 2h, 3).
    """
    vel = np.asarray(frames)[..., command_indices(num_joints)]
    width = 2 * half_window + 1
    if vel.shape[-2] < width:
        raise ValidationError(f"{vel.shape[-2]} frames are fewer than the command window of {width}")
    csum = np.cumsum(np.concatenate([np.zeros_like(vel[..., :1, :]), vel], axis=-2), axis=-2)
    return (csum[..., width:, :] - csum[..., :-width, :]) / width


@dataclass(frozen=True)
class Mirror:
    """Left/right reflection of frames and commands: ``x' = x[perm] * sign``."""

    frame_perm: np.ndarray
    frame_sign: np.ndarray
    command_sign: np.ndarray

    def frames(self, x: np.ndarray) -> np.ndarray:
        return x[..., self.frame_perm] * self.frame_sign

    def commands(self, c: np.ndarray) -> np.ndarray:
        return c * self.command_sign


def _world_joint_axes(path: object) -> dict[str, np.ndarray]:
    """Hinge axes in the world frame at the zero pose, read from the MJCF's body quaternions (no
    compile: mujoco's takes seconds). Bodies oriented other than by ``quat`` are refused."""
    import xml.etree.ElementTree as ET

    from mimicdata.motion.rotations import quat_mul, quat_to_mat

    axes: dict[str, np.ndarray] = {}

    def walk(body: ET.Element, rot: np.ndarray) -> None:
        if any(body.get(k) for k in ("euler", "axisangle", "xyaxes", "zaxis")):
            raise ValidationError(f"{path}: body {body.get('name')!r} is not oriented by a quaternion")
        q = np.array([float(v) for v in body.get("quat", "1 0 0 0").split()])
        rot = quat_mul(rot, q / np.linalg.norm(q))
        for joint in body.findall("joint"):
            axis = np.array([float(v) for v in joint.get("axis", "0 0 1").split()])
            axes[joint.get("name", "")] = quat_to_mat(rot) @ (axis / np.linalg.norm(axis))
        for child in body.findall("body"):
            walk(child, rot)

    world = ET.parse(str(path)).getroot().find("worldbody")
    for body in world.findall("body") if world is not None else []:
        walk(body, np.array([1.0, 0.0, 0.0, 0.0]))
    return axes


@cache
def robot_mirror(robot: str) -> Mirror:
    """The reflection across the robot's sagittal (x-z) plane, from its description.

    Joints pair by name (``left_``/``right_``; others map to themselves). The sign comes from the
    joint axes in the world frame at the zero pose: reflecting a rotation about axis ``a`` gives a
    rotation about ``-M a`` (M = diag(1, -1, 1)), so the partner's angle is ``q * ((-M a) · a')``;
    pitch joints keep their sign, roll and yaw joints flip. Root: roll, vy and yaw rate flip.
    """
    from mimicdata.robots import mjcf_path
    from mimicdata.schema import load_robot

    names = list(load_robot(robot).joint_names)
    world_axis = _world_joint_axes(mjcf_path(robot))
    reflect = np.array([1.0, -1.0, 1.0])
    perm, sign = [], []
    for name in names:
        partner = name
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if name.startswith(a):
                partner = b + name[len(a):]
        if name not in world_axis or partner not in world_axis:
            raise ValidationError(f"robot {robot!r}: joint {name!r} has no mirror partner {partner!r}")
        dot = float(-(reflect * world_axis[partner]) @ world_axis[name])
        if abs(abs(dot) - 1.0) > 1e-3:
            raise ValidationError(f"robot {robot!r}: joints {name!r} and {partner!r} are not mirror images")
        perm.append(names.index(partner))
        sign.append(np.sign(dot))
    num = len(names)
    root_sign = [1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0]  # height, roll, pitch, vx, vy, vz, yaw_rate
    frame_perm = np.concatenate([perm, np.array(perm) + num, 2 * num + np.arange(NUM_ROOT)])
    frame_sign = np.concatenate([sign, sign, root_sign]).astype(np.float32)
    return Mirror(frame_perm.astype(np.int64), frame_sign, np.array([1.0, -1.0, -1.0], np.float32))

