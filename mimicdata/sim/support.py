"""An elastic band on the pelvis, like the one in Unitree's MuJoCo simulator (unitree_mujoco).

A scripted "policy" has no balance controller, so the band keeps the robot upright: a
spring-damper pulls the pelvis horizontally toward an anchor, a rotational spring-damper keeps it
level and facing forward, and a slack rope catches it only if it sinks below ``min_height``. While
the robot stands on its own the band carries little load; :attr:`PelvisBand.last_force` tells how
much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import mujoco


@dataclass
class PelvisBand:
    """Spring-damper support applied to one body through ``data.xfrc_applied`` (world frame)."""

    body_id: int
    anchor_xy: tuple[float, float] = (0.0, 0.0)
    min_height: float = 0.55  # m; the rope is slack above this
    k_xy: float = 1500.0  # N/m
    d_xy: float = 150.0  # N*s/m
    k_z: float = 4000.0  # N/m, below min_height only
    d_z: float = 200.0  # N*s/m, below min_height only
    # The band is applied explicitly (once per physics step). The pelvis alone has a tiny
    # rotational inertia (root inverse-inertia diagonal ~12 1/(kg*m^2)), so rotational
    # damping above ~15 N*m*s/rad goes unstable at dt = 5 ms; 400/40 went NaN in 0.15 s.
    k_rot: float = 300.0  # N*m/rad
    d_rot: float = 12.0  # N*m*s/rad
    last_force: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _quat: np.ndarray = field(default_factory=lambda: np.zeros(4), repr=False)
    _rotvec: np.ndarray = field(default_factory=lambda: np.zeros(3), repr=False)

    def apply(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Write this step's band force and torque into ``data.xfrc_applied`` for the body."""
        import mujoco

        b = self.body_id
        pos = data.xpos[b]
        # cvel is [angular, linear] at the subtree COM in world orientation; the pelvis is the
        # root, so its linear part is close to the pelvis velocity and good enough for damping.
        ang_vel = data.cvel[b, :3]
        lin_vel = data.cvel[b, 3:]
        force = np.empty(3)
        force[0] = self.k_xy * (self.anchor_xy[0] - pos[0]) - self.d_xy * lin_vel[0]
        force[1] = self.k_xy * (self.anchor_xy[1] - pos[1]) - self.d_xy * lin_vel[1]
        sag = self.min_height - pos[2]
        force[2] = max(0.0, self.k_z * sag - self.d_z * lin_vel[2]) if sag > 0 else 0.0
        # Orientation error of the pelvis w.r.t. level, yaw 0: rotation vector of its world quat.
        mujoco.mju_mat2Quat(self._quat, data.xmat[b])
        mujoco.mju_quat2Vel(self._rotvec, self._quat, 1.0)
        torque = -self.k_rot * self._rotvec - self.d_rot * ang_vel
        data.xfrc_applied[b, :3] = force
        data.xfrc_applied[b, 3:] = torque
        self.last_force = force
