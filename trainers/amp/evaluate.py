"""Evaluate a checkpoint in C MuJoCo (no MJX compilation): the same model, actuators, observation and
task reward as training, one environment stepped on the CPU; optionally a video of the run.

The policy and observation are evaluated by one small jitted function (compiles in about a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from mimicdata_trainers.amp import checkpoint
from mimicdata_trainers.amp.config import from_dict
from mimicdata_trainers.amp.env import SteeringEnv
from mimicdata_trainers.amp.networks import normalize, policy


@dataclass
class EvalResult:
    steps: int
    episodes: int  # episodes that ended (fall or time-out)
    falls: int
    mean_task_reward: float
    mean_episode_length: float  # over ended episodes; the running one when none ended
    record: Any = None  # mimicdata.render.RenderResult when a recording was asked for


def evaluate(path: str | Path, n_steps: int = 1000, *, deterministic: bool = False, seed: int = 0,
             record: str | Path | None = None, width: int = 640, height: int = 480) -> EvalResult:
    import mujoco

    meta, groups = checkpoint.read(path)
    config = from_dict({k: v for k, v in meta["config"].items() if k != "train"})
    from mimicdata_trainers.amp.run import policy_template

    env = SteeringEnv(config.env, config.disc_obs)
    params, obs_norm = checkpoint.restore(policy_template(config, env), groups["policy"], "policy")
    clip = config.amp.obs_clip

    @jax.jit
    def act(qpos: jax.Array, qvel: jax.Array, angle: jax.Array, speed: jax.Array, last: jax.Array,
            noise: jax.Array) -> jax.Array:
        obs = env._observe(SimpleNamespace(qpos=qpos, qvel=qvel), angle, speed, last)
        mean, log_std = policy(params, normalize(obs_norm, obs, clip))
        return mean + jnp.exp(log_std) * noise

    model = env.mj_model
    data = mujoco.MjData(model)
    rng = np.random.default_rng(seed)
    ctrl0, qpos0 = np.asarray(env.ctrl0), np.asarray(env.qpos0)
    act_ids, default_pos, scale = env.act_ids, np.asarray(env.default_joint_pos), np.asarray(env.action_scale)
    cfg = config.env

    def new_target() -> tuple[float, float, int]:
        lo, hi = (round(x / cfg.ctrl_dt) for x in cfg.resample_seconds)
        return rng.uniform(-np.pi, np.pi), rng.uniform(*cfg.speed_range), int(rng.integers(lo, hi + 1))

    def reset() -> None:
        mujoco.mj_resetData(model, data)
        data.qpos[:], data.ctrl[:] = qpos0, ctrl0
        mujoco.mj_forward(model, data)

    reset()
    angle, speed, resample_in = new_target()
    last = np.zeros(env.action_size, np.float32)
    frames, bodies, rewards, lengths, falls, length = [], [], [], [], 0, 0
    for _ in range(n_steps):
        noise = np.zeros(env.action_size, np.float32) if deterministic else rng.standard_normal(env.action_size)
        action = np.asarray(act(data.qpos.astype(np.float32), data.qvel.astype(np.float32), np.float32(angle),
                                np.float32(speed), last, noise.astype(np.float32)))
        action = np.clip(action, -10.0, 10.0)
        ctrl = ctrl0.copy()
        ctrl[act_ids] = default_pos + scale * action
        data.ctrl[:] = ctrl
        prev_xy = data.qpos[:2].copy()
        for _ in range(cfg.substeps):
            mujoco.mj_step(model, data)
        length += 1
        finite = np.all(np.isfinite(data.qpos))
        reward = float(env.task_reward(SimpleNamespace(qpos=jnp.asarray(data.qpos, jnp.float32)),
                                       jnp.asarray(prev_xy, jnp.float32), angle, speed)) if finite else 0.0
        rewards.append(reward)
        if record is not None:
            frames.append(data.qpos.copy())
            bodies.append(data.xpos[1:].copy())
        last = action.astype(np.float32)
        resample_in -= 1
        if resample_in <= 0:
            angle, speed, resample_in = new_target()
        fell = not finite or data.qpos[2] < cfg.fall_height
        if fell or length >= cfg.episode_steps:
            falls += int(fell)
            lengths.append(length)
            length = 0
            reset()
            angle, speed, resample_in = new_target()
            last = np.zeros_like(last)
    result = EvalResult(steps=n_steps, episodes=len(lengths), falls=falls, mean_task_reward=float(np.mean(rewards)),
                        mean_episode_length=float(np.mean(lengths)) if lengths else float(length))
    if record is not None:
        from mimicdata.render import render_frames

        names = [model.body(i).name for i in range(1, model.nbody)]
        result.record = render_frames(np.array(frames), np.array(bodies), names, config.env.robot,
                                      1.0 / cfg.ctrl_dt, Path(record), width=width, height=height)
    return result
