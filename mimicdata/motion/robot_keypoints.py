"""Where each key point sits on the robot: a body and an offset in that body's frame.

The points are chosen to be anatomically where the human joint is: hip = hip-pitch joint,
knee = knee joint, ankle = ankle-roll joint, toe = ball of the foot on the sole, shoulder =
shoulder-roll joint, elbow = elbow joint, wrist = wrist-yaw joint (where a forearm scaled to
the robot ends). The pelvis point is the midpoint of the two hip points, like on the human side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mimicdata.motion.mapping import KEYPOINTS


@dataclass(frozen=True)
class RobotKeypoints:
    """Key point -> (body name, offset) for one robot family, plus its foot sole geometry."""

    points: dict[str, tuple[str, tuple[float, float, float]]]
    # Points on each foot's sole in the ankle-roll body frame, used for ground contact.
    sole_body: dict[str, str]
    sole_points: tuple[tuple[float, float, float], ...]

    def bodies_offsets(self, body_index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Body indices (K,) and offsets (K, 3) in KEYPOINTS order."""
        bodies = np.array([body_index[self.points[k][0]] for k in KEYPOINTS])
        offsets = np.array([self.points[k][1] for k in KEYPOINTS], dtype=np.float64)
        return bodies, offsets


_G1_SOLE_Z = -0.035  # foot capsules: centre z = -0.025, radius 0.01 (g1.xml, class foot_capsule)

G1_KEYPOINTS = RobotKeypoints(
    points={
        "pelvis": ("pelvis", (0.0, 0.0, -0.1027)),
        "left_hip": ("left_hip_pitch_link", (0.0, 0.0, 0.0)),
        "right_hip": ("right_hip_pitch_link", (0.0, 0.0, 0.0)),
        "left_knee": ("left_knee_link", (0.0, 0.0, 0.0)),
        "right_knee": ("right_knee_link", (0.0, 0.0, 0.0)),
        "left_ankle": ("left_ankle_roll_link", (0.0, 0.0, 0.0)),
        "right_ankle": ("right_ankle_roll_link", (0.0, 0.0, 0.0)),
        "left_toe": ("left_ankle_roll_link", (0.12, 0.0, -0.025)),
        "right_toe": ("right_ankle_roll_link", (0.12, 0.0, -0.025)),
        "left_shoulder": ("left_shoulder_roll_link", (0.0, 0.0, 0.0)),
        "right_shoulder": ("right_shoulder_roll_link", (0.0, 0.0, 0.0)),
        "left_elbow": ("left_elbow_link", (0.0, 0.0, 0.0)),
        "right_elbow": ("right_elbow_link", (0.0, 0.0, 0.0)),
        "left_wrist": ("left_wrist_yaw_link", (0.0, 0.0, 0.0)),
        "right_wrist": ("right_wrist_yaw_link", (0.0, 0.0, 0.0)),
    },
    sole_body={"left": "left_ankle_roll_link", "right": "right_ankle_roll_link"},
    sole_points=((-0.054, 0.0, _G1_SOLE_Z), (0.132, 0.0, _G1_SOLE_Z), (0.10, -0.026, _G1_SOLE_Z),
                 (0.10, 0.026, _G1_SOLE_Z), (-0.044, 0.018, _G1_SOLE_Z), (-0.044, -0.018, _G1_SOLE_Z)),
)

ROBOT_KEYPOINTS: dict[str, RobotKeypoints] = {"g1_29dof": G1_KEYPOINTS, "g1_23dof": G1_KEYPOINTS}


def robot_keypoints(robot: str) -> RobotKeypoints:
    """The key-point table of a robot (error lists the robots that have one)."""
    try:
        return ROBOT_KEYPOINTS[robot]
    except KeyError:
        raise ValueError(f"no key-point table for robot {robot!r}; known: {sorted(ROBOT_KEYPOINTS)}") from None
