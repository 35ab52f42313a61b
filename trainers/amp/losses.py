"""The maths of AMP + PPO, pure functions: GAE, the PPO loss, MimicKit's discriminator loss and reward.

Truncation versus termination (GAE): we **bootstrap from the observation before the reset**. Each
step stores ``next_value`` = V(s'), the critic's value of the state the step reached, computed on
the observation before any auto-reset. Then

    delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},   done = terminated or truncated

so a fall contributes no future value, a time-out keeps V(s') (the episode would have gone on), and
no advantage leaks across a reset in either case. (brax instead masks truncated steps out of the
loss; MimicKit, like us, bootstraps time-outs with V of the pre-reset observation.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from mimicdata_trainers.amp.networks import (
    ActorCritic,
    Params,
    gaussian_entropy,
    gaussian_log_prob,
    mlp,
    policy,
    value,
)


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminated: jax.Array, done: jax.Array,
        gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets (returns) of a rollout, arrays (T, ...) in time order (see module doc)."""
    terminated = terminated.astype(rewards.dtype)
    done = done.astype(rewards.dtype)
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def backwards(carry: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, d = xs
        adv = delta + gamma * lam * (1.0 - d) * carry
        return adv, adv

    _, advantages = jax.lax.scan(backwards, jnp.zeros_like(rewards[0]), (deltas, done), reverse=True)
    return advantages, advantages + values


class PPOBatch(NamedTuple):
    obs: jax.Array  # normalised
    actions: jax.Array
    log_probs: jax.Array
    advantages: jax.Array
    returns: jax.Array


def ppo_loss(params: ActorCritic, batch: PPOBatch, clip_eps: float, value_coef: float, entropy_coef: float,
             advantage_clip: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + value_coef * squared value error - entropy_coef * entropy (minibatch means).

    Advantages are standardised over the minibatch and clipped to +-advantage_clip (MimicKit: 4).
    """
    mean, log_std = policy(params, batch.obs)
    log_probs = gaussian_log_prob(mean, log_std, batch.actions)
    log_ratio = log_probs - batch.log_probs
    ratio = jnp.exp(log_ratio)
    adv = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    adv = jnp.clip(adv, -advantage_clip, advantage_clip)
    surrogate = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv).mean()
    value_loss = 0.5 * jnp.mean((value(params, batch.obs) - batch.returns) ** 2)
    entropy = gaussian_entropy(log_std).mean()
    total = surrogate + value_coef * value_loss - entropy_coef * entropy
    metrics = {"policy_loss": surrogate, "value_loss": value_loss, "entropy": entropy,
               "approx_kl": jnp.mean(ratio - 1.0 - log_ratio),  # Schulman's low-variance estimator
               "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > clip_eps)}
    return total, metrics


def disc_logits(params: Params, x: jax.Array) -> jax.Array:
    return mlp(params, x)[..., 0]


def disc_loss(params: Params, expert: jax.Array, agent: jax.Array, gradient_penalty: float,
              logit_reg: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MimicKit's AMP discriminator loss on normalised observations (n, D).

    0.5 * [BCE(D(agent), 0) + BCE(D(expert), 1)]
    + gradient_penalty * 0.5 * (E_expert ||dD/dx||^2 + E_agent ||dD/dx||^2)
    + logit_reg * ||W_last||^2   (the logit layer's weights only).
    """
    def logit_sum(x: jax.Array) -> jax.Array:
        return disc_logits(params, x).sum()

    expert_logits, expert_grad = disc_logits(params, expert), jax.grad(logit_sum)(expert)
    agent_logits, agent_grad = disc_logits(params, agent), jax.grad(logit_sum)(agent)
    # BCE with logits: target 0 -> softplus(l), target 1 -> softplus(-l)
    bce = 0.5 * (jax.nn.softplus(agent_logits).mean() + jax.nn.softplus(-expert_logits).mean())
    penalty = 0.5 * (jnp.sum(expert_grad**2, axis=-1).mean() + jnp.sum(agent_grad**2, axis=-1).mean())
    reg = jnp.sum(params[-1]["w"] ** 2)
    total = bce + gradient_penalty * penalty + logit_reg * reg
    metrics = {"disc_loss": total, "disc_bce": bce, "disc_grad_penalty": penalty,
               "disc_expert_accuracy": jnp.mean(expert_logits > 0), "disc_agent_accuracy": jnp.mean(agent_logits < 0),
               "disc_expert_logit": expert_logits.mean(), "disc_agent_logit": agent_logits.mean()}
    return total, metrics


def disc_reward(params: Params, x: jax.Array, scale: float) -> jax.Array:
    """-log(max(1 - sigmoid(D(x)), 1e-4)) * scale, computed as min(softplus(D), -log 1e-4) * scale."""
    return jnp.minimum(jax.nn.softplus(disc_logits(params, x)), -jnp.log(1e-4)) * scale


def total_reward(task: jax.Array, disc: jax.Array, task_weight: float, disc_weight: float) -> jax.Array:
    return task_weight * task + disc_weight * disc
