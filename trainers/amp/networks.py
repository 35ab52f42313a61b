"""Plain-jax MLPs (parameter pytrees, no framework) and running observation normalisers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

Params = list[dict[str, jax.Array]]


def init_mlp(rng: jax.Array, sizes: Sequence[int], last_scale: float = 1.0) -> Params:
    """Orthogonal weights (gain sqrt 2, `last_scale` on the output layer), zero biases."""
    layers = []
    keys = jax.random.split(rng, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        gain = last_scale if i == len(sizes) - 2 else jnp.sqrt(2.0)
        w = jax.nn.initializers.orthogonal(gain)(k, (n_in, n_out), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros(n_out, jnp.float32)})
    return layers


def mlp(params: Params, x: jax.Array) -> jax.Array:
    """ReLU hidden layers, linear output."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


class ActorCritic(NamedTuple):
    actor: Params
    critic: Params
    log_std: jax.Array


def init_actor_critic(rng: jax.Array, obs_size: int, action_size: int, hidden: Sequence[int],
                      init_log_std: float) -> ActorCritic:
    ka, kc = jax.random.split(rng)
    return ActorCritic(actor=init_mlp(ka, [obs_size, *hidden, action_size], last_scale=0.01),
                       critic=init_mlp(kc, [obs_size, *hidden, 1], last_scale=1.0),
                       log_std=jnp.full(action_size, init_log_std, jnp.float32))


def policy(params: ActorCritic, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and log std (state-independent) of the Gaussian policy."""
    mean = mlp(params.actor, obs)
    return mean, jnp.broadcast_to(params.log_std, mean.shape)


def value(params: ActorCritic, obs: jax.Array) -> jax.Array:
    return mlp(params.critic, obs)[..., 0]


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)


class Normalizer(NamedTuple):
    """Running mean/variance (Chan et al. parallel update); normalised values are clipped to +-clip."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_normalizer(size: int) -> Normalizer:
    return Normalizer(mean=jnp.zeros(size, jnp.float32), var=jnp.ones(size, jnp.float32),
                      count=jnp.asarray(1e-4, jnp.float32))


def update_normalizer(norm: Normalizer, x: jax.Array, axis_name: str | None = None) -> Normalizer:
    """Fold a batch (..., size) in; with `axis_name`, the batch statistics are averaged over devices."""
    x = x.reshape(-1, x.shape[-1])
    n = jnp.asarray(x.shape[0], jnp.float32)
    mean = jnp.mean(x, axis=0)
    sq = jnp.mean(x**2, axis=0)
    if axis_name is not None:  # every device holds an equal share: average its moments
        mean, sq = jax.lax.pmean((mean, sq), axis_name)
        n = n * jax.lax.psum(1.0, axis_name)
    var = jnp.maximum(sq - mean**2, 0.0)
    total = norm.count + n
    delta = mean - norm.mean
    new_mean = norm.mean + delta * n / total
    m2 = norm.var * norm.count + var * n + delta**2 * norm.count * n / total
    return Normalizer(mean=new_mean, var=m2 / total, count=total)


def normalize(norm: Normalizer, x: jax.Array, clip: float) -> jax.Array:
    return jnp.clip((x - norm.mean) / jnp.sqrt(norm.var + 1e-8), -clip, clip)
