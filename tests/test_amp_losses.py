"""AMP + PPO maths without MJX: GAE with a truncation and a termination, the discriminator loss and reward,
the FIFO replay, the config, and data-parallel training over two (forced host) devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from mimicdata_trainers.amp import losses, replay  # noqa: E402
from mimicdata_trainers.amp.config import default_config, from_dict, load_config  # noqa: E402

import mimicdata as md  # noqa: E402
from tests.amp_toy import ToyEnv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_gae_against_a_hand_computed_case() -> None:
    # One env, 5 steps: a time-out after step 1 (truncated: bootstrap V(s') = 10), a fall at step 3
    # (terminated: no future value), an ordinary last step bootstrapped with next_value 4.
    gamma, lam = 0.5, 0.5
    r = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    v = jnp.array([1.0, 1.0, 2.0, 2.0, 3.0])
    next_v = jnp.array([1.0, 10.0, 2.0, 99.0, 4.0])  # V of the pre-reset observation each step reached
    term = jnp.array([0, 0, 0, 1, 0], bool)
    done = jnp.array([0, 1, 0, 1, 0], bool)
    adv, ret = losses.gae(r, v, next_v, term, done, gamma, lam)
    d = [1 + 0.5 * 1 - 1, 2 + 0.5 * 10 - 1, 3 + 0.5 * 2 - 2, 4 + 0 - 2, 5 + 0.5 * 4 - 3]  # deltas by hand
    a4 = d[4]
    a3 = d[3]  # done: nothing flows back from step 4
    a2 = d[2] + 0.25 * a3
    a1 = d[1]  # truncated: cut, but its own delta kept the bootstrap
    a0 = d[0] + 0.25 * a1
    np.testing.assert_allclose(adv, [a0, a1, a2, a3, a4], rtol=1e-6)
    np.testing.assert_allclose(ret, np.array([a0, a1, a2, a3, a4]) + np.asarray(v), rtol=1e-6)


def test_gae_batched_over_envs_matches_one_env_at_a_time() -> None:
    rng = np.random.default_rng(0)
    r, v, nv = (jnp.asarray(rng.normal(size=(6, 3)), jnp.float32) for _ in range(3))
    term = jnp.asarray(rng.random((6, 3)) < 0.2)
    done = term | jnp.asarray(rng.random((6, 3)) < 0.2)
    adv, _ = losses.gae(r, v, nv, term, done, 0.99, 0.95)
    for e in range(3):
        one, _ = losses.gae(r[:, e], v[:, e], nv[:, e], term[:, e], done[:, e], 0.99, 0.95)
        np.testing.assert_allclose(adv[:, e], one, rtol=1e-5)


def test_disc_loss_terms_and_reward() -> None:
    from mimicdata_trainers.amp.networks import init_mlp

    params = init_mlp(jax.random.PRNGKey(0), [4, 8, 1])
    expert = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
    agent = jax.random.normal(jax.random.PRNGKey(2), (16, 4)) + 2.0
    total, m = losses.disc_loss(params, expert, agent, gradient_penalty=10.0, logit_reg=0.01)
    le, la = losses.disc_logits(params, expert), losses.disc_logits(params, agent)
    bce = 0.5 * (jnp.mean(jnp.log1p(jnp.exp(la))) + jnp.mean(jnp.log1p(jnp.exp(-le))))
    np.testing.assert_allclose(m["disc_bce"], bce, rtol=1e-5)
    # the network is piecewise linear: dD/dx is W1^T diag(relu') W2, checked against finite differences
    g = jax.grad(lambda x: losses.disc_logits(params, x))(expert[0])
    eps = 1e-3
    d_at = lambda x: losses.disc_logits(params, x)  # noqa: E731
    fd = [(d_at(expert[0] + eps * e) - d_at(expert[0] - eps * e)) / (2 * eps) for e in jnp.eye(4)]
    np.testing.assert_allclose(g, fd, rtol=1e-2, atol=1e-3)
    reg = jnp.sum(params[-1]["w"] ** 2)
    np.testing.assert_allclose(total, bce + 10.0 * m["disc_grad_penalty"] + 0.01 * reg, rtol=1e-5)
    x = jnp.array([[0.0] * 4])
    d = losses.disc_logits(params, x)
    np.testing.assert_allclose(losses.disc_reward(params, x, 2.0),
                               -jnp.log(jnp.maximum(1 - jax.nn.sigmoid(d), 1e-4)) * 2.0, rtol=1e-5)
    big = [{"w": jnp.zeros((4, 1)), "b": jnp.array([50.0])}]  # sigmoid ~ 1: the reward is capped
    np.testing.assert_allclose(losses.disc_reward(big, x, 1.0), -np.log(1e-4), rtol=1e-5)


def test_replay_is_a_fifo_ring() -> None:
    buf = replay.init(5, 1)
    buf = replay.insert(buf, jnp.arange(3, dtype=jnp.float32)[:, None])
    assert int(buf.count) == 3
    assert set(np.asarray(replay.sample(buf, jax.random.PRNGKey(0), 64))[:, 0]) <= {0.0, 1.0, 2.0}
    buf = replay.insert(buf, jnp.arange(3, 7, dtype=jnp.float32)[:, None])  # 0 and 1 are overwritten
    assert int(buf.count) == 5 and int(buf.insert_at) == 2
    assert sorted(np.asarray(buf.data)[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="replay insert of 6 rows"):
        replay.insert(buf, jnp.zeros((6, 1)))


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = default_config()
    assert cfg.amp.gradient_penalty == 10.0 and cfg.amp.replay_size == 200_000 and cfg.amp.logit_reg == 0.01
    assert cfg.env.substeps == 4 and cfg.env.episode_steps == 500
    assert cfg.replace(ppo={"num_envs": 8}).ppo.num_envs == 8
    with pytest.raises(md.ValidationError, match=r"unknown key ppo\.num_env"):
        from_dict({"ppo": {"num_env": 8}})
    with pytest.raises(md.ValidationError, match=r"amp\.gradient_penalty must be a number"):
        from_dict({"amp": {"gradient_penalty": "high"}})
    bad = tmp_path / "c.yaml"
    bad.write_text("ppo: [1, 2")
    with pytest.raises(md.ValidationError, match="not valid YAML"):
        load_config(bad)


def test_two_devices_average_gradients_and_stay_in_sync(tmp_path: Path) -> None:
    # A point-mass environment keeps the compile short; the data-parallel path is the trainer's own.
    script = textwrap.dedent("""
        import json, sys
        import jax, jax.numpy as jnp, numpy as np
        sys.path.insert(0, sys.argv[1])
        from amp_toy import ToyEnv
        from mimicdata_trainers.amp.config import default_config
        from mimicdata_trainers.amp.train import Expert, make_train
        cfg = default_config().replace(
            ppo={"num_envs": 4, "rollout_steps": 4, "minibatches": 2, "epochs": 1, "hidden": [16]},
            amp={"disc_hidden": [16], "disc_minibatch": 8, "replay_size": 32, "replay_insert": 8, "disc_steps": 1})
        expert = Expert(disc_obs=jnp.ones((10, 4)), reference=None)
        trainer = make_train(cfg, ToyEnv())
        state = trainer.init(jax.random.PRNGKey(0), expert)
        for _ in range(2):
            state, metrics = trainer.update(state, expert)
        leaves = jax.tree.leaves((state.params, state.disc_params, state.obs_norm))
        print(json.dumps({"devices": trainer.num_devices,
                          "in_sync": all(bool(np.array_equal(x[0], x[1])) for x in leaves),
                          "envs_differ": not np.array_equal(state.env_state.pos[0], state.env_state.pos[1]),
                          "finite": all(bool(np.isfinite(np.asarray(v)).all()) for v in metrics.values())}))
    """)
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script, str(REPO / "tests")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"devices": 2, "in_sync": True, "envs_differ": True, "finite": True}


def test_train_scans_the_same_iterations_as_the_stepwise_loop() -> None:
    from mimicdata_trainers.amp.train import Expert, make_train

    cfg = default_config().replace(
        ppo={"num_envs": 2, "rollout_steps": 4, "minibatches": 2, "epochs": 1, "hidden": [8]},
        amp={"disc_hidden": [8], "disc_minibatch": 4, "replay_size": 16, "replay_insert": 4, "disc_steps": 1})
    expert = Expert(disc_obs=jnp.ones((10, 4)), reference=None)
    trainer = make_train(cfg, ToyEnv(), num_devices=1)
    final, metrics = trainer.train(jax.random.PRNGKey(5), expert, 2)
    state = trainer.init(jax.random.PRNGKey(5), expert)
    for _ in range(2):
        state, last = trainer.update(state, expert)
    assert metrics["disc_loss"].shape == (2,)
    for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["policy_loss"][-1], last["policy_loss"], rtol=1e-4, atol=1e-6)
