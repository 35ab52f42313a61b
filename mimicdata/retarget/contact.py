"""Feet and ground: sole points, contact, penetration fix and skating measure.

The ground is the plane z = 0. After IK the feet may float or sink by a centimetre or two
(the robot's ankle is lower than a scaled human ankle); :func:`ground_fix` shifts the whole
clip so its lowest contacts touch the floor, then lifts the root where a foot would still go
below it, smoothly in time so the fix itself adds no jerk.
"""

from __future__ import annotations

import numpy as np

from mimicdata.motion.kinematics import RobotModel
from mimicdata.motion.robot_keypoints import RobotKeypoints
from mimicdata.retarget.ik import IKProblem
from mimicdata.retarget.timeseries import gaussian_smooth

CONTACT_HEIGHT_M = 0.02  # a sole point this close to the floor counts as touching it


def sole_points(model: RobotModel, keypoints: RobotKeypoints, qpos: np.ndarray) -> np.ndarray:
    """World positions (T, 2, S, 3) of the sole points of the left and right foot."""
    xpos, xmat = model.fk(qpos)
    feet = []
    offsets = np.asarray(keypoints.sole_points, dtype=np.float64)
    for side in ("left", "right"):
        b = model.body_index(keypoints.sole_body[side])
        feet.append(xpos[:, b, None] + (xmat[:, b, None] @ offsets[None, :, :, None])[..., 0])
    return np.stack(feet, axis=1)


def ground_fix(model: RobotModel, keypoints: RobotKeypoints, qpos: np.ndarray, fps: float,
               settle: bool = True) -> tuple[np.ndarray, float]:
    """Root heights adjusted so no sole point is below z = 0; returns (qpos, global shift in m).

    With ``settle`` the clip is first shifted so that its lowest 2% of frames stand on the floor
    (removes a constant float or sink from proportion differences).
    """
    out = qpos.copy()
    lowest = sole_points(model, keypoints, qpos)[..., 2].min(axis=(1, 2))
    shift = -float(np.percentile(lowest, 2)) if settle else 0.0
    need = np.maximum(0.0, -(lowest + shift))
    out[:, 2] += shift + _upper_envelope(need, window=max(3, round(0.2 * fps)))
    return out, shift


def _upper_envelope(need: np.ndarray, window: int) -> np.ndarray:
    """A smooth curve that is >= `need` everywhere (max filter, blur, then max with need)."""
    if not need.any():
        return need
    half = window // 2
    padded = np.pad(need, half, mode="edge")
    maxed = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).max(axis=1)
    return np.maximum(gaussian_smooth(maxed[:, None], window / 4)[:, 0], need)


def foot_metrics(model: RobotModel, keypoints: RobotKeypoints, qpos: np.ndarray,
                 fps: float) -> tuple[float, float]:
    """(max penetration below the floor in m, mean foot sliding speed while in contact in m/s).

    Per foot and frame in contact, the sliding speed is the smallest horizontal speed among the
    sole points that touch the floor: a foot rolling over its toe or heel is not skating.
    """
    soles = sole_points(model, keypoints, qpos)  # (T, 2, S, 3)
    penetration = float(max(0.0, -soles[..., 2].min()))
    if qpos.shape[0] < 2:
        return penetration, 0.0
    speed = np.linalg.norm(np.gradient(soles[..., :2], 1.0 / fps, axis=0), axis=-1)  # (T, 2, S)
    touching = soles[..., 2] < CONTACT_HEIGHT_M
    contact = touching.any(axis=2)
    if not contact.any():
        return penetration, 0.0
    slide = np.where(touching, speed, np.inf).min(axis=2)
    return penetration, float(slide[contact].mean())


def _segments(mask: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, stop) runs of True at least `min_len` long."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b - a >= min_len]


_HEEL_POINTS = [0, 4, 5]  # indices into RobotKeypoints.sole_points behind the ankle
_FRONT_POINTS = [1, 2, 3]  # ... and under the ball of the foot


def plant_feet(problem: IKProblem, qpos: np.ndarray, targets: np.ndarray, weights: np.ndarray, fps: float,
               keypoint_index: dict[str, int], *, height: float = CONTACT_HEIGHT_M, max_speed: float = 0.3,
               weight: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Targets that hold the robot's planted feet still: (targets, weights) for a second IK pass.

    Contact is judged on the robot after a first pass: the heel (or ball) of a foot is planted
    while its sole points are within `height` of the floor and the ankle (or toe) key point moves
    slower than `max_speed`. Over each contact the key point's horizontal target becomes its mean
    position, weighted up, so the second pass stops the residual slide without lifting the foot.
    """
    model, kp = problem.model, problem.keypoints
    soles = sole_points(model, kp, qpos)
    floor = np.percentile(soles[..., 2].min(axis=(1, 2)), 2)
    points = problem.keypoint_positions(qpos)
    out, mult = targets.copy(), weights.copy()
    for f, side in enumerate(("left", "right")):
        for part, sole_idx in (("ankle", _HEEL_POINTS), ("toe", _FRONT_POINTS)):
            k = keypoint_index[f"{side}_{part}"]
            low = soles[:, f, sole_idx, 2].min(axis=1) - floor < height
            speed = np.linalg.norm(np.gradient(points[:, k, :2], 1.0 / fps, axis=0), axis=1)
            for a, b in _segments(low & (speed < max_speed), min_len=3):
                out[a:b, k, :2] = points[a:b, k, :2].mean(axis=0)
                mult[a:b, k] = weight
    return out, mult
