"""Per-clip inverse kinematics on the robot model: all frames solved together, vectorised.

Each frame minimises, over the floating base and the active joints,

    sum_k w_k |p_k(q) - t_k|^2                       key-point positions (scaled human)
  + sum_s v_s |u_s(q) - u*_s|^2                      segment directions (thigh, shin, foot, arms,
                                                     hip and shoulder lines): the pose's orientation
  + r^2 |q_j - q_rest|^2 + m^2 |q_j - (q_{t-1} + q_{t+1})/2|^2     rest-pose and temporal terms

with Levenberg-Marquardt steps taken for every frame at once (batched normal equations), the
joint limits enforced by projection after each step. Directions make the pose match even where
the robot's proportions differ from the person's; positions keep the feet where the person's
feet are. The temporal term uses the neighbours from the previous iteration (a Jacobi sweep),
which keeps frames independent inside one iteration and therefore vectorisable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mimicdata.motion.kinematics import RobotModel
from mimicdata.motion.mapping import KEYPOINTS
from mimicdata.motion.robot_keypoints import RobotKeypoints
from mimicdata.motion.rotations import frame_from_vectors, mat_to_quat

K = {name: i for i, name in enumerate(KEYPOINTS)}


def _default_position_weights() -> tuple[tuple[str, float], ...]:
    w = {"pelvis": 2.0}
    for side in ("left", "right"):
        w |= {f"{side}_hip": 0.5, f"{side}_knee": 1.0, f"{side}_ankle": 2.0, f"{side}_toe": 2.0,
              f"{side}_shoulder": 0.5, f"{side}_elbow": 0.3, f"{side}_wrist": 0.5}
    return tuple(w.items())


def _default_segments() -> tuple[tuple[str, str, float], ...]:
    segs = [("right_hip", "left_hip", 0.5), ("right_shoulder", "left_shoulder", 0.5),
            ("pelvis", "left_shoulder", 0.5), ("pelvis", "right_shoulder", 0.5)]
    for side in ("left", "right"):
        segs += [(f"{side}_hip", f"{side}_knee", 0.3), (f"{side}_knee", f"{side}_ankle", 0.3),
                 (f"{side}_ankle", f"{side}_toe", 0.3), (f"{side}_shoulder", f"{side}_elbow", 0.3),
                 (f"{side}_elbow", f"{side}_wrist", 0.3)]
    return tuple(segs)


@dataclass(frozen=True)
class IKConfig:
    """Weights and solver settings (positions in metres, directions as unit-vector differences).

    Tuples rather than dicts so that a config is hashable (problems are cached per config).
    """

    position_weights: tuple[tuple[str, float], ...] = field(default_factory=_default_position_weights)
    segments: tuple[tuple[str, str, float], ...] = field(default_factory=_default_segments)
    rest_weight: float = 0.02
    # Stronger pull to the rest angle for joints the key points barely determine: with only hips and
    # shoulders seen, pelvis pitch and waist pitch can trade off freely; the pelvis should take it.
    joint_rest_weights: tuple[tuple[str, float], ...] = (
        ("waist_yaw_joint", 0.1), ("waist_roll_joint", 0.1), ("waist_pitch_joint", 0.1))
    smooth_weight: float = 0.3
    iterations: int = 15
    tolerance: float = 1e-4  # stop when no frame's step is larger (rad or m)
    chunk_frames: int = 1024  # frames per batched solve (bounds memory: ~0.5 MB per frame)


@dataclass
class IKProblem:
    """A robot, its key points and which joints move; built once per clip."""

    model: RobotModel
    keypoints: RobotKeypoints
    active: np.ndarray  # indices into model.joint_names that the solver may move
    rest: np.ndarray  # (nj,) joint angles used for fixed joints and as the rest pose
    config: IKConfig = field(default_factory=IKConfig)

    def __post_init__(self) -> None:
        index = {n: i for i, n in enumerate(self.model.body_names)}
        self.bodies, self.offsets = self.keypoints.bodies_offsets(index)
        weights = dict(self.config.position_weights)
        unknown = sorted(set(weights) - set(KEYPOINTS))
        if unknown:
            raise ValueError(f"position weights for unknown key points {unknown}; key points: {KEYPOINTS}")
        self.w_pos = np.array([weights.get(k, 0.0) for k in KEYPOINTS])
        self.seg_a = np.array([K[a] for a, _, _ in self.config.segments])
        self.seg_b = np.array([K[b] for _, b, _ in self.config.segments])
        self.w_seg = np.array([w for _, _, w in self.config.segments])
        per_joint = dict(self.config.joint_rest_weights)
        names = [self.model.joint_names[j] for j in self.active]
        # Squared rest weight per active joint (joints not in this robot are simply not active).
        self.w_rest2 = np.array([per_joint.get(n, self.config.rest_weight) ** 2 for n in names])

    def keypoint_positions(self, qpos: np.ndarray) -> np.ndarray:
        """Robot key points (T, K, 3) for qpos (T, nq)."""
        xpos, xmat = self.model.fk(qpos)
        return self.model.points(xpos, xmat, self.bodies, self.offsets)

    def rest_qpos(self, num: int) -> np.ndarray:
        """qpos (num, nq) of the rest pose at the origin, upright."""
        q = np.zeros((num, self.model.nq))
        q[:, 3] = 1.0
        q[:, 7:] = self.rest
        return q

    def initial_guess(self, targets: np.ndarray) -> np.ndarray:
        """Rest pose with the pelvis placed and turned like the target's hips."""
        q = self.rest_qpos(targets.shape[0])
        lateral = targets[:, K["left_hip"]] - targets[:, K["right_hip"]]
        lateral[:, 2] = 0.0
        rot = frame_from_vectors(lateral, np.array([0.0, 0.0, 1.0]))
        q[:, 3:7] = mat_to_quat(rot)
        q[:, :3] = targets[:, K["pelvis"]] - rot @ self.offsets[K["pelvis"]]
        return q

    def solve(self, targets: np.ndarray, init: np.ndarray | None = None, weights: np.ndarray | None = None,
              iterations: int | None = None) -> tuple[np.ndarray, int]:
        """Joint-space solution qpos (T, nq) for key-point targets (T, K, 3); and iterations used.

        `weights` (T, K) multiplies the position weights per frame (e.g. planted feet);
        `iterations` overrides the configured maximum (a warm start needs fewer).
        """
        q = self.initial_guess(targets) if init is None else init.copy()
        w_pos = self.w_pos[None] * (np.ones(targets.shape[:2]) if weights is None else weights)
        lam = np.full(targets.shape[0], 1e-2)
        cfg = self.config
        used = 0
        limit = cfg.iterations if iterations is None else iterations
        while used < limit:
            used += 1
            neighbours = _neighbour_mean(q[:, 7:])
            max_step = 0.0
            for a in range(0, targets.shape[0], cfg.chunk_frames):
                sl = slice(a, a + cfg.chunk_frames)
                q[sl], lam[sl], step = self._lm_step(q[sl], targets[sl], w_pos[sl], neighbours[sl], lam[sl])
                max_step = max(max_step, step)
            if max_step < cfg.tolerance:
                break
        return q, used

    def _cost(self, qpos: np.ndarray, targets: np.ndarray, w_pos: np.ndarray,
              neighbours: np.ndarray) -> np.ndarray:
        pts = self.keypoint_positions(qpos)
        r_pos, r_dir = self._residuals(pts, targets, w_pos)
        joints = qpos[:, 7 + self.active]
        reg = np.sum(self.w_rest2 * (joints - self.rest[self.active]) ** 2, axis=1)
        smooth = self.config.smooth_weight**2 * np.sum((joints - neighbours[:, self.active]) ** 2, axis=1)
        return np.sum(r_pos**2, axis=(1, 2)) + np.sum(r_dir**2, axis=(1, 2)) + reg + smooth

    def _residuals(self, pts: np.ndarray, targets: np.ndarray,
                   w_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r_pos = w_pos[:, :, None] * (pts - targets)
        u = _unit(pts[:, self.seg_b] - pts[:, self.seg_a])
        u_t = _unit(targets[:, self.seg_b] - targets[:, self.seg_a])
        r_dir = self.w_seg[None, :, None] * (u - u_t)
        return r_pos, r_dir

    def _lm_step(self, q: np.ndarray, targets: np.ndarray, w_pos: np.ndarray, neighbours: np.ndarray,
                 lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        model = self.model
        xpos, xmat = model.fk(q)
        pts = model.points(xpos, xmat, self.bodies, self.offsets)
        jac = model.point_jacobians(q, xpos, xmat, self.bodies, self.offsets, self.active)  # (T,K,3,n)
        r_pos, r_dir = self._residuals(pts, targets, w_pos)
        # Direction Jacobian: d(normalize(d))/dq = (I - u u^T) / |d| (J_b - J_a).
        diff = pts[:, self.seg_b] - pts[:, self.seg_a]
        length = np.linalg.norm(diff, axis=-1, keepdims=True)
        u = diff / np.maximum(length, 1e-9)
        proj = (np.eye(3) - u[..., :, None] * u[..., None, :]) / np.maximum(length, 1e-9)[..., None]
        j_dir = proj @ (jac[:, self.seg_b] - jac[:, self.seg_a])
        num, n = q.shape[0], jac.shape[-1]
        rows_j = np.concatenate([(w_pos[:, :, None, None] * jac).reshape(num, -1, n),
                                 (self.w_seg[None, :, None, None] * j_dir).reshape(num, -1, n)], axis=1)
        rows_r = np.concatenate([r_pos.reshape(num, -1), r_dir.reshape(num, -1)], axis=1)
        rows_jt = rows_j.transpose(0, 2, 1)
        hess = rows_jt @ rows_j  # batched BLAS; einsum here is ~10x slower
        grad = (rows_jt @ rows_r[..., None])[..., 0]
        joints = q[:, 7 + self.active]
        w_r, w_s = self.w_rest2, self.config.smooth_weight**2
        idx = 6 + np.arange(len(self.active))
        hess[:, idx, idx] += w_r + w_s
        grad[:, 6:] += w_r * (joints - self.rest[self.active]) + w_s * (joints - neighbours[:, self.active])
        cost = (np.sum(rows_r**2, axis=1) + np.sum(w_r * (joints - self.rest[self.active]) ** 2, axis=1)
                + w_s * np.sum((joints - neighbours[:, self.active]) ** 2, axis=1))
        damp = lam[:, None] * (np.einsum("tii->ti", hess) + 1e-6)
        hess[:, np.arange(n), np.arange(n)] += damp
        delta = -np.linalg.solve(hess, grad[..., None])[..., 0]
        q_new = model.integrate(q, delta, self.active)
        new_cost = self._cost(q_new, targets, w_pos, neighbours)
        better = new_cost < cost
        q_out = np.where(better[:, None], q_new, q)
        lam = np.where(better, np.maximum(lam / 3, 1e-7), np.minimum(lam * 4, 1e4))
        # Rejected steps count too: a frame whose step was refused has not converged yet.
        step = float(np.abs(delta).max()) if len(delta) else 0.0
        return q_out, lam, step


def _neighbour_mean(x: np.ndarray) -> np.ndarray:
    """Mean of the previous and next frame (the frame itself at the ends counts as its neighbour)."""
    if x.shape[0] < 2:
        return x.copy()
    padded = np.concatenate([x[:1], x, x[-1:]], axis=0)
    return 0.5 * (padded[:-2] + padded[2:])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
