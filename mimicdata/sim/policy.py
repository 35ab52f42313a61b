"""A scripted stand-in for a trained BeyondMimic tracking policy.

A trained policy outputs raw actions whose scaled value is an offset from the default pose. It
learns to aim past the reference where gravity or contacts hold a joint back. This script does the
same with a proportional-integral correction of the tracking error on top of the reference, plus
Gaussian noise so the logged actions are not perfectly smooth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mimicdata.errors import ConfigError


@dataclass
class ScriptedTrackingPolicy:
    """``raw = (ref - default)/scale + (P*err + I*sum(err))/scale + noise``, err = ref - measured.

    Args:
        default_pos: default joint positions (rad), the zero of the action.
        action_scale: rad per unit of raw action, per joint.
        feedback_gain: proportional gain on the tracking error. The G1's 10 Hz PD gains are too
            soft to hold the upper body against gravity on their own (the torso, ~14 kg, is an
            inverted pendulum on the waist); a trained policy stiffens such joints the same way.
        integral_gain: per-step gain of the integral term (removes steady gravity sag).
        integral_limit: bound of the integral term in rad (anti-windup when a joint is blocked).
        noise_std: standard deviation of the Gaussian noise on raw actions.
        seed: seeds the noise.
    """

    default_pos: np.ndarray
    action_scale: np.ndarray
    feedback_gain: float = 1.0
    integral_gain: float = 0.05
    integral_limit: float = 0.25
    noise_std: float = 0.02
    seed: int = 0
    _integral: np.ndarray = field(init=False, repr=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.default_pos = np.asarray(self.default_pos, dtype=np.float64)
        self.action_scale = np.asarray(self.action_scale, dtype=np.float64)
        if self.default_pos.shape != self.action_scale.shape or self.default_pos.ndim != 1:
            raise ConfigError(
                f"default_pos {self.default_pos.shape} and action_scale {self.action_scale.shape} "
                "must be 1-D arrays of the same length"
            )
        if np.any(self.action_scale <= 0):
            raise ConfigError("action_scale must be positive for every joint")
        for name in ("feedback_gain", "integral_gain", "integral_limit", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        self.reset()

    def reset(self) -> None:
        """Clear the integral term and reseed the noise."""
        self._integral = np.zeros_like(self.default_pos)
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, ref_pos: np.ndarray, joint_pos: np.ndarray) -> np.ndarray:
        """Raw action (float64) for reference ``ref_pos`` and measured ``joint_pos`` (rad)."""
        err = ref_pos - joint_pos
        self._integral += self.integral_gain * err
        np.clip(self._integral, -self.integral_limit, self.integral_limit, out=self._integral)
        target_offset = ref_pos - self.default_pos + self.feedback_gain * err + self._integral
        noise = self.noise_std * self._rng.standard_normal(err.shape)
        return target_offset / self.action_scale + noise
