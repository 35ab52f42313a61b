"""The per-frame discriminator features, one jax function for the simulated agent and the expert store.

Both sides call :func:`frame_features` on the same quantities (robot qpos, qvel in MuJoCo's
convention and world positions of the key bodies), so a feature can never be computed one way for
the agent and another way for the expert. Everything is expressed in the heading frame (root yaw
removed) relative to the root, so features do not depend on where the robot stands or faces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def quat_to_mat(q: jax.Array) -> jax.Array:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) in wxyz order."""
    q = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-9)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def heading_frame(root_rot: jax.Array) -> jax.Array:
    """World-to-heading rotation (..., 3, 3): yaw of the root's x axis only."""
    fwd = root_rot[..., :, 0]
    yaw = jnp.arctan2(fwd[..., 1], fwd[..., 0])
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack([jnp.stack([c, s, zero], -1), jnp.stack([-s, c, zero], -1),
                      jnp.stack([zero, zero, one], -1)], -2)


def frame_features(qpos: jax.Array, qvel: jax.Array, key_pos: jax.Array) -> jax.Array:
    """Features (..., F) of one frame: root height (1), root tangent and normal in the heading frame (6),
    root linear and angular velocity in the heading frame (6), joint positions and velocities (2 nj),
    key-body positions relative to the root in the heading frame (3 K).

    ``qpos`` (..., 7 + nj), ``qvel`` (..., 6 + nj) as MuJoCo stores a free joint (linear velocity in
    the world frame, angular velocity in the body frame); ``key_pos`` (..., K, 3) world positions.
    """
    root_rot = quat_to_mat(qpos[..., 3:7])
    to_heading = heading_frame(root_rot)
    local = to_heading @ root_rot
    lin = jnp.einsum("...ij,...j->...i", to_heading, qvel[..., :3])
    ang_world = jnp.einsum("...ij,...j->...i", root_rot, qvel[..., 3:6])
    ang = jnp.einsum("...ij,...j->...i", to_heading, ang_world)
    rel = key_pos - qpos[..., None, :3]
    keys = jnp.einsum("...ij,...kj->...ki", to_heading, rel)
    parts = [qpos[..., 2:3], local[..., :, 0], local[..., :, 2], lin, ang, qpos[..., 7:], qvel[..., 6:],
             keys.reshape(*keys.shape[:-2], -1)]
    return jnp.concatenate(parts, axis=-1)


def feature_size(num_joints: int, num_keys: int) -> int:
    """F of :func:`frame_features`."""
    return 13 + 2 * num_joints + 3 * num_keys
