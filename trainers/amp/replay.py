"""Agent replay for the discriminator: a stateless FIFO ring in brax's style (init / insert / sample).

The buffer is a pytree of arrays (jit- and checkpoint-friendly); every function returns a new one.
Once full, the oldest rows are overwritten first.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mimicdata.errors import ValidationError


class ReplayState(NamedTuple):
    data: jax.Array  # (capacity, size)
    insert_at: jax.Array  # next row to write
    count: jax.Array  # rows holding data (<= capacity)


def init(capacity: int, size: int) -> ReplayState:
    return ReplayState(data=jnp.zeros((capacity, size), jnp.float32), insert_at=jnp.zeros((), jnp.int32),
                       count=jnp.zeros((), jnp.int32))


def insert(state: ReplayState, rows: jax.Array) -> ReplayState:
    """Write `rows` (n, size) after the newest, wrapping around; n must not exceed the capacity."""
    capacity = state.data.shape[0]
    n = rows.shape[0]
    if n > capacity:
        raise ValidationError(f"replay insert of {n} rows into a buffer of {capacity}")
    index = (state.insert_at + jnp.arange(n)) % capacity
    return ReplayState(data=state.data.at[index].set(rows), insert_at=(state.insert_at + n) % capacity,
                       count=jnp.minimum(state.count + n, capacity))


def sample(state: ReplayState, rng: jax.Array, n: int) -> jax.Array:
    """`n` rows drawn uniformly (with replacement) from those holding data; call after an insert."""
    index = jax.random.randint(rng, (n,), 0, jnp.maximum(state.count, 1))
    return state.data[index]
