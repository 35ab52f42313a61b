"""Per-clip quality report: key-point error, foot penetration and skating, limits, velocity spikes.

Stored in the ``clips`` stream of an ``expert_trajectory`` store (one row per clip) and shown by
``mimicdata inspect`` through :func:`quality_table`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mimicdata.motion.mapping import KEYPOINTS

LEG_KEYPOINTS = tuple(k for k in KEYPOINTS if k.split("_", 1)[-1] in ("hip", "knee", "ankle", "toe"))
# Columns of the clips stream that hold the report, with a short header for tables.
ROW_FIELDS = {"kp_err_mean_cm": "kp mean cm", "kp_err_max_cm": "kp max cm",
              "penetration_max_cm": "penetr. cm", "skating_cm_s": "skate cm/s",
              "limit_violations": "limit viol.", "velocity_spikes": "vel. spikes"}


@dataclass(frozen=True)
class ClipQuality:
    """Quality numbers of one retargeted clip (lengths in cm)."""

    kp_err_mean_cm: float
    kp_err_max_cm: float
    kp_err_leg_mean_cm: float
    penetration_max_cm: float
    skating_cm_s: float
    limit_violations: int
    velocity_spikes: int
    per_keypoint_mean_cm: dict[str, float]

    def row(self) -> dict[str, Any]:
        """The values that go into the clips stream."""
        return {k: getattr(self, k) for k in ROW_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """All numbers, including the per-key-point errors."""
        return asdict(self)

    def problems(self, max_penetration_cm: float = 1.0, max_leg_error_cm: float = 5.0) -> list[str]:
        """Human-readable reasons this clip misses the bounds (empty when it meets them)."""
        out = []
        if self.penetration_max_cm > max_penetration_cm:
            out.append(f"foot penetration {self.penetration_max_cm:.2f} cm > {max_penetration_cm} cm")
        if self.kp_err_leg_mean_cm > max_leg_error_cm:
            out.append(f"leg key-point error {self.kp_err_leg_mean_cm:.2f} cm > {max_leg_error_cm} cm")
        if self.limit_violations:
            out.append(f"{self.limit_violations} joint-limit violations")
        return out


def keypoint_errors(robot_points: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Distances (cm) between robot key points and scaled human key points, (T, K, 3) each."""
    err = np.linalg.norm(robot_points - targets, axis=-1) * 100.0
    legs = [KEYPOINTS.index(k) for k in LEG_KEYPOINTS]
    return {"mean": float(err.mean()), "max": float(err.max()), "leg_mean": float(err[:, legs].mean()),
            "per_keypoint": {k: round(float(v), 3) for k, v in zip(KEYPOINTS, err.mean(axis=0), strict=True)}}


def count_limit_violations(joints: np.ndarray, limits: np.ndarray, tol: float = 1e-6) -> int:
    """Number of (frame, joint) samples outside [lo, hi]."""
    return int(((joints < limits[:, 0] - tol) | (joints > limits[:, 1] + tol)).sum())


def count_velocity_spikes(joint_vel: np.ndarray, velocity_limits: np.ndarray) -> int:
    """Number of (frame, joint) velocity samples above the joint's velocity limit."""
    return int((np.abs(joint_vel) > velocity_limits).sum())


def quality_table(clips: dict[str, np.ndarray]) -> str:
    """A text table of the quality columns of a clips stream (column name -> values)."""
    n = len(clips.get("start", []))
    names = clips.get("name", np.array([""] * n))
    present = [k for k in ROW_FIELDS if k in clips]
    header = ["clip", "name", "frames", *(ROW_FIELDS[k] for k in present)]
    rows = []
    for i in range(n):
        cells = [str(i), str(names[i])[:28], str(int(clips["end"][i] - clips["start"][i]))]
        for k in present:
            v = clips[k][i]
            cells.append(f"{int(v)}" if np.issubdtype(np.asarray(v).dtype, np.integer) else f"{float(v):.2f}")
        rows.append(cells)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
