"""The G1 steering task on MuJoCo MJX: one environment's reset and step, pure jax (vmap and jit them).

Model: the vendored G1 with armature and position actuators from the motor constants
(:mod:`mimicdata_trainers.g1_config`), capsule/box geometry only, and the fast MJX recipe: every geom
collides with nothing except through explicit pairs (a box sole per foot against the floor), few
Newton iterations, implicitfast integration of the PD damping, float32.

Task (MimicKit's steering): a target direction d and speed s re-sampled at reset and every 4-7 s;
reward 0.7·exp(-0.5‖s·d - v_xy‖²) (0 while moving against d) + 0.3·max(0, heading·d), with v_xy the
root velocity over the last control step. A fall (pelvis below ``fall_height``, or a non-finite
state) terminates; the episode time limit truncates. Both reset the environment in the same step
(auto-reset); the observation before the reset is returned as ``final_obs`` for bootstrapping.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from mimicdata_trainers.amp.config import DiscObsConfig, EnvConfig
from mimicdata_trainers.amp.features import feature_size, frame_features, quat_to_mat
from mimicdata_trainers.g1_config import g1_actuator_config

from mimicdata.errors import ConfigError
from mimicdata.robots import g1, mjcf_path

FOOT_BODIES = ("left_ankle_roll_link", "right_ankle_roll_link")
# Box soles covering the seven foot capsules of the MJCF (x -0.054..0.132, y +-0.03, bottom z -0.035).
_SOLE_POS, _SOLE_HALF = (0.039, 0.0, -0.025), (0.093, 0.03, 0.01)


class Reference(NamedTuple):
    """Expert frames for reference-state init: robot qpos (N, 7+nj), qvel (N, 6+nj) and the per-frame
    features of the control steps leading to each frame, oldest first (N, L, F)."""

    qpos: jax.Array
    qvel: jax.Array
    history: jax.Array


class EnvState(NamedTuple):
    data: Any  # mjx.Data
    obs: jax.Array
    history: jax.Array  # (L, F) per-frame features at the control step, oldest first
    step: jax.Array
    target_angle: jax.Array
    target_speed: jax.Array
    resample_in: jax.Array
    prev_xy: jax.Array
    last_action: jax.Array
    episode_return: jax.Array
    rng: jax.Array


class StepOut(NamedTuple):
    reward: jax.Array  # task reward
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array  # observation before any auto-reset
    disc_obs: jax.Array  # discriminator observation of the state reached (before any reset)
    episode_return: jax.Array  # task return of the episode that ended here (0 otherwise)
    episode_length: jax.Array  # its length in control steps (0 otherwise)


def build_model(cfg: EnvConfig) -> Any:
    """The MuJoCo model the MJX environment simulates (also used by C MuJoCo for evaluation videos)."""
    import mujoco

    act = g1_actuator_config(cfg.robot)
    joints = set(act.joint_names)
    spec = mujoco.MjSpec.from_file(str(mjcf_path(cfg.robot)))
    for geom in list(spec.geoms):  # visual meshes: MJX would build convex hulls for them
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
            spec.delete(geom)
    for mesh in list(spec.meshes):
        spec.delete(mesh)
    for geom in spec.geoms:  # only explicit pairs collide
        geom.contype, geom.conaffinity = 0, 0
    spec.option.timestep = cfg.sim_dt
    spec.option.iterations = cfg.solver_iterations
    spec.option.ls_iterations = cfg.ls_iterations
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                            contype=0, conaffinity=0)
    for body in FOOT_BODIES:
        name = body.replace("_ankle_roll_link", "_sole")
        spec.body(body).add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, pos=_SOLE_POS, size=_SOLE_HALF,
                                 contype=0, conaffinity=0, group=3)
        spec.add_pair(name=f"{name}_floor", geomname1=name, geomname2="floor", condim=3,
                      friction=[0.6, 0.6, 0.005, 0.0001, 0.0001])
    for joint in g1.G1_29DOF_JOINTS:
        c = g1.joint_actuator(joint)
        spec.joint(joint).armature = c["armature"]  # without it the G1 goes NaN within 0.034 s
        i = act.joint_names.index(joint) if joint in joints else None
        kp = float(act.stiffness[i]) if i is not None else c["stiffness"]
        kv = float(act.damping[i]) if i is not None else c["damping"]
        a = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=kp, kv=kv)
        a.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        a.forcerange = [-c["effort_limit"], c["effort_limit"]]
        if joint not in joints:  # the 23-DoF G1's absent joints: welded at their default
            spec.add_equality(name=f"hold_{joint}", type=mujoco.mjtEq.mjEQ_JOINT, objtype=mujoco.mjtObj.mjOBJ_JOINT,
                              name1=joint, data=[g1.DEFAULT_JOINT_POS[joint]] + [0.0] * 10)
    return spec.compile()


class SteeringEnv:
    """Reset and step of one environment (pure functions of their arguments; vmap them over envs)."""

    def __init__(self, cfg: EnvConfig, disc: DiscObsConfig) -> None:
        import mujoco
        from mujoco import mjx

        self.cfg, self.disc = cfg, disc
        self.mj_model = build_model(cfg)
        self.model = mjx.put_model(self.mj_model, impl=cfg.impl)
        self._data0 = mjx.make_data(self.model, impl=cfg.impl)
        act = g1_actuator_config(cfg.robot)
        self.joint_names = act.joint_names
        m = self.mj_model
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in act.joint_names]
        self.qpos_adr = np.concatenate([np.arange(7), m.jnt_qposadr[jid]])
        self.qvel_adr = np.concatenate([np.arange(6), m.jnt_dofadr[jid]])
        self.act_ids = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in act.joint_names])
        missing = [b for b in cfg.key_bodies if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) < 0]
        if missing:
            raise ConfigError(f"env.key_bodies: {missing} are not bodies of the G1 model")
        self.key_ids = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in cfg.key_bodies])
        qpos0 = np.zeros(m.nq)
        qpos0[:7] = [0, 0, g1.STANDING_PELVIS_HEIGHT, 1, 0, 0, 0]
        for j, q in g1.DEFAULT_JOINT_POS.items():
            qpos0[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]] = q
        self.qpos0 = jnp.asarray(qpos0, jnp.float32)
        self.ctrl0 = jnp.asarray([g1.DEFAULT_JOINT_POS[j] for j in g1.G1_29DOF_JOINTS], jnp.float32)
        self.default_joint_pos = jnp.asarray(act.default_joint_pos, jnp.float32)
        self.action_scale = jnp.asarray(act.action_scale, jnp.float32)
        nj = len(act.joint_names)
        self.action_size = nj
        self.obs_size = 10 + 3 * nj + 5
        self.feature_size = feature_size(nj, len(cfg.key_bodies))
        self.history_len = (disc.history - 1) * disc.dilation + 1
        self.disc_obs_size = disc.history * self.feature_size

    # ------------------------------------------------------------------ helpers
    def features(self, data: Any) -> jax.Array:
        return frame_features(data.qpos[self.qpos_adr], data.qvel[self.qvel_adr], data.xpos[self.key_ids])

    def disc_obs_of(self, history: jax.Array) -> jax.Array:
        """Flattened discriminator observation (history * F): every `dilation`-th frame, oldest first."""
        return history[:: self.disc.dilation].reshape(-1)

    def _observe(self, data: Any, angle: jax.Array, speed: jax.Array, last_action: jax.Array) -> jax.Array:
        qpos, qvel = data.qpos, data.qvel
        rot = quat_to_mat(qpos[3:7])
        yaw = jnp.arctan2(rot[1, 0], rot[0, 0])
        rel = angle - yaw
        local_dir = jnp.stack([jnp.cos(rel), jnp.sin(rel)])
        obs = jnp.concatenate([
            rot.T @ jnp.array([0.0, 0.0, -1.0]), qvel[3:6], rot.T @ qvel[:3], qpos[2:3],
            qpos[self.qpos_adr[7:]] - self.default_joint_pos, qvel[self.qvel_adr[6:]], last_action,
            local_dir, speed[None], local_dir,  # facing target = direction (MimicKit)
        ])
        return jnp.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)

    def _sample_target(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        a, s, t = jax.random.split(rng, 3)
        angle = jax.random.uniform(a, (), minval=-jnp.pi, maxval=jnp.pi)
        speed = jax.random.uniform(s, (), minval=self.cfg.speed_range[0], maxval=self.cfg.speed_range[1])
        lo, hi = (round(x / self.cfg.ctrl_dt) for x in self.cfg.resample_seconds)
        return angle, speed, jax.random.randint(t, (), lo, hi + 1)

    # ------------------------------------------------------------------ API
    def reset(self, rng: jax.Array, ref: Reference | None) -> EnvState:
        from mujoco import mjx

        rng, k_target, k_pick, k_use = jax.random.split(rng, 4)
        qpos, qvel = self.qpos0, jnp.zeros(self.mj_model.nv, jnp.float32)
        if ref is not None:
            i = jax.random.randint(k_pick, (), 0, ref.qpos.shape[0])
            use_ref = jax.random.uniform(k_use) < self.cfg.reference_init_prob
            ref_q = ref.qpos[i].at[:2].set(0.0)  # the expert's pose and height, at the origin
            qpos = jnp.where(use_ref, qpos.at[self.qpos_adr].set(ref_q), qpos)
            qvel = jnp.where(use_ref, qvel.at[self.qvel_adr].set(ref.qvel[i]), qvel)
        data = mjx.kinematics(self.model, self._data0.replace(qpos=qpos, qvel=qvel, ctrl=self.ctrl0))
        current = self.features(data)
        history = jnp.broadcast_to(current, (self.history_len, self.feature_size))
        if ref is not None:  # MimicKit fills the history from the reference motion
            history = jnp.where(use_ref, ref.history[i], history)
        angle, speed, resample_in = self._sample_target(k_target)
        last_action = jnp.zeros(self.action_size, jnp.float32)
        return EnvState(data=data, obs=self._observe(data, angle, speed, last_action), history=history,
                        step=jnp.zeros((), jnp.int32), target_angle=angle, target_speed=speed,
                        resample_in=resample_in, prev_xy=qpos[:2], last_action=last_action,
                        episode_return=jnp.zeros((), jnp.float32), rng=rng)

    def task_reward(self, data: Any, prev_xy: jax.Array, angle: jax.Array, speed: jax.Array) -> jax.Array:
        d = jnp.stack([jnp.cos(angle), jnp.sin(angle)])
        v = (data.qpos[:2] - prev_xy) / self.cfg.ctrl_dt
        r_target = jnp.where(d @ v < 0.0, 0.0, jnp.exp(-0.5 * jnp.sum((speed * d - v) ** 2)))
        fwd = quat_to_mat(data.qpos[3:7])[:2, 0]
        heading = fwd / jnp.maximum(jnp.linalg.norm(fwd), 1e-6)
        return 0.7 * r_target + 0.3 * jnp.maximum(0.0, heading @ d)

    def step(self, state: EnvState, action: jax.Array, ref: Reference | None) -> tuple[EnvState, StepOut]:
        from mujoco import mjx

        action = jnp.clip(action, -10.0, 10.0)  # a wild policy cannot ask for absurd targets
        ctrl = self.ctrl0.at[self.act_ids].set(self.default_joint_pos + self.action_scale * action)
        data = state.data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, self.cfg.substeps, lambda _, d: mjx.step(self.model, d), data)
        finite = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
        terminated = ~finite | (data.qpos[2] < self.cfg.fall_height)
        step = state.step + 1
        truncated = (step >= self.cfg.episode_steps) & ~terminated
        reward = jnp.where(finite, self.task_reward(data, state.prev_xy, state.target_angle, state.target_speed), 0.0)
        features = jnp.nan_to_num(self.features(data), nan=0.0, posinf=0.0, neginf=0.0)
        history = jnp.concatenate([state.history[1:], features[None]], axis=0)
        rng, k_target, k_reset = jax.random.split(state.rng, 3)
        angle, speed, resample_in = self._sample_target(k_target)
        keep = state.resample_in > 1
        angle = jnp.where(keep, state.target_angle, angle)
        speed = jnp.where(keep, state.target_speed, speed)
        resample_in = jnp.where(keep, state.resample_in - 1, resample_in)
        obs = self._observe(data, angle, speed, action)
        episode_return = state.episode_return + reward
        after = EnvState(data=data, obs=obs, history=history, step=step, target_angle=angle, target_speed=speed,
                         resample_in=resample_in, prev_xy=data.qpos[:2], last_action=action,
                         episode_return=episode_return, rng=rng)
        done = terminated | truncated
        fresh = self.reset(k_reset, ref)
        new_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, after)
        out = StepOut(reward=reward, terminated=terminated, truncated=truncated, final_obs=obs,
                      disc_obs=self.disc_obs_of(history), episode_return=jnp.where(done, episode_return, 0.0),
                      episode_length=jnp.where(done, step, 0))
        return new_state, out
