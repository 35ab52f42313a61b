"""G1 actuator configuration for training, computed from the motor table in :mod:`mimicdata.robots.g1`.

The motor table (armature, effort and velocity limits per motor type, motors per joint) and the gain
formulas (:func:`mimicdata.robots.g1.pd_gains`, :func:`~mimicdata.robots.g1.action_scale`) have one
source, ``mimicdata.robots.g1``; this module adds per-joint overrides and checks, with the natural
frequency, damping ratio and action-scale factor as parameters (a task may change them)::

    w = 2*pi*f,  K = armature * w**2,  D = 2 * zeta * armature * w,  action_scale = s * effort / K

With the defaults (10 Hz, zeta 2, s 0.25) the result equals ``mimicdata.robots.g1.actuator_gains``.
The table in design note 001 gives every motor K = 99.098 and D = 6.309, the values of the large
7520_22 hip/knee motor; that is 7x too stiff for a 5020 arm motor (14.25) and makes the small
joints ring. :func:`check_gain_table` reports such a table joint by joint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mimicdata.errors import ConfigError, ValidationError
from mimicdata.robots import g1

if TYPE_CHECKING:
    import torch

__all__ = ["G1ActuatorConfig", "check_gain_table", "g1_actuator_config"]

_ARRAYS = ("armature", "stiffness", "damping", "effort_limit", "velocity_limit", "action_scale",
           "default_joint_pos")


@dataclass(frozen=True)
class G1ActuatorConfig:
    """Per-joint actuator constants of a G1 variant, float64 arrays in the robot's joint order."""

    robot: str
    joint_names: tuple[str, ...]
    motors: tuple[str, ...]
    motor_counts: np.ndarray
    armature: np.ndarray
    stiffness: np.ndarray
    damping: np.ndarray
    effort_limit: np.ndarray
    velocity_limit: np.ndarray
    action_scale: np.ndarray
    default_joint_pos: np.ndarray
    natural_frequency_hz: float = g1.NATURAL_FREQ_HZ
    damping_ratio: float = g1.DAMPING_RATIO
    action_scale_factor: float = g1.ACTION_SCALE_FACTOR
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def as_torch(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The arrays as torch tensors (float32 unless ``dtype`` is given)."""
        import torch

        dtype = dtype or torch.float32
        return {name: torch.as_tensor(getattr(self, name), dtype=dtype, device=device) for name in _ARRAYS}

    def pd_torque(self, action: np.ndarray, joint_pos: np.ndarray, joint_vel: np.ndarray) -> np.ndarray:
        """Joint torques of the PD servo for raw policy ``action`` (..., joints), clipped to the limits.

        target = default_joint_pos + action_scale * action;  tau = K (target - q) - D qdot.
        """
        action, joint_pos, joint_vel = (np.asarray(a, dtype=np.float64) for a in (action, joint_pos, joint_vel))
        for name, arr in (("action", action), ("joint_pos", joint_pos), ("joint_vel", joint_vel)):
            if arr.shape[-1:] != (self.num_joints,):
                raise ValidationError(f"pd_torque: {name} has shape {arr.shape}, last axis must be {self.num_joints}")
        target = self.default_joint_pos + self.action_scale * action
        torque = self.stiffness * (target - joint_pos) - self.damping * joint_vel
        return np.clip(torque, -self.effort_limit, self.effort_limit)

    def by_motor(self) -> dict[str, dict[str, float]]:
        """Constants of a joint driven by one motor of each type (the table a reader expects)."""
        table: dict[str, dict[str, float]] = {}
        for i, (motor, count) in enumerate(zip(self.motors, self.motor_counts.tolist(), strict=True)):
            if count == 1 and motor not in table and not self.overrides.get(self.joint_names[i]):
                table[motor] = {name: float(getattr(self, name)[i]) for name in _ARRAYS if name != "default_joint_pos"}
        return table


def g1_actuator_config(
    robot: str = "g1_29dof",
    *,
    natural_frequency_hz: float = g1.NATURAL_FREQ_HZ,
    damping_ratio: float = g1.DAMPING_RATIO,
    action_scale_factor: float = g1.ACTION_SCALE_FACTOR,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> G1ActuatorConfig:
    """Actuator constants of ``robot`` ("g1_29dof" or "g1_23dof") from the G1 motor table.

    ``overrides`` maps joint name -> {"stiffness": K, "damping": D} for joints a task tunes by hand;
    their action scale follows the new K. Raises ValueError naming the bad parameter or joint.
    """
    for name, value in (("natural_frequency_hz", natural_frequency_hz), ("damping_ratio", damping_ratio),
                        ("action_scale_factor", action_scale_factor)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"G1 actuators: {name} must be a positive finite number, got {value!r}")
    joints = g1.robot_joints(robot)
    gains = g1.actuator_gains(robot, natural_frequency_hz=natural_frequency_hz, damping_ratio=damping_ratio,
                              action_scale_factor=action_scale_factor)
    stiffness, damping = gains["stiffness"], gains["damping"]
    clean: dict[str, dict[str, float]] = {}
    for joint, values in (overrides or {}).items():
        if joint not in joints:
            raise ConfigError(f"G1 actuators: override for unknown joint {joint!r} (robot {robot})")
        unknown = set(values) - {"stiffness", "damping"}
        if unknown:
            raise ConfigError(f"G1 actuators: override of {joint!r} has unknown keys {sorted(unknown)}")
        i = joints.index(joint)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"G1 actuators: {joint}.{key} must be a positive finite number, got {value!r}")
            (stiffness if key == "stiffness" else damping)[i] = float(value)
        clean[joint] = {k: float(v) for k, v in values.items()}
    return G1ActuatorConfig(
        robot=robot, joint_names=tuple(joints), motors=tuple(g1.JOINT_MOTORS[j][0] for j in joints),
        motor_counts=np.array([g1.JOINT_MOTORS[j][1] for j in joints]), armature=gains["armature"],
        stiffness=stiffness, damping=damping, effort_limit=gains["effort_limit"],
        velocity_limit=gains["velocity_limit"],
        # overridden joints: the action scale follows their new K
        action_scale=g1.action_scale(gains["effort_limit"], stiffness, action_scale_factor),
        default_joint_pos=g1.default_joint_pos(robot), natural_frequency_hz=float(natural_frequency_hz),
        damping_ratio=float(damping_ratio), action_scale_factor=float(action_scale_factor), overrides=clean,
    )


def check_gain_table(
    table: Mapping[str, Mapping[str, float]], config: G1ActuatorConfig | None = None, rel_tol: float = 1e-3
) -> list[str]:
    """Compare a per-motor-type table ({"5020": {"stiffness": ..., "damping": ...}, ...}) with the formulas.

    Returns one line per value that differs by more than ``rel_tol`` (empty list: the table agrees).
    Motor types not in the G1 table are reported too.
    """
    config = config or g1_actuator_config()
    expected = config.by_motor()
    problems = []
    for motor, values in table.items():
        if motor not in expected:
            problems.append(f"{motor}: not a G1 motor type (known: {', '.join(expected)})")
            continue
        for key, value in values.items():
            if key not in expected[motor]:
                continue
            want = expected[motor][key]
            if not math.isclose(float(value), want, rel_tol=rel_tol):
                problems.append(f"{motor}.{key}: table has {float(value):.6g}, formula gives {want:.6g}")
    return problems
