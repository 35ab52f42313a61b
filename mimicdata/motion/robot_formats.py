"""Robot motion files read back as motion: LocoMuJoCo trajectories, BeyondMimic npz, Unitree CSV.

These formats store a robot's motion rather than a person's. Reading them into the common form
(named global body positions and rotations) lets the same pipeline re-target them, e.g. to the
23-DoF G1 or onto a different frame rate. Quaternion order and body/joint order are converted
explicitly and then *checked* against the robot's kinematic tree: with the right conventions each
child body sits at a constant offset in its parent's frame; with the wrong ones it does not.
"""

from __future__ import annotations

import itertools
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mimicdata.motion.rotations import quat_normalize, quat_to_mat
from mimicdata.motion.types import HumanMotion, MotionFormatError, reads_motion_file

# Unitree SDK joint order of the G1 (the CSV input of BeyondMimic's csv_to_npz.py).
UNITREE_G1_29DOF_ORDER = (
    "left_hip_pitch_joint", "left_hip_roll_joint", "left_hip_yaw_joint", "left_knee_joint",
    "left_ankle_pitch_joint", "left_ankle_roll_joint", "right_hip_pitch_joint", "right_hip_roll_joint",
    "right_hip_yaw_joint", "right_knee_joint", "right_ankle_pitch_joint", "right_ankle_roll_joint",
    "waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint", "left_shoulder_pitch_joint",
    "left_shoulder_roll_joint", "left_shoulder_yaw_joint", "left_elbow_joint", "left_wrist_roll_joint",
    "left_wrist_pitch_joint", "left_wrist_yaw_joint", "right_shoulder_pitch_joint",
    "right_shoulder_roll_joint", "right_shoulder_yaw_joint", "right_elbow_joint", "right_wrist_roll_joint",
    "right_wrist_pitch_joint", "right_wrist_yaw_joint",
)
if TYPE_CHECKING:  # pragma: no cover - the model module needs MuJoCo only when loading a model
    from mimicdata.motion.kinematics import RobotModel

_MISMATCH_TOL_M = 2e-3  # float32 files reproduce offsets to ~1e-6 m; wrong conventions give cm


@reads_motion_file
def read_locomujoco(path: str | Path, *, robot: str | None = None) -> list[HumanMotion]:
    """One clip per trajectory (``split_points``) of a LocoMuJoCo ``Trajectory.save`` npz.

    Uses ``xpos``/``xquat`` (MuJoCo, wxyz) with ``body_names`` and ``frequency``. Object arrays
    (pickled metadata) are never loaded.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        for key in ("xpos", "xquat", "frequency", "body_names"):
            if key not in data.files:
                raise MotionFormatError(path, f"LocoMuJoCo trajectory lacks {key!r}; it needs body "
                                        "positions (xpos), rotations (xquat), body_names and frequency")
        try:
            names = [str(n) for n in data["body_names"]]
        except ValueError:
            raise MotionFormatError(path, "body_names is stored as a pickled object array; "
                                    "re-save it as strings") from None
        xpos = np.asarray(data["xpos"], dtype=np.float64)
        xquat = np.asarray(data["xquat"], dtype=np.float64)
        fps = float(np.asarray(data["frequency"]).reshape(-1)[0])
        splits = np.asarray(data["split_points"]).astype(int) if "split_points" in data.files else None
    if xpos.ndim != 3 or xpos.shape[1] != len(names) or xquat.shape[:2] != xpos.shape[:2]:
        raise MotionFormatError(path, f"xpos {xpos.shape} / xquat {xquat.shape} do not match "
                                f"{len(names)} body names")
    keep = [i for i, n in enumerate(names) if n != "world"]
    names = [names[i] for i in keep]
    xpos, xquat = xpos[:, keep], xquat[:, keep]
    if splits is None or splits.size < 2:
        splits = np.array([0, xpos.shape[0]])
    clips = []
    for c, (a, b) in enumerate(itertools.pairwise(splits)):
        rot = quat_normalize(xquat[a:b]) if np.isfinite(xquat[a:b]).all() else xquat[a:b]
        motion = HumanMotion(names=list(names), positions=xpos[a:b], rotations=rot, fps=fps,
                             source=str(path), name=f"{path.stem}_{c}" if len(splits) > 2 else path.stem,
                             first_frame=int(a),
                             source_convention={"format": "locomujoco", "quat_order": "wxyz", "up_axis": "z"})
        clips.append(_add_robot_points(motion.validate(), robot))  # a NaN or empty split is refused
    return clips


@reads_motion_file
def read_beyondmimic(path: str | Path, *, robot: str = "g1_29dof", body_names: list[str] | None = None,
                     body_order: str = "auto", quat_order: str = "auto") -> HumanMotion:
    """A BeyondMimic motion npz (``fps``, ``body_pos_w``, ``body_quat_w``; no names inside).

    ``body_order`` is ``"isaaclab"`` (breadth-first, what Isaac Lab writes), ``"mujoco"``
    (depth-first, what mjlab writes) or ``"auto"``; ``quat_order`` is ``"wxyz"``, ``"xyzw"``
    (Isaac Lab >= 3.0) or ``"auto"``. Whatever is chosen is checked against the robot's tree.
    """
    from mimicdata.motion.kinematics import load_robot_model

    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        for key in ("fps", "body_pos_w", "body_quat_w"):
            if key not in data.files:
                raise MotionFormatError(path, f"BeyondMimic motion lacks {key!r} (found {data.files})")
        fps = float(np.asarray(data["fps"]).reshape(-1)[0])
        pos = np.asarray(data["body_pos_w"], dtype=np.float64)
        quat = np.asarray(data["body_quat_w"], dtype=np.float64)
    model = load_robot_model(robot)
    if pos.ndim != 3 or quat.shape[:2] != pos.shape[:2]:
        raise MotionFormatError(path, f"body_pos_w {pos.shape} and body_quat_w {quat.shape} disagree")
    _check_finite_rows(path, pos, "body_pos_w")
    _check_finite_rows(path, quat, "body_quat_w")
    orders = {"mujoco": list(model.body_names), "isaaclab": breadth_first_bodies(model)}
    if body_names is not None:
        orders = {"given": list(body_names)}
        body_order = "given"
    if pos.shape[1] != len(next(iter(orders.values()))):
        raise MotionFormatError(path, f"{pos.shape[1]} bodies, robot {robot!r} has {len(model.body_names)}; "
                                "pass body_names for a different body set")
    body_choices = list(orders) if body_order == "auto" else [body_order]
    quat_choices = ["wxyz", "xyzw"] if quat_order == "auto" else [quat_order]
    scores = {}
    for bo in body_choices:
        if bo not in orders:
            raise MotionFormatError(path, f"body_order must be 'auto', 'mujoco' or 'isaaclab', got {bo!r}")
        for qo in quat_choices:
            if qo not in ("wxyz", "xyzw"):
                raise MotionFormatError(path, f"quat_order must be 'auto', 'wxyz' or 'xyzw', got {qo!r}")
            q = quat if qo == "wxyz" else quat[..., [3, 0, 1, 2]]
            scores[(bo, qo)] = kinematic_mismatch(model, orders[bo], pos, q)
    (bo, qo), err = min(scores.items(), key=lambda kv: kv[1])
    if err > _MISMATCH_TOL_M:
        raise MotionFormatError(path, f"bodies do not follow robot {robot!r}'s kinematic tree in order "
                                f"{body_choices} with quaternions {quat_choices} (child offsets off by "
                                f"{err * 100:.1f} cm); check body_order/quat_order or pass body_names")
    q = quat if qo == "wxyz" else quat[..., [3, 0, 1, 2]]
    motion = HumanMotion(names=orders[bo], positions=pos, rotations=quat_normalize(q), fps=fps,
                         source=str(path), name=path.stem,
                         source_convention={"format": "beyondmimic", "body_order": bo, "quat_order": qo,
                                            "up_axis": "z", "kinematic_mismatch_m": err})
    return _add_robot_points(motion.validate(), robot)


@reads_motion_file
def read_unitree_csv(path: str | Path, *, fps: float = 30.0, robot: str = "g1_29dof") -> HumanMotion:
    """CSV rows ``x, y, z, qx, qy, qz, qw, <joint angles in Unitree SDK order>`` (rad).

    This is the input of BeyondMimic's ``csv_to_npz.py``. The quaternion is converted from xyzw
    to wxyz and the joints from SDK order to the model's order by name; then the rows are checked:
    unit quaternions, an upright pelvis (a wrong quaternion order turns it upside down) and joint
    angles inside their limits (degrees or a shifted order would not be).
    """
    from mimicdata.motion.kinematics import load_robot_model

    path = Path(path)
    model = load_robot_model(robot)
    sdk_order = [j for j in UNITREE_G1_29DOF_ORDER if j in model.joint_names]
    if robot == "g1_23dof":
        from mimicdata.schema import load_robot

        sdk_order = list(load_robot(robot).joint_names)
    rows = _read_csv_rows(path, 7 + len(sdk_order))
    quat = rows[:, [6, 3, 4, 5]]
    norms = np.linalg.norm(quat, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1) > 1e-2)
    if bad.size:
        raise MotionFormatError(path, f"root quaternion has norm {norms[bad[0]]:.3f}, not 1 (columns 4-7 "
                                "must be qx, qy, qz, qw)", line=int(bad[0]) + 1, frame=int(bad[0]))
    qpos = np.zeros((rows.shape[0], model.nq))
    qpos[:, :3] = rows[:, :3]
    qpos[:, 3:7] = quat / norms[:, None]
    cols = {name: 7 + model.joint_names.index(name) for name in model.joint_names}
    for k, name in enumerate(sdk_order):
        qpos[:, cols[name]] = rows[:, 7 + k]
    upright = quat_to_mat(qpos[:, 3:7])[:, 2, 2] > 0
    if upright.mean() < 0.5:
        raise MotionFormatError(path, f"the pelvis is upside down in {100 * (1 - upright.mean()):.0f}% of "
                                "frames: the quaternion columns look like w, x, y, z, not x, y, z, w")
    lo, hi = model.joint_range[:, 0], model.joint_range[:, 1]
    joints = qpos[:, 7:]
    outside = (joints < lo - 0.1) | (joints > hi + 0.1)
    if outside.mean() > 0.01:
        frame, j = np.argwhere(outside)[0]
        raise MotionFormatError(path, f"{100 * outside.mean():.1f}% of joint angles are outside the limits "
                                f"(first: {model.joint_names[j]} = {joints[frame, j]:.2f}); expected radians "
                                "in Unitree SDK order", line=int(frame) + 1, frame=int(frame))
    xpos, xmat = model.fk(qpos)
    from mimicdata.motion.rotations import mat_to_quat

    motion = HumanMotion(names=list(model.body_names), positions=xpos, rotations=mat_to_quat(xmat),
                         fps=float(fps), source=str(path), name=path.stem,
                         source_convention={"format": "unitree_csv", "quat_order": "xyzw",
                                            "joint_order": "unitree_sdk", "up_axis": "z"})
    return _add_robot_points(motion.validate(), robot)


def _read_csv_rows(path: Path, ncols: int) -> np.ndarray:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise MotionFormatError(path, "file not found") from None
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.replace(";", ",").split(",")
        if len(parts) != ncols:
            raise MotionFormatError(path, f"{len(parts)} columns, expected {ncols} (3 root position, "
                                    f"4 quaternion xyzw, {ncols - 7} joint angles)", line=n, frame=len(rows))
        try:
            values = [float(p) for p in parts]
        except ValueError:
            if not rows:  # a header line
                continue
            raise MotionFormatError(path, "non-numeric value", line=n, frame=len(rows)) from None
        if not np.isfinite(values).all():
            raise MotionFormatError(path, "non-finite value (NaN/inf)", line=n, frame=len(rows))
        rows.append(values)
    if len(rows) < 2:
        raise MotionFormatError(path, f"{len(rows)} frame(s); at least 2 are needed")
    return np.array(rows)


def _check_finite_rows(path: Path, values: np.ndarray, key: str) -> None:
    bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
    if bad.any():
        raise MotionFormatError(path, f"non-finite value in {key}", frame=int(np.argmax(bad)))


def breadth_first_bodies(model: RobotModel) -> list[str]:
    """Body names in breadth-first order (PhysX / Isaac Lab), children in model order."""
    children: dict[int, list[int]] = {}
    for b, p in enumerate(model.parent):
        children.setdefault(int(p), []).append(b)
    order, queue = [], deque(children.get(-1, []))
    while queue:
        b = queue.popleft()
        order.append(model.body_names[b])
        queue.extend(children.get(b, []))
    return order


def kinematic_mismatch(model: RobotModel, names: list[str], pos: np.ndarray, quat_wxyz: np.ndarray) -> float:
    """Mean distance (m) between each child's offset in its parent frame and the model's offset.

    Zero (to float precision) when `names` and the quaternion order match the model; a wrong
    body order or quaternion order moves children by centimetres.
    """
    index = {n: i for i, n in enumerate(names)}
    mats = quat_to_mat(quat_wxyz)
    errs = []
    for b, name in enumerate(model.body_names):
        p = int(model.parent[b])
        j = int(model.body_joint[b])
        if p < 0 or name not in index or model.body_names[p] not in index:
            continue
        if j >= 0 and np.any(model.joint_anchor[j]):
            continue  # the child origin moves with the joint; its offset is not constant
        ci, pi = index[name], index[model.body_names[p]]
        local = np.einsum("tji,tj->ti", mats[:, pi], pos[:, ci] - pos[:, pi])
        errs.append(np.linalg.norm(local - model.body_pos[b], axis=-1).mean())
    if not errs:
        raise ValueError("no parent/child body pairs in common with the robot model")
    return float(np.mean(errs))


def _add_robot_points(motion: HumanMotion, robot: str | None) -> HumanMotion:
    """Append the robot's toe points (which are not bodies) so the robot rig can be mapped."""
    from mimicdata.motion.robot_keypoints import ROBOT_KEYPOINTS

    table = ROBOT_KEYPOINTS.get(robot or "g1_29dof")
    if table is None or motion.rotations is None:
        return motion
    extra_names, extra_pos, extra_rot = [], [], []
    for key in ("left_toe", "right_toe"):
        body, offset = table.points[key]
        if body not in motion.names or key in motion.names:
            continue
        b = motion.index(body)
        extra_names.append(key)
        extra_pos.append(motion.positions[:, b] + np.einsum("tij,j->ti", quat_to_mat(motion.rotations[:, b]),
                                                            np.asarray(offset)))
        extra_rot.append(motion.rotations[:, b])
    if not extra_names:
        return motion
    motion.names = motion.names + extra_names
    motion.positions = np.concatenate([motion.positions, np.stack(extra_pos, axis=1)], axis=1)
    motion.rotations = np.concatenate([motion.rotations, np.stack(extra_rot, axis=1)], axis=1)
    return motion
