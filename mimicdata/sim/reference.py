"""A smooth whole-body reference motion for the simulated G1: squats, torso sway and arm swings.

The motion is the standing pose plus a sum of sinusoids, faded in over the first seconds so that it
starts at rest. Positions and velocities are analytic (no finite differences), so the reference a
"policy" sees is exactly consistent with its derivative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mimicdata.errors import ConfigError
from mimicdata.robots.g1 import G1_29DOF_JOINTS, default_joint_pos, robot_joints

# (frequency Hz, phase rad, {joint: amplitude rad}). A term with frequency 0 and phase pi/2 is a
# constant offset (sin(pi/2) = 1), used with a cosine term to build the one-sided squat (1-cos)/2.
_SQUAT_DEPTH = 0.28  # hip-pitch change at the bottom of a squat; knee bends twice as much
_SQUAT_HZ = 0.2
_SQUAT = {
    f"{side}_{j}_joint": k * _SQUAT_DEPTH / 2
    for side in ("left", "right")
    for j, k in (("hip_pitch", -1.0), ("knee", 2.0), ("ankle_pitch", -1.0))
}
_TERMS: tuple[tuple[float, float, dict[str, float]], ...] = (
    # Squat: hip -a, knee +2a, ankle -a keeps the shanks and torso parallel, feet flat.
    (0.0, math.pi / 2, _SQUAT),
    (_SQUAT_HZ, -math.pi / 2, _SQUAT),
    # Torso sway (the 23-DoF robot keeps only the yaw part: its waist roll/pitch do not exist).
    (0.15, 0.0, {"waist_yaw_joint": 0.25}),
    (0.11, 0.5, {"waist_roll_joint": 0.06}),
    (0.23, 1.0, {"waist_pitch_joint": 0.08}),
    # Arms held a little further out than the standing pose so the hands clear the hips in a squat.
    (0.0, math.pi / 2, {"left_shoulder_roll_joint": 0.2, "right_shoulder_roll_joint": -0.2}),
    # Arm swings in opposition, elbows a quarter period behind, small wrist motion.
    (
        0.5,
        0.0,
        {
            "left_shoulder_pitch_joint": 0.35,
            "right_shoulder_pitch_joint": -0.35,
            "left_wrist_pitch_joint": 0.15,
            "right_wrist_pitch_joint": -0.15,
        },
    ),
    (0.5, -math.pi / 2, {"left_elbow_joint": 0.25, "right_elbow_joint": 0.25}),
    (
        0.3,
        0.7,
        {
            "left_shoulder_roll_joint": 0.1,
            "right_shoulder_roll_joint": -0.1,
            "left_shoulder_yaw_joint": 0.15,
            "right_shoulder_yaw_joint": -0.15,
        },
    ),
    (
        0.4,
        0.3,
        {
            "left_wrist_roll_joint": 0.3,
            "right_wrist_roll_joint": -0.3,
            "left_wrist_yaw_joint": 0.2,
            "right_wrist_yaw_joint": -0.2,
        },
    ),
)


@dataclass
class ReferenceMotion:
    """Reference joint positions/velocities of all 29 G1 joints as a function of time.

    Joints that ``robot`` lacks (the 23-DoF G1's waist roll/pitch and wrist pitch/yaw) stay at
    their default. ``fade_in_s`` ramps the motion in with a smoothstep so it starts at rest.
    """

    robot: str = "g1_29dof"
    fade_in_s: float = 2.0

    def __post_init__(self) -> None:
        joints = robot_joints(self.robot)
        if self.fade_in_s < 0:
            raise ConfigError(f"fade_in_s must be >= 0, got {self.fade_in_s}")
        index = {j: i for i, j in enumerate(G1_29DOF_JOINTS)}
        present = set(joints)
        self._default = default_joint_pos("g1_29dof")
        self._omega = np.array([2 * math.pi * f for f, _, _ in _TERMS])
        self._phase = np.array([p for _, p, _ in _TERMS])
        # amplitude[joint, term]
        self._amplitude = np.zeros((len(G1_29DOF_JOINTS), len(_TERMS)))
        for k, (_, _, amps) in enumerate(_TERMS):
            for joint, a in amps.items():
                if joint in present:
                    self._amplitude[index[joint], k] = a

    def _ramp(self, t: float) -> tuple[float, float]:
        if self.fade_in_s == 0 or t >= self.fade_in_s:
            return 1.0, 0.0
        if t <= 0:
            return 0.0, 0.0
        x = t / self.fade_in_s
        return x * x * (3 - 2 * x), 6 * x * (1 - x) / self.fade_in_s

    def __call__(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions (rad) and velocities (rad/s) of the 29 joints at time ``t`` seconds (float64)."""
        arg = self._omega * t + self._phase
        offset = self._amplitude @ np.sin(arg)
        offset_vel = self._amplitude @ (self._omega * np.cos(arg))
        r, r_dot = self._ramp(t)
        return self._default + r * offset, r_dot * offset + r * offset_vel
