"""A simulated G1 deployment of the BeyondMimic policy interface (C MuJoCo, no GPU).

Each control step (50 Hz by default: physics dt 0.005 s, decimation 4) does what a deployed
BeyondMimic controller does and returns the two records it logs (the seed's ``observations`` and
``actions`` dicts):

1. read the robot (joint encoders, pelvis gyro, torso orientation) and the reference motion;
2. build the policy input ``full_obs`` = [ref_joint_pos, ref_joint_vel, motion_anchor_ori(6),
   ang_vel(3), joint_pos - default_joint_pos, joint_vel, prev_action] (5*n + 9 values);
3. run the "policy" -> ``raw_action``; ``scaled_action = raw_action * action_scale``;
   PD targets ``default_joint_pos + scaled_action`` for the robot's joints, the default pose for
   motors the robot does not control (``target_pos_full`` covers all 29 motors);
4. step the physics ``decimation`` times with those targets.

The policy is scripted, not learned (:class:`~mimicdata.sim.policy.ScriptedTrackingPolicy`): the
reference pose plus a PI correction of the tracking error, plus Gaussian noise. An elastic band on
the pelvis (:mod:`mimicdata.sim.support`) stands in for the balance a trained policy would provide.

Nothing here sleeps: callers that want real time pace :meth:`G1DeployLoop.step` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mimicdata.errors import ConfigError
from mimicdata.robots.g1 import (
    ANCHOR_BODY,
    G1_29DOF_JOINTS,
    IMU_GYRO_SENSOR,
    ROOT_BODY,
    actuator_gains,
    build_g1_model,
    default_joint_pos,
    robot_joints,
)
from mimicdata.sim.policy import ScriptedTrackingPolicy
from mimicdata.sim.reference import ReferenceMotion
from mimicdata.sim.support import PelvisBand

Record = dict[str, Any]

OBSERVATION_KEYS = (
    "ref_joint_pos",
    "ref_joint_vel",
    "motion_anchor_ori",
    "ang_vel",
    "joint_pos",
    "joint_vel",
    "prev_action",
    "full_obs",
    "counter_step",
)
ACTION_KEYS = ("raw_action", "scaled_action", "target_pos_full", "kps", "kds", "counter_step")


def obs_dim(num_joints: int) -> int:
    """Length of ``full_obs`` for a robot with ``num_joints`` controlled joints (154 for 29)."""
    return 5 * num_joints + 9


def _anchor_ori_6d(robot_xmat: np.ndarray, ref_xmat: np.ndarray) -> np.ndarray:
    """BeyondMimic's motion_anchor_ori_b: first two columns of R_robot^T R_ref, row-major."""
    rel = robot_xmat.reshape(3, 3).T @ ref_xmat.reshape(3, 3)
    return rel[:, :2].reshape(-1)


class G1DeployLoop:
    """Step-by-step simulated G1 controller; :meth:`step` returns ``(observation, action)`` records.

    Args:
        robot: ``"g1_29dof"`` or ``"g1_23dof"`` (the policy controls 29 or 23 joints).
        seed: seeds the policy noise; the same seed gives the same records.
        rate_hz: control rate; ``1 / (rate_hz * sim_dt)`` must be a whole number of physics steps.
        sim_dt: physics time step in seconds.
        action_noise: standard deviation of the Gaussian noise on raw actions.
        feedback_gain: the policy's proportional correction of the tracking error (see
            :class:`~mimicdata.sim.policy.ScriptedTrackingPolicy`).

    Records (float32 vectors in the robot's joint order, n = 23 or 29 joints):

    - observation: ``ref_joint_pos``/``ref_joint_vel`` (n, rad, rad/s) of the reference at this
      step; ``motion_anchor_ori`` (6) = first two columns of R_torso^T R_ref_torso, row-major;
      ``ang_vel`` (3) pelvis IMU gyro in the body frame (rad/s); ``joint_pos`` (n, measured,
      absolute rad), ``joint_vel`` (n); ``prev_action`` (n, previous raw action, zeros at step 0);
      ``full_obs`` (5n + 9, the policy input, whose joint-position term is relative to the default
      pose as in BeyondMimic); ``counter_step`` (int).
    - action: ``raw_action`` (n), ``scaled_action`` (n, rad offset from default), ``target_pos_full``
      (29 motors, rad), ``kps``/``kds`` (n, the PD gains), ``counter_step`` (int).

    Attributes useful to callers: ``model``/``data`` (MuJoCo), ``joint_names``, ``decimation``,
    ``control_dt``, ``sim_time``, ``counter_step``, ``band`` (its ``last_force`` in N).
    """

    def __init__(
        self,
        robot: str = "g1_29dof",
        seed: int = 0,
        rate_hz: float = 50.0,
        sim_dt: float = 0.005,
        action_noise: float = 0.02,
        feedback_gain: float = 1.0,
    ) -> None:
        import mujoco

        joints = robot_joints(robot)
        if rate_hz <= 0 or sim_dt <= 0:
            raise ConfigError(f"rate_hz and sim_dt must be positive, got {rate_hz} and {sim_dt}")
        decimation = round(1.0 / (rate_hz * sim_dt))
        if decimation < 1 or abs(decimation * sim_dt * rate_hz - 1.0) > 1e-9:
            raise ConfigError(
                f"rate_hz={rate_hz} is not a whole number of sim_dt={sim_dt} s physics steps "
                f"(1/(rate_hz*sim_dt) = {1.0 / (rate_hz * sim_dt):.4g})"
            )
        self.robot = robot
        self.joint_names: tuple[str, ...] = joints
        self.rate_hz = float(rate_hz)
        self.decimation = decimation
        self.model = build_g1_model(robot, timestep=sim_dt)
        self.data = mujoco.MjData(self.model)
        self._ref_data = mujoco.MjData(self.model)  # kinematics of the reference pose only
        self.reference = ReferenceMotion(robot)

        m = self.model
        full_index = {j: i for i, j in enumerate(G1_29DOF_JOINTS)}
        self._joint_index = np.array([full_index[j] for j in self.joint_names])  # into the 29
        self._qpos_adr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.joint_names])
        self._qvel_adr = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.joint_names])
        self._ctrl_index = np.array([m.actuator(j).id for j in G1_29DOF_JOINTS])
        self._anchor_id = m.body(ANCHOR_BODY).id
        gyro = m.sensor(IMU_GYRO_SENSOR)
        self._gyro_adr = int(gyro.adr[0])
        gains = actuator_gains(robot)
        self.action_scale = gains["action_scale"]
        self.kps = gains["stiffness"].astype(np.float32)
        self.kds = gains["damping"].astype(np.float32)
        self.default_pos = default_joint_pos(robot)
        self.policy = ScriptedTrackingPolicy(
            self.default_pos,
            self.action_scale,
            feedback_gain=feedback_gain,
            noise_std=action_noise,
            seed=seed,
        )
        self._default_full = default_joint_pos("g1_29dof")
        self.band = PelvisBand(body_id=m.body(ROOT_BODY).id)
        self.reset()

    @property
    def obs_dim(self) -> int:
        """Length of ``full_obs``."""
        return obs_dim(len(self.joint_names))

    @property
    def control_dt(self) -> float:
        """Seconds between control steps."""
        return 1.0 / self.rate_hz

    @property
    def sim_time(self) -> float:
        """Simulated seconds since :meth:`reset`."""
        return float(self.data.time)

    def reset(self) -> None:
        """Back to the standing pose at rest, step counter 0, noise generator reseeded."""
        import mujoco

        mujoco.mj_resetDataKeyframe(self.model, self.data, self.model.key("stand").id)
        mujoco.mj_forward(self.model, self.data)
        self.counter_step = 0
        self.policy.reset()
        self._prev_action = np.zeros(len(self.joint_names))

    def _reference_anchor_xmat(self, ref_full: np.ndarray) -> np.ndarray:
        """Torso orientation of the reference pose with the pelvis level and facing +x."""
        import mujoco

        d = self._ref_data
        d.qpos[:7] = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
        d.qpos[7:] = ref_full
        mujoco.mj_kinematics(self.model, d)
        return d.xmat[self._anchor_id]

    def step(self) -> tuple[Record, Record]:
        """Run one control step; returns ``(observation, action)`` records for counter_step."""
        import mujoco

        m, d = self.model, self.data
        t = self.counter_step * self.control_dt
        ref_full, ref_vel_full = self.reference(t)
        ref_pos = ref_full[self._joint_index]
        ref_vel = ref_vel_full[self._joint_index]
        joint_pos = d.qpos[self._qpos_adr].copy()
        joint_vel = d.qvel[self._qvel_adr].copy()
        ang_vel = d.sensordata[self._gyro_adr : self._gyro_adr + 3].copy()
        anchor = _anchor_ori_6d(d.xmat[self._anchor_id], self._reference_anchor_xmat(ref_full))
        full_obs = np.concatenate(
            [ref_pos, ref_vel, anchor, ang_vel, joint_pos - self.default_pos, joint_vel, self._prev_action]
        ).astype(np.float32)

        raw = self.policy(ref_pos, joint_pos)
        scaled = raw * self.action_scale
        target_full = self._default_full.copy()
        target_full[self._joint_index] = self.default_pos + scaled

        d.ctrl[self._ctrl_index] = target_full
        for _ in range(self.decimation):
            self.band.apply(m, d)
            mujoco.mj_step(m, d)

        step = self.counter_step
        obs: Record = {
            "ref_joint_pos": ref_pos.astype(np.float32),
            "ref_joint_vel": ref_vel.astype(np.float32),
            "motion_anchor_ori": anchor.astype(np.float32),
            "ang_vel": ang_vel.astype(np.float32),
            "joint_pos": joint_pos.astype(np.float32),
            "joint_vel": joint_vel.astype(np.float32),
            "prev_action": self._prev_action.astype(np.float32),
            "full_obs": full_obs,
            "counter_step": step,
        }
        act: Record = {
            "raw_action": raw.astype(np.float32),
            "scaled_action": scaled.astype(np.float32),
            "target_pos_full": target_full.astype(np.float32),
            "kps": self.kps.copy(),
            "kds": self.kds.copy(),
            "counter_step": step,
        }
        self._prev_action = raw
        self.counter_step += 1
        return obs, act


def simulate_deployment(
    seconds: float = 20.0, rate_hz: float = 50.0, robot: str = "g1_29dof", seed: int = 0
) -> Iterator[tuple[Record, Record]]:
    """Yield ``(observation, action)`` records of ``seconds`` of simulated G1 control at ``rate_hz``.

    Runs as fast as the CPU allows (no sleeping); ``round(seconds * rate_hz)`` steps.
    """
    if seconds < 0:
        raise ConfigError(f"seconds must be >= 0, got {seconds}")
    loop = G1DeployLoop(robot=robot, seed=seed, rate_hz=rate_hz)
    for _ in range(round(seconds * rate_hz)):
        yield loop.step()
