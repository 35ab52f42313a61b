"""Batched forward kinematics and point Jacobians of a MuJoCo tree, in numpy.

MuJoCo computes one configuration per call; retargeting needs thousands of frames per
iteration. This module reads the kinematic tree once from ``mujoco.MjModel`` and evaluates
every frame of a clip with a few array operations per body. ``tests/test_retarget_ik.py``
checks positions, orientations and Jacobians against ``mj_kinematics``/``mj_jac``.

Supported trees: a free-floating root body (free joint) and at most one hinge joint per body,
which covers the Unitree G1 and most humanoid MJCFs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from mimicdata.motion.rotations import quat_from_rotvec, quat_mul, quat_normalize, quat_to_mat


@dataclass(frozen=True)
class RobotModel:
    """Kinematic tree of a floating-base robot (world body excluded; index 0 is the root)."""

    name: str
    body_names: tuple[str, ...]
    parent: np.ndarray  # (nb,) parent index, -1 for the root
    body_pos: np.ndarray  # (nb, 3) position in the parent frame
    body_quat: np.ndarray  # (nb, 4) orientation in the parent frame (wxyz)
    body_joint: np.ndarray  # (nb,) index into joint_names of the body's hinge, -1 for none
    joint_names: tuple[str, ...]  # hinge joints in MuJoCo (depth-first) order
    joint_axis: np.ndarray  # (nj, 3) axis in the body frame
    joint_anchor: np.ndarray  # (nj, 3) anchor in the body frame
    joint_range: np.ndarray  # (nj, 2) limits in rad (-inf/inf when unlimited)
    site_names: tuple[str, ...]
    site_body: np.ndarray
    site_pos: np.ndarray
    site_quat: np.ndarray

    @property
    def nq(self) -> int:
        """Length of qpos (7 for the free root + one per hinge)."""
        return 7 + len(self.joint_names)

    @property
    def nv(self) -> int:
        """Length of qvel (6 for the free root + one per hinge)."""
        return 6 + len(self.joint_names)

    def body_index(self, name: str) -> int:
        """Index of a body by name (error lists the bodies)."""
        try:
            return self.body_names.index(name)
        except ValueError:
            raise KeyError(f"robot {self.name!r} has no body {name!r}; bodies: {list(self.body_names)}") from None

    def ancestors(self, body: int) -> list[int]:
        """Bodies from `body` up to the root, `body` first."""
        chain = []
        while body >= 0:
            chain.append(body)
            body = int(self.parent[body])
        return chain

    def fk(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World positions (T, nb, 3) and rotation matrices (T, nb, 3, 3) for qpos (T, nq)."""
        qpos = np.atleast_2d(np.asarray(qpos, dtype=np.float64))
        num = qpos.shape[0]
        nb = len(self.body_names)
        xpos = np.empty((num, nb, 3))
        xmat = np.empty((num, nb, 3, 3))
        local_mats = quat_to_mat(self.body_quat)
        joint_q = qpos[:, 7:]
        for b in range(nb):
            p = self.parent[b]
            if p < 0:
                xpos[:, b] = qpos[:, :3]
                xmat[:, b] = quat_to_mat(qpos[:, 3:7])
                continue
            xpos[:, b] = xpos[:, p] + xmat[:, p] @ self.body_pos[b]
            rot = xmat[:, p] @ local_mats[b]
            j = self.body_joint[b]
            if j >= 0:
                hinge = _axis_angle_mats(self.joint_axis[j], joint_q[:, j])
                anchor = self.joint_anchor[j]
                if np.any(anchor):
                    # Rotating about an anchor off the body origin moves the origin too.
                    xpos[:, b] += rot @ anchor - (rot @ hinge) @ anchor
                rot = rot @ hinge
            xmat[:, b] = rot
        return xpos, xmat

    def points(self, xpos: np.ndarray, xmat: np.ndarray, bodies: np.ndarray,
               offsets: np.ndarray) -> np.ndarray:
        """World positions (T, K, 3) of points fixed on `bodies` at local `offsets` (K, 3)."""
        return xpos[:, bodies] + (xmat[:, bodies] @ offsets[:, :, None])[..., 0]

    def point_jacobians(self, qpos: np.ndarray, xpos: np.ndarray, xmat: np.ndarray, bodies: np.ndarray,
                        offsets: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Jacobians (T, K, 3, 6 + len(active)) of points w.r.t. root and the `active` joints.

        Root columns: world translation, then a world-frame rotation increment (dq = w x r).
        Joint columns follow `active` (indices into joint_names); inactive joints are fixed.
        """
        pts = self.points(xpos, xmat, bodies, offsets)
        num, nk = pts.shape[:2]
        col_of = {int(j): 6 + c for c, j in enumerate(active)}
        jac = np.zeros((num, nk, 3, 6 + len(active)))
        jac[:, :, 0, 0] = jac[:, :, 1, 1] = jac[:, :, 2, 2] = 1.0
        rel = pts - xpos[:, :1]
        # Columns e_i x rel for i = x, y, z.
        jac[:, :, :, 3:6] = np.stack([np.cross(np.eye(3)[i], rel) for i in range(3)], axis=-1)
        pair_k, pair_b, pair_c = [], [], []
        for k, b in enumerate(bodies):
            for anc in self.ancestors(int(b)):
                j = int(self.body_joint[anc])
                if j >= 0 and j in col_of:
                    pair_k.append(k)
                    pair_b.append(anc)
                    pair_c.append(col_of[j])
        if pair_k:
            pk, pb, pc = np.array(pair_k), np.array(pair_b), np.array(pair_c)
            joints = self.body_joint[pb]
            mats = xmat[:, pb]
            axis_w = (mats @ self.joint_axis[joints][:, :, None])[..., 0]
            anchor_w = xpos[:, pb] + (mats @ self.joint_anchor[joints][:, :, None])[..., 0]
            cols = np.cross(axis_w, pts[:, pk] - anchor_w)  # (T, P, 3)
            jac[:, pk, :, pc] = cols.transpose(1, 0, 2)
        return jac

    def integrate(self, qpos: np.ndarray, delta: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Apply an increment (T, 6 + len(active)) in the Jacobian's coordinates; clamp to limits."""
        out = qpos.copy()
        out[:, :3] += delta[:, :3]
        out[:, 3:7] = quat_normalize(quat_mul(quat_from_rotvec(delta[:, 3:6]), qpos[:, 3:7]))
        cols = 7 + np.asarray(active)
        lo, hi = self.joint_range[active, 0], self.joint_range[active, 1]
        out[:, cols] = np.clip(qpos[:, cols] + delta[:, 6:], lo, hi)
        return out


def _axis_angle_mats(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) about one fixed unit axis by angles (T,) (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    s = np.sin(angle)[:, None, None]
    c = np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


@cache
def load_robot_model(robot: str) -> RobotModel:
    """The kinematic tree of a robot shipped with mimicdata (``g1_29dof``, ``g1_23dof``)."""
    from mimicdata.robots import mjcf_path

    return model_from_mjcf(mjcf_path(robot), name=robot)


def model_from_mjcf(path: str | Path, name: str = "") -> RobotModel:
    """Read the kinematic tree from an MJCF file with MuJoCo (imported lazily)."""
    import mujoco

    m = mujoco.MjModel.from_xml_path(str(path))
    return model_from_mujoco(m, name or Path(path).stem)


def model_from_mujoco(m: object, name: str) -> RobotModel:
    """Read the kinematic tree from a compiled ``mujoco.MjModel``."""
    import mujoco

    nb = m.nbody - 1  # drop the world body
    if nb < 1 or m.body_jntnum[1] != 1 or m.jnt_type[m.body_jntadr[1]] != mujoco.mjtJoint.mjJNT_FREE:
        raise ValueError(f"{name}: the first body must be a floating base with one free joint")
    hinges = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    if len(hinges) != m.njnt - 1:
        raise ValueError(f"{name}: only hinge joints (plus the root's free joint) are supported")
    joint_of = {int(m.jnt_bodyid[j]): i for i, j in enumerate(hinges)}
    for b in range(2, m.nbody):
        if m.body_jntnum[b] > 1:
            raise ValueError(f"{name}: body {m.body(b).name!r} has {m.body_jntnum[b]} joints; one is supported")
    limited = m.jnt_limited[hinges].astype(bool)
    rng = np.where(limited[:, None], m.jnt_range[hinges], np.array([-np.inf, np.inf]))
    site_ok = m.site_bodyid >= 1
    return RobotModel(
        name=name,
        body_names=tuple(m.body(b).name for b in range(1, m.nbody)),
        parent=np.array([m.body_parentid[b] - 1 for b in range(1, m.nbody)]),
        body_pos=m.body_pos[1:].copy(),
        body_quat=m.body_quat[1:].copy(),
        body_joint=np.array([joint_of.get(b, -1) for b in range(1, m.nbody)]),
        joint_names=tuple(m.joint(j).name for j in hinges),
        joint_axis=m.jnt_axis[hinges].copy(),
        joint_anchor=m.jnt_pos[hinges].copy(),
        joint_range=rng,
        site_names=tuple(m.site(s).name for s in range(m.nsite) if site_ok[s]),
        site_body=m.site_bodyid[site_ok] - 1,
        site_pos=m.site_pos[site_ok].copy(),
        site_quat=m.site_quat[site_ok].copy(),
    )
