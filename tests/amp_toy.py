"""A point-mass stand-in for the MJX G1 (same reset/step interface), for tests of the trainer's
plumbing (devices, GAE wiring) that would otherwise pay a minute of MJX compilation each."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from mimicdata_trainers.amp.env import StepOut


class ToyState(NamedTuple):
    obs: jax.Array
    pos: jax.Array
    step: jax.Array
    episode_return: jax.Array
    rng: jax.Array


class ToyEnv:
    """2-D point mass steered by velocity commands; falls when it leaves a 3 m disc, times out at 20 steps."""

    obs_size, action_size, disc_obs_size = 4, 2, 4

    def reset(self, rng: jax.Array, ref: object) -> ToyState:
        rng, k = jax.random.split(rng)
        pos = jax.random.uniform(k, (2,), minval=-1.0, maxval=1.0)
        return ToyState(obs=jnp.concatenate([pos, jnp.zeros(2)]), pos=pos, step=jnp.zeros((), jnp.int32),
                        episode_return=jnp.zeros(()), rng=rng)

    def step(self, state: ToyState, action: jax.Array, ref: object) -> tuple[ToyState, StepOut]:
        vel = jnp.tanh(action)
        pos = state.pos + 0.1 * vel
        obs = jnp.concatenate([pos, vel])
        reward = jnp.exp(-jnp.sum((vel - jnp.array([1.0, 0.0])) ** 2))
        step = state.step + 1
        terminated = jnp.linalg.norm(pos) > 3.0
        truncated = (step >= 20) & ~terminated
        done = terminated | truncated
        rng, k = jax.random.split(state.rng)
        after = ToyState(obs=obs, pos=pos, step=step, episode_return=state.episode_return + reward, rng=rng)
        new = jax.tree.map(lambda a, b: jnp.where(done, a, b), self.reset(k, ref), after)
        return new, StepOut(reward=reward, terminated=terminated, truncated=truncated, final_obs=obs, disc_obs=obs,
                            episode_return=jnp.where(done, after.episode_return, 0.0),
                            episode_length=jnp.where(done, step, 0))
