"""Retargeting one clip, in steps small enough to farm out: prepare -> solve ranges -> finish.

``prepare_clip`` reads and maps the source and scales it to the robot (cheap); ``solve_range``
runs the IK on a range of frames (the expensive part, one Dask task per range);
``finish_clip`` stitches, smooths, puts the feet on the floor, resamples to the target rate,
computes velocities and forward kinematics, and measures quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from mimicdata.motion.io import ReadOptions, read_motion
from mimicdata.motion.kinematics import load_robot_model
from mimicdata.motion.mapping import KEYPOINTS, resolve_mapping
from mimicdata.motion.robot_keypoints import robot_keypoints
from mimicdata.motion.rotations import mat_to_quat, quat_continuous, quat_slerp
from mimicdata.motion.types import HumanMotion, MotionFormatError
from mimicdata.retarget.contact import foot_metrics, ground_fix, plant_feet
from mimicdata.retarget.ik import IKConfig, IKProblem
from mimicdata.retarget.quality import (
    ClipQuality,
    count_limit_violations,
    count_velocity_spikes,
    keypoint_errors,
)
from mimicdata.retarget.timeseries import body_velocities, qpos_velocities, resample_qpos, smooth_qpos

# Anthropometry (Drillis & Contini): hip-joint-to-ankle length is 0.491 of body height.
LEG_TO_HEIGHT = 0.491
_K = {k: i for i, k in enumerate(KEYPOINTS)}


@dataclass(frozen=True)
class ClipSpec:
    """Which clip to retarget: a file, optionally one clip inside it and a frame range."""

    source: str
    name: str = ""
    clip_in_file: int = 0
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class RetargetSettings:
    """Everything that shapes the result besides the source clip."""

    robot: str = "g1_29dof"  # the model the IK runs on
    joints: str | None = None  # restrict to this robot's joints (e.g. "g1_23dof")
    fps: float = 50.0
    mapping: str | None = None  # mapping file for skeletons that are not recognised
    read: ReadOptions = field(default_factory=ReadOptions)
    ik: IKConfig = field(default_factory=IKConfig)
    smooth_seconds: float = 0.015  # Gaussian sigma of the post-IK smoothing
    foot_lock: bool = True  # plant the feet during contacts (less skating)

    @property
    def output_robot(self) -> str:
        """The robot description the stored frames follow."""
        return self.joints or self.robot


@dataclass
class PreparedClip:
    """A source clip mapped to key points and scaled to the robot (metres, Z-up, floor at 0)."""

    spec: ClipSpec
    name: str
    source: str
    source_fps: float
    first_frame: int
    targets: np.ndarray  # (T, K, 3) scaled human key points
    scale: float
    human_height: float
    rig: str
    floor_shift: float
    convention: dict[str, Any]

    @property
    def num_frames(self) -> int:
        """Source frames of the clip."""
        return int(self.targets.shape[0])


@dataclass
class ClipResult:
    """A finished clip: the frames batch for the store, its clips-stream row and quality."""

    name: str
    source: str
    frames: dict[str, np.ndarray]
    row: dict[str, Any]
    quality: ClipQuality
    info: dict[str, Any]


@cache
def _problem(robot: str, joints: str | None, config: IKConfig) -> IKProblem:
    from mimicdata.schema import load_robot

    model = load_robot_model(robot)
    wanted = load_robot(joints or robot)
    missing = [j for j in wanted.joint_names if j not in model.joint_names]
    if missing:
        raise ValueError(f"robot {wanted.name!r} has joints {missing} that the {robot} model lacks")
    active = np.array([model.joint_names.index(j) for j in wanted.joint_names])
    # Joints the output robot lacks stay at the full robot's default (zero for G1 waist/wrists).
    defaults = load_robot(robot).doc.get("default_joint_pos", {})
    rest = np.array([0.0 if i in active else float(defaults.get(n, 0.0))
                     for i, n in enumerate(model.joint_names)])
    return IKProblem(model=model, keypoints=robot_keypoints(robot), active=active, rest=rest, config=config)


def problem_for(settings: RetargetSettings) -> IKProblem:
    """The (cached per process) IK problem for these settings."""
    return _problem(settings.robot, settings.joints, settings.ik)


def robot_leg_length(problem: IKProblem) -> float:
    """Hip-knee-ankle length of the robot in its rest pose (m)."""
    return float(np.median(leg_lengths(problem.keypoint_positions(problem.rest_qpos(1)))))


def leg_lengths(keypoints: np.ndarray) -> np.ndarray:
    """Per-frame hip->knee->ankle length (T,), averaged over both legs."""
    total = 0.0
    for side in ("left", "right"):
        hip, knee, ankle = (keypoints[:, _K[f"{side}_{p}"]] for p in ("hip", "knee", "ankle"))
        total = total + np.linalg.norm(knee - hip, axis=-1) + np.linalg.norm(ankle - knee, axis=-1)
    return total / 2


def prepare_motion(motion: HumanMotion, spec: ClipSpec, settings: RetargetSettings) -> PreparedClip:
    """Map a clip onto key points, put its floor at z = 0 and scale it to the robot."""
    mapping = resolve_mapping(motion, settings.mapping)
    human = mapping.keypoint_positions(motion)
    # The floor: where the lowest foot points are. Trust z = 0 unless the data is clearly elsewhere.
    feet = [_K[f"{s}_{p}"] for s in ("left", "right") for p in ("ankle", "toe")]
    floor = float(np.percentile(human[:, feet, 2].min(axis=1), 1))
    shift = -floor if abs(floor) > 0.05 else 0.0
    human = human + np.array([0.0, 0.0, shift])
    human_leg = float(np.median(leg_lengths(human)))
    if not 0.2 < human_leg < 3.0:
        raise MotionFormatError(motion.source, f"leg length {human_leg:.2f} m is implausible; check the unit "
                                "(--unit) and the joint mapping")
    scale = robot_leg_length(problem_for(settings)) / human_leg
    return PreparedClip(spec=spec, name=spec.name or motion.name, source=motion.source,
                        source_fps=motion.fps, first_frame=motion.first_frame, targets=human * scale,
                        scale=scale, human_height=human_leg / LEG_TO_HEIGHT, rig=mapping.rig,
                        floor_shift=shift, convention=dict(motion.source_convention))


def prepare_clip(spec: ClipSpec, settings: RetargetSettings) -> PreparedClip:
    """Read the clip named by `spec` and prepare it (see :func:`prepare_motion`)."""
    opts = settings.read
    if spec.start or spec.stop is not None:
        opts = ReadOptions(**{**opts.__dict__, "start": spec.start, "stop": spec.stop})
    clips = read_motion(spec.source, opts)
    if spec.clip_in_file >= len(clips):
        raise MotionFormatError(spec.source, f"has {len(clips)} clip(s), no clip {spec.clip_in_file}")
    return prepare_motion(clips[spec.clip_in_file], spec, settings)


def solve_range(prepared: PreparedClip, start: int, stop: int, settings: RetargetSettings) -> np.ndarray:
    """IK solution qpos (stop - start, nq) for source frames [start, stop).

    With ``foot_lock`` a second pass, warm-started from the first, holds the feet still where
    the first pass put them on the floor (see :func:`mimicdata.retarget.contact.plant_feet`).
    """
    problem = problem_for(settings)
    targets = prepared.targets[start:stop]
    weights = np.ones(targets.shape[:2])
    qpos, _ = problem.solve(targets, weights=weights)
    if settings.foot_lock and stop - start >= 3:
        planted, w = plant_feet(problem, qpos, targets, weights, prepared.source_fps, _K)
        qpos, _ = problem.solve(planted, init=qpos, weights=w, iterations=max(3, settings.ik.iterations // 3))
    return qpos


def split_ranges(num_frames: int, piece: int, overlap: int) -> list[tuple[int, int]]:
    """Frame ranges of at most `piece` frames that overlap by `overlap` frames and cover the clip."""
    if num_frames <= piece:
        return [(0, num_frames)]
    if overlap >= piece // 2:
        raise ValueError(f"overlap ({overlap}) must be less than half the piece length ({piece})")
    ranges, start = [], 0
    while True:
        stop = min(start + piece, num_frames)
        ranges.append((start, stop))
        if stop == num_frames:
            return ranges
        start = stop - overlap


def stitch(pieces: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """Join overlapping qpos pieces; in an overlap the weight moves linearly from one to the next."""
    pieces = sorted(pieces, key=lambda p: p[0])
    total = pieces[-1][1]
    out = np.empty((total, pieces[0][2].shape[1]))
    covered = 0
    for start, stop, q in pieces:
        if start > covered:
            raise ValueError(f"pieces leave frames [{covered}, {start}) uncovered")
        n_over = covered - start
        out[covered:stop] = q[n_over:]
        if n_over > 0:
            w = (np.arange(1, n_over + 1) / (n_over + 1))[:, None]
            prev = out[start:covered]
            blend = (1 - w) * prev + w * q[:n_over]
            blend[:, 3:7] = quat_slerp(prev[:, 3:7], q[:n_over, 3:7], w[:, 0])
            out[start:covered] = blend
        covered = stop
    return out


def finish_clip(prepared: PreparedClip, qpos: np.ndarray, settings: RetargetSettings) -> ClipResult:
    """Post-process a source-rate IK solution into the stored frames, row and quality report."""
    problem = problem_for(settings)
    model, kp = problem.model, problem.keypoints
    limits = model.joint_range
    src_fps = prepared.source_fps
    q = smooth_qpos(qpos, settings.smooth_seconds * src_fps)
    q[:, 3:7] = quat_continuous(q[:, 3:7])
    q[:, 7:] = np.clip(q[:, 7:], limits[:, 0], limits[:, 1])
    q, settle = ground_fix(model, kp, q, src_fps)
    errors = keypoint_errors(problem.keypoint_positions(q), prepared.targets)
    out = resample_qpos(q, src_fps, settings.fps)
    out[:, 7:] = np.clip(out[:, 7:], limits[:, 0], limits[:, 1])
    out, _ = ground_fix(model, kp, out, settings.fps, settle=False)  # interpolation may dip a sole
    qvel = qpos_velocities(out, settings.fps)
    xpos, xmat = model.fk(out)
    xquat = mat_to_quat(xmat)
    lin, ang = body_velocities(xpos, xquat, settings.fps)
    penetration, skating = foot_metrics(model, kp, out, settings.fps)
    frames, velocity_limits = _select_output(out, qvel, xpos, xquat, lin, ang, model, settings.output_robot)
    quality = ClipQuality(
        kp_err_mean_cm=errors["mean"], kp_err_max_cm=errors["max"], kp_err_leg_mean_cm=errors["leg_mean"],
        penetration_max_cm=penetration * 100, skating_cm_s=skating * 100,
        limit_violations=count_limit_violations(out[:, 7:], limits),
        velocity_spikes=count_velocity_spikes(frames["qvel"][:, 6:], velocity_limits),
        per_keypoint_mean_cm=errors["per_keypoint"])
    row = {"name": prepared.name, "source": prepared.source, "fps": settings.fps,
           "source_fps": src_fps, "scale": prepared.scale, "human_height": prepared.human_height,
           **quality.row()}
    info = {"rig": prepared.rig, "first_frame": prepared.first_frame, "source_frames": prepared.num_frames,
            "floor_shift_m": prepared.floor_shift, "settle_shift_m": settle, "convention": prepared.convention,
            "quality": quality.to_dict()}
    return ClipResult(name=prepared.name, source=prepared.source, frames=frames, row=row, quality=quality,
                      info=info)


def _select_output(qpos: np.ndarray, qvel: np.ndarray, xpos: np.ndarray, xquat: np.ndarray, lin: np.ndarray,
                   ang: np.ndarray, model: Any, robot: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Frames in the output robot's qpos/qvel/body order (by name), as float32."""
    from mimicdata.schema import load_robot

    desc = load_robot(robot)
    cols = [model.joint_names.index(j) for j in desc.joint_names]
    qpos_out = np.concatenate([qpos[:, :7], qpos[:, 7 + np.array(cols)]], axis=1)
    qvel_out = np.concatenate([qvel[:, :6], qvel[:, 6 + np.array(cols)]], axis=1)
    bodies = np.array([model.body_index(b) for b in desc.body_names])
    joints_doc = desc.doc.get("joints", {})
    vel_limits = np.array([float(joints_doc.get(j, {}).get("velocity_limit", np.inf)) for j in desc.joint_names])
    frames = {"qpos": qpos_out, "qvel": qvel_out, "body_pos": xpos[:, bodies], "body_quat": xquat[:, bodies],
              "body_lin_vel": lin[:, bodies], "body_ang_vel": ang[:, bodies]}
    return {k: v.astype(np.float32) for k, v in frames.items()}, vel_limits


def retarget_motion(motion: HumanMotion, settings: RetargetSettings | None = None,
                    spec: ClipSpec | None = None) -> ClipResult:
    """Retarget one in-memory clip in this process (no Dask); see :mod:`mimicdata.retarget.pipeline`."""
    settings = settings or RetargetSettings()
    prepared = prepare_motion(motion, spec or ClipSpec(source=motion.source, name=motion.name), settings)
    return finish_clip(prepared, solve_range(prepared, 0, prepared.num_frames, settings), settings)
