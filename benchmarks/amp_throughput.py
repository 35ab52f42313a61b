"""AMP + PPO throughput: env-steps/s of the full training iteration against the bare vmapped MJX step.

    python benchmarks/amp_throughput.py [--num-envs 64] [--rollout-steps 16] [--iterations 5]

Both sides use the same model, batch and physics settings (default.yaml); the bare side is
``jit(vmap(env.step))`` in a ``lax.scan`` of the same length (the environment alone: physics, task
reward, features, auto-reset); the full side is :meth:`Trainer.update` (rollout with policy, value,
discriminator reward, GAE, PPO epochs, replay, discriminator steps). The ratio is the share of the time
spent on the environment; 1 - ratio is the share spent on learning. Compile time is excluded from both
and printed apart. The expert store is a synthetic stepping motion (tests/amp_expert.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--rollout-steps", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()

    import jax
    import mujoco

    sys.path.insert(0, str(REPO))
    from mimicdata_trainers.amp.config import default_config
    from mimicdata_trainers.amp.run import prepare

    from tests.amp_expert import write_expert_store

    n, t_steps = args.num_envs, args.rollout_steps
    cfg = default_config().replace(
        ppo={"num_envs": n, "rollout_steps": t_steps, "minibatches": 4},
        amp={"replay_insert": min(8192, n * t_steps), "disc_minibatch": min(4096, n * t_steps)})
    with tempfile.TemporaryDirectory() as tmp:
        session = prepare(write_expert_store(Path(tmp) / "expert.zarr", clips=(200, 200)), cfg)
    env, expert, trainer = session.env, session.expert, session.trainer
    print(f"jax {jax.__version__} ({jax.default_backend()}, {jax.local_device_count()} device(s)), "
          f"mujoco {mujoco.__version__}; {n} envs x {t_steps} steps per iteration; networks "
          f"{list(cfg.ppo.hidden)} / disc {list(cfg.amp.disc_hidden)}; {cfg.ppo.epochs} epochs x "
          f"{cfg.ppo.minibatches} minibatches, {cfg.amp.disc_steps} disc steps")

    @jax.jit
    def bare(env_state, rng):
        def one(state, key):
            action = 0.1 * jax.random.normal(key, (n, env.action_size))
            state, out = jax.vmap(env.step, in_axes=(0, 0, None))(state, action, expert.reference)
            return state, out.reward
        return jax.lax.scan(one, env_state, jax.random.split(rng, t_steps))

    state = trainer.init(jax.random.PRNGKey(0), expert)
    t0 = time.perf_counter()
    env_state, r = bare(state.env_state, jax.random.PRNGKey(1))
    jax.block_until_ready(r)
    compile_bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, m = trainer.update(state, expert)
    jax.block_until_ready(m)
    compile_full = time.perf_counter() - t0

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(args.iterations):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            best = min(best, time.perf_counter() - t)
        return best

    holder = {"env": env_state, "state": state}

    def run_bare():
        holder["env"], rewards = bare(holder["env"], jax.random.PRNGKey(2))
        return rewards

    def run_full():
        holder["state"], metrics = trainer.update(holder["state"], expert)
        return metrics

    t_bare, t_full = timed(run_bare), timed(run_full)
    steps = n * t_steps
    print(f"{'side':<40}{'s/iteration':>12}{'env-steps/s':>13}{'compile s':>11}")
    print(f"{'bare vmapped MJX step (env only)':<40}{t_bare:>12.3f}{steps / t_bare:>13.0f}{compile_bare:>11.1f}")
    print(f"{'full AMP + PPO iteration':<40}{t_full:>12.3f}{steps / t_full:>13.0f}{compile_full:>11.1f}")
    print(f"full / bare throughput: {t_bare / t_full:.3f}  (learning takes {100 * (1 - t_bare / t_full):.1f}% "
          f"of an iteration; best of {args.iterations})")


if __name__ == "__main__":
    main()
