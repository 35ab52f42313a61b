"""AMP + PPO, purejaxrl style: ``make_train(config, env, expert) -> Trainer`` with ``train(rng)``.

One iteration (:meth:`Trainer.update`) is one jit (a ``pmap`` over the local devices when there are
several) of ``lax.scan``s: scan the environment steps; discriminator reward; reverse-scan GAE; scan
PPO epochs { scan minibatches }; insert agent samples into the FIFO replay; scan discriminator steps.
With several devices each holds ``num_envs / devices`` environments; gradients and normaliser
statistics are averaged over devices (``lax.pmean``), so parameters stay identical everywhere.

``train(rng)`` runs ``init`` and a scan over all iterations inside one compiled program; the CLI
(:mod:`mimicdata_trainers.amp.run`) calls ``init`` and ``update`` from Python instead, to log and
checkpoint between iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from mimicdata_trainers.amp import losses, replay
from mimicdata_trainers.amp.config import Config
from mimicdata_trainers.amp.env import Reference
from mimicdata_trainers.amp.networks import (
    ActorCritic,
    Normalizer,
    Params,
    gaussian_log_prob,
    init_actor_critic,
    init_mlp,
    init_normalizer,
    normalize,
    policy,
    update_normalizer,
    value,
)

from mimicdata.errors import ConfigError

AXIS = "devices"


class Expert(NamedTuple):
    """Expert data on the device: discriminator observations (N, D) and poses for reference-state init."""

    disc_obs: jax.Array
    reference: Reference | None


class TrainState(NamedTuple):
    params: ActorCritic
    opt_state: Any
    disc_params: Params
    disc_opt_state: Any
    obs_norm: Normalizer
    disc_norm: Normalizer
    replay: replay.ReplayState
    env_state: Any
    rng: jax.Array
    iteration: jax.Array


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    out: Any  # env.StepOut


def _optimizer(lr: float, max_norm: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    # Clip by global norm independently of the learning rate (LocoMuJoCo tied the two).
    opt = optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(max_norm), opt)


@dataclass
class Trainer:
    """Compiled AMP + PPO for one config, environment and expert data set."""

    config: Config
    env: Any
    num_devices: int
    init: Callable[[jax.Array, Expert], TrainState]
    update: Callable[[TrainState, Expert], tuple[TrainState, dict[str, jax.Array]]]
    train: Callable[[jax.Array, Expert, int], tuple[TrainState, dict[str, jax.Array]]]

    @property
    def steps_per_iteration(self) -> int:
        return self.config.ppo.num_envs * self.config.ppo.rollout_steps


def make_train(config: Config, env: Any, num_devices: int | None = None) -> Trainer:
    """Build the trainer; `num_devices` defaults to every local device (data-parallel when > 1)."""
    ppo, amp = config.ppo, config.amp
    devices = jax.local_device_count() if num_devices is None else num_devices
    if ppo.num_envs % devices:
        raise ConfigError(f"ppo.num_envs ({ppo.num_envs}) must be divisible by the {devices} devices")
    envs = ppo.num_envs // devices
    batch = envs * ppo.rollout_steps
    minibatch = batch // ppo.minibatches
    if batch % ppo.minibatches:
        raise ConfigError(f"the {batch} samples per device must split into {ppo.minibatches} minibatches")
    insert_rows = max(1, min(amp.replay_insert // devices, batch))  # at most one rollout per iteration
    disc_batch = max(1, amp.disc_minibatch // devices)
    axis = AXIS if devices > 1 else None
    policy_opt = _optimizer(ppo.learning_rate, ppo.max_grad_norm)
    disc_opt = _optimizer(amp.disc_learning_rate, amp.disc_max_grad_norm, amp.weight_decay)

    def pmean(x: Any) -> Any:
        return jax.lax.pmean(x, axis) if axis else x

    def init(rng: jax.Array, expert: Expert) -> TrainState:
        k_policy, k_disc, k_env, rng = jax.random.split(rng, 4)
        if axis:  # same networks on every device, different environments
            k_env = jax.random.fold_in(k_env, jax.lax.axis_index(axis))
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis))
        params = init_actor_critic(k_policy, env.obs_size, env.action_size, ppo.hidden, ppo.init_log_std)
        disc_params = init_mlp(k_disc, [env.disc_obs_size, *amp.disc_hidden, 1])
        env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_env, envs), expert.reference)
        return TrainState(params=params, opt_state=policy_opt.init(params), disc_params=disc_params,
                          disc_opt_state=disc_opt.init(disc_params), obs_norm=init_normalizer(env.obs_size),
                          disc_norm=init_normalizer(env.disc_obs_size),
                          replay=replay.init(max(insert_rows, amp.replay_size // devices), env.disc_obs_size),
                          env_state=env_state, rng=rng, iteration=jnp.zeros((), jnp.int32))

    def rollout(state: TrainState, expert: Expert, rng: jax.Array) -> tuple[Any, Transition]:
        def one_step(carry: tuple[Any, jax.Array], _: None) -> tuple[tuple[Any, jax.Array], Transition]:
            env_state, key = carry
            key, k_action = jax.random.split(key)
            obs_n = normalize(state.obs_norm, env_state.obs, amp.obs_clip)
            mean, log_std = policy(state.params, obs_n)
            action = mean + jnp.exp(log_std) * jax.random.normal(k_action, mean.shape)
            next_state, out = jax.vmap(env.step, in_axes=(0, 0, None))(env_state, action, expert.reference)
            step = Transition(obs=env_state.obs, action=action, log_prob=gaussian_log_prob(mean, log_std, action),
                              value=value(state.params, obs_n), out=out)
            return (next_state, key), step

        (env_state, _), traj = jax.lax.scan(one_step, (state.env_state, rng), None, length=ppo.rollout_steps)
        return env_state, traj

    def ppo_epochs(state: TrainState, data: losses.PPOBatch, rng: jax.Array) -> tuple[Any, Any, dict]:
        grad_fn = jax.value_and_grad(losses.ppo_loss, has_aux=True)

        def minibatch_step(carry: tuple[ActorCritic, Any], mb: losses.PPOBatch) -> tuple[tuple, dict]:
            params, opt_state = carry
            (_, metrics), grads = grad_fn(params, mb, ppo.clip_eps, ppo.value_coef, ppo.entropy_coef,
                                          ppo.advantage_clip)
            grads = pmean(grads)
            updates, opt_state = policy_opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry: tuple[ActorCritic, Any], key: jax.Array) -> tuple[tuple, dict]:
            perm = jax.random.permutation(key, batch)
            mbs = jax.tree.map(lambda x: x[perm].reshape(ppo.minibatches, minibatch, *x.shape[1:]), data)
            return jax.lax.scan(minibatch_step, carry, mbs)

        (params, opt_state), metrics = jax.lax.scan(epoch, (state.params, state.opt_state),
                                                    jax.random.split(rng, ppo.epochs))
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    def disc_steps(state: TrainState, buffer: replay.ReplayState, agent_now: jax.Array, expert: Expert,
                   rng: jax.Array) -> tuple[Params, Any, dict]:
        grad_fn = jax.value_and_grad(losses.disc_loss, has_aux=True)
        half = max(1, disc_batch // 2)

        def one(carry: tuple[Params, Any], key: jax.Array) -> tuple[tuple, dict]:
            params, opt_state = carry
            k_e, k_a, k_r = jax.random.split(key, 3)
            expert_x = expert.disc_obs[jax.random.randint(k_e, (disc_batch,), 0, expert.disc_obs.shape[0])]
            # MimicKit: the current agent samples together with as many from the replay
            agent_x = jnp.concatenate([agent_now[jax.random.randint(k_a, (half,), 0, agent_now.shape[0])],
                                       replay.sample(buffer, k_r, disc_batch - half)])
            (_, metrics), grads = grad_fn(params, normalize(state.disc_norm, expert_x, amp.obs_clip),
                                          normalize(state.disc_norm, agent_x, amp.obs_clip),
                                          amp.gradient_penalty, amp.logit_reg)
            grads = pmean(grads)
            updates, opt_state = disc_opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(one, (state.disc_params, state.disc_opt_state),
                                                    jax.random.split(rng, amp.disc_steps))
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    def update(state: TrainState, expert: Expert) -> tuple[TrainState, dict[str, jax.Array]]:
        rng, k_roll, k_ppo, k_insert, k_disc, k_norm = jax.random.split(state.rng, 6)
        env_state, traj = rollout(state, expert, k_roll)
        out = traj.out
        # Value of the state each step reached, on the observation before any reset (see losses.gae).
        next_values = value(state.params, normalize(state.obs_norm, out.final_obs, amp.obs_clip))
        disc_x = normalize(state.disc_norm, out.disc_obs, amp.obs_clip)
        disc_reward = losses.disc_reward(state.disc_params, disc_x, amp.disc_reward_scale)
        reward = losses.total_reward(out.reward, disc_reward, amp.task_weight, amp.disc_weight)
        advantages, returns = losses.gae(reward, traj.value, next_values, out.terminated,
                                         out.terminated | out.truncated, ppo.gamma, ppo.gae_lambda)
        flat = lambda x: x.reshape(batch, *x.shape[2:])  # noqa: E731
        data = losses.PPOBatch(obs=flat(normalize(state.obs_norm, traj.obs, amp.obs_clip)),
                               actions=flat(traj.action), log_probs=flat(traj.log_prob),
                               advantages=flat(advantages), returns=flat(returns))
        params, opt_state, ppo_metrics = ppo_epochs(state, data, k_ppo)
        agent_now = flat(out.disc_obs)
        pick = jax.random.choice(k_insert, batch, (insert_rows,), replace=False)
        buffer = replay.insert(state.replay, agent_now[pick])
        disc_params, disc_opt_state, disc_metrics = disc_steps(state, buffer, agent_now, expert, k_disc)
        expert_x = expert.disc_obs[jax.random.randint(k_norm, (insert_rows,), 0, expert.disc_obs.shape[0])]
        new_state = TrainState(
            params=params, opt_state=opt_state, disc_params=disc_params, disc_opt_state=disc_opt_state,
            obs_norm=update_normalizer(state.obs_norm, traj.obs, axis),
            disc_norm=update_normalizer(state.disc_norm, jnp.concatenate([agent_now[pick], expert_x]), axis),
            replay=buffer, env_state=env_state, rng=rng, iteration=state.iteration + 1)
        ended = (out.terminated | out.truncated).astype(jnp.float32)
        n_ended = pmean(ended.sum())
        metrics = {
            "episode_return": pmean(out.episode_return.sum()) / jnp.maximum(n_ended, 1.0),
            "episode_length": pmean(out.episode_length.sum().astype(jnp.float32)) / jnp.maximum(n_ended, 1.0),
            "episodes": n_ended, "falls": pmean(out.terminated.astype(jnp.float32).sum()),
            "task_reward": pmean(out.reward.mean()), "disc_reward": pmean(disc_reward.mean()),
            "total_reward": pmean(reward.mean()), "value_mean": pmean(traj.value.mean()),
            **ppo_metrics, **disc_metrics,
        }
        return new_state, metrics

    def train(rng: jax.Array, expert: Expert, iterations: int) -> tuple[TrainState, dict[str, jax.Array]]:
        state = init(rng, expert)
        return jax.lax.scan(lambda s, _: update(s, expert), state, None, length=iterations)

    if axis:
        # pmap needs one mapped argument: the device index (init derives per-device keys itself)
        index = jnp.arange(devices)
        pinit = jax.pmap(lambda _, rng, expert: init(rng, expert), axis_name=axis, in_axes=(0, None, None))
        ptrain = jax.pmap(lambda _, rng, expert, n: train(rng, expert, n), axis_name=axis,
                          in_axes=(0, None, None), static_broadcasted_argnums=3)
        pupdate = jax.pmap(update, axis_name=axis, in_axes=(0, None))
        return Trainer(config, env, devices, lambda rng, expert: pinit(index, rng, expert), pupdate,
                       lambda rng, expert, n: ptrain(index, rng, expert, n))
    return Trainer(config, env, devices, jax.jit(init), jax.jit(update),
                   jax.jit(train, static_argnums=2))


def first_device(tree: Any, num_devices: int) -> Any:
    """The copy of replicated values held by device 0 (identity with one device)."""
    return jax.tree.map(lambda x: x[0], tree) if num_devices > 1 else tree
